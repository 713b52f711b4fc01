package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/devstack"
)

// Application names that tell the operator's sessions from the raw loop's
// and the bench's own in pg_stat_activity and the server log.
const (
	appOperator = "orgforge"
	appRaw      = "orgforge-raw"
	appBench    = "orgforge-bench"
)

// env is one side's stack and the bench's handles on it.
type env struct {
	st *devstack.Stack
	su *pgx.Conn
	// postmaster is PostgreSQL's main process, ended at once by close.
	postmaster int
	log        *pgLog
	sampler    *connSampler

	// fleet are the stack's extra servers, the fleet scenario's clusters.
	fleet []fleetServer

	// Kubernetes, for the operator side only.
	kube      client.WithWatch
	clientset *kubernetes.Clientset
}

// fleetServer is one of the stack's extra PostgreSQL servers and the
// bench's superuser session on it.
type fleetServer struct {
	pg         *devstack.Postgres
	su         *pgx.Conn
	postmaster int
}

// startEnv starts a fresh stack in dir: PostgreSQL with fsync on and every
// DDL statement logged with its session's application_name, versitygw, and
// the control plane when kube is set.
func startEnv(ctx context.Context, o *options, dir string, kube bool) (*env, error) {
	return startEnvWith(ctx, o, dir, kube, 0)
}

// startEnvWith is startEnv with clusters more PostgreSQL servers, set up
// as the first one is: the fleet's (fleet.go).
func startEnvWith(ctx context.Context, o *options, dir string, kube bool, clusters int) (_ *env, err error) {
	pgOpts := devstack.PostgresOptions{
		Durable: true,
		Settings: map[string]string{
			"log_statement":   "ddl",
			"log_line_prefix": "%m [%p] app=%a ",
		},
		BaseDir: o.pgBase,
	}
	opts := devstack.Options{
		Dir:             dir,
		Kube:            kube,
		CRDPaths:        []string{o.crdDir},
		Postgres:        true,
		PostgresOptions: pgOpts,
		S3:              true,
	}
	for range clusters {
		opts.Clusters = append(opts.Clusters, pgOpts)
	}
	st, err := devstack.Start(ctx, opts)
	if err != nil {
		return nil, err
	}
	e := &env{st: st, log: &pgLog{path: st.Postgres.LogPath}}
	defer func() {
		if err != nil {
			_ = e.close()
		}
	}()
	if e.su, err = connectSuperuser(ctx, st.Postgres); err != nil {
		return nil, err
	}
	e.postmaster = postmasterOf(ctx, e.su)
	for _, pg := range st.Clusters {
		conn, err := connectSuperuser(ctx, pg)
		if err != nil {
			return nil, err
		}
		e.fleet = append(e.fleet, fleetServer{pg: pg, su: conn, postmaster: postmasterOf(ctx, conn)})
	}
	sampleConn, err := connectSuperuser(ctx, st.Postgres)
	if err != nil {
		return nil, err
	}
	e.sampler = startConnSampler(sampleConn, 25*time.Millisecond)
	if kube {
		cfg := rest.CopyConfig(st.Kube.Config)
		// The bench's own client must never be what limits the apply rate.
		cfg.QPS, cfg.Burst = -1, 0
		scheme := runtime.NewScheme()
		if err := tenancyv1alpha1.AddToScheme(scheme); err != nil {
			return nil, err
		}
		// The floor side writes Namespaces and Secrets with it.
		if err := clientgoscheme.AddToScheme(scheme); err != nil {
			return nil, err
		}
		if e.kube, err = client.NewWithWatch(cfg, client.Options{Scheme: scheme}); err != nil {
			return nil, err
		}
		if e.clientset, err = kubernetes.NewForConfig(cfg); err != nil {
			return nil, err
		}
	}
	// The previous stack's data goes before anything is measured.
	discarded.Wait()
	return e, nil
}

// postmasterOf finds the main process of the server conn is connected to:
// the parent of its backend. It is 0 when it cannot be read.
func postmasterOf(ctx context.Context, conn *pgx.Conn) int {
	var backend int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", backend))
	if err != nil {
		return 0
	}
	pe, err := parseProcStat(string(b))
	if err != nil {
		return 0
	}
	pm, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pe.ppid))
	if err != nil {
		return 0
	}
	if pp, err := parseProcStat(string(pm)); err == nil && pp.comm == "postgres" {
		return pp.pid
	}
	return 0
}

func connectSuperuser(ctx context.Context, pg *devstack.Postgres) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(pg.SuperuserDSN("postgres"))
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams["application_name"] = appBench
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return pgx.ConnectConfig(cctx, cfg)
}

func (e *env) close() error {
	if e.sampler != nil {
		e.sampler.close()
	}
	closeConn := func(c *pgx.Conn) {
		if c == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = c.Close(ctx)
		cancel()
	}
	closeConn(e.su)
	// The data is thrown away, so PostgreSQL may skip the shutdown
	// checkpoint, which after hundreds of CREATE DATABASE takes tens of
	// seconds: SIGQUIT is its immediate shutdown. The stack's Close then
	// finds it ended.
	quit := func(pg *devstack.Postgres, postmaster int) {
		if postmaster > 0 {
			_ = syscall.Kill(postmaster, syscall.SIGQUIT)
		}
		// Moved only once the server has ended: Stop waits for it (a
		// fast shutdown when the SIGQUIT above was not sent).
		if err := pg.Stop(); err == nil {
			discard(pg.DataDir())
		}
	}
	for _, f := range e.fleet {
		closeConn(f.su)
		quit(f.pg, f.postmaster)
	}
	if pg := e.st.Postgres; pg != nil {
		quit(pg, e.postmaster)
	}
	return e.st.Close()
}

