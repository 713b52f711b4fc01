// Copyright 2026 The orgforge Authors.
// SPDX-License-Identifier: Apache-2.0

// Command manager is the orgforge operator: flags -> config -> registry ->
// manager -> reconciler.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/controllers"
	"github.com/orgforge/orgforge/internal/config"
	"github.com/orgforge/orgforge/internal/registry"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run())
}

// options are the manager's whole command line: the operator's
// configuration, logging, --kubeconfig and --version.
type options struct {
	config  *config.Config
	zap     zap.Options
	version bool
}

// bindFlags registers every flag of the manager on fs. docs/configuration.md
// is generated from it (main_test.go).
func bindFlags(fs *flag.FlagSet) *options {
	o := &options{config: config.Bind(fs)}
	fs.BoolVar(&o.version, "version", false, "Print the version and exit.")
	// Production logging unless --zap-devel: JSON at info level, which is
	// what runs in a cluster. make dev passes --zap-devel for console logs.
	o.zap = zap.Options{Development: false}
	o.zap.BindFlags(fs)
	// --kubeconfig; controller-runtime already put it on flag.CommandLine.
	ctrlconfig.RegisterFlags(fs)
	return o
}

func run() int {
	opts := bindFlags(flag.CommandLine)
	flag.Parse()
	if opts.version {
		fmt.Println("orgforge", version)
		return 0
	}
	// The environment is applied before the logger is built, so that
	// ORGFORGE_ZAP_* from the ConfigMap take effect like their flags.
	if err := config.ApplyEnv(flag.CommandLine); err != nil {
		fmt.Fprintf(os.Stderr, "orgforge: invalid environment:\n%v\n", err)
		return 2
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts.zap)))
	log := ctrl.Log.WithName("setup")

	cfg := opts.config
	if err := cfg.Load(); err != nil {
		fmt.Fprintf(os.Stderr, "orgforge: invalid configuration:\n%v\n", err)
		return 2
	}
	log.Info("Starting orgforge", "version", version, "database", cfg.Database.AdminEndpoint(),
		"bucket", cfg.Storage.Bucket, "resyncPeriod", cfg.ResyncPeriod.String(),
		"maxConcurrentReconciles", cfg.MaxConcurrentReconciles)

	ctx := ctrl.SetupSignalHandler()
	reg, err := registry.New(ctx, cfg, ctrl.Log.WithName("registry"), registry.Options{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "orgforge: %v\n", err)
		return 1
	}
	defer reg.Close()

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		log.Error(err, "Building scheme")
		return 1
	}
	if err := tenancyv1alpha1.AddToScheme(scheme); err != nil {
		log.Error(err, "Building scheme")
		return 1
	}
	managed := labels.SelectorFromSet(labels.Set{controllers.LabelManagedBy: controllers.ManagedByValue})
	restCfg, err := ctrl.GetConfig()
	if err != nil {
		fmt.Fprintf(os.Stderr, "orgforge: kubernetes: %v\n", err)
		return 1
	}
	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsserver.Options{BindAddress: cfg.MetricsAddr},
		HealthProbeBindAddress:        cfg.ProbeAddr,
		PprofBindAddress:              cfg.PprofAddr,
		LeaderElection:                cfg.LeaderElection,
		LeaderElectionID:              "orgforge.tenancy.orgforge.io",
		LeaderElectionNamespace:       cfg.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			// Only the Secrets the operator wrote are cached, not every
			// Secret of the cluster.
			&corev1.Secret{}: {Label: managed},
		}},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "orgforge: kubernetes: %v\n", err)
		return 1
	}
	r := &controllers.OrganizationReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Scheme:    mgr.GetScheme(),
		Recorder:  mgr.GetEventRecorder("orgforge"),
		Database:  reg.Aurora,
		Storage:   reg.Storage,
		Creds:     reg.Credentials,
		Settings:  controllers.SettingsFrom(cfg),
	}
	if err := r.SetupWithManager(mgr, controller.Options{MaxConcurrentReconciles: cfg.MaxConcurrentReconciles}); err != nil {
		log.Error(err, "Setting up the Organization controller")
		return 1
	}
	if err := controllers.RegisterMetrics(metrics.Registry, mgr.GetCache()); err != nil {
		log.Error(err, "Registering metrics")
		return 1
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		log.Error(err, "Adding healthz")
		return 1
	}
	for name, check := range reg.ReadyzCheckers(5 * time.Second) {
		if err := mgr.AddReadyzCheck(name, check); err != nil {
			log.Error(err, "Adding readyz", "service", name)
			return 1
		}
	}
	log.Info("Starting manager")
	if err := mgr.Start(ctx); err != nil {
		log.Error(err, "Manager stopped")
		return 1
	}
	return 0
}
