package controllers

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/orgforge/orgforge/internal/placement"
)

// fakeFleetConnections is what registry.Clusters would report.
type fakeFleetConnections struct {
	caps, open map[string]int32
	total      int32
}

func (f *fakeFleetConnections) ConnectionCaps() map[string]int32  { return f.caps }
func (f *fakeFleetConnections) OpenConnections() map[string]int32 { return f.open }
func (f *fakeFleetConnections) MaxTotalConnections() int32        { return f.total }

func TestFleetMetricsReportTheOperatorsConnectionsAndEachClustersBudget(t *testing.T) {
	conns := &fakeFleetConnections{
		caps:  map[string]int32{"default": 4, "second": 6},
		open:  map[string]int32{"default": 1, "second": 3},
		total: 100,
	}
	ledger := NewLedger(nil)
	for _, c := range []placement.Cluster{
		{Name: "default", Ready: true, Schedulable: true, Capacity: placement.Capacity{MaxConnections: 90}},
		{Name: "second", Ready: false, Schedulable: true, Capacity: placement.Capacity{MaxDatabases: 10, MaxConnections: 40}},
	} {
		if err := ledger.Fleet.SetCluster(c); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []placement.Placement{
		{Organization: "acme", Cluster: "default", MaxConnections: 5},
		{Organization: "globex", Cluster: "default", MaxConnections: 10},
		{Organization: "initech", Cluster: "second", MaxConnections: 7},
	} {
		if _, err := ledger.Fleet.Record(p); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewPedanticRegistry()
	if err := RegisterFleetMetrics(reg, conns, ledger); err != nil {
		t.Fatal(err)
	}

	want := `
# HELP orgforge_database_cluster_connections_budgeted Sum of the pool maxConnections of the organizations placed on a database cluster.
# TYPE orgforge_database_cluster_connections_budgeted gauge
orgforge_database_cluster_connections_budgeted{cluster="default"} 15
orgforge_database_cluster_connections_budgeted{cluster="second"} 7
# HELP orgforge_database_cluster_connections_capacity Connection budget of a database cluster for its organizations' pools.
# TYPE orgforge_database_cluster_connections_capacity gauge
orgforge_database_cluster_connections_capacity{cluster="default"} 90
orgforge_database_cluster_connections_capacity{cluster="second"} 40
# HELP orgforge_database_cluster_organizations Organizations placed on a database cluster.
# TYPE orgforge_database_cluster_organizations gauge
orgforge_database_cluster_organizations{cluster="default"} 2
orgforge_database_cluster_organizations{cluster="second"} 1
# HELP orgforge_database_cluster_ready 1 when a database cluster's service is built and its last health check passed, else 0.
# TYPE orgforge_database_cluster_ready gauge
orgforge_database_cluster_ready{cluster="default"} 1
orgforge_database_cluster_ready{cluster="second"} 0
# HELP orgforge_operator_database_connections PostgreSQL connections the operator holds on a database cluster now.
# TYPE orgforge_operator_database_connections gauge
orgforge_operator_database_connections{cluster="default"} 1
orgforge_operator_database_connections{cluster="second"} 3
# HELP orgforge_operator_database_connections_max Cap on the PostgreSQL connections the operator holds on a database cluster.
# TYPE orgforge_operator_database_connections_max gauge
orgforge_operator_database_connections_max{cluster="default"} 4
orgforge_operator_database_connections_max{cluster="second"} 6
# HELP orgforge_operator_database_connections_fleet_max Cap on the sum of the database clusters' caps on the operator's connections.
# TYPE orgforge_operator_database_connections_fleet_max gauge
orgforge_operator_database_connections_fleet_max 100
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}

	// The metrics follow the fleet at each scrape: a placement released,
	// a cluster gone from the operator's services, no total cap.
	ledger.Fleet.Release("globex")
	delete(conns.caps, "second")
	delete(conns.open, "second")
	conns.total = 0
	after := `
# HELP orgforge_database_cluster_connections_budgeted Sum of the pool maxConnections of the organizations placed on a database cluster.
# TYPE orgforge_database_cluster_connections_budgeted gauge
orgforge_database_cluster_connections_budgeted{cluster="default"} 5
orgforge_database_cluster_connections_budgeted{cluster="second"} 7
# HELP orgforge_database_cluster_organizations Organizations placed on a database cluster.
# TYPE orgforge_database_cluster_organizations gauge
orgforge_database_cluster_organizations{cluster="default"} 1
orgforge_database_cluster_organizations{cluster="second"} 1
# HELP orgforge_operator_database_connections PostgreSQL connections the operator holds on a database cluster now.
# TYPE orgforge_operator_database_connections gauge
orgforge_operator_database_connections{cluster="default"} 1
# HELP orgforge_operator_database_connections_max Cap on the PostgreSQL connections the operator holds on a database cluster.
# TYPE orgforge_operator_database_connections_max gauge
orgforge_operator_database_connections_max{cluster="default"} 4
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(after),
		"orgforge_database_cluster_connections_budgeted", "orgforge_database_cluster_organizations",
		"orgforge_operator_database_connections", "orgforge_operator_database_connections_max",
		"orgforge_operator_database_connections_fleet_max"); err != nil {
		t.Error(err)
	}
}

func TestRegisterFleetMetricsNeedsBothSources(t *testing.T) {
	if err := RegisterFleetMetrics(prometheus.NewRegistry(), nil, NewLedger(nil)); err == nil {
		t.Error("registered without the clusters' connections")
	}
	if err := RegisterFleetMetrics(prometheus.NewRegistry(), &fakeFleetConnections{}, nil); err == nil {
		t.Error("registered without a ledger")
	}
}
