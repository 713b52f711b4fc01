package e2e_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/testutil"
)

// TestTwentyOrganizationsStayWithinTheConnectionCap provisions 20
// organizations at once and samples pg_stat_activity throughout: the
// operator never holds more connections than --database-max-connections.
// It logs the peak and the apply-to-Ready times for the closing note; it
// asserts no timing.
func TestTwentyOrganizationsStayWithinTheConnectionCap(t *testing.T) {
	startOperator(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	su := testutil.Superuser(t, stack.Postgres, "postgres")

	var peak int
	var mu sync.Mutex
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for ctx.Err() == nil {
			var n int
			if err := su.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'orgforge'").Scan(&n); err == nil {
				mu.Lock()
				peak = max(peak, n)
				mu.Unlock()
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()

	const n = 20
	applied := map[string]time.Time{}
	for i := range n {
		name := fmt.Sprintf("cap-%02d", i)
		applied[name] = time.Now()
		apply(t, testutil.NewOrg(name))
	}
	ready := map[string]time.Duration{}
	testutil.Eventually(t, 2*time.Minute, "20 organizations Ready", func() (bool, string) {
		var list tenancyv1alpha1.OrganizationList
		if err := k8s.List(context.Background(), &list); err != nil {
			return false, err.Error()
		}
		for _, o := range list.Items {
			if _, ok := applied[o.Name]; !ok {
				continue
			}
			if _, done := ready[o.Name]; !done && meta.IsStatusConditionTrue(o.Status.Conditions, tenancyv1alpha1.ConditionReady) {
				ready[o.Name] = time.Since(applied[o.Name])
			}
		}
		return len(ready) == n, fmt.Sprintf("%d Ready", len(ready))
	})
	cancel()
	<-sampled

	mu.Lock()
	defer mu.Unlock()
	if peak > cfg.Database.MaxConnections {
		t.Errorf("operator held %d connections, cap is %d", peak, cfg.Database.MaxConnections)
	}
	if peak == 0 {
		t.Error("sampling saw no operator connection; the sampler is broken")
	}
	times := make([]time.Duration, 0, n)
	for _, d := range ready {
		times = append(times, d)
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	families := gatherMetrics(t)
	readyGauge, dbSteps := -1.0, uint64(0)
	for _, f := range families {
		for _, m := range f.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			switch f.GetName() {
			case "orgforge_organizations":
				if l["condition"] == "Ready" && l["status"] == "True" {
					readyGauge = m.GetGauge().GetValue()
				}
			case "orgforge_reconcile_step_duration_seconds":
				if l["step"] == "database" {
					dbSteps = m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	if readyGauge < n {
		t.Errorf("orgforge_organizations{condition=Ready,status=True} = %v, want at least %d", readyGauge, n)
	}
	if dbSteps < n {
		t.Errorf("database step observed %d times, want at least %d", dbSteps, n)
	}
	t.Logf("20 organizations: peak operator connections %d (cap %d); apply-to-Ready observed (100ms polling) median %s, max %s",
		peak, cfg.Database.MaxConnections, times[n/2].Round(time.Millisecond), times[n-1].Round(time.Millisecond))
}
