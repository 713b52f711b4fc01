// Package placement decides which DatabaseCluster an organization's database
// lives on, and keeps the ledger of placements that makes that decision safe
// under concurrent reconciles. It is pure logic: the controllers feed it the
// clusters' capacity and readiness and the placements they find, and record
// its decisions where they must survive a restart.
//
// The controllers' Ledger holds the operator's one Fleet: the Organization
// reconciler places and resizes through it, the DatabaseCluster reconciler
// reports each cluster's readiness and capacity to it.
package placement

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Sentinel errors, one per branch a caller takes.
var (
	// ErrNoCapacity means no cluster can take the organization now; its
	// condition reason is NoCapacity and the reconcile waits for capacity.
	ErrNoCapacity = errors.New("no capacity")
	// ErrOverBudget means a raise of an organization's maxConnections does
	// not fit its cluster's budget; the old limit stays in force.
	ErrOverBudget = errors.New("over budget")
	// ErrNotPlaced means the organization has no placement in the ledger.
	ErrNotPlaced = errors.New("not placed")
	// ErrUnknownCluster means the ledger does not know the cluster.
	ErrUnknownCluster = errors.New("unknown cluster")
	// ErrPlacedElsewhere means an organization was found on a second cluster:
	// a duplicate that needs a human, never a silent move.
	ErrPlacedElsewhere = errors.New("placed on another cluster")
	// ErrClusterInUse means a cluster still holds organizations.
	ErrClusterInUse = errors.New("cluster in use")
	// ErrInvalid means an argument that the API's validation should have refused.
	ErrInvalid = errors.New("invalid placement input")
)

// Capacity is what a cluster may hold.
type Capacity struct {
	// MaxDatabases caps how many organizations the cluster holds; zero means
	// no cap, since the connection budget alone bounds a cluster.
	MaxDatabases int
	// MaxConnections is the budget for the sum of the placed organizations'
	// pool maxConnections. It is always a real budget: a caller resolves an
	// unset one with DefaultMaxConnections first.
	MaxConnections int
}

// Cluster is one DatabaseCluster as placement sees it.
type Cluster struct {
	Name   string
	Labels map[string]string
	// Ready is the cluster's last health check; only a Ready cluster takes
	// new organizations.
	Ready bool
	// Schedulable false cordons the cluster for new placements; the
	// organizations on it stay and may still resize.
	Schedulable bool
	Capacity    Capacity
}

// Usage is what is placed on a cluster.
type Usage struct {
	Databases   int
	Connections int
}

// ClusterUsage is a cluster with what is placed on it: the input of Choose
// and what a DatabaseCluster's status reports.
type ClusterUsage struct {
	Cluster Cluster
	Used    Usage
}

// ConnectionsLeft is the connection budget not yet given out; negative when
// the cluster is over budget.
func (c ClusterUsage) ConnectionsLeft() int {
	return c.Cluster.Capacity.MaxConnections - c.Used.Connections
}

// OverBudget says how the cluster exceeds its capacity, or "" when it does
// not. Placement never causes it; lowered capacity or placements recorded
// from an earlier life can.
func (c ClusterUsage) OverBudget() string {
	var over []string
	if c.Cluster.Capacity.MaxDatabases > 0 && c.Used.Databases > c.Cluster.Capacity.MaxDatabases {
		over = append(over, fmt.Sprintf("databases %d/%d", c.Used.Databases, c.Cluster.Capacity.MaxDatabases))
	}
	if c.ConnectionsLeft() < 0 {
		over = append(over, fmt.Sprintf("connections %d/%d", c.Used.Connections, c.Cluster.Capacity.MaxConnections))
	}
	return strings.Join(over, ", ")
}

// Request asks for a cluster for one organization.
type Request struct {
	Organization string
	// MaxConnections is the organization's pool maxConnections, counted
	// against the chosen cluster's budget.
	MaxConnections int
	// ClusterRef pins the organization to the named cluster when set
	// (spec.database.clusterRef.name).
	ClusterRef string
	// ClusterSelector, when set, limits the choice to clusters whose labels
	// match (spec.database.clusterSelector).
	ClusterSelector *metav1.LabelSelector
}

// SkipReason is why a cluster was not chosen.
type SkipReason string

// The reasons, in the order a cluster is checked.
const (
	SkipNotSelected     SkipReason = "NotSelected"
	SkipNotReady        SkipReason = "NotReady"
	SkipCordoned        SkipReason = "Cordoned"
	SkipDatabasesFull   SkipReason = "DatabasesFull"
	SkipConnectionsFull SkipReason = "ConnectionsFull"
)

// Skip is one cluster Choose passed over, with the sentence a user reads.
type Skip struct {
	Cluster string
	Reason  SkipReason
	Message string
}

// MaxListedSkips bounds how many clusters a NoCapacity message names, so it
// fits a condition message on a fleet of hundreds.
const MaxListedSkips = 8

// NoCapacityError is Choose's answer when no cluster fits. It wraps
// ErrNoCapacity and its message names the clusters and why each was skipped.
type NoCapacityError struct {
	Organization   string
	MaxConnections int
	// MissingRef is the pinned cluster's name when no such cluster exists.
	MissingRef string
	// Skipped lists every cluster: first those the pin and selector chose, by
	// name, then those they did not, by name, so that a pinned cluster's
	// reason is never cut off by the bound on the message.
	Skipped []Skip
}

