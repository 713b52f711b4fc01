// Package e2e_test runs the reconciler end to end: a manager in the test
// process against the real local stack (kube-apiserver, etcd and
// kube-controller-manager, PostgreSQL, versitygw), checked against the state
// of the world.
package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/controllers"
	"github.com/orgforge/orgforge/internal/aurora"
	"github.com/orgforge/orgforge/internal/config"
	"github.com/orgforge/orgforge/internal/devstack"
	"github.com/orgforge/orgforge/internal/naming"
	orgoperator "github.com/orgforge/orgforge/internal/operator"
	"github.com/orgforge/orgforge/internal/registry"
	"github.com/orgforge/orgforge/internal/retry"
	"github.com/orgforge/orgforge/internal/testutil"
)

// The suite shares one stack and one registry; each test starts the
// managers it needs.
var (
	stack *devstack.Stack
	reg   *registry.Registry
	// admin is the suite's own admin connection to the default cluster's
	// server, for clean-ups; the operator's is in reg.Clusters.
	admin  *aurora.Service
	cfg    *config.Config
	scheme *runtime.Scheme
	k8s    client.Client
	logs   = &syncBuffer{}
)

const resync = 3 * time.Second

// fleetMajors are the PostgreSQL majors of the suite's fleet servers,
// stack.Clusters, which the fleet tests' DatabaseClusters run on.
var fleetMajors = []int{13, 15, 17}

// iamDelay is how long the stack's S3 refuses a new access key, as S3 on
// AWS may while IAM propagates it (devstack.S3Options.IAMDelay). The
// operator's allowance, storage.DefaultKeyPropagation, is longer.
const iamDelay = 10 * time.Second

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	// Fuzzing workers run only the fuzz targets, which need no stack.
	if f := flag.Lookup("test.fuzzworker"); f != nil && f.Value.String() == "true" {
		return m.Run()
	}
	ctx := context.Background()
	ctrl.SetLogger(zap.New(zap.WriteTo(logs), zap.UseDevMode(true), zap.Level(zapDebug())))
	var err error
	// The controller-manager makes deletion end as in a cluster: namespaces
	// finish terminating and owned Secrets are collected.
	opts := devstack.Options{
		Kube: true, CRDPaths: []string{"../../config/crd/bases"}, ControllerManager: true, Postgres: true,
		S3: true, S3Options: devstack.S3Options{IAMDelay: iamDelay},
	}
	for _, m := range fleetMajors {
		opts.Clusters = append(opts.Clusters, devstack.PostgresOptions{Major: m})
	}
	stack, err = devstack.Start(ctx, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = stack.Close() }()
	if scheme, err = orgoperator.NewScheme(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if k8s, err = client.New(stack.Kube.Config, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: adminSecretNamespace}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg = &config.Config{
		// The tests' managers serve no probes: several run at once.
		ProbeAddr:    "0",
		ResyncPeriod: resync,
		// As the operator ships: usage is read when an Organization
		// becomes Ready and then hourly, beyond any test's end.
		UsagePeriod:             time.Hour,
		MaxConcurrentReconciles: 4,
		Database: config.Database{
			AdminDSN: stack.Postgres.AdminDSN(), Host: stack.Postgres.Host, Port: stack.Postgres.Port,
			User: devstack.AdminUser, MaxConnections: 4,
			TenantHost: stack.Postgres.Host, TenantPort: stack.Postgres.Port, TenantSSLMode: "disable",
		},
		Storage: config.Storage{
			Bucket: stack.S3.Bucket, Region: stack.S3.Region, Endpoint: stack.S3.Endpoint, IAMEndpoint: stack.S3.IAMEndpoint,
			UsePathStyle: true, PrefixTemplate: naming.DefaultPrefixTemplate, IAMPath: "/orgforge/",
			TenantEndpoint: stack.S3.Endpoint, AccessKeyID: stack.S3.AccessKey, SecretAccessKey: stack.S3.SecretKey,
		},
	}
	fast := retry.Policy{Attempts: 2, Base: 50 * time.Millisecond, Factor: 2, Cap: time.Second}
	if reg, err = registry.New(ctx, cfg, ctrl.Log.WithName("registry"), registry.Options{Retry: &fast}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer reg.Close()
	suiteAdmin := reg.DefaultCluster
	// Not the operator's application_name: its connections are counted.
	suiteAdmin.ApplicationName = "orgforge-e2e-suite"
	if admin, err = aurora.New(ctx, suiteAdmin, ctrl.Log.WithName("suite")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer admin.Close()
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "--- operator log (last 60 lines) ---\n%s\n", logs.tail(60))
	}
	return code
}

