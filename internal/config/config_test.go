package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func parse(t *testing.T, args ...string) (*Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	c := Bind(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	if err := ApplyEnv(fs); err != nil {
		return c, err
	}
	return c, c.Load()
}

func secretFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadReportsEveryProblemAtOnce(t *testing.T) {
	_, err := parse(t, "--database-max-connections=1", "--resync-period=1s", "--usage-period=5s", "--iam-path=orgforge", "--s3-prefix-template=shared/")
	if err == nil {
		t.Fatal("an empty configuration was accepted")
	}
	for _, want := range []string{"database admin", "--s3-bucket is required", "--database-max-connections", "--resync-period", "--usage-period", "--iam-path", "--s3-prefix-template"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestLoadReadsTheAdminDSNFromAFileAndKeepsItOutOfErrors(t *testing.T) {
	const password = "s3cr3t-Pa55"
	dsn := secretFile(t, "postgres://admin:"+password+"@db.example:6543/postgres?sslmode=require\n")
	c, err := parse(t, "--database-admin-dsn-file="+dsn, "--s3-bucket=tenants")
	if err != nil {
		t.Fatal(err)
	}
	if c.Database.AdminDSN != "postgres://admin:"+password+"@db.example:6543/postgres?sslmode=require" {
		t.Errorf("AdminDSN not read from the file")
	}
	if got := c.Database.AdminEndpoint(); got != "db.example:6543/admin" {
		t.Errorf("AdminEndpoint = %q", got)
	}
	if c.Database.TenantHost != "db.example" || c.Database.TenantPort != 6543 || c.Database.TenantSSLMode != "require" {
		t.Errorf("tenant defaults = %s:%d %s", c.Database.TenantHost, c.Database.TenantPort, c.Database.TenantSSLMode)
	}

	bad := secretFile(t, "postgres://admin:"+password+"@db.example:notaport/x")
	_, err = parse(t, "--database-admin-dsn-file="+bad, "--s3-bucket=tenants")
	if err == nil {
		t.Fatal("a DSN with a bad port was accepted")
	}
	if strings.Contains(err.Error(), password) {
		t.Errorf("error reveals the password: %v", err)
	}
}

func TestLoadBuildsTheDSNFromPartsAndAPasswordFile(t *testing.T) {
	pw := secretFile(t, "p@ss/word\n")
	c, err := parse(t, "--database-host=aurora.example", "--database-user=orgforge_admin",
		"--database-password-file="+pw, "--database-sslrootcert=/etc/rds/ca.pem", "--s3-bucket=tenants",
		"--tenant-database-host=proxy.example")
	if err != nil {
		t.Fatal(err)
	}
	want := "postgres://orgforge_admin:p%40ss%2Fword@aurora.example:5432/postgres?sslmode=verify-full&sslrootcert=%2Fetc%2Frds%2Fca.pem"
	if c.Database.AdminDSN != want {
		t.Errorf("AdminDSN = %q, want %q", c.Database.AdminDSN, want)
	}
	if c.Database.TenantHost != "proxy.example" {
		t.Errorf("TenantHost = %q", c.Database.TenantHost)
	}
}

func TestEnvironmentFillsFlagsNotGiven(t *testing.T) {
	t.Setenv("ORGFORGE_S3_BUCKET", "from-env")
	t.Setenv("ORGFORGE_RESYNC_PERIOD", "2m")
	t.Setenv("ORGFORGE_MAX_CONCURRENT_RECONCILES", "8")
	dsn := secretFile(t, "postgres://a:b@h:5432/postgres?sslmode=disable")
	c, err := parse(t, "--database-admin-dsn-file="+dsn, "--max-concurrent-reconciles=2")
	if err != nil {
		t.Fatal(err)
	}
	if c.Storage.Bucket != "from-env" || c.ResyncPeriod != 2*time.Minute {
		t.Errorf("env not applied: bucket=%q resync=%s", c.Storage.Bucket, c.ResyncPeriod)
	}
	if c.MaxConcurrentReconciles != 2 {
		t.Errorf("a flag given on the command line lost to the environment: %d", c.MaxConcurrentReconciles)
	}
}

func TestEnvironmentWithABadValueIsAnError(t *testing.T) {
	t.Setenv("ORGFORGE_DATABASE_MAX_CONNECTIONS", "many")
	if _, err := parse(t); err == nil || !strings.Contains(err.Error(), "ORGFORGE_DATABASE_MAX_CONNECTIONS") {
		t.Errorf("err = %v, want one naming ORGFORGE_DATABASE_MAX_CONNECTIONS", err)
	}
}

func TestRootCertFlagReachesADSNThatNamesNone(t *testing.T) {
	dsn := secretFile(t, "postgres://a:b@aurora.example:5432/postgres?sslmode=verify-full")
	c, err := parse(t, "--database-admin-dsn-file="+dsn, "--database-sslrootcert=/etc/rds/ca.pem", "--s3-bucket=tenants")
	if err != nil {
		t.Fatal(err)
	}
	if want := "postgres://a:b@aurora.example:5432/postgres?sslmode=verify-full&sslrootcert=%2Fetc%2Frds%2Fca.pem"; c.Database.AdminDSN != want {
		t.Errorf("AdminDSN = %q, want %q", c.Database.AdminDSN, want)
	}
	own := secretFile(t, "postgres://a:b@aurora.example:5432/postgres?sslmode=verify-full&sslrootcert=/own.pem")
	c, err = parse(t, "--database-admin-dsn-file="+own, "--database-sslrootcert=/etc/rds/ca.pem", "--s3-bucket=tenants")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(c.Database.AdminDSN, "sslrootcert=/own.pem") {
		t.Errorf("the DSN's own sslrootcert was replaced: %q", c.Database.AdminDSN)
	}
}

func TestPermissionsBoundaryMustBeAnIAMPolicyARN(t *testing.T) {
	dsn := secretFile(t, "postgres://a:b@h:5432/postgres?sslmode=disable")
	cases := map[string]struct {
		arn   string
		valid bool
	}{
		"unset":                   {"", true},
		"customer managed":        {"arn:aws:iam::111122223333:policy/orgforge-tenant-boundary", true},
		"with a path":             {"arn:aws:iam::111122223333:policy/platform/orgforge/tenant-boundary", true},
		"another partition":       {"arn:aws-us-gov:iam::111122223333:policy/orgforge-tenant-boundary", true},
		"AWS managed":             {"arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess", true},
		"a role":                  {"arn:aws:iam::111122223333:role/orgforge-operator", false},
		"a policy name":           {"orgforge-tenant-boundary", false},
		"no account":              {"arn:aws:iam:::policy/orgforge-tenant-boundary", false},
		"a region":                {"arn:aws:iam:us-east-1:111122223333:policy/orgforge-tenant-boundary", false},
		"another service":         {"arn:aws:s3:::acme-tenants", false},
		"a wildcard":              {"arn:aws:iam::111122223333:policy/*", false},
		"surrounding whitespace":  {" arn:aws:iam::111122223333:policy/orgforge-tenant-boundary", false},
		"an empty policy name":    {"arn:aws:iam::111122223333:policy/", false},
		"an account of 11 digits": {"arn:aws:iam::11112222333:policy/orgforge-tenant-boundary", false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Setenv("ORGFORGE_IAM_PERMISSIONS_BOUNDARY", tc.arn)
			c, err := parse(t, "--database-admin-dsn-file="+dsn, "--s3-bucket=tenants")
			switch {
			case tc.valid && err != nil:
				t.Errorf("%q was refused: %v", tc.arn, err)
			case tc.valid && c.Storage.PermissionsBoundary != tc.arn:
				t.Errorf("PermissionsBoundary = %q, want %q from ORGFORGE_IAM_PERMISSIONS_BOUNDARY", c.Storage.PermissionsBoundary, tc.arn)
			case !tc.valid && (err == nil || !strings.Contains(err.Error(), "--iam-permissions-boundary")):
				t.Errorf("%q: err = %v, want one naming --iam-permissions-boundary", tc.arn, err)
			}
		})
	}
}

func TestFleetMaxConnectionsHoldsAtLeastOneCluster(t *testing.T) {
	dsn := secretFile(t, "postgres://a:b@h:5432/postgres?sslmode=disable")
	cases := map[string]struct {
		args []string
		env  string
		want int
		// problem is what the error says, or "" when the value is valid.
		problem string
	}{
		"default": {want: 100},
		"equal to the per-cluster cap": {
			args: []string{"--database-max-connections=10", "--fleet-max-connections=10"},
			want: 10,
		},
		"from the environment": {env: "40", want: 40},
		"below the per-cluster cap": {
			args:    []string{"--database-max-connections=10", "--fleet-max-connections=9"},
			problem: "--fleet-max-connections must be between --database-max-connections (10) and 20000, got 9",
		},
		"zero": {
			args:    []string{"--fleet-max-connections=0"},
			problem: "--fleet-max-connections must be between --database-max-connections (4) and 20000, got 0",
		},
		"too large": {
			args:    []string{"--fleet-max-connections=20001"},
			problem: "--fleet-max-connections must be between --database-max-connections (4) and 20000, got 20001",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv(EnvName("fleet-max-connections"), tc.env)
			}
			c, err := parse(t, append([]string{"--database-admin-dsn-file=" + dsn, "--s3-bucket=tenants"}, tc.args...)...)
			if tc.problem != "" {
				if err == nil || !strings.Contains(err.Error(), tc.problem) {
					t.Errorf("err = %v; want one saying %q", err, tc.problem)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Database.FleetMaxConnections != tc.want {
				t.Errorf("FleetMaxConnections = %d; want %d", c.Database.FleetMaxConnections, tc.want)
			}
		})
	}
}

func TestUsagePeriodDefaultsToAnHourAndZeroTurnsUsageOff(t *testing.T) {
	dsn := secretFile(t, "postgres://admin:pw@db.example/postgres")
	cases := map[string]struct {
		args []string
		want time.Duration
	}{
		"default": {want: time.Hour},
		"off":     {args: []string{"--usage-period=0"}, want: 0},
		"minimum": {args: []string{"--usage-period=10s"}, want: 10 * time.Second},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c, err := parse(t, append([]string{"--database-admin-dsn-file=" + dsn, "--s3-bucket=tenants"}, tc.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			if c.UsagePeriod != tc.want {
				t.Errorf("UsagePeriod = %s, want %s", c.UsagePeriod, tc.want)
			}
		})
	}
}
