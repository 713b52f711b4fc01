package aurora

import (
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
)

func TestOpenConnectionsIsWhatTheServerSees(t *testing.T) {
	ctx := testContext(t)
	su := superuser(t, "postgres")
	prefix := "open_" + randomHex(t, 3) + "_"
	dbs := []string{prefix + "a", prefix + "b"}
	for _, db := range dbs {
		mustExec(t, su, "CREATE DATABASE "+ident(db))
		t.Cleanup(func() { mustExec(t, su, "DROP DATABASE "+ident(db)) })
	}
	app := "orgforge-" + randomHex(t, 4)
	svc := newService(t, func(c *Config) { c.MaxConnections = 4; c.ApplicationName = app })

	// check compares the service's count with the server's sessions of
	// the service's application_name.
	check := func(when string, want int32) {
		t.Helper()
		var server int32
		if err := su.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&server); err != nil {
			t.Fatal(err)
		}
		if got := svc.OpenConnections(); got != want || server != want {
			t.Errorf("%s: OpenConnections = %d, the server sees %d; want %d", when, got, server, want)
		}
	}
	check("after New, which checked the admin on one connection", 1)

	var admins []*pgxpool.Conn
	for range 2 {
		c, err := svc.admin.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		admins = append(admins, c)
	}
	var releases []func()
	for _, db := range dbs {
		pool, release, err := svc.OrgPool(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, release)
		if err := pool.Ping(ctx); err != nil {
			t.Fatal(err)
		}
	}
	check("with both admin and both tenant connections in use", 4)

	for _, c := range admins {
		c.Release()
	}
	for _, release := range releases {
		release()
	}
	svc.orgs.forget(dbs[0])
	check("after one tenant pool was closed", 3)

	svc.Close()
	check("after Close", 0)
}
