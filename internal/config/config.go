// Package config reads the operator's configuration from flags, with
// environment variables as fallbacks, and from secret files. It is validated
// once, at start-up, and every problem is reported together.
package config

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/orgforge/orgforge/internal/naming"
)

// EnvPrefix starts the environment variable of every flag: --s3-bucket is
// ORGFORGE_S3_BUCKET.
const EnvPrefix = "ORGFORGE_"

// policyARNRE matches the ARN of an IAM managed policy, in any partition, of
// an account or of AWS, with an optional path: what IAM accepts as a
// permissions boundary. Wildcards are not part of a policy name.
var policyARNRE = regexp.MustCompile(`^arn:aws(-[a-z]+)*:iam::([0-9]{12}|aws):policy/([A-Za-z0-9+=,.@_-]+/)*[A-Za-z0-9+=,.@_-]+$`)

// clusterIDRE is what an ownership marker may carry as the cluster's
// identity.
var clusterIDRE = regexp.MustCompile(`^[A-Za-z0-9._:/-]{1,128}$`)

// maxFleetConnections bounds --fleet-max-connections: 200 clusters at the
// most --database-max-connections allows, far beyond what one operator
// should hold open.
const maxFleetConnections = 20000

// Config is the operator's whole configuration.
type Config struct {
	MetricsAddr string
	ProbeAddr   string
	// PprofAddr serves net/http/pprof when set; empty disables it.
	PprofAddr      string
	LeaderElection bool
	// LeaderElectionNamespace is where the lease lives; empty means the
	// manager's own namespace when in-cluster.
	LeaderElectionNamespace string

	ResyncPeriod time.Duration
	// UsagePeriod is how often an organization's usage is read again; 0
	// reads none.
	UsagePeriod             time.Duration
	MaxConcurrentReconciles int
	// AllowSystemNamespaces lets an Organization write its Secrets to
	// kube-system, kube-public, kube-node-lease or default.
	AllowSystemNamespaces bool
	// ClusterID is the identity this operator records in the ownership
	// markers; empty means the kube-system namespace's UID, read at
	// start-up. A rebuilt Kubernetes cluster sets the old one's to keep
	// its organizations' resources.
	ClusterID string

	Database Database
	Storage  Storage
}

// Database configures the admin connection and what tenants are told.
type Database struct {
	// AdminDSN is secret. It is read from AdminDSNFile or built from parts.
	AdminDSN       string
	AdminDSNFile   string
	Host           string
	Port           int
	User           string
	PasswordFile   string
	Name           string
	SSLMode        string
	SSLRootCert    string
	MaxConnections int

	// FleetMaxConnections caps the sum of every database cluster's
	// MaxConnections, the operator's connections over the whole fleet.
	FleetMaxConnections int

	// SnapshotMaxAge is how old a cluster's catalog snapshot may be for a
	// settled Organization's resync to trust it instead of its own
	// queries; 0 is min(30s, ResyncPeriod/4), negative turns it off.
	SnapshotMaxAge time.Duration

	// TenantHost and TenantPort are written to the database Secret; an
	// Aurora cluster endpoint or a proxy may differ from the admin endpoint.
	TenantHost    string
	TenantPort    int
	TenantSSLMode string
}

// Storage configures S3 and IAM.
type Storage struct {
	Bucket         string
	Region         string
	Endpoint       string
	IAMEndpoint    string
	UsePathStyle   bool
	PrefixTemplate string
	IAMPath        string
	// PermissionsBoundary is the ARN of the managed policy set as the
	// permissions boundary of every IAM user the operator creates; empty
	// sets none (see docs/install-aws.md, which requires one on AWS).
	PermissionsBoundary string
	// TenantEndpoint is written to the storage Secret; empty means Endpoint.
	TenantEndpoint string
	// AccessKeyID and SecretAccessKey are read from files; empty means the
	// AWS default credential chain (IRSA, instance profile).
	AccessKeyIDFile     string
	SecretAccessKeyFile string
	AccessKeyID         string
	SecretAccessKey     string
	// CheckPasses is how many resync passes apart the per-organization
	// S3 and IAM checks of an organization at rest run (its marker, its
	// user's policy and keys, its key's liveness); 1 runs them at every
	// pass, 0 means DefaultStorageCheckPasses.
	CheckPasses int
	// UserListMaxAge is how stale the shared listing of IAM users may be;
	// it is held to a quarter of the resync period at most.
	UserListMaxAge time.Duration
}

