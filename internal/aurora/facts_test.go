package aurora

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/orgforge/orgforge/internal/devstack"
	"github.com/orgforge/orgforge/internal/retry"
	"github.com/orgforge/orgforge/internal/testutil"
)

// binariesMajor is the major of the PostgreSQL binaries server runs, as
// `postgres --version` tells it.
func binariesMajor(t *testing.T, server *devstack.Postgres) int {
	t.Helper()
	out, err := exec.Command(filepath.Join(server.BinDir(), "postgres"), "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`\(PostgreSQL\) (\d+)\.`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("postgres --version said %q", out)
	}
	major, err := strconv.Atoi(string(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	return major
}

func TestServerFactsAreWhatTheServerSays(t *testing.T) {
	ctx := testContext(t)
	major := binariesMajor(t, pg)
	// Settings apart from the defaults and from each other, so that a fact
	// read from the wrong setting shows.
	settings := map[string]string{"max_connections": "120", "superuser_reserved_connections": "5"}
	if major >= 16 {
		settings["reserved_connections"] = "7"
	}
	server, err := devstack.StartPostgres(ctx, t.TempDir(), devstack.PostgresOptions{Settings: settings})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Close() })
	svc := newService(t, func(c *Config) { c.AdminDSN = server.AdminDSN() })

	got, err := svc.ServerFacts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	su := testutil.Superuser(t, server, "postgres")
	show := func(name string) string {
		var v string
		if err := su.QueryRow(ctx, "SHOW "+name).Scan(&v); err != nil {
			t.Fatalf("SHOW %s: %v", name, err)
		}
		return v
	}
	atoi := func(s string) int {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	want := ServerFacts{
		Version:                      show("server_version"),
		Major:                        major,
		MaxConnections:               atoi(show("max_connections")),
		SuperuserReservedConnections: atoi(show("superuser_reserved_connections")),
	}
	if major >= 16 {
		want.ReservedConnections = atoi(show("reserved_connections"))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ServerFacts on PostgreSQL %d (-want +got):\n%s", major, diff)
	}
	if want.MaxConnections != 120 || want.SuperuserReservedConnections != 5 || (major >= 16) != (want.ReservedConnections == 7) {
		t.Errorf("the server did not take the test's settings %v: %+v", settings, want)
	}
}

func TestServerFactsRetriesAndNamesTheClusterWhenItIsDown(t *testing.T) {
	ctx := testContext(t)
	server := startPostgres(t)
	var logs logBuffer
	policy := retry.Policy{Attempts: 2, Base: 10 * time.Millisecond, Factor: 2, Cap: 100 * time.Millisecond}
	svc, err := New(ctx, Config{AdminDSN: server.AdminDSN(), Retry: policy}, logs.logger())
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if err := server.Stop(); err != nil {
		t.Fatal(err)
	}
	_, err = svc.ServerFacts(ctx)
	if err == nil {
		t.Fatal("ServerFacts answered with the server stopped")
	}
	if !strings.Contains(err.Error(), svc.Endpoint()) || !Classify(err).Transient() {
		t.Errorf("error %q (class %q); want a transient one naming %s", err, Classify(err), svc.Endpoint())
	}
	if !strings.Contains(logs.String(), "Retrying after a transient error") {
		t.Errorf("no retry was logged:\n%s", logs.String())
	}
}
