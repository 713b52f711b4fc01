// Package aurora is the registry's PostgreSQL service, the seed's
// AuroraService: it gives each Organization a login role and a database on an
// Aurora PostgreSQL cluster (or any PostgreSQL 13 to 17), as an admin login
// that has CREATEDB and CREATEROLE but is not a superuser.
//
// A tenant's database is its own because PUBLIC may not connect to it: only
// its owner, the tenant's role, may (and the admin, a member of that role,
// and superusers). From PostgreSQL 15 the tenant also owns its schema public,
// which PUBLIC may not create in. Before 15 schema public belongs to the
// bootstrap superuser (rdsadmin on Aurora) and PUBLIC may create in it, as in
// every database of those versions; neither the admin nor the tenant can
// change that, so it stays: the tenant, the only one who may connect, uses
// schema public just as on 15. What differs between majors is in
// versionRules, and nowhere else.
//
// Every provisioning call observes the server before it acts, so that calling
// it again changes nothing and runs no DDL. Objects are marked as the
// Organization's with a comment (see Marker); anything without the marker is
// left alone. All the connections the service opens, to the admin database
// and to tenant databases, stay within Config.MaxConnections.
package aurora

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgforge/orgforge/internal/retry"
)

// Config is how the service reaches the cluster.
type Config struct {
	// AdminDSN is the admin login's connection string. It is a secret: the
	// service never logs it nor puts it in an error.
	AdminDSN string
	// MaxConnections caps all the connections the service holds, the admin
	// pool and the tenant databases' pools together. Default 4, minimum 2.
	MaxConnections int32
	// ApplicationName is set as application_name on every connection, so
	// that the operator's sessions can be told apart. Default "orgforge".
	ApplicationName string
	// ConnectTimeout bounds establishing one connection. Default 5s.
	ConnectTimeout time.Duration
	// StatementTimeout bounds each attempt of an operation, and is set as
	// the server's statement_timeout. Default 30s.
	StatementTimeout time.Duration
	// Retry is how transient failures are retried. Default
	// retry.DefaultPolicy.
	Retry retry.Policy
}

// Defaults of Config.
const (
	DefaultMaxConnections   = 4
	DefaultApplicationName  = "orgforge"
	DefaultConnectTimeout   = 5 * time.Second
	DefaultStatementTimeout = 30 * time.Second
)

