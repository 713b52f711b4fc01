package e2e_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/controllers"
	"github.com/orgforge/orgforge/internal/naming"
	"github.com/orgforge/orgforge/internal/testutil"
)

// organizationReconciles is how many reconciles of Organizations the
// process's managers have finished.
func organizationReconciles(t *testing.T) int {
	t.Helper()
	families, err := crmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range families {
		if f.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" && l.GetValue() == "organization" {
					n += int(m.GetCounter().GetValue())
				}
			}
		}
	}
	return n
}

func TestSettledOrganizationsSendLessThanAStatementEachPerPassAndDriftIsStillRepaired(t *testing.T) {
	// The snapshot may be as old as the resync period: a drift then waits
	// for at most two periods.
	startOperatorSettings(t, nil, nil, func(s *controllers.Settings) { s.SnapshotMaxAge = resync })
	var names []string
	for i := range 10 {
		names = append(names, fmt.Sprintf("rest-%d", i))
	}
	for i, n := range names {
		opts := []testutil.OrgOption{testutil.WithStorageAccess(tenancyv1alpha1.StorageAccessNone)}
		if i == 0 {
			// Its logins are checked at every resync too.
			opts = append(opts, func(o *tenancyv1alpha1.Organization) {
				o.Spec.Credentials.RotateEvery = &metav1.Duration{Duration: 24 * time.Hour}
			})
		}
		apply(t, testutil.NewOrg(n, opts...))
	}
	for _, n := range names {
		waitReady(t, n)
	}
	time.Sleep(resync)
	svc, ok := reg.Clusters.Get(tenancyv1alpha1.DefaultClusterName)
	if !ok {
		t.Fatal("the default DatabaseCluster has no service")
	}
	statements, reconciles := svc.Statements(), organizationReconciles(t)
	time.Sleep(3 * resync)
	statements, reconciles = svc.Statements()-statements, organizationReconciles(t)-reconciles
	// Each resync of one checked it with five statements or more before the
	// snapshot; now the snapshot, read once per SnapshotMaxAge, and the
	// DatabaseCluster's own checks are all there is.
	if reconciles < 2*len(names) {
		t.Fatalf("%d reconciles in three resync periods of %d Organizations: the passes did not run", reconciles, len(names))
	}
	if statements >= int64(reconciles) {
		t.Errorf("%d SQL statements for %d reconciles of settled Organizations, want fewer than one each", statements, reconciles)
	}
	t.Logf("%d SQL statements for %d reconciles", statements, reconciles)

	// Drift made by hand now, after the snapshot in use was read, is
	// repaired all the same.
	ctx := context.Background()
	su := testutil.Superuser(t, stack.Postgres, "postgres")
	role := func(i int) string { return naming.RoleName(names[i]) }
	comment := func(role string) string {
		var c string
		if err := su.QueryRow(ctx, "SELECT COALESCE(shobj_description(oid, 'pg_authid'), '') FROM pg_roles WHERE rolname = $1", role).Scan(&c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	marker := comment(role(2))
	unclustered, _, found := strings.Cut(marker, ";cluster=")
	if !found {
		t.Fatalf("role %s's marker %q names no cluster", role(2), marker)
	}
	drifts := []string{
		fmt.Sprintf("ALTER ROLE %s CONNECTION LIMIT 99", role(1)),
		fmt.Sprintf("COMMENT ON ROLE %s IS '%s'", role(2), unclustered),
		fmt.Sprintf("GRANT CONNECT ON DATABASE %s TO PUBLIC", naming.DatabaseName(names[3])),
		fmt.Sprintf("ALTER ROLE %s NOLOGIN", role(4)),
	}
	for _, d := range drifts {
		if _, err := su.Exec(ctx, d); err != nil {
			t.Fatalf("%s: %v", d, err)
		}
	}
	testutil.Eventually(t, 4*resync+10*time.Second, "every drift repaired", func() (bool, string) {
		var limit int
		var canLogin, publicHas bool
		err := su.QueryRow(ctx, `SELECT (SELECT rolconnlimit FROM pg_roles WHERE rolname = $1),
				(SELECT rolcanlogin FROM pg_roles WHERE rolname = $2),
				(SELECT EXISTS (SELECT 1 FROM aclexplode(COALESCE(d.datacl, acldefault('d', d.datdba))) a WHERE a.grantee = 0)
					FROM pg_database d WHERE d.datname = $3)`,
			role(1), role(4), naming.DatabaseName(names[3])).Scan(&limit, &canLogin, &publicHas)
		if err != nil {
			return false, err.Error()
		}
		remarked := comment(role(2))
		return limit == 10 && canLogin && !publicHas && remarked == marker,
			fmt.Sprintf("connection limit %d, LOGIN %t, PUBLIC's access %t, marker %q", limit, canLogin, publicHas, remarked)
	})
}
