package devstack

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orgforge/orgforge/internal/credentials"
)

// Names of the Aurora-like roles the stack creates.
const (
	// AdminUser is the operator's login: NOSUPERUSER CREATEDB CREATEROLE,
	// member of rds_superuser, as the master user of an Aurora cluster.
	AdminUser = "orgforge_admin"
	// superUser is the bootstrap superuser; only the harness uses it.
	superUser = "postgres"
	// serverUser runs initdb and the server when the stack runs as root,
	// which both refuse. nobody exists on every Linux system, unlike the
	// postgres user that a distribution's server package creates.
	serverUser = "nobody"
)

// PostgresOptions tunes the test server.
type PostgresOptions struct {
	// Durable keeps fsync on, as in production; tests turn it off for speed.
	Durable bool
	// Settings are extra server settings, for example log_statement=all.
	Settings map[string]string
	// BaseDir, when set, holds the server's folder instead of the stack's
	// folder or, when running as root, the system's temporary folder: for
	// example a filesystem of its own, as a database server has. As root
	// it must be traversable by the server's user, nobody.
	BaseDir string
	// Major runs the server on that PostgreSQL major, with binaries from
	// ORGFORGE_PG_BINS or else hack/tools.sh; 0 is the default major's,
	// from ORGFORGE_PG_BIN.
	Major int
}

// Postgres is a PostgreSQL server, from the binaries hack/tools.sh installs
// (or any others named by ORGFORGE_PG_BIN or ORGFORGE_PG_BINS), run from a temporary data folder
// on a loopback port.
type Postgres struct {
	Host          string
	Port          int
	AdminPassword string
	// LogPath is the server's log file.
	LogPath string

	base      string
	dataDir   string
	socketDir string
	bin       string
	cred      *syscall.Credential
	opts      PostgresOptions
	proc      *process
	ownsBase  bool
}

// StartPostgres initialises a cluster under dir (or a private temporary
// folder when running as root, because the server then runs as nobody),
// starts it and creates the Aurora-like admin.
func StartPostgres(ctx context.Context, dir string, opts PostgresOptions) (*Postgres, error) {
	bin, err := postgresBin(opts.Major)
	if err != nil {
		return nil, err
	}
	p := &Postgres{Host: "127.0.0.1", bin: bin, opts: opts}
	if os.Geteuid() == 0 {
		if p.cred, err = systemUser(serverUser); err != nil {
			return nil, fmt.Errorf("postgres: running as root, the server runs as %s: %w", serverUser, err)
		}
	}
	if err := p.makeFolders(dir); err != nil {
		return nil, err
	}
	if p.Port, err = freePort(); err != nil {
		return nil, err
	}
	if p.AdminPassword, err = credentials.NewPassword(); err != nil {
		return nil, err
	}
	if err := p.initdb(); err != nil {
		p.cleanup()
		return nil, err
	}
	if err := p.Start(ctx); err != nil {
		p.cleanup()
		return nil, err
	}
	if err := p.bootstrap(ctx); err != nil {
		_ = p.Close()
		return nil, err
	}
	return p, nil
}

// makeFolders makes the server's base folder, its data and socket folders,
// owned by the server's user, and sets the log's path.
func (p *Postgres) makeFolders(dir string) error {
	if err := p.makeBase(dir); err != nil {
		return err
	}
	p.dataDir = filepath.Join(p.base, "data")
	p.socketDir = filepath.Join(p.base, "sock")
	p.LogPath = filepath.Join(p.base, "postgres.log")
	for _, d := range []string{p.dataDir, p.socketDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
		if p.cred != nil {
			if err := os.Chown(d, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
				return err
			}
		}
	}
	return nil
}

// makeBase makes the server's base folder: dir/postgres, or a temporary
// one under BaseDir or, as root, the system's.
func (p *Postgres) makeBase(dir string) error {
	if p.cred == nil && p.opts.BaseDir == "" {
		p.base = filepath.Join(dir, "postgres")
		return os.MkdirAll(p.base, 0o700)
	}
	// As root, the server user must reach its folders; the caller's folder
	// may sit under a private home, so use a world-traversable temporary one.
	var err error
	if p.base, err = os.MkdirTemp(p.opts.BaseDir, "orgforge-pg-"); err != nil {
		return err
	}
	p.ownsBase = true
	if p.cred != nil {
		return os.Chmod(p.base, 0o755)
	}
	return nil
}