// withDefaults fills in the zero fields.
func (c Config) withDefaults() Config {
	if c.MaxConnections == 0 {
		c.MaxConnections = DefaultMaxConnections
	}
	if c.ApplicationName == "" {
		c.ApplicationName = DefaultApplicationName
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.StatementTimeout <= 0 {
		c.StatementTimeout = DefaultStatementTimeout
	}
	if c.Retry.Attempts == 0 {
		c.Retry = retry.DefaultPolicy
	}
	return c
}

// Service is the PostgreSQL service. It is safe for concurrent use.
type Service struct {
	cfg Config
	log logr.Logger
	// endpoint is host:port; who adds the admin user, for errors.
	endpoint string
	who      string

	admin *pgxpool.Pool
	// orgConfig is the template of the tenant databases' pools.
	orgConfig *pgxpool.Config
	orgs      *orgPools

	// rules is what differs between PostgreSQL majors, learnt once.
	rules versionRules
	ddl   atomic.Int64
	// statements counts every query sent (see Statements).
	statements atomic.Int64
	// snaps is the catalog snapshot AtRest reads.
	snaps snapshots
}

// AdminConnections is how many of maxConnections the admin pool gets; the
// rest are for sessions in tenants' databases.
func AdminConnections(maxConnections int32) int32 { return max(1, maxConnections/2) }

// New connects to the cluster and checks that the admin login can do its
// work. It fails, within about twice the connect timeout, with an error that
// names the service, the endpoint and the admin user, and never the DSN.
func New(ctx context.Context, cfg Config, log logr.Logger) (*Service, error) {
	cfg = cfg.withDefaults()
	pc, err := parseAdminDSN(cfg.AdminDSN)
	if err != nil {
		return nil, err
	}
	s := &Service{
		cfg:      cfg,
		log:      log,
		endpoint: net.JoinHostPort(pc.ConnConfig.Host, strconv.Itoa(int(pc.ConnConfig.Port))),
	}
	s.who = s.endpoint + "/" + pc.ConnConfig.User
	fail := func(err error) (*Service, error) {
		s.Close()
		return nil, fmt.Errorf("aurora: %s: %w", s.who, err)
	}
	if cfg.MaxConnections < 2 {
		return fail(fmt.Errorf("%w: MaxConnections is %d; it must be at least 2, one admin and one tenant connection",
			ErrInvalid, cfg.MaxConnections))
	}

	adminSlots := AdminConnections(cfg.MaxConnections)
	pc.ConnConfig.ConnectTimeout = cfg.ConnectTimeout
	pc.ConnConfig.RuntimeParams["application_name"] = cfg.ApplicationName
	pc.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(cfg.StatementTimeout.Milliseconds(), 10)
	pc.MinConns = 0
	pc.MinIdleConns = 0
	pc.MaxConnIdleTime = 5 * time.Minute
	pc.BeforeClose = func(c *pgx.Conn) { awaitServerClose(c, cfg.ConnectTimeout) }
	pc.ConnConfig.Tracer = statementCounter{&s.statements}
	s.orgConfig = pc.Copy()
	s.orgConfig.MaxConns = 1
	s.orgConfig.MaxConnIdleTime = time.Minute
	pc.MaxConns = adminSlots
	s.orgs = newOrgPools(int(cfg.MaxConnections-adminSlots), s.newOrgPool)
	if s.admin, err = pgxpool.NewWithConfig(ctx, pc); err != nil {
		return fail(fmt.Errorf("creating the connection pool: %w", err))
	}

	// A refused connection is retried a few times, in case the server is
	// restarting; a wrong password is not. The whole check is bounded, so
	// that a cluster that does not answer fails start-up quickly.
	startCtx, cancel := context.WithTimeout(ctx, 2*cfg.ConnectTimeout)
	defer cancel()
	err = retry.Do(startCtx, log, cfg.Retry, Classify, "connect", func(ctx context.Context) error {
		return s.admin.Ping(ctx)
	})
	if err != nil {
		return fail(fmt.Errorf("connecting: %w", err))
	}
	if err := s.checkAdmin(startCtx); err != nil {
		return fail(err)
	}
	log.Info("Connected to PostgreSQL", "endpoint", s.endpoint, "user", pc.ConnConfig.User,
		"maxConnections", cfg.MaxConnections, "adminConnections", adminSlots)
	return s, nil
}

// ValidateConfig checks cfg without connecting: the admin DSN parses and
// MaxConnections, if set, leaves room for one admin and one tenant
// connection. A configuration that fails it is a mistake to fix, not an
// outage to wait out.
func ValidateConfig(cfg Config) error {
	if _, err := parseAdminDSN(cfg.AdminDSN); err != nil {
		return err
	}
	if cfg.MaxConnections != 0 && cfg.MaxConnections < 2 {
		return fmt.Errorf("aurora: %w: MaxConnections is %d; it must be at least 2, one admin and one tenant connection",
			ErrInvalid, cfg.MaxConnections)
	}
	return nil
}

func parseAdminDSN(dsn string) (*pgxpool.Config, error) {
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The parser's error may quote the DSN, password and all.
		return nil, fmt.Errorf("aurora: %w: the admin DSN is not a valid PostgreSQL connection string", ErrInvalid)
	}
	return pc, nil
}

// checkAdmin verifies the admin's CREATEDB and CREATEROLE, and learns the
// server's version.
func (s *Service) checkAdmin(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StatementTimeout)
	defer cancel()
	var super, createDB, createRole bool
	var version int
	err := s.admin.QueryRow(ctx, `SELECT r.rolsuper, r.rolcreatedb, r.rolcreaterole,
			current_setting('server_version_num')::int
		FROM pg_roles r WHERE r.rolname = current_user`).Scan(&super, &createDB, &createRole, &version)
	if err != nil {
		return fmt.Errorf("checking the admin's privileges: %w", err)
	}
	var missing []string
	if !createDB {
		missing = append(missing, "CREATEDB")
	}
	if !createRole {
		missing = append(missing, "CREATEROLE")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: the admin role lacks %s; orgforge needs a login with CREATEDB and CREATEROLE, such as the Aurora master user",
			ErrPrivilege, joinAnd(missing))
	}
	if super {
		s.log.Info("Admin role is a superuser; orgforge needs only CREATEDB and CREATEROLE", "endpoint", s.endpoint)
	}
	s.rules = rulesFor(version)
	return nil
}