// discarded counts the folders being removed in the background.
var discarded sync.WaitGroup

// discard moves a stopped stack's PostgreSQL data aside and removes it in
// the background. After hundreds of CREATE DATABASE it holds about 150,000
// files and 4.5 GiB, which took this machine's disk 13.6 s to delete;
// startEnv waits for the removal once the next stack is up, so it overlaps
// that start-up and never a measured phase. Should the move fail, the
// folder stays where it was, for whoever removed it before: the stack's
// Close, or the run's work folder.
func discard(dir string) {
	aside, err := os.MkdirTemp(filepath.Dir(filepath.Dir(dir)), "orgforge-bench-discarded-")
	if err != nil {
		return
	}
	if err := os.Rename(dir, filepath.Join(aside, "data")); err != nil {
		_ = os.Remove(aside)
		return
	}
	discarded.Add(1)
	go func() {
		defer discarded.Done()
		if err := os.RemoveAll(aside); err != nil {
			logf("Warning: removing a finished stack's PostgreSQL data: %v", err)
		}
	}()
}

// connSampler polls pg_stat_activity and keeps, per application_name, the
// most sessions seen at once since the last reset, and how many were
// active (the server working on a statement) or idle (the server waiting
// for the client, or the session idle in its pool) on average.
type connSampler struct {
	conn *pgx.Conn
	mu   sync.Mutex
	peak map[string]int
	// active and idle sum, per application, the sessions in each state over
	// the polls since the last reset, which window counts; adminActive sums
	// the active ones connected to the admin database (the admin pool's; the
	// others are in tenants' databases).
	active, idle, adminActive map[string]int
	window                    int
	stop                      chan struct{}
	done                      chan struct{}
}

func startConnSampler(conn *pgx.Conn, every time.Duration) *connSampler {
	s := &connSampler{conn: conn, stop: make(chan struct{}), done: make(chan struct{})}
	s.reset()
	go s.loop(every)
	return s
}

func (s *connSampler) loop(every time.Duration) {
	defer close(s.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		rows, err := s.conn.Query(ctx, `SELECT application_name, count(*)::int, (count(*) FILTER (WHERE state = 'active'))::int,
				(count(*) FILTER (WHERE state = 'active' AND datname = $3))::int
			FROM pg_stat_activity WHERE backend_type = 'client backend' AND application_name IN ($1, $2) GROUP BY 1`,
			appOperator, appRaw, devstack.AdminDatabase)
		counts, active, adminActive := map[string]int{}, map[string]int{}, map[string]int{}
		if err == nil {
			for rows.Next() {
				var app string
				var n, a, aa int
				if rows.Scan(&app, &n, &a, &aa) == nil {
					counts[app], active[app], adminActive[app] = n, a, aa
				}
			}
			rows.Close()
			err = rows.Err()
		}
		cancel()
		if err != nil {
			continue
		}
		s.mu.Lock()
		s.window++
		for app, n := range counts {
			s.peak[app] = max(s.peak[app], n)
			s.active[app] += active[app]
			s.idle[app] += n - active[app]
			s.adminActive[app] += adminActive[app]
		}
		s.mu.Unlock()
	}
}

// reset starts a new window.
func (s *connSampler) reset() {
	s.mu.Lock()
	s.peak, s.active, s.idle, s.adminActive, s.window = map[string]int{}, map[string]int{}, map[string]int{}, map[string]int{}, 0
	s.mu.Unlock()
}

// sessionsOf is the mean number of app's sessions active and idle over the
// polls since the last reset; nil before the first poll.
func (s *connSampler) sessionsOf(app string) *Sessions {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.window == 0 {
		return nil
	}
	n := float64(s.window)
	return &Sessions{Active: round(float64(s.active[app])/n, 2), Idle: round(float64(s.idle[app])/n, 2),
		AdminActive: round(float64(s.adminActive[app])/n, 2), Samples: s.window}
}

// peakOf is the most sessions of app seen at once since the last reset.
func (s *connSampler) peakOf(app string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak[app]
}

func (s *connSampler) close() {
	close(s.stop)
	<-s.done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.conn.Close(ctx)
}

// pgLog reads the server's log, where log_statement=ddl writes every DDL
// statement with its session's application_name.
type pgLog struct{ path string }

// mark is the log's current end.
func (l *pgLog) mark() int64 {
	fi, err := os.Stat(l.path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// ddlSince counts, per application_name, the statements logged after
// offset from: outside the steady state's window only DDL is logged.
func (l *pgLog) ddlSince(from int64) (map[string]int, error) {
	byKind, err := l.sqlSince(from)
	if err != nil {
		return nil, err
	}
	return sumKinds(byKind), nil
}

// countDDL counts the statement lines of a log written with
// log_line_prefix '%m [%p] app=%a ', per application name.
func countDDL(r io.Reader) (map[string]int, error) {
	byKind, err := countSQL(r)
	return sumKinds(byKind), err
}

// sumKinds is the statements of each application over every kind.
func sumKinds(byKind map[string]map[string]int) map[string]int {
	counts := map[string]int{}
	for app, kinds := range byKind {
		for _, n := range kinds {
			counts[app] += n
		}
	}
	return counts
}

// serverVersions asks PostgreSQL and the apiserver for their versions.
func (e *env) serverVersions(ctx context.Context) (pg, kube string) {
	if err := e.su.QueryRow(ctx, "SELECT version()").Scan(&pg); err != nil {
		pg = fmt.Sprintf("unknown (%v)", err)
	}
	if e.clientset != nil {
		if v, err := e.clientset.Discovery().ServerVersion(); err == nil {
			kube = v.GitVersion
		} else {
			kube = fmt.Sprintf("unknown (%v)", err)
		}
	}
	return pg, kube
}
