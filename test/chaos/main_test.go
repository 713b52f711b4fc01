// Package chaos_test is orgforge's reliability and security suite: the
// operator runs as a separate process, built from main.go, against the real
// local stack, and is SIGKILLed, starved of its dependencies, made to fail
// over and fed hostile input. Every scenario then checks the state of the
// world: PostgreSQL's catalogs, the bucket, IAM and the API server.
//
// `make test` runs the short version of every scenario; `make chaos` sets
// ORGFORGE_CHAOS_LONG=1 for the long one. docs/reliability.md records the
// figures.
package chaos_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/jackc/pgx/v5/pgxpool"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/devstack"
	"github.com/orgforge/orgforge/internal/testutil"
)

// poll is how often the suite checks what it waits for.
const poll = 250 * time.Millisecond

// scale is how hard each scenario pushes.
type scale struct {
	name string
	// crashOrgs are provisioned and deleted while the operator is killed
	// crashKills times in each phase.
	crashOrgs, crashKills int
	// pgOutages PostgreSQL outages of pgOutage each; one S3 and IAM outage
	// of s3Outage.
	pgOutages          int
	pgOutage, s3Outage time.Duration
	outageOrgs         int
	leaderOrgs         int
	// failovers is how many times the leader is killed.
	failovers int
	// fleetOrgs are placed at once over the fleet's three clusters, whose
	// budgets fit them exactly, while the operator is killed fleetKills
	// times and one cluster's server is stopped for fleetOutage.
	fleetOrgs, fleetKills int
	fleetOutage           time.Duration
	// rotationOrgs have their credentials rotated rotationRounds times by
	// a new rotationToken, with a grace period of rotationGrace, under
	// IAM's propagation delay of rotationIAMDelay, while the operator is
	// killed rotationKills times; one in rotationAppEvery has an
	// application querying it all along.
	rotationOrgs, rotationRounds, rotationKills, rotationAppEvery int
	rotationGrace, rotationIAMDelay                               time.Duration
	// converge bounds every wait for the world to settle.
	converge time.Duration
}

var (
	short = scale{name: "short",
		crashOrgs: 15, crashKills: 3,
		pgOutages: 1, pgOutage: 3 * time.Second, s3Outage: 3 * time.Second, outageOrgs: 4,
		leaderOrgs: 6, failovers: 1,
		fleetOrgs: 30, fleetKills: 2, fleetOutage: 3 * time.Second,
		rotationOrgs: 10, rotationRounds: 4, rotationKills: 3, rotationAppEvery: 2,
		rotationGrace: 10 * time.Second, rotationIAMDelay: 5 * time.Second,
		converge: 3 * time.Minute}
	long = scale{name: "long",
		crashOrgs: 200, crashKills: 20,
		pgOutages: 2, pgOutage: 30 * time.Second, s3Outage: 30 * time.Second, outageOrgs: 20,
		leaderOrgs: 40, failovers: 3,
		fleetOrgs: 200, fleetKills: 6, fleetOutage: 30 * time.Second,
		rotationOrgs: 100, rotationRounds: 6, rotationKills: 10, rotationAppEvery: 10,
		rotationGrace: 20 * time.Second, rotationIAMDelay: 10 * time.Second,
		converge: 10 * time.Minute}
)

// harness is the suite's shared state: the stack, clients that inspect it,
// and what the hygiene check reads at the end.
type harness struct {
	scale scale
	dir   string
	stack *devstack.Stack
	k8s   client.WithWatch
	// clusterID is the operator's cluster identity, which its markers
	// carry: the kube-system namespace's UID.
	clusterID string
	manager   string
	// su inspects PostgreSQL as the bootstrap superuser; the operator never
	// uses it. It is servers[0]'s.
	su *pgxpool.Pool
	// servers are every PostgreSQL server of the stack: the one the
	// operator's flags name (the default DatabaseCluster's), then the
	// fleet's, in fleetMajors' order.
	servers []server
	// store is the stack's S3 and IAM, which the operator's flags name.
	store objectStore
	// services are the flags that point the operator at the stack.
	services []string

	// collectors gather what the hygiene check reads; a scenario adds the
	// secrets of its own services to what it looks for.
	collectors *collectors

	mu sync.Mutex
	// logs are the operator processes' log files.
	logs []string
	seq  int
}

// server is one PostgreSQL server of the stack, with a superuser pool that
// inspects it.
type server struct {
	// name says which server it is in a failure or a figure.
	name string
	pg   *devstack.Postgres
	su   *pgxpool.Pool
}

// fleetMajors are the PostgreSQL majors of the fleet's servers, started
// beside the default one for the fleet scenario.
var fleetMajors = []int{13, 15, 17}