func zapDebug() zapcore.Level { return zapcore.DebugLevel }

// unwatched lends a client the Watch that interceptor.NewClient asks for;
// the operator never calls it.
type unwatched struct{ client.Client }

func (unwatched) Watch(context.Context, client.ObjectList, ...client.ListOption) (watch.Interface, error) {
	return nil, errors.New("watch is not supported by this client")
}

// counting wraps the manager's client to count every write the operator
// makes to the API server, status writes included, in op.
func counting(c client.Client, op *operator) client.Client {
	w, ok := c.(client.WithWatch)
	if !ok {
		w = unwatched{c}
	}
	return interceptor.NewClient(w, interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.CreateOption) error {
			op.wrote("create", o)
			return c.Create(ctx, o, opts...)
		},
		Update: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.UpdateOption) error {
			op.wrote("update", o)
			return c.Update(ctx, o, opts...)
		},
		Patch: func(ctx context.Context, c client.WithWatch, o client.Object, p client.Patch, opts ...client.PatchOption) error {
			op.wrote("patch", o)
			return c.Patch(ctx, o, p, opts...)
		},
		Delete: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.DeleteOption) error {
			op.wrote("delete", o)
			return c.Delete(ctx, o, opts...)
		},
		SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, o client.Object, opts ...client.SubResourceUpdateOption) error {
			op.wrote("update "+sub, o)
			return c.SubResource(sub).Update(ctx, o, opts...)
		},
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, o client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
			// A status holds no secret: its patch is recorded whole.
			body, _ := p.Data(o)
			// A patch the API server refuses still counts: the operator
			// meant to write.
			i := op.wrote("patch "+sub+" "+string(body), o)
			err := c.SubResource(sub).Patch(ctx, o, p, opts...)
			if err != nil {
				op.mu.Lock()
				op.written[i] += " (refused: " + err.Error() + ")"
				op.mu.Unlock()
			}
			return err
		},
	})
}

// wrote counts a write of the operator's and records what it wrote, at
// the index it returns.
func (o *operator) wrote(verb string, obj client.Object) int {
	o.writes.Add(1)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.written = append(o.written, fmt.Sprintf("%s %T %s/%s", verb, obj, obj.GetNamespace(), obj.GetName()))
	return len(o.written) - 1
}

// writtenSince returns what the operator wrote after its first n writes,
// Events included.
func (o *operator) writtenSince(n int64) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if int(n) >= len(o.written) {
		return nil
	}
	return slices.Clone(o.written[n:])
}

type countingRecorder struct {
	controllers.EventRecorder
	writes  *atomic.Int64
	mu      *sync.Mutex
	events  *[]string
	written *[]string
}

func (r countingRecorder) Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any) {
	r.writes.Add(1)
	r.mu.Lock()
	*r.events = append(*r.events, reason+": "+fmt.Sprintf(note, args...))
	*r.written = append(*r.written, "event "+reason+": "+fmt.Sprintf(note, args...))
	r.mu.Unlock()
	r.EventRecorder.Eventf(regarding, related, eventtype, reason, action, note, args...)
}

// operator is one running manager with the reconciler.
type operator struct {
	cancel context.CancelFunc
	done   chan struct{}
	writes atomic.Int64
	mu     sync.Mutex
	events []string
	// written describes each write counted in writes, in order.
	written []string
}

// eventsSnapshot returns the events recorded so far.
func (o *operator) eventsSnapshot() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.events...)
}

// wrapDB wraps a DatabaseCluster's database service, for tests that
// interrupt it.
type wrapDB = func(cluster string, db controllers.Database) controllers.Database

// startOperator runs a manager until the test ends or stop is called. db,
// if set, wraps the database services when a test needs to interrupt them.
func startOperator(t *testing.T, db wrapDB) *operator {
	t.Helper()
	return startOperatorWith(t, db, nil)
}