// versionRules is everything the service does differently on different
// PostgreSQL majors (13 to 17, the ones Aurora runs). rulesFor is the only
// place that reads the server's version.
type versionRules struct {
	// memberPrivilege is what pg_has_role must grant the admin over a
	// tenant role to create a database it owns: membership up to
	// PostgreSQL 15, the SET option from 16, where a role's creator gets
	// ADMIN on it but not SET.
	memberPrivilege string
	// securesSchemaPublic tells whether SecureDatabase makes schema
	// public the tenant's and closes it to PUBLIC. From PostgreSQL 15,
	// schema public of a new database belongs to pg_database_owner, so
	// the database's owner, and the admin through it, may do that. Before
	// 15 it belongs to the bootstrap superuser (rdsadmin on Aurora) and
	// PUBLIC may create in it; only a superuser can change either, so
	// SecureDatabase leaves it as it is. The database is still the
	// tenant's alone, since PUBLIC may not connect to it.
	securesSchemaPublic bool
	// reservedConnections tells whether the server has the setting
	// reserved_connections, slots kept for roles granted
	// pg_use_reserved_connections, which PostgreSQL 16 added.
	reservedConnections bool
}

// rulesFor returns the rules of a server whose server_version_num is
// version.
func rulesFor(version int) versionRules {
	r := versionRules{memberPrivilege: "MEMBER", securesSchemaPublic: true}
	if version < 150000 {
		r.securesSchemaPublic = false
	}
	if version >= 160000 {
		r.memberPrivilege = "SET"
		r.reservedConnections = true
	}
	return r
}

func (s *Service) newOrgPool(db string) (*pgxpool.Pool, error) {
	c := s.orgConfig.Copy()
	c.ConnConfig.Database = db
	// MinConns is zero, so this does not connect; the first Acquire does.
	return pgxpool.NewWithConfig(context.Background(), c)
}

// awaitServerClose ends a session and waits, up to timeout, for the server
// to close its end. pgx's Close sends Terminate and hangs up at once, so the
// server's backend could outlive it for a moment, and a connection opened
// right after would briefly exceed the cap on the server, where it counts
// against max_connections. The server closes the socket only once its
// backend has left pg_stat_activity.
func awaitServerClose(c *pgx.Conn, timeout time.Duration) {
	if c.IsClosed() {
		return
	}
	nc := c.PgConn().Conn()
	if err := nc.SetDeadline(time.Now().Add(timeout)); err != nil {
		return
	}
	terminate := []byte{'X', 0, 0, 0, 4}
	if _, err := nc.Write(terminate); err != nil {
		return
	}
	// Reads until the server hangs up (EOF) or the deadline passes; then
	// pgx's own Close finds a dead socket and just closes it.
	_, _ = io.Copy(io.Discard, nc)
}

// Name is the service's name in the registry, logs and readyz.
func (*Service) Name() string { return "aurora" }

// Endpoint is the cluster's host:port, for logs and status.
func (s *Service) Endpoint() string { return s.endpoint }

// HealthCheck pings the cluster.
func (s *Service) HealthCheck(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout+s.cfg.StatementTimeout)
	defer cancel()
	if err := s.admin.Ping(ctx); err != nil {
		return fmt.Errorf("aurora: %s: ping: %w", s.endpoint, err)
	}
	return nil
}

// Close closes every connection. Tenant pools still held by a caller close
// when released.
func (s *Service) Close() {
	if s.orgs != nil {
		s.orgs.close()
	}
	if s.admin != nil {
		s.admin.Close()
	}
}

// DDLCount is the number of DDL statements the service has sent. A resync
// that finds everything in place sends none.
func (s *Service) DDLCount() int64 { return s.ddl.Load() }

// Statements is the number of SQL statements the service has sent, on the
// admin connections and in tenants' databases, DDL included; pings are
// not counted.
func (s *Service) Statements() int64 { return s.statements.Load() }

// statementCounter counts the queries pgx starts on a connection.
type statementCounter struct{ n *atomic.Int64 }

