// Package operator wires orgforge's manager: the scheme, the manager's
// options, the Organization reconciler, its metrics and its health checks.
// main.go and the end-to-end tests both build the operator here, so that
// the tests run the manager that ships.
package operator

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/controllers"
	"github.com/orgforge/orgforge/internal/config"
	"github.com/orgforge/orgforge/internal/registry"
	"github.com/orgforge/orgforge/internal/storage"
)

// LeaderElectionID names the lease the replicas compete for.
const LeaderElectionID = "orgforge.tenancy.orgforge.io"

// readyzTimeout bounds each service's health check behind /readyz.
const readyzTimeout = 5 * time.Second

// Options are what a caller changes about the operator beyond its
// configuration. The zero value is the operator as it runs in a cluster;
// the other values are for tests.
type Options struct {
	// WrapDatabase wraps each DatabaseCluster's database service as the
	// Organization reconciler uses it, for tests that interrupt it.
	WrapDatabase func(cluster string, db controllers.Database) controllers.Database
	// WrapClient wraps the manager's client as the reconciler uses it.
	WrapClient func(client.Client) client.Client
	// WrapRecorder wraps the reconciler's event recorder.
	WrapRecorder func(controllers.EventRecorder) controllers.EventRecorder
	// Settings, when set, edits the reconciler's settings.
	Settings func(*controllers.Settings)
	// ClusterHealthInterval replaces how often each DatabaseCluster is
	// checked (controllers.DefaultHealthInterval).
	ClusterHealthInterval time.Duration
	// RateLimiter replaces the controller's default retry backoff.
	RateLimiter workqueue.TypedRateLimiter[reconcile.Request]
	// NoMetrics serves no metrics endpoint and registers no metrics:
	// Prometheus' global registry takes orgforge's metrics only once per
	// process, and a test process starts many managers.
	NoMetrics bool
	// SkipNameValidation lets one process run the controller in more
	// than one manager.
	SkipNameValidation bool
}

// SetupError is a failure to set up one part of the manager. Step names the
// part as a log message, with KeysAndValues for the log.
type SetupError struct {
	Step          string
	KeysAndValues []any
	Err           error
}

func (e *SetupError) Error() string { return fmt.Sprintf("%s: %v", e.Step, e.Err) }

func (e *SetupError) Unwrap() error { return e.Err }

// NewScheme returns a scheme with every type the operator reads or writes.
func NewScheme() (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, tenancyv1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			return nil, err
		}
	}
	return scheme, nil
}

// New builds the manager for restCfg with the Organization reconciler on
// reg's services, its metrics and its health checks; the caller starts it.
// An error in creating the manager itself is returned as it is; one in
// setting up a part of it is a *SetupError.
func New(restCfg *rest.Config, reg *registry.Registry, cfg *config.Config, opts Options) (manager.Manager, error) {
	scheme, err := NewScheme()
	if err != nil {
		return nil, &SetupError{Step: "Building scheme", Err: err}
	}
	mgr, err := ctrl.NewManager(restCfg, managerOptions(scheme, cfg, opts))
	if err != nil {
		return nil, err
	}
	clusterID, err := ClusterIdentity(context.Background(), mgr.GetAPIReader(), cfg.ClusterID)
	if err != nil {
		return nil, &SetupError{Step: "Reading the cluster identity", Err: err}
	}
	if err := setUp(mgr, reg, cfg, clusterID, opts); err != nil {
		return nil, err
	}
	return mgr, nil
}