var (
	env    *harness
	scheme = runtime.NewScheme()
	sum    = &summary{}
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	// The suite's own clients log nothing; the operator processes log to
	// files.
	ctrllog.SetLogger(logr.Discard())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := &harness{scale: short}
	if os.Getenv("ORGFORGE_CHAOS_LONG") == "1" {
		h.scale = long
	}
	var err error
	if h.dir, err = os.MkdirTemp("", "orgforge-chaos-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	keep := os.Getenv("ORGFORGE_CHAOS_KEEP") == "1"
	defer func() {
		if !keep {
			_ = os.RemoveAll(h.dir)
		}
	}()
	if err := h.start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 1
	}
	defer h.close()
	env = h
	collectors := startCollectors(ctx, h)
	h.collectors = collectors

	code := m.Run()

	cancel()
	collectors.wait()
	leaks, report := checkHygiene(h, collectors)
	orphans := globalOrphans(h)
	sum.print(os.Stdout, h.scale.name, leaks, orphans, report)
	if len(leaks) > 0 || len(orphans) > 0 {
		for _, l := range leaks {
			fmt.Fprintln(os.Stderr, "SECRET LEAKED:", l)
		}
		for _, o := range orphans {
			fmt.Fprintln(os.Stderr, "ORPHAN:", o)
		}
		code = 1
	}
	if code != 0 {
		keep = true
		fmt.Fprintf(os.Stderr, "chaos: logs kept in %s\n", h.dir)
	}
	return code
}

func (h *harness) start(ctx context.Context) error {
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, tenancyv1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			return err
		}
	}
	built := make(chan error, 1)
	go func() { built <- h.buildManager() }()

	root, err := devstack.RepoRoot()
	if err != nil {
		return err
	}
	// Every statement the operator sends is logged, so that the hygiene
	// check can read the SQL for passwords.
	logged := map[string]string{"log_statement": "all", "log_line_prefix": "%m [%p] %u@%d "}
	opts := devstack.Options{
		Dir:  filepath.Join(h.dir, "stack"),
		Kube: true, CRDPaths: []string{filepath.Join(root, "config", "crd", "bases")},
		// Deleted namespaces finish terminating and owned Secrets are
		// collected, as in a cluster.
		ControllerManager: true,
		Postgres:          true,
		PostgresOptions:   devstack.PostgresOptions{Settings: logged},
		S3:                true,
	}
	for _, m := range fleetMajors {
		opts.Clusters = append(opts.Clusters, devstack.PostgresOptions{Major: m, Settings: logged})
	}
	h.stack, err = devstack.Start(ctx, opts)
	if err != nil {
		<-built
		return err
	}
	if err := <-built; err != nil {
		return err
	}
	if h.k8s, err = client.NewWithWatch(h.stack.Kube.Config, client.Options{Scheme: scheme}); err != nil {
		return err
	}
	system := &corev1.Namespace{}
	if err := h.k8s.Get(ctx, client.ObjectKey{Name: metav1.NamespaceSystem}, system); err != nil {
		return err
	}
	h.clusterID = string(system.UID)
	if err := h.connectServers(ctx); err != nil {
		return err
	}
	h.su = h.servers[0].su
	if h.store, err = newObjectStore(ctx, h.stack.S3); err != nil {
		return err
	}
	// The operator reads its secrets from files, as from a mounted Secret.
	if h.services, err = h.stack.OperatorFlags(h.dir); err != nil {
		return err
	}
	return os.MkdirAll(filepath.Join(h.dir, "logs"), 0o755)
}

// connectServers opens a superuser pool on every PostgreSQL server.
func (h *harness) connectServers(ctx context.Context) error {
	all := append([]*devstack.Postgres{h.stack.Postgres}, h.stack.Clusters...)
	for i, pg := range all {
		name := "the default server"
		if i > 0 {
			name = fmt.Sprintf("fleet server %d (PostgreSQL %d)", i, fleetMajors[i-1])
		}
		su, err := pgxpool.New(ctx, pg.SuperuserDSN("postgres"))
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		h.servers = append(h.servers, server{name: name, pg: pg, su: su})
	}
	return nil
}

// buildManager builds the operator from main.go, or takes $ORGFORGE_MANAGER.
func (h *harness) buildManager() error {
	if bin := os.Getenv("ORGFORGE_MANAGER"); bin != "" {
		h.manager = bin
		return nil
	}
	// go test caches this package's result by what it opens, and the
	// manager is built from source outside its imports: reading the
	// sources makes a change to them run the suite again.
	if err := readOperatorSources("../.."); err != nil {
		return err
	}
	h.manager = filepath.Join(h.dir, "manager")
	cmd := exec.Command("go", "build", "-o", h.manager, "github.com/orgforge/orgforge")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building the manager: %w\n%s", err, out)
	}
	return nil
}