// Error is the condition message: every reason, bounded by MaxListedSkips.
func (e *NoCapacityError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "no DatabaseCluster can take organization %q with maxConnections %d", e.Organization, e.MaxConnections)
	var parts []string
	if e.MissingRef != "" {
		parts = append(parts, fmt.Sprintf("clusterRef %q: no such DatabaseCluster", e.MissingRef))
	} else if len(e.Skipped) == 0 {
		parts = append(parts, "no DatabaseCluster exists")
	}
	for i, s := range e.Skipped {
		if i == MaxListedSkips {
			parts = append(parts, fmt.Sprintf("and %d more", len(e.Skipped)-i))
			break
		}
		parts = append(parts, s.Cluster+": "+s.Message)
	}
	b.WriteString(": ")
	b.WriteString(strings.Join(parts, "; "))
	return b.String()
}

// Unwrap lets errors.Is(err, ErrNoCapacity) choose the NoCapacity branch.
func (e *NoCapacityError) Unwrap() error { return ErrNoCapacity }

// Choose applies the placement rule: of the Ready, schedulable clusters the
// pin and selector allow, the one with the most connection budget left after
// this organization's maxConnections is counted; ties go by name; a cluster
// that would go over its databases or connections capacity is skipped. Most
// budget left spreads organizations so that each cluster keeps headroom for
// its tenants' raises. When none fits, the error is a *NoCapacityError.
func Choose(req Request, clusters []ClusterUsage) (string, error) {
	if err := req.validate(); err != nil {
		return "", err
	}
	selector, err := selectorOf(req.ClusterSelector)
	if err != nil {
		return "", err
	}
	sorted := append([]ClusterUsage(nil), clusters...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Cluster.Name < sorted[j].Cluster.Name })

	best, bestLeft := "", 0
	var chosenSkips, unselected []Skip
	refFound := req.ClusterRef == ""
	for _, c := range sorted {
		refFound = refFound || c.Cluster.Name == req.ClusterRef
		skip, ok := check(req, selector, c)
		switch {
		case ok:
			if left := c.ConnectionsLeft() - req.MaxConnections; best == "" || left > bestLeft {
				best, bestLeft = c.Cluster.Name, left
			}
		case skip.Reason == SkipNotSelected:
			unselected = append(unselected, skip)
		default:
			chosenSkips = append(chosenSkips, skip)
		}
	}
	if best != "" {
		return best, nil
	}
	e := &NoCapacityError{Organization: req.Organization, MaxConnections: req.MaxConnections,
		Skipped: append(chosenSkips, unselected...)}
	if !refFound {
		e.MissingRef = req.ClusterRef
	}
	return "", e
}

// check says whether c can take req, and if not, why.
func check(req Request, selector labels.Selector, c ClusterUsage) (Skip, bool) {
	name, capacity := c.Cluster.Name, c.Cluster.Capacity
	skip := func(r SkipReason, format string, args ...any) (Skip, bool) {
		return Skip{Cluster: name, Reason: r, Message: fmt.Sprintf(format, args...)}, false
	}
	switch {
	case req.ClusterRef != "" && name != req.ClusterRef:
		return skip(SkipNotSelected, "not the clusterRef %q", req.ClusterRef)
	case !selector.Matches(labels.Set(c.Cluster.Labels)):
		return skip(SkipNotSelected, "not selected by clusterSelector")
	case !c.Cluster.Ready:
		return skip(SkipNotReady, "not ready")
	case !c.Cluster.Schedulable:
		return skip(SkipCordoned, "cordoned")
	case capacity.MaxDatabases > 0 && c.Used.Databases+1 > capacity.MaxDatabases:
		return skip(SkipDatabasesFull, "databases full %d/%d", c.Used.Databases, capacity.MaxDatabases)
	case c.Used.Connections+req.MaxConnections > capacity.MaxConnections:
		return skip(SkipConnectionsFull, "connections would use %d+%d of %d",
			c.Used.Connections, req.MaxConnections, capacity.MaxConnections)
	}
	return Skip{}, true
}

func (r Request) validate() error {
	if r.Organization == "" {
		return fmt.Errorf("%w: empty organization name", ErrInvalid)
	}
	if r.MaxConnections < 0 {
		return fmt.Errorf("%w: organization %q asks for maxConnections %d", ErrInvalid, r.Organization, r.MaxConnections)
	}
	return nil
}

// selectorOf treats an absent selector as "every cluster", where
// metav1.LabelSelectorAsSelector would read nil as "none".
func selectorOf(s *metav1.LabelSelector) (labels.Selector, error) {
	if s == nil {
		return labels.Everything(), nil
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		return nil, fmt.Errorf("%w: clusterSelector: %v", ErrInvalid, err)
	}
	return sel, nil
}

// Headroom of a cluster's connections kept for everyone but tenants' pools.
const (
	HeadroomPercent = 10
	MinHeadroom     = 10
)

// DefaultMaxConnections is a cluster's connection budget when
// capacity.maxConnections is unset: the server's max_connections less what
// tenants' pools can never use or must leave free.
//
//   - superuser_reserved_connections and (PostgreSQL 16+) reserved_connections
//     are carved out of max_connections for roles tenants do not have.
//   - The operator's own admin pool on the cluster.
//   - A headroom of HeadroomPercent of max_connections, at least MinHeadroom,
//     for people with psql, monitoring agents, migrations and dumps, and for
//     the overlap after a failover or pool restart, when clients reconnect
//     before the server has reaped their old backends. Aurora also takes a
//     few slots for its rdsadmin sessions out of the same max_connections.
//
// The budget counts each pool's maxConnections in full, so it never
// overcommits the server: a tenant that opens its whole pool always gets in.
// The result is never negative.
func DefaultMaxConnections(serverMaxConnections, superuserReserved, reserved, operatorConnections int) int {
	headroom := max(MinHeadroom, (serverMaxConnections*HeadroomPercent+99)/100)
	budget := serverMaxConnections - max(0, superuserReserved) - max(0, reserved) - max(0, operatorConnections) - headroom
	return max(0, budget)
}
