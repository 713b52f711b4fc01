// Package registry builds every external service once, at start-up, and
// hands them to the reconciler: the Go form of the seed's ServiceRegistry,
// injected rather than a singleton. It fails fast: a service that cannot be
// reached or is misconfigured stops start-up with an error naming it.
package registry

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/go-logr/logr"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"

	"github.com/orgforge/orgforge/internal/aurora"
	"github.com/orgforge/orgforge/internal/config"
	"github.com/orgforge/orgforge/internal/credentials"
	"github.com/orgforge/orgforge/internal/retry"
	"github.com/orgforge/orgforge/internal/storage"
)

// Service is what every registered service offers, the seed's BaseService.
type Service interface {
	Name() string
	HealthCheck(ctx context.Context) error
}

// Registry holds the services. Its fields are set by New and never change.
type Registry struct {
	// Clusters holds one database service per DatabaseCluster, built by
	// the DatabaseCluster reconciler as each cluster appears.
	Clusters *Clusters
	// DefaultCluster is the admin configuration of the operator's
	// --database-* flags: the DatabaseCluster "default".
	DefaultCluster aurora.Config
	Storage        *storage.Service
	Credentials    *credentials.Service

	services []Service
	closers  []func()
}

// Options tunes how New builds the services; the zero value is production.
type Options struct {
	// Retry overrides every service's retry policy (tests use short waits).
	Retry *retry.Policy
}

// New builds and validates every service. On error, what was built is
// closed and the error names the service, its endpoint and the cause.
func New(ctx context.Context, cfg *config.Config, log logr.Logger, opts Options) (_ *Registry, err error) {
	r := &Registry{}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	policy := policyOf(opts.Retry)

	r.Credentials = credentials.NewService()
	if err := r.Credentials.HealthCheck(ctx); err != nil {
		return nil, fmt.Errorf("service credentials: %w", err)
	}
	r.add(r.Credentials, nil)

	// No database cluster is connected here: one that cannot be reached
	// must not stop the operator serving the others. Each is connected by
	// the DatabaseCluster reconciler, and its health is on its status.
	r.Clusters = NewClusters(log, ClustersOptions{
		Retry:               opts.Retry,
		MaxConnections:      int32(cfg.Database.MaxConnections),
		MaxTotalConnections: int32(cfg.Database.FleetMaxConnections),
	})
	r.closers = append(r.closers, r.Clusters.Close)
	r.DefaultCluster = aurora.Config{AdminDSN: cfg.Database.AdminDSN, MaxConnections: int32(cfg.Database.MaxConnections)}
	if err := aurora.ValidateConfig(r.DefaultCluster); err != nil {
		return nil, err
	}
	if err := r.connectDefault(ctx, log); err != nil {
		return nil, err
	}
	st := cfg.Storage
	r.Storage, err = storage.New(ctx, storage.Config{
		Bucket:              st.Bucket,
		Region:              st.Region,
		Endpoint:            st.Endpoint,
		IAMEndpoint:         st.IAMEndpoint,
		UsePathStyle:        st.UsePathStyle,
		AccessKeyID:         st.AccessKeyID,
		SecretAccessKey:     st.SecretAccessKey,
		IAMPath:             st.IAMPath,
		PermissionsBoundary: st.PermissionsBoundary,
		Retry:               policy,
		CheckPeriod:         storageCheckPeriod(st.CheckPasses, cfg.ResyncPeriod),
		Resync:              cfg.ResyncPeriod,
		UserListMaxAge:      userListMaxAge(st.UserListMaxAge, cfg.ResyncPeriod),
	}, log.WithName("storage"))
	if err != nil {
		return nil, err
	}
	r.add(r.Storage, r.Storage.Close)
	return r, nil
}

// storageCheckPeriod is the storage service's CheckPeriod for checks
// passes resync periods apart: none, every call, for one pass.
func storageCheckPeriod(passes int, resync time.Duration) time.Duration {
	if passes == 0 {
		passes = config.DefaultStorageCheckPasses
	}
	if passes <= 1 || resync <= 0 {
		return 0
	}
	return time.Duration(passes) * resync
}

// userListMaxAge holds the listing's age to a quarter of the resync
// period, so that a user deleted by hand is missed by one pass at most.
func userListMaxAge(maxAge, resync time.Duration) time.Duration {
	if maxAge <= 0 {
		maxAge = storage.DefaultUserListMaxAge
	}
	if resync > 0 {
		maxAge = min(maxAge, resync/4)
	}
	return maxAge
}

// DefaultClusterName is the name of the --database-* flags' cluster in
// Clusters, that of its DatabaseCluster.
const DefaultClusterName = tenancyv1alpha1.DefaultClusterName

// connectDefault connects to the --database-* flags' cluster once, so that
// a wrong password or an admin without CREATEROLE stops start-up, as any
// bad configuration does. A cluster that cannot be reached does not: it is
// one cluster of a fleet, reported on its DatabaseCluster, and its
// reconciler connects when it answers.
func (r *Registry) connectDefault(ctx context.Context, log logr.Logger) error {
	_, err := r.Clusters.Ensure(ctx, DefaultClusterName, r.DefaultCluster)
	if err != nil && aurora.Classify(err).Transient() {
		log.Info("The --database-* cluster cannot be reached; its DatabaseCluster reports it until it answers",
			"cluster", DefaultClusterName, "error", err.Error())
		return nil
	}
	return err
}

// policyOf is the retry policy of the services: override, or else the
// default.
func policyOf(override *retry.Policy) retry.Policy {
	if override != nil {
		return *override
	}
	return retry.DefaultPolicy
}

func (r *Registry) add(s Service, closer func()) {
	r.services = append(r.services, s)
	if closer != nil {
		r.closers = append(r.closers, closer)
	}
}

// ReadyzCheckers returns one controller-runtime healthz checker per service,
// for the manager's readyz endpoint.
func (r *Registry) ReadyzCheckers(timeout time.Duration) map[string]func(*http.Request) error {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	checks := map[string]func(*http.Request) error{}
	for _, s := range r.services {
		checks[s.Name()] = func(req *http.Request) error {
			ctx, cancel := context.WithTimeout(req.Context(), timeout)
			defer cancel()
			return s.HealthCheck(ctx)
		}
	}
	return checks
}

// Close releases every service, the last built first.
func (r *Registry) Close() {
	for i := len(r.closers) - 1; i >= 0; i-- {
		r.closers[i]()
	}
	r.closers = nil
}
