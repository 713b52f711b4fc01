// Copyright 2026 The orgforge Authors.
// SPDX-License-Identifier: Apache-2.0

// Command manager is the orgforge operator: flags -> config -> registry ->
// manager -> reconciler.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/orgforge/orgforge/internal/config"
	"github.com/orgforge/orgforge/internal/operator"
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
		"bucket", cfg.Storage.Bucket, "resyncPeriod", cfg.ResyncPeriod.String(), "usagePeriod", cfg.UsagePeriod.String(),
		"maxConcurrentReconciles", cfg.MaxConcurrentReconciles)

	ctx := ctrl.SetupSignalHandler()
	reg, err := registry.New(ctx, cfg, ctrl.Log.WithName("registry"), registry.Options{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "orgforge: %v\n", err)
		return 1
	}
	defer reg.Close()

	restCfg, err := ctrl.GetConfig()
	if err != nil {
		fmt.Fprintf(os.Stderr, "orgforge: kubernetes: %v\n", err)
		return 1
	}
	mgr, err := operator.New(restCfg, reg, cfg, operator.Options{})
	if err != nil {
		return setupFailed(log, err)
	}
	log.Info("Starting manager")
	if err := mgr.Start(ctx); err != nil {
		log.Error(err, "Manager stopped")
		return 1
	}
	return 0
}

// setupFailed reports an error of operator.New as main always has: a part
// that could not be set up in the log, the manager itself on stderr.
func setupFailed(log logr.Logger, err error) int {
	var setup *operator.SetupError
	if errors.As(err, &setup) {
		log.Error(setup.Err, setup.Step, setup.KeysAndValues...)
	} else {
		fmt.Fprintf(os.Stderr, "orgforge: kubernetes: %v\n", err)
	}
	return 1
}
