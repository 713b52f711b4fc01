package controllers

import (
	"fmt"
	"testing"
	"time"
)

func TestNextCheckBounds(t *testing.T) {
	cases := map[string]time.Duration{
		"default period": 10 * time.Minute,
		"bench period":   15 * time.Second,
		"odd period":     7*time.Second + 3*time.Millisecond,
	}
	for name, resync := range cases {
		t.Run(name, func(t *testing.T) {
			now := time.Date(2026, 12, 1, 13, 0, 0, 0, time.UTC)
			for i := range 2000 {
				uid := fmt.Sprintf("uid-%d", i)
				at := now.Add(time.Duration(i) * 997 * time.Millisecond)
				got := nextCheck(uid, at, resync)
				if got < resync/checkMinGapShare || got >= resync+resync/checkMinGapShare {
					t.Fatalf("nextCheck(%s) = %s, want in [%s, %s)", uid, got, resync/checkMinGapShare, resync+resync/checkMinGapShare)
				}
				// A check run when the last one asked stays on its phase:
				// the next is one period later.
				if again := nextCheck(uid, at.Add(got), resync); again != resync {
					t.Fatalf("nextCheck(%s) after its own check = %s, want %s", uid, again, resync)
				}
			}
		})
	}
}

// TestNextCheckSpread reconciles N organizations at the same instant, as the
// pass after a restart does, and checks that their next checks are spread
// over the period: each tenth of it gets between half and twice its share.
func TestNextCheckSpread(t *testing.T) {
	const (
		n      = 5000
		bins   = 10
		resync = 10 * time.Minute
	)
	now := time.Date(2026, 12, 1, 13, 0, 0, 0, time.UTC)
	var counts [bins]int
	for i := range n {
		got := nextCheck(fmt.Sprintf("0f3c1d2e-%04d-4a5b-8c7d-%012d", i%10000, i*7919), now, resync)
		counts[int((got-resync/checkMinGapShare)*bins/resync)]++
	}
	for i, c := range counts {
		if c < n/bins/2 || c > 2*n/bins {
			t.Errorf("%d of %d next checks in tenth %d of the period, want %d to %d: %v", c, n, i, n/bins/2, 2*n/bins, counts)
		}
	}
}

func TestNextCheckOff(t *testing.T) {
	if got := nextCheck("uid", time.Now(), 0); got != 0 {
		t.Errorf("nextCheck with no resync period = %s, want 0", got)
	}
}