// startOperatorWith is startOperator with the manager's client wrapped, for
// tests that make the cache lag.
func startOperatorWith(t *testing.T, db wrapDB, wrap func(client.Client) client.Client) *operator {
	t.Helper()
	return startOperatorOpts(t, operatorOptions{db: db, wrap: wrap})
}

// startOperatorSettings is startOperatorWith with the reconciler's settings
// changed by edit, as an operator restarted with other flags would run.
func startOperatorSettings(t *testing.T, db wrapDB, wrap func(client.Client) client.Client, edit func(*controllers.Settings)) *operator {
	t.Helper()
	return startOperatorOpts(t, operatorOptions{db: db, wrap: wrap, settings: edit})
}

// operatorOptions are what a test may change about the manager it starts.
type operatorOptions struct {
	db   wrapDB
	wrap func(client.Client) client.Client
	// rateLimiter replaces the suite's fast retries, for tests that must
	// see an event, not a retry, bring an Organization back.
	rateLimiter workqueue.TypedRateLimiter[reconcile.Request]
	// settings, when set, edits the reconciler's settings.
	settings func(*controllers.Settings)
	// kube, registry and config, when set, replace the suite's API
	// server, services and configuration: an operator of another
	// Kubernetes cluster.
	kube     *rest.Config
	registry *registry.Registry
	config   *config.Config
}

// startOperatorOpts runs a manager as opts say until the test ends: the
// operator main.go builds, with the suite's fast retries, its client and
// recorder counted, and no metrics or probes served.
func startOperatorOpts(t *testing.T, opts operatorOptions) *operator {
	t.Helper()
	op := launchOperator(t, opts)
	t.Cleanup(op.stop)
	return op
}

// running counts the managers launched and not yet stopped.
var running atomic.Int32

// launchOperator is startOperatorOpts without the clean-up: the caller
// stops the manager.
func launchOperator(t *testing.T, opts operatorOptions) *operator {
	t.Helper()
	limiter := opts.rateLimiter
	if limiter == nil {
		limiter = workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](50*time.Millisecond, 2*time.Second)
	}
	op := &operator{done: make(chan struct{})}
	kube, services, conf := stack.Kube.Config, reg, cfg
	if opts.kube != nil {
		kube, services, conf = opts.kube, opts.registry, opts.config
	}
	mgr, err := orgoperator.New(kube, services, conf, orgoperator.Options{
		WrapDatabase: opts.db,
		WrapClient: func(c client.Client) client.Client {
			if opts.wrap != nil {
				c = opts.wrap(c)
			}
			return counting(c, op)
		},
		WrapRecorder: func(r controllers.EventRecorder) controllers.EventRecorder {
			return countingRecorder{EventRecorder: r, writes: &op.writes, mu: &op.mu, events: &op.events, written: &op.written}
		},
		Settings:              opts.settings,
		RateLimiter:           limiter,
		ClusterHealthInterval: 2 * time.Second,
		NoMetrics:             true,
		SkipNameValidation:    true,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	op.cancel = cancel
	running.Add(1)
	go func() {
		defer close(op.done)
		defer running.Add(-1)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	return op
}

func (o *operator) stop() {
	o.cancel()
	<-o.done
}

// apply creates the Organization and deletes it (with Delete policy) when
// the test ends, waiting until it is gone.
func apply(t *testing.T, o *tenancyv1alpha1.Organization) *tenancyv1alpha1.Organization {
	t.Helper()
	ctx := context.Background()
	if err := k8s.Create(ctx, o); err != nil {
		t.Fatalf("creating %s: %v", o.Name, err)
	}
	t.Cleanup(func() { deleteAndWait(t, o.Name) })
	return o
}

// applyReady is apply, and then waitReady.
func applyReady(t *testing.T, o *tenancyv1alpha1.Organization) *tenancyv1alpha1.Organization {
	t.Helper()
	apply(t, o)
	return waitReady(t, o.Name)
}

func deleteAndWait(t *testing.T, name string) {
	t.Helper()
	ctx := context.Background()
	o := &tenancyv1alpha1.Organization{}
	if err := k8s.Get(ctx, client.ObjectKey{Name: name}, o); err != nil {
		return
	}
	_ = k8s.Delete(ctx, o)
	testutil.Eventually(t, 60*time.Second, fmt.Sprintf("%s to be deleted", name), func() (bool, string) {
		err := k8s.Get(ctx, client.ObjectKey{Name: name}, &tenancyv1alpha1.Organization{})
		return err != nil && client.IgnoreNotFound(err) == nil, fmt.Sprint(err)
	})
}

// waitCondition waits until the Organization's condition has the status and
// reason given, and returns the Organization.
func waitCondition(t *testing.T, name, condType string, status string, reason string, timeout time.Duration) *tenancyv1alpha1.Organization {
	t.Helper()
	o := &tenancyv1alpha1.Organization{}
	testutil.Eventually(t, timeout, fmt.Sprintf("%s %s=%s (%s)", name, condType, status, reason), func() (bool, string) {
		if err := k8s.Get(context.Background(), client.ObjectKey{Name: name}, o); err != nil {
			return false, err.Error()
		}
		c := meta.FindStatusCondition(o.Status.Conditions, condType)
		if c == nil {
			return false, "no condition"
		}
		return string(c.Status) == status && (reason == "" || c.Reason == reason), fmt.Sprintf("%s/%s: %s", c.Status, c.Reason, c.Message)
	})
	return o
}

// waitReady waits until the Organization is Ready for its current
// generation, as kstatus and kubectl wait see it.
func waitReady(t *testing.T, name string) *tenancyv1alpha1.Organization {
	t.Helper()
	o := &tenancyv1alpha1.Organization{}
	testutil.Eventually(t, 60*time.Second, name+" Ready at its generation", func() (bool, string) {
		if err := k8s.Get(context.Background(), client.ObjectKey{Name: name}, o); err != nil {
			return false, err.Error()
		}
		c := testutil.ConditionOf(o, tenancyv1alpha1.ConditionReady)
		return testutil.ReadyAtGeneration(o), fmt.Sprintf("%s/%s gen %d observed %d: %s", c.Status, c.Reason, o.Generation, o.Status.ObservedGeneration, c.Message)
	})
	return o
}

func secret(t *testing.T, o *tenancyv1alpha1.Organization, name string) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: o.Status.Namespace, Name: name}, s); err != nil {
		t.Fatalf("Secret %s: %v", name, err)
	}
	return s
}

