package e2e_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	dto "github.com/prometheus/client_model/go"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/controllers"
	"github.com/orgforge/orgforge/internal/aurora"
	"github.com/orgforge/orgforge/internal/testutil"
)

// usageMetrics are the usage gauges' names.
var usageMetrics = []string{
	"orgforge_organization_database_bytes", "orgforge_organization_storage_bytes",
	"orgforge_organization_storage_objects", "orgforge_organization_connections",
	"orgforge_organization_connections_limit",
}

// usageSeries returns, from families, each usage gauge of organization org
// by name.
func usageSeries(families []*dto.MetricFamily, org string) map[string]float64 {
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "organization" && l.GetValue() == org {
					out[f.GetName()] = m.GetGauge().GetValue()
				}
			}
		}
	}
	return out
}

func getOrg(t *testing.T, name string) *tenancyv1alpha1.Organization {
	t.Helper()
	o := &tenancyv1alpha1.Organization{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Name: name}, o); err != nil {
		t.Fatal(err)
	}
	return o
}

func TestUsageReportsObjectsDatabaseSizeAndSessionsOnTheStatusAndInMetrics(t *testing.T) {
	const period = 10 * time.Second
	startOperatorSettings(t, nil, nil, func(s *controllers.Settings) { s.UsagePeriod = period })
	ctx := context.Background()
	const name = "usage-report"
	o := applyReady(t, testutil.NewOrg(name))

	// The reconcile that made it Ready read its usage too.
	first := o.Status.Usage
	if first == nil || first.UpdatedAt == nil || first.DatabaseBytes == nil || first.StorageObjects == nil ||
		first.StorageBytes == nil || first.Connections == nil {
		t.Fatalf("usage of a Ready Organization = %+v, want every figure", first)
	}
	if *first.StorageObjects != 0 || *first.StorageBytes != 0 || *first.Connections != 0 || first.ConnectionLimit != 10 || *first.DatabaseBytes <= 0 {
		t.Errorf("usage of a new Organization: %d objects, %d bytes, %d of %d connections, database %d bytes; want 0, 0, 0 of 10, some",
			*first.StorageObjects, *first.StorageBytes, *first.Connections, first.ConnectionLimit, *first.DatabaseBytes)
	}

	// Objects under its prefix, and one beside it that shares its letters.
	sizes := []int{1, 1000, 4096, 70000}
	want := int64(0)
	s3c := stack.S3.RootClient()
	for i, n := range sizes {
		key := fmt.Sprintf("%sdata/object-%d", o.Status.Storage.Prefix, i)
		if err := testutil.PutObject(ctx, s3c, stack.S3.Bucket, key, strings.Repeat("x", n)); err != nil {
			t.Fatal(err)
		}
		want += int64(n)
	}
	if err := testutil.PutObject(ctx, s3c, stack.S3.Bucket, "orgs/"+name+"-beside/object", "not the organization's"); err != nil {
		t.Fatal(err)
	}
	// A table, written through a session the application keeps open.
	sec := secret(t, o, name+"-database")
	conn, err := pgx.Connect(ctx, stack.Postgres.DSN(string(sec.Data["username"]), string(sec.Data["password"]), string(sec.Data["dbname"])))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	if _, err := conn.Exec(ctx, "CREATE TABLE filler AS SELECT g, repeat('y', 500) AS pad FROM generate_series(1, 10000) g"); err != nil {
		t.Fatal(err)
	}

	var u *tenancyv1alpha1.UsageStatus
	testutil.Eventually(t, 6*period, "usage read again", func() (bool, string) {
		u = getOrg(t, name).Status.Usage
		if u == nil || u.StorageObjects == nil || u.Connections == nil {
			return false, "no usage"
		}
		got := fmt.Sprintf("%d objects, %d bytes, %d connections, database %d bytes", *u.StorageObjects, *u.StorageBytes, *u.Connections, *u.DatabaseBytes)
		return *u.StorageObjects == int64(len(sizes)) && *u.StorageBytes == want && *u.Connections == 1 &&
			*u.DatabaseBytes >= *first.DatabaseBytes+5_000_000, got
	})

	series := usageSeries(gatherMetrics(t), name)
	wantSeries := map[string]float64{
		"orgforge_organization_database_bytes":    float64(*u.DatabaseBytes),
		"orgforge_organization_storage_bytes":     float64(want),
		"orgforge_organization_storage_objects":   float64(len(sizes)),
		"orgforge_organization_connections":       1,
		"orgforge_organization_connections_limit": 10,
	}
	for _, m := range usageMetrics {
		if series[m] != wantSeries[m] {
			t.Errorf("%s{organization=%q} = %v, want %v as on the status", m, name, series[m], wantSeries[m])
		}
	}

	deleteAndWait(t, name)
	if left := usageSeries(gatherMetrics(t), name); len(left) != 0 {
		t.Errorf("series of the deleted Organization remain: %v", left)
	}
}