func (c statementCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}

func (statementCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// execer is a pool, a connection or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// querier is a pool or a connection.
type querier interface {
	execer
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// staleAttempts bounds withAdminConn's attempts.
const staleAttempts = 3

// staleMembershipError marks a refusal (SQLSTATE 42501) of a statement that
// needed the admin's membership in a role, after that membership was
// confirmed on the same session.
type staleMembershipError struct{ err error }

func (e *staleMembershipError) Error() string { return e.err.Error() }
func (e *staleMembershipError) Unwrap() error { return e.err }

// refusedDespiteMembership wraps err as a staleMembershipError when it is a
// 42501; the caller has confirmed the admin's membership on this session.
func refusedDespiteMembership(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42501" { // insufficient_privilege
		return &staleMembershipError{err: err}
	}
	return err
}

// withAdminConn runs fn on one admin connection, so that a database's
// checks, creation and comment see one session's view. PostgreSQL caches in
// each session the roles its user belongs to. A GRANT committed by another
// session while that cache is being rebuilt can be missed, and the session
// then refuses ("must be member of role", "must be owner of database")
// until something else clears its cache. When fn reports such a refusal
// after confirming the membership (refusedDespiteMembership), fn runs again
// on another connection and the suspect one is closed. Any other error,
// permission errors included, is returned at once.
func (s *Service) withAdminConn(ctx context.Context, fn func(querier) error) error {
	for attempt := 1; ; attempt++ {
		conn, err := s.admin.Acquire(ctx)
		if err != nil {
			return err
		}
		err = fn(conn)
		var stale *staleMembershipError
		if attempt < staleAttempts && errors.As(err, &stale) {
			// The connection keeps its pool slot until it has ended on
			// the server; released closed, the pool then destroys it.
			c := conn.Conn()
			awaitServerClose(c, s.cfg.ConnectTimeout)
			_ = c.Close(ctx)
			conn.Release()
			s.log.V(1).Info("Refused in spite of the admin's membership; retrying on a new connection", "attempt", attempt)
			continue
		}
		conn.Release()
		return err
	}
}

// execDDL sends one DDL statement, counting it. The statement may hold a
// verifier, so it never goes into a log or an error.
func (s *Service) execDDL(ctx context.Context, q execer, stmt string) error {
	s.ddl.Add(1)
	_, err := q.Exec(ctx, stmt)
	return err
}

// run runs an idempotent operation, each attempt bounded by the statement
// timeout, retrying transient failures.
func (s *Service) run(ctx context.Context, operation string, fn func(context.Context) error) error {
	return retry.Do(ctx, s.log, s.cfg.Retry, Classify, operation, retry.Within(s.cfg.StatementTimeout, fn))
}

// runValue is run for an operation with a result: that of the attempt that
// succeeded, or the zero value and the error.
func runValue[T any](ctx context.Context, s *Service, operation string, fn func(context.Context) (T, error)) (T, error) {
	var out T
	if err := s.run(ctx, operation, retry.Into(&out, fn)); err != nil {
		var zero T
		return zero, err
	}
	return out, nil
}

// onAdminConn is withAdminConn for fn with a result.
func onAdminConn[T any](ctx context.Context, s *Service, fn func(querier) (T, error)) (T, error) {
	var out T
	err := s.withAdminConn(ctx, func(q querier) error {
		var err error
		out, err = fn(q)
		return err
	})
	return out, err
}

// OrgPool returns the pool of connections, as the admin, to database db, and
// a func to call when done with it. Pools are kept in a bounded LRU: the
// least recently used idle one is closed to open another, and when every
// pool is in use OrgPool waits, until ctx ends, for one to be released. A
// pool holds at most one connection.
func (s *Service) OrgPool(ctx context.Context, db string) (*pgxpool.Pool, func(), error) {
	if err := validName("database", db); err != nil {
		return nil, nil, err
	}
	return s.orgs.acquire(ctx, db)
}

func joinAnd(words []string) string {
	switch len(words) {
	case 0:
		return ""
	case 1:
		return words[0]
	}
	out := words[0]
	for _, w := range words[1 : len(words)-1] {
		out += ", " + w
	}
	return out + " and " + words[len(words)-1]
}