// DefaultStorageCheckPasses is --storage-check-passes's default: with the
// five calls of a full check that is 1.25 AWS calls per organization at
// rest and per pass, under the 1.5 of issue 18's budget.
const DefaultStorageCheckPasses = 4

// Bind registers every flag on fs and returns the Config they fill.
func Bind(fs *flag.FlagSet) *Config {
	c := &Config{}
	_, inCluster := os.LookupEnv("KUBERNETES_SERVICE_HOST")
	fs.StringVar(&c.MetricsAddr, "metrics-bind-address", ":8080", "Address the metrics endpoint binds to; 0 disables it.")
	fs.StringVar(&c.ProbeAddr, "health-probe-bind-address", ":8081", "Address the healthz and readyz endpoints bind to.")
	fs.StringVar(&c.PprofAddr, "pprof-bind-address", "", "Address net/http/pprof binds to, for profiling; empty disables it.")
	fs.BoolVar(&c.LeaderElection, "leader-elect", inCluster, "Elect a leader so that only one replica reconciles (default true in-cluster).")
	fs.StringVar(&c.LeaderElectionNamespace, "leader-election-namespace", "", "Namespace of the leader election lease.")
	fs.DurationVar(&c.ResyncPeriod, "resync-period", 10*time.Minute, "How often a Ready Organization is checked again for drift; each is checked at its own point of the period, so one check follows another 0.1 to 1.1 periods later.")
	fs.DurationVar(&c.UsagePeriod, "usage-period", time.Hour, "How often a Ready Organization's usage (database size, connections, objects and bytes under its prefix) is read into its status and metrics; 0 turns usage off.")
	fs.IntVar(&c.MaxConcurrentReconciles, "max-concurrent-reconciles", 4, "Organizations reconciled at once.")
	fs.BoolVar(&c.AllowSystemNamespaces, "allow-system-namespaces", false, "Allow spec.namespace to be kube-system, kube-public, kube-node-lease or default.")
	fs.StringVar(&c.ClusterID, "cluster-id", "", "Identity of this Kubernetes cluster in the ownership markers of databases, roles, prefixes and IAM users (default: the kube-system namespace's UID). Give a rebuilt cluster the old one's to keep its resources; see docs/operations.md.")

	d := &c.Database
	fs.StringVar(&d.AdminDSNFile, "database-admin-dsn-file", "", "File holding the admin connection string (a mounted Secret). Overrides the --database-* parts.")
	fs.StringVar(&d.Host, "database-host", "", "Admin endpoint host (Aurora cluster writer endpoint).")
	fs.IntVar(&d.Port, "database-port", 5432, "Admin endpoint port.")
	fs.StringVar(&d.User, "database-user", "", "Admin login (NOSUPERUSER CREATEDB CREATEROLE, member of rds_superuser).")
	fs.StringVar(&d.PasswordFile, "database-password-file", "", "File holding the admin password (a mounted Secret).")
	fs.StringVar(&d.Name, "database-name", "postgres", "Database the admin connects to.")
	fs.StringVar(&d.SSLMode, "database-sslmode", "verify-full", "sslmode of the admin connection.")
	fs.StringVar(&d.SSLRootCert, "database-sslrootcert", "", "CA bundle for the admin connection (the RDS CA bundle on AWS).")
	fs.IntVar(&d.MaxConnections, "database-max-connections", 4, "Cap on the PostgreSQL connections the operator holds on each database cluster, admin and tenant databases together.")
	fs.IntVar(&d.FleetMaxConnections, "fleet-max-connections", 100, "Cap on the PostgreSQL connections the operator holds across every database cluster, the sum of their caps; a DatabaseCluster that would take the sum over it is not connected.")
	fs.DurationVar(&d.SnapshotMaxAge, "database-snapshot-max-age", 0, "How old a database cluster's catalog snapshot (one query for every organization's role and database) may be for a Ready Organization's resync to trust it and send no SQL of its own; a change made by hand is repaired up to this much later. 0 is min(30s, --resync-period/4); negative checks every Organization with its own queries.")
	fs.StringVar(&d.TenantHost, "tenant-database-host", "", "Host written to database Secrets (default: the admin host).")
	fs.IntVar(&d.TenantPort, "tenant-database-port", 0, "Port written to database Secrets (default: the admin port).")
	fs.StringVar(&d.TenantSSLMode, "tenant-database-sslmode", "", "sslmode written to database Secrets (default: the admin sslmode).")

	s := &c.Storage
	fs.StringVar(&s.Bucket, "s3-bucket", "", "Tenants bucket; each organization gets a prefix in it.")
	fs.StringVar(&s.Region, "s3-region", "us-east-1", "AWS region of the bucket and IAM.")
	fs.StringVar(&s.Endpoint, "s3-endpoint", "", "S3 endpoint URL (default: AWS).")
	fs.StringVar(&s.IAMEndpoint, "iam-endpoint", "", "IAM endpoint URL (default: AWS).")
	fs.BoolVar(&s.UsePathStyle, "s3-path-style", false, "Use path-style S3 addressing (S3-compatible servers).")
	fs.StringVar(&s.PrefixTemplate, "s3-prefix-template", naming.DefaultPrefixTemplate, "Key prefix of an organization; {name} is its name.")
	fs.StringVar(&s.IAMPath, "iam-path", "/orgforge/", "IAM path of the users the operator creates.")
	fs.StringVar(&s.PermissionsBoundary, "iam-permissions-boundary", "", "ARN of the managed policy set as the permissions boundary of every IAM user the operator creates, and restored on those that lack it; empty sets none. Required by the IAM policy of docs/install-aws.md.")
	fs.IntVar(&s.CheckPasses, "storage-check-passes", DefaultStorageCheckPasses, "Resync passes between the per-organization S3 and IAM checks of a Ready Organization (its prefix marker, its IAM user's policy, boundary and keys, whether its key works), each Organization at its own phase; the passes between them check the user's presence in one shared IAM listing. 1 checks everything at every pass.")
	fs.DurationVar(&s.UserListMaxAge, "iam-user-list-max-age", 30*time.Second, "How stale the listing of IAM users under --iam-path that stands for each Ready Organization's GetUser may be; held to a quarter of --resync-period at most.")
	fs.StringVar(&s.TenantEndpoint, "tenant-s3-endpoint", "", "S3 endpoint written to storage Secrets (default: --s3-endpoint).")
	fs.StringVar(&s.AccessKeyIDFile, "s3-access-key-id-file", "", "File holding the operator's AWS access key id (default: AWS credential chain).")
	fs.StringVar(&s.SecretAccessKeyFile, "s3-secret-access-key-file", "", "File holding the operator's AWS secret access key.")
	return c
}

