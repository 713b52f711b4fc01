package aurora

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/go-logr/logr/testr"
	"github.com/jackc/pgx/v5"

	"github.com/orgforge/orgforge/internal/credentials"
	"github.com/orgforge/orgforge/internal/devstack"
	"github.com/orgforge/orgforge/internal/testutil"
)

// pg is the package's PostgreSQL server, shared by every test.
var pg *devstack.Postgres

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	flag.Parse()
	// Fuzzing workers run only the fuzz targets, which need no server.
	if f := flag.Lookup("test.fuzzworker"); f != nil && f.Value.String() == "true" {
		return m.Run()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "orgforge-aurora-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	if pg, err = devstack.StartPostgres(ctx, dir, devstack.PostgresOptions{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = pg.Close() }()
	return m.Run()
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// newService connects a service to the package's server as its admin.
func newService(t *testing.T, mods ...func(*Config)) *Service {
	t.Helper()
	cfg := Config{AdminDSN: pg.AdminDSN()}
	for _, mod := range mods {
		mod(&cfg)
	}
	svc, err := New(testContext(t), cfg, testr.New(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(svc.Close)
	return svc
}

// setUp is how most tests begin: a service, a context and a tenant of
// which nothing exists yet.
func setUp(t *testing.T) (*Service, context.Context, tenant) {
	t.Helper()
	return newService(t), testContext(t), newTenant(t)
}

// startPostgres starts a server of the test's own, to stop and start.
func startPostgres(t *testing.T) *devstack.Postgres {
	t.Helper()
	server, err := devstack.StartPostgres(testContext(t), t.TempDir(), devstack.PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Close() })
	return server
}

// superuser connects as the server's superuser, to look at the world, or to
// set up what orgforge did not make.
func superuser(t *testing.T, db string) *pgx.Conn {
	t.Helper()
	return testutil.Superuser(t, pg, db)
}

// serverVersion is the test server's server_version_num.
func serverVersion(t *testing.T) int {
	t.Helper()
	var v int
	if err := superuser(t, "postgres").QueryRow(testContext(t), "SELECT current_setting('server_version_num')::int").Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func mustExec(t *testing.T, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(testContext(t), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// tenant is one Organization's names and password.
type tenant struct {
	name     string // role and database
	marker   Marker
	password string
	verifier string
}

func newTenant(t *testing.T) tenant {
	t.Helper()
	suffix := randomHex(t, 4)
	pw, v := newPassword(t)
	return tenant{
		name:     "org_t" + suffix,
		marker:   Marker{Org: "t" + suffix, UID: randomHex(t, 8) + "-" + randomHex(t, 4)},
		password: pw,
		verifier: v,
	}
}

// newPassword returns a new password and its verifier.
func newPassword(t *testing.T) (password, verifier string) {
	t.Helper()
	password, err := credentials.NewPassword()
	if err == nil {
		verifier, err = credentials.SCRAMVerifier(password)
	}
	if err != nil {
		t.Fatal(err)
	}
	return password, verifier
}

func (tn tenant) roleSpec() RoleSpec {
	return RoleSpec{Name: tn.name, Marker: tn.marker, Verifier: tn.verifier, ConnLimit: 5}
}

// ensureRole creates tenant tn's role, the controller's first step.
func ensureRole(t *testing.T, svc *Service, tn tenant) {
	t.Helper()
	if _, err := svc.EnsureRole(testContext(t), tn.roleSpec()); err != nil {
		t.Fatalf("EnsureRole: %v", err)
	}
}

// provision runs the steps the controller runs for a new Organization.
func provision(t *testing.T, svc *Service, tn tenant) {
	t.Helper()
	ctx := testContext(t)
	ensureRole(t, svc, tn)
	if _, err := svc.EnsureDatabase(ctx, tn.name, tn.name, tn.marker); err != nil {
		t.Fatalf("EnsureDatabase: %v", err)
	}
	if _, err := svc.SecureDatabase(ctx, tn.name, tn.name); err != nil {
		t.Fatalf("SecureDatabase: %v", err)
	}
}

// DatabaseInfo is what Inspect observes of a database.
type DatabaseInfo struct {
	Exists bool
	Owner  string
	// Comment is the database's comment; Marker is it parsed, when
	// HasMarker.
	Comment   string
	Marker    Marker
	HasMarker bool
	// ConnLimit is the owner role's connection limit.
	ConnLimit int32
	SizeBytes int64
}

// Inspect reports on database name; a missing database is not an error. It
// is the tests' view of a database: the reconciler needs none, since
// EnsureDatabase and DropDatabase observe the database themselves.
func (s *Service) Inspect(ctx context.Context, name string) (DatabaseInfo, error) {
	db, err := s.observeDatabase(ctx, s.admin, name)
	if err != nil || !db.exists {
		return DatabaseInfo{}, err
	}
	owner, err := s.observeRole(ctx, s.admin, db.owner)
	if err != nil {
		return DatabaseInfo{}, err
	}
	info := DatabaseInfo{Exists: true, Owner: db.owner, Comment: db.comment, ConnLimit: owner.connLimit}
	info.Marker, info.HasMarker = ParseMarker(db.comment)
	err = s.admin.QueryRow(ctx, "SELECT pg_database_size($1)", name).Scan(&info.SizeBytes)
	return info, err
}

// connectAs logs in as a tenant.
func connectAs(ctx context.Context, user, password, db string) (*pgx.Conn, error) {
	return pgx.Connect(ctx, pg.DSN(user, password, db))
}

// logBuffer is a logger that keeps every line, to check what was logged.
type logBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (b *logBuffer) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.lines = append(b.lines, prefix+" "+args)
	}, funcr.Options{Verbosity: 10})
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n")
}
