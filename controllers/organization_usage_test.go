package controllers

import (
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
)

func TestUsageJitterIsFixedPerOrganizationUnderATenthOfThePeriodAndSpreadsThem(t *testing.T) {
	const period = time.Hour
	seen := map[time.Duration]bool{}
	var lo, hi time.Duration = period, 0
	for i := range 500 {
		uid := fmt.Sprintf("6f0c1e2a-%04d-4b8e-9a51-2f3c4d5e6f70", i)
		j := usageJitter(uid, period)
		if j != usageJitter(uid, period) {
			t.Fatalf("usageJitter(%s) changed between calls", uid)
		}
		if j < 0 || j >= period/usageJitterShare {
			t.Fatalf("usageJitter(%s) = %s, want in [0, %s)", uid, j, period/usageJitterShare)
		}
		seen[j] = true
		lo, hi = min(lo, j), max(hi, j)
	}
	if len(seen) < 490 {
		t.Errorf("500 organizations share %d jitters; they would refresh together", len(seen))
	}
	if hi-lo < period/usageJitterShare/2 {
		t.Errorf("jitters span %s of the %s allowed; they do not spread", hi-lo, period/usageJitterShare)
	}
	if j := usageJitter("x", 5*time.Nanosecond); j != 0 {
		t.Errorf("usageJitter for a period too short to split = %s, want 0", j)
	}
}

func TestNextUsageIsDueAtOnceWhenNeverReadAndAPeriodAfterTheLastRead(t *testing.T) {
	read := metav1.NewTime(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	org := &tenancyv1alpha1.Organization{ObjectMeta: metav1.ObjectMeta{UID: types.UID("a-uid")}}
	cases := map[string]struct {
		usage *tenancyv1alpha1.UsageStatus
		want  time.Time
	}{
		"never read":        {want: time.Time{}},
		"read, no time":     {usage: &tenancyv1alpha1.UsageStatus{}, want: time.Time{}},
		"read at 10:00 UTC": {usage: &tenancyv1alpha1.UsageStatus{UpdatedAt: &read}, want: read.Add(time.Hour + usageJitter("a-uid", time.Hour))},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			org.Status.Usage = tc.usage
			if got := nextUsage(org, time.Hour); !got.Equal(tc.want) {
				t.Errorf("nextUsage = %s, want %s", got, tc.want)
			}
		})
	}
}