// EnvName is the environment variable that backs a flag.
func EnvName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// ApplyEnv sets every flag not given on the command line from its
// environment variable, when that is set.
func ApplyEnv(fs *flag.FlagSet) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		if v, ok := os.LookupEnv(EnvName(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", EnvName(f.Name), err))
			}
		}
	})
	return errors.Join(errs...)
}

// Load reads the secret files and validates everything, returning every
// problem at once. Error messages name files and flags, never secrets.
func (c *Config) Load() error {
	var p problems
	c.Database.loadAdmin(&p)
	c.Database.loadTenant(&p)
	c.Storage.load(&p)
	if c.ResyncPeriod < 10*time.Second {
		p.add("--resync-period must be at least 10s, got %s", c.ResyncPeriod)
	}
	if c.UsagePeriod != 0 && c.UsagePeriod < 10*time.Second {
		p.add("--usage-period must be 0 (off) or at least 10s, got %s", c.UsagePeriod)
	}
	if c.ClusterID != "" && !clusterIDRE.MatchString(c.ClusterID) {
		p.add("--cluster-id %q must be 1 to 128 letters, digits and ._:/-", c.ClusterID)
	}
	if c.MaxConcurrentReconciles < 1 || c.MaxConcurrentReconciles > 64 {
		p.add("--max-concurrent-reconciles must be between 1 and 64, got %d", c.MaxConcurrentReconciles)
	}
	return errors.Join(p...)
}

