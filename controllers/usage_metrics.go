package controllers

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/client"

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

// usageCollector reports each Organization's status.usage.
type usageCollector struct{ reader client.Reader }

func (c *usageCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{usageDatabaseBytesDesc, usageStorageBytesDesc, usageStorageObjectsDesc,
		usageConnectionsDesc, usageConnectionLimitDesc} {
		ch <- d
	}
}

func (c *usageCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var list tenancyv1alpha1.OrganizationList
	if err := c.reader.List(ctx, &list); err != nil {
		return
	}
	for i := range list.Items {
		org := &list.Items[i]
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
