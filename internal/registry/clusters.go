package registry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/go-logr/logr"

	"github.com/orgforge/orgforge/internal/aurora"
	"github.com/orgforge/orgforge/internal/retry"
)

var (
	// ErrClustersClosed is returned by Ensure once the set is closed.
	ErrClustersClosed = errors.New("the set of clusters is closed")
	// ErrTotalConnections is returned by Ensure when a cluster's
	// connections would take the fleet over ClustersOptions'
	// MaxTotalConnections. It is not the cluster's fault: the same Ensure
	// succeeds once another cluster is removed or the total is raised.
	ErrTotalConnections = errors.New("the operator's total connection cap would be exceeded")
)

// ClustersOptions tunes a Clusters; the zero value is production.
type ClustersOptions struct {
	// Retry overrides the retry policy of every cluster's service whose
	// config sets none (tests use short waits).
	Retry *retry.Policy
	// MaxConnections caps the connections the operator holds on each
	// cluster: aurora.Config.MaxConnections, the admin pool and the tenant
	// databases' pools together. A config that sets none gets the cap;
	// one that asks for more is refused. Default
	// aurora.DefaultMaxConnections.
	MaxConnections int32
	// MaxTotalConnections caps the sum of every cluster's MaxConnections,
	// so that the operator's connections stay bounded however many
	// clusters the fleet has. A new cluster, or a change that raises one's
	// MaxConnections, that would go over it is refused. Zero sets no cap.
	MaxTotalConnections int32
}

// Clusters holds one aurora service per database cluster of the fleet,
// keyed by the cluster's name: built when the cluster appears (Ensure) and
// closed when it goes (Remove). Each service is built by aurora.New, so it
// keeps the seed's guarantees: validation and a privilege check on
// creation, a health check, and retries of transient errors. One cluster
// that cannot be reached fails only its own Ensure and Health; the others
// keep serving. A cluster's health belongs on its own status, so none of
// it is in readyz.
//
// The DatabaseCluster reconciler builds and removes the services; the
// Organization reconciler only gets them. The --database-* flags' cluster
// is the entry DefaultClusterName, connected once at start-up by New.
//
// It is safe for concurrent use. Building one cluster's service, which may
// take up to twice its connect timeout, blocks neither the other clusters
// nor Get.
type Clusters struct {
	log    logr.Logger
	policy retry.Policy
	max    int32
	total  int32

	mu       sync.Mutex
	clusters map[string]*cluster
	closed   bool
}

// cluster is one entry of Clusters.
type cluster struct {
	// build serializes Ensure and Remove of this cluster, so that it never
	// has two services at once, and is held while connecting.
	build sync.Mutex
	// cfg and svc are guarded by Clusters.mu; svc is nil until built.
	cfg aurora.Config
	svc *aurora.Service
	// building is the MaxConnections of a service being built, guarded by
	// Clusters.mu: it counts against the total cap from the check until
	// the build ends, so that concurrent Ensures of different clusters
	// cannot each fit under it alone and go over it together.
	building int32
}

// share is what cl counts against the total cap; the caller holds
// Clusters.mu.
func (cl *cluster) share() int32 {
	var n int32
	if cl.svc != nil {
		n = cl.cfg.MaxConnections
	}
	return max(n, cl.building)
}

// NewClusters returns an empty set. It connects to nothing.
func NewClusters(log logr.Logger, opts ClustersOptions) *Clusters {
	c := &Clusters{
		log:      log.WithName("aurora"),
		policy:   policyOf(opts.Retry),
		max:      opts.MaxConnections,
		total:    opts.MaxTotalConnections,
		clusters: map[string]*cluster{},
	}
	if c.max == 0 {
		c.max = aurora.DefaultMaxConnections
	}
	return c
}

// Ensure returns the service of cluster name for cfg. When the cluster has
// a service built with the same cfg, that one is returned. Otherwise a new
// one is built and validated; it replaces the old one, which is closed. If
// the new one cannot be built, the error names the cluster and its
// endpoint, and the old one, if any, stays in force: a bad change does not
// take a working cluster away.
//
// A new cluster, or a change that raises a cluster's MaxConnections, that
// would take the sum of every cluster's MaxConnections over
// MaxTotalConnections is refused with ErrTotalConnections. A replacement
// counts once: the old service closes as soon as the new one is built, and
// until then the new one holds only the connection it was checked with.
func (c *Clusters) Ensure(ctx context.Context, name string, cfg aurora.Config) (*aurora.Service, error) {
	if cfg.MaxConnections == 0 {
		cfg.MaxConnections = c.max
	}
	if cfg.MaxConnections > c.max {
		return nil, fmt.Errorf("cluster %q: %w: MaxConnections is %d; the operator's cap is %d per cluster",
			name, aurora.ErrInvalid, cfg.MaxConnections, c.max)
	}
	if cfg.ApplicationName == "" {
		cfg.ApplicationName = aurora.DefaultApplicationName
	}
	if cfg.Retry == (retry.Policy{}) {
		cfg.Retry = c.policy
	}

	cl, err := c.lockCluster(name)
	if err != nil {
		return nil, err
	}
	defer cl.build.Unlock()
	c.mu.Lock()
	old, oldCfg := cl.svc, cl.cfg
	if old != nil && oldCfg == cfg {
		c.mu.Unlock()
		return old, nil
	}
	if err := c.reserve(name, cl, cfg.MaxConnections); err != nil {
		c.mu.Unlock()
		return nil, err
	}
	c.mu.Unlock()

	svc, err := aurora.New(ctx, cfg, c.log.WithValues("cluster", name))
	c.mu.Lock()
	cl.building = 0
	c.mu.Unlock()
	if err != nil {
		// aurora's error names the endpoint and admin user, never the DSN.
		return nil, fmt.Errorf("cluster %q: %w", name, err)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		svc.Close()
		return nil, fmt.Errorf("cluster %q: %w", name, ErrClustersClosed)
	}
	cl.cfg, cl.svc = cfg, svc
	c.mu.Unlock()
	if old != nil {
		c.log.Info("Replacing the cluster's service, its configuration changed", "cluster", name, "endpoint", svc.Endpoint())
		old.Close()
	}
	return svc, nil
}