// problems collects what Load finds wrong, to report it all at once.
type problems []error

func (p *problems) add(format string, a ...any) { *p = append(*p, fmt.Errorf(format, a...)) }

// loadAdmin reads the admin's connection string, or builds it from its
// parts, and checks the admin pool's size.
func (d *Database) loadAdmin(p *problems) {
	switch {
	case d.AdminDSNFile != "":
		dsn, err := readSecretFile(d.AdminDSNFile)
		if err != nil {
			p.add("--database-admin-dsn-file: %v", err)
		} else if err := d.fillFromDSN(dsn); err != nil {
			p.add("--database-admin-dsn-file %s: %v", d.AdminDSNFile, err)
		}
	case d.Host != "" || d.User != "":
		password := ""
		if d.PasswordFile != "" {
			pw, err := readSecretFile(d.PasswordFile)
			if err != nil {
				p.add("--database-password-file: %v", err)
			}
			password = pw
		}
		if d.Host == "" {
			p.add("--database-host is required with --database-user")
		}
		if d.User == "" {
			p.add("--database-user is required with --database-host")
		}
		d.AdminDSN = d.buildDSN(password)
	default:
		p.add("database admin: set --database-admin-dsn-file, or --database-host with --database-user and --database-password-file")
	}
	if d.MaxConnections < 2 || d.MaxConnections > 100 {
		p.add("--database-max-connections must be between 2 and 100, got %d", d.MaxConnections)
	}
	if d.FleetMaxConnections < d.MaxConnections || d.FleetMaxConnections > maxFleetConnections {
		p.add("--fleet-max-connections must be between --database-max-connections (%d) and %d, got %d",
			d.MaxConnections, maxFleetConnections, d.FleetMaxConnections)
	}
}

// loadTenant fills where tenants connect from the admin's endpoint, where
// not set, and checks it.
func (d *Database) loadTenant(p *problems) {
	if d.TenantHost == "" {
		d.TenantHost = d.Host
	}
	if d.TenantPort == 0 {
		d.TenantPort = d.Port
	}
	if d.TenantSSLMode == "" {
		d.TenantSSLMode = d.SSLMode
	}
	if d.TenantPort < 1 || d.TenantPort > 65535 {
		p.add("--tenant-database-port must be a TCP port, got %d", d.TenantPort)
	}
	switch d.TenantSSLMode {
	case "disable", "allow", "prefer", "require", "verify-ca", "verify-full":
	default:
		p.add("--tenant-database-sslmode %q is not a libpq sslmode", d.TenantSSLMode)
	}
}

