package registry_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	"github.com/orgforge/orgforge/internal/config"
	"github.com/orgforge/orgforge/internal/devstack"
	"github.com/orgforge/orgforge/internal/naming"
	"github.com/orgforge/orgforge/internal/registry"
	"github.com/orgforge/orgforge/internal/retry"
	"github.com/orgforge/orgforge/internal/testutil"
)

var stack *devstack.Stack

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	stack, err = devstack.Start(context.Background(), devstack.Options{Postgres: true, S3: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = stack.Close() }()
	defer closeFleet()
	return m.Run()
}

func goodConfig() *config.Config {
	return &config.Config{
		Database: config.Database{
			AdminDSN: stack.Postgres.AdminDSN(), Host: stack.Postgres.Host, Port: stack.Postgres.Port,
			User: devstack.AdminUser, MaxConnections: 4,
		},
		Storage: config.Storage{
			Bucket: stack.S3.Bucket, Region: stack.S3.Region, Endpoint: stack.S3.Endpoint, IAMEndpoint: stack.S3.IAMEndpoint,
			UsePathStyle: true, PrefixTemplate: naming.DefaultPrefixTemplate, IAMPath: "/orgforge/",
			AccessKeyID: stack.S3.AccessKey, SecretAccessKey: stack.S3.SecretKey,
		},
	}
}

var fast = retry.Policy{Attempts: 3, Base: 100 * time.Millisecond, Factor: 2, Cap: time.Second}

// newRegistry builds a registry of cfg, closed when the test ends.
func newRegistry(t *testing.T, cfg *config.Config, log logr.Logger) *registry.Registry {
	t.Helper()
	reg, err := registry.New(context.Background(), cfg, log, registry.Options{Retry: &fast})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	return reg
}

func TestRegistryBuildsEveryServiceAndReportsThemHealthy(t *testing.T) {
	reg := newRegistry(t, goodConfig(), logr.Discard())
	var names []string
	for _, s := range reg.Services() {
		names = append(names, s.Name())
	}
	if got := strings.Join(names, ","); got != "credentials,storage" {
		t.Errorf("services = %s", got)
	}
	if _, ok := reg.Clusters.Get(registry.DefaultClusterName); !ok {
		t.Error("the --database-* cluster was not connected at start-up")
	}
	for name, check := range reg.ReadyzCheckers(5 * time.Second) {
		if err := check(httptest.NewRequest("GET", "/readyz", nil)); err != nil {
			t.Errorf("readyz %s: %v", name, err)
		}
	}
}

// TestReadyzAndStartUpDoNotDependOnADatabaseCluster: readyz is the
// operator's own health, and one cluster that cannot be reached neither
// fails it nor stops start-up; its DatabaseCluster reports it.
func TestReadyzAndStartUpDoNotDependOnADatabaseCluster(t *testing.T) {
	ctx := context.Background()
	running := newRegistry(t, goodConfig(), logr.Discard())
	if err := stack.Postgres.Stop(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := stack.Postgres.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}()
	for name, check := range running.ReadyzCheckers(3 * time.Second) {
		if err := check(httptest.NewRequest("GET", "/readyz", nil)); err != nil {
			t.Errorf("readyz %s failed while only PostgreSQL was stopped: %v", name, err)
		}
	}
	var logs strings.Builder
	log := funcr.New(func(prefix, args string) { logs.WriteString(prefix + " " + args + "\n") }, funcr.Options{Verbosity: 10})
	started := newRegistry(t, goodConfig(), log)
	if _, ok := started.Clusters.Get(registry.DefaultClusterName); ok {
		t.Error("a service was built for a cluster that cannot be reached")
	}
	if !strings.Contains(logs.String(), "cannot be reached") {
		t.Errorf("start-up did not log that the cluster cannot be reached: %s", logs.String())
	}
	if strings.Contains(logs.String(), stack.Postgres.AdminPassword) {
		t.Error("the admin password appears in the logs")
	}
}

// TestNewFailsFastNamingTheCause covers what an operator meets on a bad
// start: each case returns within 15 s an error that names the service and
// the cause, with no secret in it or in the logs.
func TestNewFailsFastNamingTheCause(t *testing.T) {
	ctx := context.Background()
	su := testutil.Superuser(t, stack.Postgres, "postgres")
	const weakPassword = "weak-admin-Pa55word"
	if _, err := su.Exec(ctx, "CREATE ROLE weak_admin LOGIN CREATEDB NOCREATEROLE PASSWORD '"+weakPassword+"'"); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		mutate  func(*config.Config)
		secrets []string
		want    []string
	}{
		"wrong password": {
			mutate: func(c *config.Config) {
				c.Database.AdminDSN = stack.Postgres.DSN(devstack.AdminUser, "not-the-password", "postgres")
			},
			secrets: []string{"not-the-password", stack.Postgres.AdminPassword},
			want:    []string{"aurora", "password authentication failed"},
		},
		"admin without CREATEROLE": {
			mutate: func(c *config.Config) {
				c.Database.AdminDSN = stack.Postgres.DSN("weak_admin", weakPassword, "postgres")
			},
			secrets: []string{weakPassword},
			want:    []string{"aurora", "CREATEROLE"},
		},
		"missing bucket": {
			mutate:  func(c *config.Config) { c.Storage.Bucket = "no-such-bucket" },
			secrets: []string{stack.S3.SecretKey, stack.Postgres.AdminPassword},
			want:    []string{"storage", "no-such-bucket"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var logs strings.Builder
			log := funcr.New(func(prefix, args string) { logs.WriteString(prefix + " " + args + "\n") }, funcr.Options{Verbosity: 10})
			cfg := goodConfig()
			tc.mutate(cfg)
			start := time.Now()
			reg, err := registry.New(ctx, cfg, log, registry.Options{Retry: &fast})
			elapsed := time.Since(start)
			if err == nil {
				reg.Close()
				t.Fatal("New succeeded")
			}
			if elapsed > 15*time.Second {
				t.Errorf("New took %s, want under 15s", elapsed)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			for _, s := range tc.secrets {
				if strings.Contains(err.Error(), s) || strings.Contains(logs.String(), s) {
					t.Errorf("a secret appears in the error or logs: %q", err)
				}
			}
		})
	}
}

func TestRegistryGivesStorageThePermissionsBoundary(t *testing.T) {
	const boundary = "arn:aws:iam::111122223333:policy/orgforge-tenant-boundary"
	var logs strings.Builder
	log := funcr.New(func(prefix, args string) { logs.WriteString(prefix + " " + args + "\n") }, funcr.Options{})
	cfg := goodConfig()
	cfg.Storage.PermissionsBoundary = boundary
	newRegistry(t, cfg, log)
	var connected string
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, `"msg"="Connected to storage"`) {
			connected = line
		}
	}
	if !strings.Contains(connected, `"permissionsBoundary"="`+boundary+`"`) {
		t.Errorf("the storage service does not report the boundary %s; its start-up line: %q", boundary, connected)
	}
}