func TestUsageIsReadOncePerPeriodWithNoWriteBetween(t *testing.T) {
	// The resync period is longer than the usage period: the refresh is
	// due before the resync, and must still come on time.
	const period = 5 * time.Second
	op := startOperatorSettings(t, nil, nil, func(s *controllers.Settings) {
		s.UsagePeriod = period
		s.ResyncPeriod = time.Minute
	})
	const name = "usage-period"
	apply(t, testutil.NewOrg(name))
	waitReady(t, name)
	// Let the reconciles that the Secrets' creation triggered settle.
	time.Sleep(time.Second)

	writes := op.writes.Load()
	var stamps []time.Time
	for i, end := 0, time.Now().Add(4*period+2*time.Second); time.Now().Before(end); i++ {
		if u := getOrg(t, name).Status.Usage; u != nil && u.UpdatedAt != nil &&
			(len(stamps) == 0 || !u.UpdatedAt.Time.Equal(stamps[len(stamps)-1])) {
			stamps = append(stamps, u.UpdatedAt.Time)
		}
		// A changed annotation is reconciled at once: reconciles between
		// the refreshes, which must read and write nothing.
		if i%5 == 0 {
			patch := client.RawPatch(types.MergePatchType, []byte(fmt.Sprintf(`{"metadata":{"annotations":{"example.com/poke":"%d"}}}`, i)))
			if err := k8s.Patch(context.Background(), getOrg(t, name), patch); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(stamps) == 0 {
		t.Fatal("the Ready Organization has no usage")
	}
	// Stopped, the operator has made every write it counted.
	op.stop()
	if u := getOrg(t, name).Status.Usage; !u.UpdatedAt.Time.Equal(stamps[len(stamps)-1]) {
		stamps = append(stamps, u.UpdatedAt.Time)
	}
	refreshes := len(stamps) - 1
	t.Logf("usage read at %v", stamps)
	if got := op.writes.Load() - writes; got != int64(refreshes) {
		t.Errorf("%d Kubernetes writes while the usage was read %d times; want one write per read and none else: %q",
			got, refreshes, op.writtenSince(writes))
	}
	if refreshes < 2 {
		t.Errorf("usage read %d times in %s with a period of %s, want at least 2", refreshes, 4*period+2*time.Second, period)
	}
	for i := 1; i < len(stamps); i++ {
		if d := stamps[i].Sub(stamps[i-1]); d < period {
			t.Errorf("usage read %s after the read before, under the period %s", d, period)
			break
		}
	}

	// The Organization is deleted by an operator that runs.
	startOperator(t, nil)
	deleteAndWait(t, name)
}

// failingUsage is a database service whose usage reads time out while
// failing is set, as a size probe of a very large database would.
type failingUsage struct {
	controllers.Database
	failing *atomic.Bool
}

func (d failingUsage) Usage(ctx context.Context, database, role string) (aurora.Usage, error) {
	if d.failing.Load() {
		return aurora.Usage{}, fmt.Errorf("reading the usage of database %q: %w", database, context.DeadlineExceeded)
	}
	return d.Database.Usage(ctx, database, role)
}

func TestAFailedUsageReadKeepsTheOrganizationReadyAndItsFiguresAndIsTriedAgain(t *testing.T) {
	const period = 5 * time.Second
	failing := &atomic.Bool{}
	op := startOperatorSettings(t, func(_ string, db controllers.Database) controllers.Database {
		return failingUsage{Database: db, failing: failing}
	}, nil, func(s *controllers.Settings) { s.UsagePeriod = period })
	const name = "usage-failing"
	o := applyReady(t, testutil.NewOrg(name))
	before := o.Status.Usage
	if before == nil || before.UpdatedAt == nil {
		t.Fatal("the Ready Organization has no usage")
	}

	// Let the reconciles that Ready itself triggered settle.
	time.Sleep(resync / 2)
	failing.Store(true)
	writes := op.writes.Load()
	// Two periods and a resync: every read in them fails.
	time.Sleep(2*period + resync)
	o = getOrg(t, name)
	if !testutil.ReadyAtGeneration(o) {
		t.Errorf("the Organization is not Ready after its usage reads failed: %+v", o.Status.Conditions)
	}
	if diff := cmp.Diff(before, o.Status.Usage); diff != "" {
		t.Errorf("usage changed while its reads failed (-before +after):\n%s", diff)
	}
	if got := op.writes.Load() - writes; got != 0 {
		t.Errorf("%d Kubernetes writes while the usage reads failed, want 0", got)
	}

	failing.Store(false)
	testutil.Eventually(t, 2*period+2*resync, "usage read again once reads work", func() (bool, string) {
		u := getOrg(t, name).Status.Usage
		return u != nil && u.UpdatedAt != nil && u.UpdatedAt.After(before.UpdatedAt.Time), fmt.Sprint(u.UpdatedAt)
	})
}

func TestUsageOffRemovesTheFiguresAndReadsNone(t *testing.T) {
	op := startOperator(t, nil)
	const name = "usage-off"
	if o := applyReady(t, testutil.NewOrg(name)); o.Status.Usage == nil {
		t.Fatal("the Ready Organization has no usage with usage on")
	}
	op.stop()
	off := startOperatorSettings(t, nil, nil, func(s *controllers.Settings) { s.UsagePeriod = 0 })
	// Cleanups run last-in first-out: delete while this manager still runs.
	t.Cleanup(func() { deleteAndWait(t, name) })
	// A spec change is reconciled at once.
	o := getOrg(t, name)
	o.Spec.DisplayName = "usage off"
	if err := k8s.Update(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, "usage removed", func() (bool, string) {
		o := getOrg(t, name)
		return o.Status.Usage == nil && testutil.ReadyAtGeneration(o), fmt.Sprint(o.Status.Usage)
	})
	writes := off.writes.Load()
	time.Sleep(2 * resync)
	if o := getOrg(t, name); o.Status.Usage != nil {
		t.Errorf("usage read with usage off: %+v", o.Status.Usage)
	}
	if got := off.writes.Load() - writes; got != 0 {
		t.Errorf("%d Kubernetes writes with usage off and nothing changing, want 0", got)
	}
}