// reserve counts maxConnections for cl, the entry of name whose build lock
// the caller holds, against the total cap until the build ends; the caller
// holds mu. It refuses when that would raise cl's share and take the fleet
// over the cap.
func (c *Clusters) reserve(name string, cl *cluster, maxConnections int32) error {
	if c.total > 0 && maxConnections > cl.share() {
		var others int32
		for _, o := range c.clusters {
			if o != cl {
				others += o.share()
			}
		}
		if others+maxConnections > c.total {
			return fmt.Errorf("cluster %q: %w: it asks for %d connections (at most %d per cluster) and the other clusters hold %d, over the total cap of %d",
				name, ErrTotalConnections, maxConnections, c.max, others, c.total)
		}
	}
	cl.building = maxConnections
	return nil
}

// lockCluster returns the entry of name, added if missing, with its build
// lock held.
func (c *Clusters) lockCluster(name string) (*cluster, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, fmt.Errorf("cluster %q: %w", name, ErrClustersClosed)
		}
		cl := c.clusters[name]
		if cl == nil {
			cl = &cluster{}
			c.clusters[name] = cl
		}
		c.mu.Unlock()

		cl.build.Lock()
		c.mu.Lock()
		current := c.clusters[name] == cl
		c.mu.Unlock()
		if current {
			return cl, nil
		}
		// Removed while this call waited: start again with a new entry.
		cl.build.Unlock()
	}
}

// Get returns the service of cluster name, if it has one.
func (c *Clusters) Get(name string) (*aurora.Service, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl := c.clusters[name]; cl != nil && cl.svc != nil {
		return cl.svc, true
	}
	return nil, false
}

// Names returns the clusters that have a service, sorted.
func (c *Clusters) Names() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var names []string
	for name, cl := range c.clusters {
		if cl.svc != nil {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// Remove closes the service of cluster name and forgets the cluster. It
// waits for an Ensure of that cluster under way.
func (c *Clusters) Remove(name string) {
	c.mu.Lock()
	cl := c.clusters[name]
	c.mu.Unlock()
	if cl == nil {
		return
	}
	cl.build.Lock()
	defer cl.build.Unlock()
	c.mu.Lock()
	svc := cl.svc
	if c.clusters[name] == cl {
		delete(c.clusters, name)
	}
	cl.svc = nil
	c.mu.Unlock()
	if svc != nil {
		svc.Close()
	}
}

// MaxConnections is the most connections the operator may hold across the
// fleet: the sum of each cluster's service's MaxConnections, of which
// aurora.AdminConnections is its admin pool's share.
func (c *Clusters) MaxConnections() int32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var total int32
	for _, cl := range c.clusters {
		if cl.svc != nil {
			total += cl.cfg.MaxConnections
		}
	}
	return total
}

// MaxTotalConnections is the cap on the sum of every cluster's
// MaxConnections; zero when there is none.
func (c *Clusters) MaxTotalConnections() int32 { return c.total }

// ConnectionCaps returns the MaxConnections of every cluster that has a
// service: the most connections the operator may hold on it.
func (c *Clusters) ConnectionCaps() map[string]int32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	caps := map[string]int32{}
	for name, cl := range c.clusters {
		if cl.svc != nil {
			caps[name] = cl.cfg.MaxConnections
		}
	}
	return caps
}

// services returns the clusters that have a service, taken under the lock
// and used outside it.
func (c *Clusters) services() map[string]*aurora.Service {
	c.mu.Lock()
	defer c.mu.Unlock()
	services := map[string]*aurora.Service{}
	for name, cl := range c.clusters {
		if cl.svc != nil {
			services[name] = cl.svc
		}
	}
	return services
}

// OpenConnections returns the connections each cluster's service holds now,
// for every cluster that has one.
func (c *Clusters) OpenConnections() map[string]int32 {
	services := c.services()
	open := make(map[string]int32, len(services))
	for name, svc := range services {
		open[name] = svc.OpenConnections()
	}
	return open
}

// Health runs every cluster's health check at once, each bounded by its
// service's own timeouts, and returns each cluster's result: nil for a
// healthy one.
func (c *Clusters) Health(ctx context.Context) map[string]error {
	services := c.services()

	results := make(map[string]error, len(services))
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	for name, svc := range services {
		wg.Go(func() {
			err := svc.HealthCheck(ctx)
			if err != nil {
				err = fmt.Errorf("cluster %q: %w", name, err)
			}
			mu.Lock()
			results[name] = err
			mu.Unlock()
		})
	}
	wg.Wait()
	return results
}

// Close closes every cluster's service. Ensure fails afterwards.
func (c *Clusters) Close() {
	c.mu.Lock()
	c.closed = true
	var services []*aurora.Service
	for _, cl := range c.clusters {
		if cl.svc != nil {
			services = append(services, cl.svc)
			cl.svc = nil
		}
	}
	clear(c.clusters)
	c.mu.Unlock()
	for _, svc := range services {
		svc.Close()
	}
}