// readOperatorSources reads every Go source of the operator below root:
// the module's files outside test/, and go.mod and go.sum.
func readOperatorSources(root string) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case "test", "bin", ".git", ".dev", "dist", "docs", "bench":
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(path, ".go") || d.Name() == "go.mod" || d.Name() == "go.sum" {
			_, err = os.ReadFile(path)
		}
		return err
	})
}

func (h *harness) close() {
	if h.store.storage != nil {
		h.store.storage.Close()
	}
	for _, s := range h.servers {
		s.su.Close()
	}
	if h.stack != nil {
		_ = h.stack.Close()
	}
}

// operator is one manager process.
type operator struct {
	*testutil.Process
	name string
}

// args are the flags every operator process gets: debug logging, its
// secrets from files, no ports of its own.
func (h *harness) args(extra ...string) []string {
	args := []string{
		"--kubeconfig", h.stack.Kube.KubeconfigPath,
		"--leader-elect=false",
		"--metrics-bind-address=0",
		"--health-probe-bind-address=0",
		"--zap-devel", "--zap-log-level=debug",
		"--resync-period=2m",
		"--max-concurrent-reconciles=4",
	}
	args = append(args, h.services...)
	return append(args, extra...)
}

// startOperator runs a manager process until the test ends or it is killed.
func startOperator(t testing.TB, name string, extra ...string) *operator {
	t.Helper()
	env.mu.Lock()
	env.seq++
	logPath := filepath.Join(env.dir, "logs", fmt.Sprintf("%03d-%s.log", env.seq, name))
	env.logs = append(env.logs, logPath)
	env.mu.Unlock()
	p, err := testutil.StartProcess(exec.Command(env.manager, env.args(extra...)...), logPath)
	if err != nil {
		t.Fatal(err)
	}
	op := &operator{Process: p, name: name}
	t.Cleanup(op.stop)
	return op
}

// waitStarted waits until the operator's controller runs: its services
// are connected and its caches synced.
func (o *operator) waitStarted(t testing.TB) {
	t.Helper()
	testutil.EventuallyEvery(t, poll, 2*time.Minute, o.name+" to start its controller", func() (bool, string) {
		assertAlive(t, o)
		return strings.Contains(o.Log(), "Starting workers"), "not started"
	})
}

// stop asks the process to end and kills it if it does not.
func (o *operator) stop() { o.Stop(20 * time.Second) }

// crashed reports an exit the test did not cause, with the log's tail.
func (o *operator) crashed() (bool, string) {
	if !o.Exited() || o.Signalled() {
		return false, ""
	}
	return true, fmt.Sprintf("operator %s exited on its own (%v); log tail:\n%s", o.name, o.Err(), o.Tail(40))
}

// summary gathers the figures every scenario reports, printed at the end
// and recorded in docs/reliability.md.
type summary struct {
	mu          sync.Mutex
	kills       map[string]int
	outages     []string
	provisioned int
	deleted     int
	badInputs   struct{ total, refused, admission, invalidSpec, conflict, harmless int }
	isolation   struct{ pairs, denied int }
	figures     []string
}

func (s *summary) kill(scenario string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kills == nil {
		s.kills = map[string]int{}
	}
	s.kills[scenario]++
}

func (s *summary) outage(what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outages = append(s.outages, what)
}

func (s *summary) orgs(provisioned, deleted int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.provisioned += provisioned
	s.deleted += deleted
}

func (s *summary) figure(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.figures = append(s.figures, fmt.Sprintf(format, args...))
}

func (s *summary) print(w *os.File, scale string, leaks, orphans []string, hygiene string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	total := 0
	var kills []string
	for k, n := range s.kills {
		total += n
		kills = append(kills, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(kills)
	b := &s.badInputs
	fmt.Fprintf(w, "\n=== orgforge chaos summary (%s) ===\n", scale)
	fmt.Fprintf(w, "kills survived:       %d (%s)\n", total, strings.Join(kills, ", "))
	fmt.Fprintf(w, "outages survived:     %d (%s)\n", len(s.outages), strings.Join(s.outages, ", "))
	fmt.Fprintf(w, "orgs provisioned:     %d\n", s.provisioned)
	fmt.Fprintf(w, "orgs deleted:         %d\n", s.deleted)
	fmt.Fprintf(w, "orphans found:        %d\n", len(orphans))
	fmt.Fprintf(w, "secrets leaked:       %d (%s)\n", len(leaks), hygiene)
	fmt.Fprintf(w, "bad inputs rejected:  %d/%d (admission %d, InvalidSpec %d, Conflict %d); dangerous names provisioned harmlessly: %d\n",
		b.refused, b.total, b.admission, b.invalidSpec, b.conflict, b.harmless)
	fmt.Fprintf(w, "isolation:            %d/%d cross-tenant attempts denied\n", s.isolation.denied, s.isolation.pairs)
	for _, f := range s.figures {
		fmt.Fprintf(w, "  %s\n", f)
	}
	fmt.Fprintln(w)
}