// mergePatchSecret changes a Secret with a JSON merge patch, as kubectl
// patch would, past the operator.
func mergePatchSecret(ctx context.Context, namespace, name string, patch map[string]any) error {
	body, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	s := &corev1.Secret{}
	s.Namespace, s.Name = namespace, name
	return k8s.Patch(ctx, s, client.RawPatch(types.MergePatchType, body))
}

// deleteAndWaitReplaced deletes old, a Secret the operator wrote, as a
// user might, and waits until the operator writes a new Secret of the same
// name; it returns that one.
func deleteAndWaitReplaced(t *testing.T, old *corev1.Secret, what string) *corev1.Secret {
	t.Helper()
	if err := k8s.Delete(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	var fresh *corev1.Secret
	testutil.Eventually(t, 30*time.Second, what, func() (bool, string) {
		s := &corev1.Secret{}
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(old), s); err != nil {
			return false, err.Error()
		}
		fresh = s
		return s.UID != old.UID, "same Secret"
	})
	return fresh
}

// gatherMetrics registers orgforge's metrics in a registry of their own,
// which counts Organizations from the API server, and gathers them: the
// counters are the process's, shared by every manager the tests start.
func gatherMetrics(t *testing.T) []*dto.MetricFamily {
	t.Helper()
	r := prometheus.NewRegistry()
	if err := controllers.RegisterMetrics(r, k8s); err != nil {
		t.Fatal(err)
	}
	families, err := r.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return families
}

func count(t *testing.T, conn *pgx.Conn, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) tail(n int) string {
	lines := strings.Split(s.String(), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// stopPostgres stops the stack's PostgreSQL for an outage test and returns
// the call that starts it again; a test that ends before calling it has the
// server started again at cleanup, so later tests find it running.
func stopPostgres(t *testing.T) (restart func()) {
	t.Helper()
	if err := stack.Postgres.Stop(); err != nil {
		t.Fatal(err)
	}
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_ = stack.Postgres.Start(context.Background())
		}
	})
	return func() {
		t.Helper()
		if err := stack.Postgres.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		restarted = true
	}
}
