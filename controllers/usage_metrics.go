package controllers

import (
	"github.com/prometheus/client_golang/prometheus"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
)

// The usage gauges have one series per Organization, labelled by its name
// alone: a name is unique in the cluster, and a UID, namespace or cluster
// label would only multiply the series. They are read from status.usage at
// scrape time, so an Organization that is deleted, or whose usage is not
// known, has none.
var (
	usageDatabaseBytesDesc = prometheus.NewDesc("orgforge_organization_database_bytes",
		"Size of the organization's database (pg_database_size), as last read.", []string{"organization"}, nil)
	usageStorageBytesDesc = prometheus.NewDesc("orgforge_organization_storage_bytes",
		"Total size of the objects under the organization's prefix, as last read.", []string{"organization"}, nil)
	usageStorageObjectsDesc = prometheus.NewDesc("orgforge_organization_storage_objects",
		"Objects under the organization's prefix, as last read.", []string{"organization"}, nil)
	usageConnectionsDesc = prometheus.NewDesc("orgforge_organization_connections",
		"Sessions of the organization's logins, as last read.", []string{"organization"}, nil)
	usageConnectionLimitDesc = prometheus.NewDesc("orgforge_organization_connections_limit",
		"Connection limit of the organization's logins (its pool maxConnections in force).", []string{"organization"}, nil)
)

// usageDescs are the usage gauges, for Describe.
var usageDescs = []*prometheus.Desc{usageDatabaseBytesDesc, usageStorageBytesDesc, usageStorageObjectsDesc,
	usageConnectionsDesc, usageConnectionLimitDesc}

// collectUsage reports each Organization's status.usage.
func collectUsage(ch chan<- prometheus.Metric, orgs []tenancyv1alpha1.Organization) {
	for i := range orgs {
		org := &orgs[i]
		u := org.Status.Usage
		// One being deleted is about to lose what it used.
		if u == nil || u.UpdatedAt == nil || !org.DeletionTimestamp.IsZero() {
			continue
		}
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, org.Name)
		}
		if u.DatabaseBytes != nil {
			gauge(usageDatabaseBytesDesc, float64(*u.DatabaseBytes))
		}
		if u.StorageBytes != nil {
			gauge(usageStorageBytesDesc, float64(*u.StorageBytes))
		}
		if u.StorageObjects != nil {
			gauge(usageStorageObjectsDesc, float64(*u.StorageObjects))
		}
		if u.Connections != nil {
			gauge(usageConnectionsDesc, float64(*u.Connections))
			gauge(usageConnectionLimitDesc, float64(u.ConnectionLimit))
		}
	}
}