func (p *Postgres) initdb() error {
	cmd := exec.Command(filepath.Join(p.bin, "initdb"),
		"-D", p.dataDir, "-U", superUser, "-E", "UTF8", "--locale=C", "--no-sync",
		"--auth-local=trust", "--auth-host=scram-sha-256")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred, Pdeathsig: syscall.SIGKILL}
	cmd.Dir = p.base
	out, err := cmd.CombinedOutput()
	if p.cred != nil && errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("postgres: initdb as %s: %w; running as root, the server runs as %s, who must be able to read %s and the folders above it, as hack/tools.sh installs it",
			serverUser, err, serverUser, p.bin)
	}
	if err != nil {
		return fmt.Errorf("postgres: initdb failed: %w\n%s", err, out)
	}
	return nil
}

// Start starts the server on its port, or restarts it after Stop.
func (p *Postgres) Start(ctx context.Context) error {
	settings := map[string]string{
		"port":                    strconv.Itoa(p.Port),
		"listen_addresses":        p.Host,
		"unix_socket_directories": p.socketDir,
		"max_connections":         "300",
		"shared_buffers":          "128MB",
		"password_encryption":     "scram-sha-256",
		"logging_collector":       "off",
	}
	if !p.opts.Durable {
		settings["fsync"] = "off"
		settings["synchronous_commit"] = "off"
		settings["full_page_writes"] = "off"
	}
	for k, v := range p.opts.Settings {
		settings[k] = v
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := []string{"-D", p.dataDir}
	for _, k := range keys {
		args = append(args, "-c", k+"="+settings[k])
	}
	proc, err := startProcess("postgres", p.LogPath, p.cred, nil, filepath.Join(p.bin, "postgres"), args...)
	if err != nil {
		return err
	}
	p.proc = proc
	deadline := time.Now().Add(30 * time.Second)
	for {
		if proc.exited() {
			return proc.failure(fmt.Errorf("exited: %v", proc.err))
		}
		conn, err := pgx.Connect(ctx, p.SuperuserDSN("postgres"))
		if err == nil {
			_ = conn.Close(ctx)
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			proc.kill()
			return proc.failure(fmt.Errorf("not accepting connections: %w", err))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// bootstrap creates what an Aurora cluster has: rds_superuser, rds_iam and a
// master user that is not a superuser.
func (p *Postgres) bootstrap(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, p.SuperuserDSN("postgres"))
	if err != nil {
		return fmt.Errorf("postgres: bootstrap connect: %w", err)
	}
	defer func() { _ = conn.Close(ctx) }()
	verifier, err := credentials.SCRAMVerifier(p.AdminPassword)
	if err != nil {
		return err
	}
	stmts := []string{
		"CREATE ROLE rds_superuser NOLOGIN",
		"CREATE ROLE rds_iam NOLOGIN",
		"GRANT pg_signal_backend, pg_read_all_stats TO rds_superuser",
		// PASSWORD takes no parameter; the verifier is not a secret and is
		// quoted by pgx's literal sanitising.
		fmt.Sprintf("CREATE ROLE %s LOGIN NOSUPERUSER CREATEDB CREATEROLE IN ROLE rds_superuser PASSWORD %s",
			pgx.Identifier{AdminUser}.Sanitize(), quoteLiteral(verifier)),
	}
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("postgres: bootstrap %q: %w", s[:min(len(s), 40)], err)
		}
	}
	return nil
}

func quoteLiteral(s string) string {
	out := []byte{'\''}
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' {
			out = append(out, '\'')
		}
		out = append(out, s[i])
	}
	return string(append(out, '\''))
}

// AdminDatabase is the database AdminDSN connects to, as an Aurora
// cluster's master user does by default.
const AdminDatabase = "postgres"

// AdminDSN is how the operator connects: over TCP as orgforge_admin.
func (p *Postgres) AdminDSN() string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(AdminUser, p.AdminPassword),
		Host:     fmt.Sprintf("%s:%d", p.Host, p.Port),
		Path:     "/" + AdminDatabase,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// DSN is a TCP connection string for any login, for tests that check what a
// tenant can do.
func (p *Postgres) DSN(user, password, database string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(user, password),
		Host:     fmt.Sprintf("%s:%d", p.Host, p.Port),
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// SuperuserDSN connects over the server's private socket as the bootstrap
// superuser. Tests use it to inspect the server; the operator never does.
func (p *Postgres) SuperuserDSN(database string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", p.socketDir, p.Port, superUser, database)
}

// DataDir is the server's data folder.
func (p *Postgres) DataDir() string { return p.dataDir }

// BinDir is the folder of the server's binaries, which tells its major.
func (p *Postgres) BinDir() string { return p.bin }

// Stop shuts the server down (fast mode) and keeps its data for Start.
func (p *Postgres) Stop() error {
	return p.proc.stop(syscall.SIGINT, 20*time.Second)
}

// Close stops the server and removes its folder.
func (p *Postgres) Close() error {
	err := p.Stop()
	p.cleanup()
	return err
}

func (p *Postgres) cleanup() {
	if p.ownsBase {
		_ = os.RemoveAll(p.base)
	}
}