// load checks the storage settings and reads the key pair's files.
func (s *Storage) load(p *problems) {
	if s.Bucket == "" {
		p.add("--s3-bucket is required")
	}
	if s.Region == "" {
		p.add("--s3-region is required")
	}
	for flagName, v := range map[string]string{"--s3-endpoint": s.Endpoint, "--iam-endpoint": s.IAMEndpoint, "--tenant-s3-endpoint": s.TenantEndpoint} {
		if v == "" {
			continue
		}
		if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.add("%s %q must be an http(s) URL", flagName, v)
		}
	}
	if s.TenantEndpoint == "" {
		s.TenantEndpoint = s.Endpoint
	}
	if err := naming.ValidatePrefixTemplate(s.PrefixTemplate); err != nil {
		p.add("--s3-prefix-template: %v", err)
	}
	if s.CheckPasses < 1 {
		p.add("--storage-check-passes must be at least 1, got %d", s.CheckPasses)
	}
	if s.UserListMaxAge < time.Second {
		p.add("--iam-user-list-max-age must be at least 1s, got %s", s.UserListMaxAge)
	}
	if !strings.HasPrefix(s.IAMPath, "/") || !strings.HasSuffix(s.IAMPath, "/") {
		p.add("--iam-path %q must start and end with '/'", s.IAMPath)
	}
	if s.PermissionsBoundary != "" && !policyARNRE.MatchString(s.PermissionsBoundary) {
		p.add("--iam-permissions-boundary %q must be the ARN of an IAM managed policy, like arn:aws:iam::111122223333:policy/orgforge-tenant-boundary", s.PermissionsBoundary)
	}
	s.loadKeys(p)
}

// loadKeys reads the admin's key pair from its two files, when given.
func (s *Storage) loadKeys(p *problems) {
	if (s.AccessKeyIDFile == "") != (s.SecretAccessKeyFile == "") {
		p.add("--s3-access-key-id-file and --s3-secret-access-key-file go together")
		return
	}
	if s.AccessKeyIDFile == "" {
		return
	}
	var err error
	if s.AccessKeyID, err = readSecretFile(s.AccessKeyIDFile); err != nil {
		p.add("--s3-access-key-id-file: %v", err)
	}
	if s.SecretAccessKey, err = readSecretFile(s.SecretAccessKeyFile); err != nil {
		p.add("--s3-secret-access-key-file: %v", err)
	}
}

// readSecretFile reads a mounted secret, trimming a trailing newline.
func readSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return v, nil
}

// fillFromDSN takes the admin DSN (URL form) and records its public parts for
// messages and defaults.
func (d *Database) fillFromDSN(dsn string) error {
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		// The parse error quotes the input, which holds the password.
		return errors.New("not a postgres:// or postgresql:// URL")
	}
	// --database-sslrootcert applies to a DSN that names no CA bundle itself.
	if q := u.Query(); d.SSLRootCert != "" && q.Get("sslrootcert") == "" {
		q.Set("sslrootcert", d.SSLRootCert)
		u.RawQuery = q.Encode()
		dsn = u.String()
	}
	d.AdminDSN = dsn
	d.Host = u.Hostname()
	if p := u.Port(); p != "" {
		port, err := strconv.Atoi(p)
		if err != nil {
			return errors.New("port is not a number")
		}
		d.Port = port
	}
	if u.User != nil {
		d.User = u.User.Username()
	}
	if name := strings.TrimPrefix(u.Path, "/"); name != "" {
		d.Name = name
	}
	if m := u.Query().Get("sslmode"); m != "" {
		d.SSLMode = m
	}
	if d.Host == "" {
		return errors.New("no host")
	}
	return nil
}

func (d *Database) buildDSN(password string) string {
	q := url.Values{}
	q.Set("sslmode", d.SSLMode)
	if d.SSLRootCert != "" {
		q.Set("sslrootcert", d.SSLRootCert)
	}
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(d.User, password),
		Host:     net.JoinHostPort(d.Host, strconv.Itoa(d.Port)),
		Path:     "/" + d.Name,
		RawQuery: q.Encode(),
	}
	return u.String()
}

// AdminEndpoint is host:port/user, safe to print.
func (d *Database) AdminEndpoint() string {
	return fmt.Sprintf("%s/%s", net.JoinHostPort(d.Host, strconv.Itoa(d.Port)), d.User)
}

// SystemNamespaces may only hold Organization Secrets with
// --allow-system-namespaces.
var SystemNamespaces = map[string]bool{"kube-system": true, "kube-public": true, "kube-node-lease": true, "default": true}
