// Copyright 2026 The orgforge Authors.
// SPDX-License-Identifier: Apache-2.0

package controllers

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/placement"
)

// Ledger is the fleet as this operator process knows it: placement.Fleet,
// seeded once from every Organization's recorded placement before it
// decides anything, so that a restarted operator counts what the one
// before it placed. The Organization and DatabaseCluster reconcilers share
// one Ledger; its Fleet is safe for concurrent use.
type Ledger struct {
	Fleet  *placement.Fleet
	reader client.Reader

	mu     sync.Mutex
	seeded bool

	tenantsMu sync.RWMutex
	tenants   map[string]TenantEndpoint
	// checked holds the clusters the DatabaseCluster reconciler has
	// checked in this process, reachable or not.
	checked map[string]bool
	// inventories are the organizations each cluster's server held by
	// marker at its last check that answered in this process.
	inventories map[string]map[string]bool
}

// SetInventory records the organizations a cluster's server holds by
// marker, at a check that answered.
func (l *Ledger) SetInventory(cluster string, orgs map[string]bool) {
	l.tenantsMu.Lock()
	defer l.tenantsMu.Unlock()
	l.inventories[cluster] = orgs
}

// Inventory returns what a cluster's server held at its last check that
// answered in this process. Placement consults it for a cluster that cannot
// be searched now: a database created since that check was created by this
// process, for an organization whose placement it recorded first, so an
// organization with no record that is not in it is not on that cluster.
func (l *Ledger) Inventory(cluster string) (map[string]bool, bool) {
	l.tenantsMu.RLock()
	defer l.tenantsMu.RUnlock()
	inv, ok := l.inventories[cluster]
	return inv, ok
}

// MarkChecked notes that a cluster has had its first check in this
// process: from then on, a cluster that is not connected is down, not
// starting.
func (l *Ledger) MarkChecked(cluster string) {
	l.tenantsMu.Lock()
	defer l.tenantsMu.Unlock()
	l.checked[cluster] = true
}

// Unchecked returns those of clusters that have not had their first check
// in this process, sorted as given.
func (l *Ledger) Unchecked(clusters []string) []string {
	l.tenantsMu.RLock()
	defer l.tenantsMu.RUnlock()
	var out []string
	for _, name := range clusters {
		if !l.checked[name] {
			out = append(out, name)
		}
	}
	return out
}

// Checked reports whether a cluster has had its first check.
func (l *Ledger) Checked(cluster string) bool {
	l.tenantsMu.RLock()
	defer l.tenantsMu.RUnlock()
	return l.checked[cluster]
}

// TenantEndpoint is what tenants' database Secrets say about where their
// cluster is.
type TenantEndpoint struct {
	Host    string
	Port    int
	SSLMode string
}

// SetTenant publishes a cluster's tenant endpoint, as the DatabaseCluster
// reconciler resolved it from the cluster's spec and admin endpoint.
func (l *Ledger) SetTenant(cluster string, e TenantEndpoint) {
	l.tenantsMu.Lock()
	defer l.tenantsMu.Unlock()
	l.tenants[cluster] = e
}

// Tenant returns a cluster's tenant endpoint, once its DatabaseCluster has
// been reconciled in this process.
func (l *Ledger) Tenant(cluster string) (TenantEndpoint, bool) {
	l.tenantsMu.RLock()
	defer l.tenantsMu.RUnlock()
	e, ok := l.tenants[cluster]
	return e, ok
}

// ForgetCluster drops what the ledger keeps of a deleted cluster besides
// the fleet: its tenant endpoint, check and inventory.
func (l *Ledger) ForgetCluster(cluster string) {
	l.tenantsMu.Lock()
	defer l.tenantsMu.Unlock()
	delete(l.tenants, cluster)
	delete(l.checked, cluster)
	delete(l.inventories, cluster)
}

