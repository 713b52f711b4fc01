package controllers

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// FleetConnections is the operator's connections to each database cluster,
// as registry.Clusters holds them: one entry per cluster that has a
// service.
type FleetConnections interface {
	// ConnectionCaps returns each cluster's cap on the connections the
	// operator holds on it.
	ConnectionCaps() map[string]int32
	// OpenConnections returns the connections the operator holds on each
	// cluster now.
	OpenConnections() map[string]int32
	// MaxTotalConnections is the cap on the sum of the clusters' caps;
	// zero when there is none.
	MaxTotalConnections() int32
}

var (
	operatorConnectionsDesc = prometheus.NewDesc("orgforge_operator_database_connections",
		"PostgreSQL connections the operator holds on a database cluster now.", []string{"cluster"}, nil)
	operatorConnectionsMaxDesc = prometheus.NewDesc("orgforge_operator_database_connections_max",
		"Cap on the PostgreSQL connections the operator holds on a database cluster.", []string{"cluster"}, nil)
	operatorConnectionsMaxTotalDesc = prometheus.NewDesc("orgforge_operator_database_connections_fleet_max",
		"Cap on the sum of the database clusters' caps on the operator's connections.", nil, nil)
	clusterBudgetedDesc = prometheus.NewDesc("orgforge_database_cluster_connections_budgeted",
		"Sum of the pool maxConnections of the organizations placed on a database cluster.", []string{"cluster"}, nil)
	clusterCapacityDesc = prometheus.NewDesc("orgforge_database_cluster_connections_capacity",
		"Connection budget of a database cluster for its organizations' pools.", []string{"cluster"}, nil)
	clusterOrganizationsDesc = prometheus.NewDesc("orgforge_database_cluster_organizations",
		"Organizations placed on a database cluster.", []string{"cluster"}, nil)
	clusterReadyDesc = prometheus.NewDesc("orgforge_database_cluster_ready",
		"1 when a database cluster's service is built and its last health check passed, else 0.", []string{"cluster"}, nil)
)

// RegisterFleetMetrics adds the fleet's metrics to reg: the operator's own
// connections per cluster and their caps, from clusters, and each
// cluster's placements against its capacity, from ledger. Both are read at
// scrape time.
func RegisterFleetMetrics(reg prometheus.Registerer, clusters FleetConnections, ledger *Ledger) error {
	if clusters == nil || ledger == nil {
		return errors.New("fleet metrics need the clusters' connections and the ledger")
	}
	return reg.Register(&fleetCollector{clusters: clusters, ledger: ledger})
}

// fleetCollector reports the fleet as it is at each scrape.
type fleetCollector struct {
	clusters FleetConnections
	ledger   *Ledger
}

func (c *fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		operatorConnectionsDesc, operatorConnectionsMaxDesc, operatorConnectionsMaxTotalDesc,
		clusterBudgetedDesc, clusterCapacityDesc, clusterOrganizationsDesc, clusterReadyDesc,
	} {
		ch <- d
	}
}

func (c *fleetCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for name, n := range c.clusters.OpenConnections() {
		gauge(operatorConnectionsDesc, float64(n), name)
	}
	for name, n := range c.clusters.ConnectionCaps() {
		gauge(operatorConnectionsMaxDesc, float64(n), name)
	}
	if total := c.clusters.MaxTotalConnections(); total > 0 {
		gauge(operatorConnectionsMaxTotalDesc, float64(total))
	}
	for _, cu := range c.ledger.Fleet.Clusters() {
		name := cu.Cluster.Name
		gauge(clusterBudgetedDesc, float64(cu.Used.Connections), name)
		gauge(clusterCapacityDesc, float64(cu.Cluster.Capacity.MaxConnections), name)
		gauge(clusterOrganizationsDesc, float64(cu.Used.Databases), name)
		ready := 0.0
		if cu.Cluster.Ready {
			ready = 1
		}
		gauge(clusterReadyDesc, ready, name)
	}
}
