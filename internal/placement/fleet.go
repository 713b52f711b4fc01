package placement

import (
	"fmt"
	"maps"
	"sort"
	"sync"
)

// Placement is where one organization lives and what it is budgeted.
type Placement struct {
	Organization   string
	Cluster        string
	MaxConnections int
}

// Fleet is the in-process ledger of clusters and placements. Every method is
// safe for concurrent use; Place decides and records under one lock, so
// concurrent reconciles can never give out the same budget twice. The ledger
// is the operator's memory only: the placement must still be written to the
// Organization and the database's marker before the database is created,
// and Record seeds the ledger from them on start-up.
type Fleet struct {
	mu         sync.Mutex
	clusters   map[string]*ClusterUsage
	placements map[string]Placement
}

// NewFleet returns an empty ledger.
func NewFleet() *Fleet {
	return &Fleet{clusters: map[string]*ClusterUsage{}, placements: map[string]Placement{}}
}

// SetCluster adds a cluster or updates its labels, readiness, cordon and
// capacity. What is placed on it stays: lowering capacity below its usage
// leaves it over budget (see ClusterUsage.OverBudget) and closed to new
// organizations until usage falls.
func (f *Fleet) SetCluster(c Cluster) error {
	if c.Name == "" || c.Capacity.MaxDatabases < 0 || c.Capacity.MaxConnections < 0 {
		return fmt.Errorf("%w: cluster %q with capacity %+v", ErrInvalid, c.Name, c.Capacity)
	}
	c.Labels = maps.Clone(c.Labels)
	f.mu.Lock()
	defer f.mu.Unlock()
	if cu, ok := f.clusters[c.Name]; ok {
		cu.Cluster = c
		return nil
	}
	f.clusters[c.Name] = &ClusterUsage{Cluster: c}
	return nil
}

// RemoveCluster forgets a cluster. It refuses while organizations are placed
// on it, as the DatabaseCluster's finalizer does: their databases are still
// there, and forgetting them would let their budget be given out again.
func (f *Fleet) RemoveCluster(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	cu, ok := f.clusters[name]
	if !ok {
		return nil
	}
	if cu.Used.Databases > 0 {
		return fmt.Errorf("%w: cluster %q holds %d organizations", ErrClusterInUse, name, cu.Used.Databases)
	}
	delete(f.clusters, name)
	return nil
}

// Place returns the organization's cluster, choosing and recording one by
// Choose's rule if it has none. An organization already placed gets its
// cluster back unchanged, whatever its request now says: placement never
// moves by itself, and a changed maxConnections goes through Resize.
func (f *Fleet) Place(req Request) (Placement, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p, ok := f.placements[req.Organization]; ok {
		return p, nil
	}
	clusters := make([]ClusterUsage, 0, len(f.clusters))
	for _, cu := range f.clusters {
		clusters = append(clusters, *cu)
	}
	name, err := Choose(req, clusters)
	if err != nil {
		return Placement{}, err
	}
	p := Placement{Organization: req.Organization, Cluster: name, MaxConnections: req.MaxConnections}
	f.add(p)
	return p, nil
}

// Resize changes an organization's budgeted maxConnections. A raise that
// would take its cluster over the connection budget is refused with an error
// wrapping ErrOverBudget and the old value stays; a cut always succeeds.
// Cordon and readiness do not matter: they close a cluster to new
// organizations, not to the ones on it.
func (f *Fleet) Resize(org string, maxConnections int) (Placement, error) {
	if maxConnections < 0 {
		return Placement{}, fmt.Errorf("%w: organization %q asks for maxConnections %d", ErrInvalid, org, maxConnections)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.placements[org]
	if !ok {
		return Placement{}, fmt.Errorf("%w: organization %q", ErrNotPlaced, org)
	}
	cu := f.clusters[p.Cluster]
	others := cu.Used.Connections - p.MaxConnections
	if maxConnections > p.MaxConnections && others+maxConnections > cu.Cluster.Capacity.MaxConnections {
		return p, fmt.Errorf("%w: maxConnections %d for organization %q would use %d+%d of %d on cluster %q",
			ErrOverBudget, maxConnections, org, others, maxConnections, cu.Cluster.Capacity.MaxConnections, p.Cluster)
	}
	cu.Used.Connections = others + maxConnections
	p.MaxConnections = maxConnections
	f.placements[org] = p
	return p, nil
}

// Release frees an organization's placement once its database is gone. It
// reports whether there was one.
func (f *Fleet) Release(org string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.placements[org]
	if ok {
		f.remove(p)
	}
	return ok
}

// Record seeds the ledger with a placement that already exists, found on
// start-up in an Organization's status or annotation or a database's marker.
// It is not checked against capacity, since the database is there whatever
// the budget says; the returned usage's OverBudget tells whether the cluster
// is now over. Recording the same placement again updates its
// maxConnections. An organization found on a second cluster is refused with
// ErrPlacedElsewhere and keeps its first placement.
func (f *Fleet) Record(p Placement) (ClusterUsage, error) {
	if p.Organization == "" || p.MaxConnections < 0 {
		return ClusterUsage{}, fmt.Errorf("%w: placement %+v", ErrInvalid, p)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	cu, ok := f.clusters[p.Cluster]
	if !ok {
		return ClusterUsage{}, fmt.Errorf("%w: %q for organization %q", ErrUnknownCluster, p.Cluster, p.Organization)
	}
	if old, ok := f.placements[p.Organization]; ok {
		if old.Cluster != p.Cluster {
			return *cu, fmt.Errorf("%w: organization %q is on cluster %q and also found on %q",
				ErrPlacedElsewhere, p.Organization, old.Cluster, p.Cluster)
		}
		f.remove(old)
	}
	f.add(p)
	return *cu, nil
}

// Lookup returns an organization's placement.
func (f *Fleet) Lookup(org string) (Placement, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.placements[org]
	return p, ok
}

// Clusters returns every cluster with its usage, by name: what the
// DatabaseCluster statuses and the fleet's metrics report.
func (f *Fleet) Clusters() []ClusterUsage {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]ClusterUsage, 0, len(f.clusters))
	for _, cu := range f.clusters {
		c := *cu
		c.Cluster.Labels = maps.Clone(c.Cluster.Labels)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Cluster.Name < out[j].Cluster.Name })
	return out
}

// Organizations returns the organizations placed on a cluster, by name, so
// that a cluster held by its finalizer can say what holds it.
func (f *Fleet) Organizations(cluster string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, p := range f.placements {
		if p.Cluster == cluster {
			out = append(out, p.Organization)
		}
	}
	sort.Strings(out)
	return out
}

// add and remove keep each cluster's usage equal to the sum of its
// placements; the caller holds the lock and has checked the cluster exists.
func (f *Fleet) add(p Placement) {
	f.placements[p.Organization] = p
	cu := f.clusters[p.Cluster]
	cu.Used.Databases++
	cu.Used.Connections += p.MaxConnections
}

func (f *Fleet) remove(p Placement) {
	delete(f.placements, p.Organization)
	cu := f.clusters[p.Cluster]
	cu.Used.Databases--
	cu.Used.Connections -= p.MaxConnections
}