// NewLedger returns a ledger that seeds itself from reader, the manager's
// cache, on first use.
func NewLedger(reader client.Reader) *Ledger {
	return &Ledger{Fleet: placement.NewFleet(), reader: reader, tenants: map[string]TenantEndpoint{}, checked: map[string]bool{},
		inventories: map[string]map[string]bool{}}
}

// Seed records every Organization's placement, once per process; later
// calls return at once. A cluster that the DatabaseCluster reconciler has
// not yet reported is entered as not Ready, with the capacity its spec and
// status give, so that its placements count and nothing is placed on it
// until it is checked.
func (l *Ledger) Seed(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seeded {
		return nil
	}
	var clusters tenancyv1alpha1.DatabaseClusterList
	if err := l.reader.List(ctx, &clusters); err != nil {
		return fmt.Errorf("listing DatabaseClusters: %w", err)
	}
	known := map[string]bool{}
	for _, cu := range l.Fleet.Clusters() {
		known[cu.Cluster.Name] = true
	}
	for i := range clusters.Items {
		dbc := &clusters.Items[i]
		if !known[dbc.Name] {
			if err := l.Fleet.SetCluster(unchecked(dbc)); err != nil {
				return err
			}
			known[dbc.Name] = true
		}
	}
	var orgs tenancyv1alpha1.OrganizationList
	if err := l.reader.List(ctx, &orgs); err != nil {
		return fmt.Errorf("listing Organizations: %w", err)
	}
	for i := range orgs.Items {
		p, ok := RecordedPlacement(&orgs.Items[i])
		if !ok {
			continue
		}
		if !known[p.Cluster] {
			// Its DatabaseCluster is gone; the placement still counts,
			// and no check of it is to come.
			if err := l.Fleet.SetCluster(placement.Cluster{Name: p.Cluster}); err != nil {
				return err
			}
			l.MarkChecked(p.Cluster)
			known[p.Cluster] = true
		}
		if _, err := l.Fleet.Record(p); err != nil {
			return fmt.Errorf("recording the placement of Organization %s: %w", p.Organization, err)
		}
	}
	l.seeded = true
	return nil
}

// unchecked is a DatabaseCluster as placement sees it before its first
// health check in this process: not Ready.
func unchecked(dbc *tenancyv1alpha1.DatabaseCluster) placement.Cluster {
	capacity := int(dbc.Status.Connections.Capacity)
	if dbc.Spec.Capacity.MaxConnections != nil {
		capacity = int(*dbc.Spec.Capacity.MaxConnections)
	}
	return placement.Cluster{
		Name:        dbc.Name,
		Labels:      dbc.Labels,
		Schedulable: takesNew(dbc),
		Capacity:    placement.Capacity{MaxDatabases: int(dbc.Spec.Capacity.MaxDatabases), MaxConnections: capacity},
	}
}

// takesNew reports whether a DatabaseCluster may take new organizations:
// schedulable, and not being deleted.
func takesNew(dbc *tenancyv1alpha1.DatabaseCluster) bool {
	return dbc.Spec.IsSchedulable() && dbc.DeletionTimestamp.IsZero()
}

// RecordedPlacement reads where an Organization was placed: its
// AnnotationCluster, or else its status.database.cluster. The budgeted
// connections are AnnotationBudgetedConnections, or else the spec's pool
// maxConnections.
func RecordedPlacement(org *tenancyv1alpha1.Organization) (placement.Placement, bool) {
	cluster := org.Annotations[tenancyv1alpha1.AnnotationCluster]
	if cluster == "" {
		cluster = org.Status.Database.Cluster
	}
	if cluster == "" {
		return placement.Placement{}, false
	}
	budget := int(org.Spec.Database.Pool.MaxConnections)
	if v, err := strconv.Atoi(org.Annotations[tenancyv1alpha1.AnnotationBudgetedConnections]); err == nil && v >= 0 {
		budget = v
	}
	return placement.Placement{Organization: org.Name, Cluster: cluster, MaxConnections: budget}, true
}