// managerOptions are the manager's settings from the configuration.
func managerOptions(scheme *runtime.Scheme, cfg *config.Config, opts Options) ctrl.Options {
	metricsAddr := cfg.MetricsAddr
	if opts.NoMetrics {
		metricsAddr = "0"
	}
	managed := labels.SelectorFromSet(labels.Set{controllers.LabelManagedBy: controllers.ManagedByValue})
	return ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress:        cfg.ProbeAddr,
		PprofBindAddress:              cfg.PprofAddr,
		LeaderElection:                cfg.LeaderElection,
		LeaderElectionID:              LeaderElectionID,
		LeaderElectionNamespace:       cfg.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		Cache: cache.Options{
			ByObject: map[client.Object]cache.ByObject{
				// Only the Secrets the operator wrote are cached, not every
				// Secret of the cluster, and of them only what the
				// reconciler reads. Both transforms strip managed fields.
				&corev1.Secret{}:                {Label: managed, Transform: controllers.TransformSecret},
				&tenancyv1alpha1.Organization{}: {Transform: controllers.TransformOrganization},
			},
			// No code reads managed fields, and they are often the larger
			// part of an object's metadata; the operator writes with
			// Create, Update and merge patches, never server-side apply.
			DefaultTransform: controllers.TransformMetadata,
		},
	}
}

// clusterIdentityTimeout bounds the start-up read of the kube-system
// namespace.
const clusterIdentityTimeout = 30 * time.Second

// ClusterIdentity is the identity the operator records in ownership
// markers: flag, the --cluster-id, when set, or else the UID of the
// kube-system namespace, which lives as long as the Kubernetes cluster.
func ClusterIdentity(ctx context.Context, r client.Reader, flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	ctx, cancel := context.WithTimeout(ctx, clusterIdentityTimeout)
	defer cancel()
	ns := &corev1.Namespace{}
	if err := r.Get(ctx, client.ObjectKey{Name: metav1.NamespaceSystem}, ns); err != nil {
		return "", fmt.Errorf("reading namespace %s, whose UID identifies the cluster (or set --cluster-id): %w", metav1.NamespaceSystem, err)
	}
	return string(ns.UID), nil
}

// setUp adds the reconciler, the metrics and the health checks to mgr.
func setUp(mgr manager.Manager, reg *registry.Registry, cfg *config.Config, clusterID string, opts Options) error {
	co := controller.Options{MaxConcurrentReconciles: cfg.MaxConcurrentReconciles, RateLimiter: opts.RateLimiter}
	if opts.SkipNameValidation {
		co.SkipNameValidation = &opts.SkipNameValidation
	}
	ledger := controllers.NewLedger(mgr.GetClient())
	if err := newReconciler(mgr, reg, cfg, clusterID, ledger, opts).SetupWithManager(mgr, co); err != nil {
		return &SetupError{Step: "Setting up the Organization controller", Err: err}
	}
	if err := newClusterReconciler(mgr, reg, cfg, ledger, opts).SetupWithManager(mgr, co); err != nil {
		return &SetupError{Step: "Setting up the DatabaseCluster controller", Err: err}
	}
	if err := mgr.Add(defaultCluster(mgr.GetClient(), mgr.GetAPIReader())); err != nil {
		return &SetupError{Step: "Adding the default DatabaseCluster", Err: err}
	}
	if !opts.NoMetrics {
		if err := controllers.RegisterMetrics(metrics.Registry, mgr.GetCache()); err != nil {
			return &SetupError{Step: "Registering metrics", Err: err}
		}
		for _, c := range storage.Collectors() {
			if err := metrics.Registry.Register(c); err != nil {
				return &SetupError{Step: "Registering the storage service's metrics", Err: err}
			}
		}
		if err := controllers.RegisterFleetMetrics(metrics.Registry, reg.Clusters, ledger); err != nil {
			return &SetupError{Step: "Registering the fleet's metrics", Err: err}
		}
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return &SetupError{Step: "Adding healthz", Err: err}
	}
	for name, check := range reg.ReadyzCheckers(readyzTimeout) {
		if err := mgr.AddReadyzCheck(name, check); err != nil {
			return &SetupError{Step: "Adding readyz", KeysAndValues: []any{"service", name}, Err: err}
		}
	}
	return nil
}

