package controllers

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/meta"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/aurora"
	"github.com/orgforge/orgforge/internal/credentials"
	"github.com/orgforge/orgforge/internal/devstack"
	"github.com/orgforge/orgforge/internal/placement"
	"github.com/orgforge/orgforge/internal/registry"
	"github.com/orgforge/orgforge/internal/retry"
	"github.com/orgforge/orgforge/internal/testutil"
)

// TestAClusterIsConnectedThenUnreachableOnARealServer drives the reconciler
// over a real PostgreSQL server and the registry's clusters: the budget it
// enters in the fleet is the server's, and a stopped server takes the
// cluster out of placement with its budget kept.
func TestAClusterIsConnectedThenUnreachableOnARealServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	server, err := devstack.StartPostgres(ctx, t.TempDir(), devstack.PostgresOptions{
		Settings: map[string]string{"max_connections": "120", "superuser_reserved_connections": "5"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Close() })
	policy := retry.Policy{Attempts: 2, Base: 10 * time.Millisecond, Factor: 2, Cap: 50 * time.Millisecond}
	clusters := registry.NewClusters(logr.Discard(), registry.ClustersOptions{Retry: &policy, MaxConnections: 6})
	t.Cleanup(clusters.Close)

	f := newClusterFixture(t, fromFlags("east", nil), placedOrg("acme", "east", 10))
	f.r.Clusters = clusters
	f.r.Flags.AdminDSN = server.AdminDSN()
	// A database of an organization, marked as the operator marks it.
	svc, err := aurora.New(ctx, aurora.Config{AdminDSN: server.AdminDSN()}, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := credentials.SCRAMVerifier("not-used-to-log-in")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.EnsureRole(ctx, aurora.RoleSpec{Name: "org_acme", Marker: aurora.Marker{Org: "acme", UID: "u-1"}, Verifier: verifier, ConnLimit: 10}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.EnsureDatabase(ctx, "org_acme", "org_acme", aurora.Marker{Org: "acme", UID: "u-1"}); err != nil {
		t.Fatal(err)
	}
	svc.Close()

	if res := f.reconcile(t, "east"); res.RequeueAfter != DefaultHealthInterval {
		t.Errorf("RequeueAfter = %v, want the health interval %v", res.RequeueAfter, DefaultHealthInterval)
	}
	su := testutil.Superuser(t, server, "postgres")
	var version string
	var reserved int
	if err := su.QueryRow(ctx, `SELECT current_setting('server_version'),
		CASE WHEN current_setting('server_version_num')::int >= 160000
			THEN current_setting('reserved_connections')::int ELSE 0 END`).Scan(&version, &reserved); err != nil {
		t.Fatal(err)
	}
	capacity := placement.DefaultMaxConnections(120, 5, reserved, 6)
	dbc := f.get(t, "east")
	if want := "True Connected: Connected to " + server.Host + ":" + strconv.Itoa(server.Port) + ", PostgreSQL " + version; readyOf(dbc) != want {
		t.Errorf("Ready = %q, want %q", readyOf(dbc), want)
	}
	st := dbc.Status
	if st.ServerVersion != version || st.Databases != 1 || st.Organizations != 1 || st.ConnectionBudget != fmt.Sprintf("10/%d", capacity) ||
		st.LastHealthCheck == nil || st.ObservedGeneration != dbc.Generation {
		t.Errorf("status %+v; want version %s, 1 database, 1 organization, budget 10/%d, a health check, observedGeneration %d",
			st, version, capacity, dbc.Generation)
	}
	if cu, _ := f.fleet("east"); !cu.Cluster.Ready || cu.Cluster.Capacity.MaxConnections != capacity {
		t.Errorf("fleet has %+v; want east Ready with budget %d", cu, capacity)
	}
	if _, ok := clusters.Get("east"); !ok {
		t.Error("the cluster's service is not in the registry")
	}

	if err := server.Stop(); err != nil {
		t.Fatal(err)
	}
	f.reconcile(t, "east")
	dbc = f.get(t, "east")
	ready := meta.FindStatusCondition(dbc.Status.Conditions, tenancyv1alpha1.ConditionReady)
	if ready == nil || ready.Reason != tenancyv1alpha1.ReasonUnreachable || dbc.Status.ServerVersion != version {
		t.Errorf("with the server stopped: Ready %q, version %q; want Unreachable and the last version", readyOf(dbc), dbc.Status.ServerVersion)
	}
	if cu, _ := f.fleet("east"); cu.Cluster.Ready || cu.Cluster.Capacity.MaxConnections != capacity {
		t.Errorf("fleet has %+v; want east not Ready, its budget %d kept", cu, capacity)
	}
}