// newReconciler is the Organization reconciler on mgr's client and reg's
// services, as opts change them.
func newReconciler(mgr manager.Manager, reg *registry.Registry, cfg *config.Config, clusterID string, ledger *controllers.Ledger, opts Options) *controllers.OrganizationReconciler {
	var (
		c                                  = mgr.GetClient()
		recorder controllers.EventRecorder = mgr.GetEventRecorder("orgforge")
	)
	if opts.WrapClient != nil {
		c = opts.WrapClient(c)
	}
	if opts.WrapRecorder != nil {
		recorder = opts.WrapRecorder(recorder)
	}
	r := &controllers.OrganizationReconciler{
		Client:    c,
		APIReader: mgr.GetAPIReader(),
		Scheme:    mgr.GetScheme(),
		Recorder:  recorder,
		Databases: databases(reg.Clusters, opts.WrapDatabase),
		Ledger:    ledger,
		Storage:   reg.Storage,
		Creds:     reg.Credentials,
		Settings:  controllers.SettingsFrom(cfg),
	}
	r.Settings.ClusterID = clusterID
	if opts.Settings != nil {
		opts.Settings(&r.Settings)
	}
	return r
}

// newClusterReconciler is the DatabaseCluster reconciler on mgr's client,
// reg's clusters and the --database-* flags' cluster.
func newClusterReconciler(mgr manager.Manager, reg *registry.Registry, cfg *config.Config, ledger *controllers.Ledger, opts Options) *controllers.DatabaseClusterReconciler {
	db := cfg.Database
	return &controllers.DatabaseClusterReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("orgforge"),
		Clusters:  reg.Clusters,
		Ledger:    ledger,
		Flags: controllers.FlagsCluster{
			AdminDSN: reg.DefaultCluster.AdminDSN,
			Tenant:   controllers.TenantEndpoint{Host: db.TenantHost, Port: db.TenantPort, SSLMode: db.TenantSSLMode},
		},
		MaxConnections:    reg.DefaultCluster.MaxConnections,
		HealthInterval:    opts.ClusterHealthInterval,
		HeartbeatInterval: cfg.ResyncPeriod,
	}
}

// databases looks a DatabaseCluster's service up in clusters, wrapped by
// wrap if set.
func databases(clusters *registry.Clusters, wrap func(string, controllers.Database) controllers.Database) controllers.DatabaseLookup {
	return func(cluster string) (controllers.Database, bool) {
		svc, ok := clusters.Get(cluster)
		if !ok {
			return nil, false
		}
		if wrap != nil {
			return wrap(cluster, svc), true
		}
		return svc, true
	}
}

// defaultCluster makes the DatabaseCluster of the --database-* flags when it
// is missing, so that the fleet view is always complete and organizations
// provisioned before the fleet existed are found on it. It never changes
// one that exists: its capacity, cordon and labels are the user's. It
// reads first (past the cache, which may not have synced), so that a
// restart makes no write for a cluster that is there: a refused create is
// a write request all the same.
func defaultCluster(c client.Client, r client.Reader) manager.RunnableFunc {
	return func(ctx context.Context) error {
		dbc := &tenancyv1alpha1.DatabaseCluster{
			ObjectMeta: metav1.ObjectMeta{Name: tenancyv1alpha1.DefaultClusterName},
			Spec:       tenancyv1alpha1.DatabaseClusterSpec{Admin: tenancyv1alpha1.AdminSpec{FromFlags: true}},
		}
		backoff := wait.Backoff{Duration: time.Second, Factor: 2, Steps: 8, Cap: 30 * time.Second}
		err := wait.ExponentialBackoffWithContext(ctx, backoff, func(ctx context.Context) (bool, error) {
			if err := r.Get(ctx, client.ObjectKeyFromObject(dbc), &tenancyv1alpha1.DatabaseCluster{}); err == nil {
				return true, nil
			}
			err := c.Create(ctx, dbc)
			if err == nil || apierrors.IsAlreadyExists(err) {
				return true, nil
			}
			ctrl.LoggerFrom(ctx).Error(err, "Creating the default DatabaseCluster; retrying")
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("creating DatabaseCluster %s for the --database-* flags: %w", tenancyv1alpha1.DefaultClusterName, err)
		}
		return nil
	}
}
