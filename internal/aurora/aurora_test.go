package aurora

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orgforge/orgforge/internal/devstack"
	"github.com/orgforge/orgforge/internal/retry"
)

func TestNewFailsFastNamingTheCauseAndNeverThePassword(t *testing.T) {
	stopped := startPostgres(t)
	if err := stopped.Stop(); err != nil {
		t.Fatal(err)
	}

	su := superuser(t, "postgres")
	limited := func(name, attrs string) string {
		mustExec(t, su, fmt.Sprintf("CREATE ROLE %s LOGIN %s PASSWORD 'limited-pw-1'", ident(name), attrs))
		return pg.DSN(name, "limited-pw-1", "postgres")
	}
	noCreateRole := "nocreaterole_" + randomHex(t, 3)
	neither := "neither_" + randomHex(t, 3)
	wrongPassword := "wrong-" + randomHex(t, 8)
	endpoint := func(p *devstack.Postgres, user string) string {
		return fmt.Sprintf("%s:%d/%s", p.Host, p.Port, user)
	}
	cases := map[string]struct {
		dsn     string
		secret  string
		want    []string
		wantErr error
		// retried tells whether the failure is worth retrying.
		retried bool
	}{
		"stopped server": {
			dsn: stopped.AdminDSN(), secret: stopped.AdminPassword, retried: true,
			want: []string{"aurora", endpoint(stopped, devstack.AdminUser), "connection refused"},
		},
		"wrong password": {
			dsn: pg.DSN(devstack.AdminUser, wrongPassword, "postgres"), secret: wrongPassword,
			want: []string{"aurora", endpoint(pg, devstack.AdminUser), "password authentication failed"},
		},
		"admin without CREATEROLE": {
			dsn: limited(noCreateRole, "CREATEDB"), secret: "limited-pw-1", wantErr: ErrPrivilege,
			want: []string{"aurora", endpoint(pg, noCreateRole), "lacks CREATEROLE;"},
		},
		"admin without CREATEDB and CREATEROLE": {
			dsn: limited(neither, ""), secret: "limited-pw-1", wantErr: ErrPrivilege,
			want: []string{"aurora", endpoint(pg, neither), "lacks CREATEDB and CREATEROLE"},
		},
		"not a connection string": {
			dsn: "postgres://orgforge_admin:s3cret-pw@127.0.0.1:notaport/postgres", secret: "s3cret-pw", wantErr: ErrInvalid,
			want: []string{"aurora", "not a valid PostgreSQL connection string"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var logs logBuffer
			type result struct {
				svc *Service
				err error
			}
			done := make(chan result, 1)
			start := time.Now()
			go func() {
				svc, err := New(context.Background(), Config{AdminDSN: tc.dsn}, logs.logger())
				done <- result{svc, err}
			}()
			var r result
			select {
			case r = <-done:
			case <-time.After(15 * time.Second):
				t.Fatal("New did not return within 15s")
			}
			t.Logf("New failed after %s: %v", time.Since(start).Round(time.Millisecond), r.err)
			if r.err == nil {
				r.svc.Close()
				t.Fatal("New succeeded")
			}
			msg := r.err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if tc.wantErr != nil && !errors.Is(r.err, tc.wantErr) {
				t.Errorf("errors.Is(err, %v) = false", tc.wantErr)
			}
			if strings.Contains(msg, tc.secret) || strings.Contains(logs.String(), tc.secret) {
				t.Errorf("the password leaked into the error or the logs")
			}
			if got := strings.Contains(logs.String(), "Retrying"); got != tc.retried {
				t.Errorf("retried = %v, want %v; logs:\n%s", got, tc.retried, logs.String())
			}
		})
	}
}

func TestLogsAndErrorsHoldNoPasswordOrVerifier(t *testing.T) {
	var logs logBuffer
	svc, err := New(testContext(t), Config{AdminDSN: pg.AdminDSN()}, logs.logger())
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	ctx := testContext(t)
	tn := newTenant(t)
	provision(t, svc, tn)
	if _, err := svc.EnsureRole(ctx, tn.roleSpec()); err != nil { // sets the password again
		t.Fatal(err)
	}
	// A statement that fails with the verifier in it: the role exists.
	other := tn.roleSpec()
	other.Marker.UID = "other"
	_, conflictErr := svc.EnsureRole(ctx, other)
	if _, err := svc.DropDatabase(ctx, tn.name, tn.marker); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.DropRole(ctx, tn.name, tn.marker); err != nil {
		t.Fatal(err)
	}
	all := logs.String() + "\n" + errString(conflictErr)
	for what, secret := range map[string]string{
		"admin password": pg.AdminPassword, "tenant password": tn.password,
		"verifier": tn.verifier, "verifier prefix": "SCRAM-SHA-256$",
	} {
		if strings.Contains(all, secret) {
			t.Errorf("the %s is in the logs or errors", what)
		}
	}
	for _, want := range []string{"Created role", "Created database", "Secured database", "Dropped database", "Dropped role"} {
		if !strings.Contains(all, want) {
			t.Errorf("logs lack %q:\n%s", want, all)
		}
	}
}

func TestOrgPoolsKeepTheOperatorWithinItsConnectionCap(t *testing.T) {
	ctx := testContext(t)
	su := superuser(t, "postgres")
	dbs := make([]string, 50)
	prefix := "cap_" + randomHex(t, 3) + "_"
	for i := range dbs {
		dbs[i] = fmt.Sprintf("%s%02d", prefix, i)
		mustExec(t, su, "CREATE DATABASE "+ident(dbs[i]))
	}
	for _, limit := range []int32{2, 4, 7} {
		t.Run(fmt.Sprintf("cap %d", limit), func(t *testing.T) {
			app := "orgforge-" + randomHex(t, 4)
			svc := newService(t, func(c *Config) { c.MaxConnections = limit; c.ApplicationName = app })

			var peak atomic.Int64
			stop := make(chan struct{})
			sampled := make(chan error, 1)
			sampler := superuser(t, "postgres")
			go func() {
				var n int64
				for {
					err := sampler.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&n)
					if err != nil {
						sampled <- err
						return
					}
					if n > peak.Load() {
						peak.Store(n)
					}
					select {
					case <-stop:
						sampled <- nil
						return
					default:
					}
				}
			}()

			var wg sync.WaitGroup
			errs := make(chan error, len(dbs)+10)
			for _, db := range dbs {
				wg.Go(func() {
					pool, release, err := svc.OrgPool(ctx, db)
					if err != nil {
						errs <- err
						return
					}
					defer release()
					var got string
					if err := pool.QueryRow(ctx, "SELECT current_database() FROM pg_sleep(0.01)").Scan(&got); err != nil || got != db {
						errs <- fmt.Errorf("in %s: got database %q, %v", db, got, err)
					}
				})
			}
			for range 10 {
				wg.Go(func() {
					if _, err := svc.admin.Exec(ctx, "SELECT pg_sleep(0.01)"); err != nil {
						errs <- err
					}
				})
			}
			wg.Wait()
			close(stop)
			if err := <-sampled; err != nil {
				t.Fatal(err)
			}
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			t.Logf("peak operator connections with cap %d over %d databases: %d", limit, len(dbs), peak.Load())
			if peak.Load() > int64(limit) {
				t.Errorf("peak connections = %d, above the cap of %d", peak.Load(), limit)
			}
			if peak.Load() < 2 {
				t.Errorf("peak connections = %d; the sampler saw no concurrency, so the test proves nothing", peak.Load())
			}
			if n := svc.orgs.size(); n > int(limit) {
				t.Errorf("%d org pools kept, more than the cap", n)
			}
		})
	}
}

func TestOrgPoolWaitsForAFreeSlotAndEvictsTheLeastRecentlyUsed(t *testing.T) {
	svc := newService(t, func(c *Config) { c.MaxConnections = 2 }) // one admin, one tenant connection
	ctx := testContext(t)
	a, b := newTenant(t), newTenant(t)
	provision(t, svc, a)
	provision(t, svc, b)

	poolA, releaseA, err := svc.OrgPool(ctx, a.name)
	if err != nil {
		t.Fatal(err)
	}
	if err := poolA.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, _, err := svc.OrgPool(short, b.name); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("OrgPool while the only slot is held: err = %v, want the context's deadline", err)
	}

	go func() {
		time.Sleep(100 * time.Millisecond)
		releaseA()
	}()
	poolB, releaseB, err := svc.OrgPool(ctx, b.name)
	if err != nil {
		t.Fatalf("OrgPool after the slot is released: %v", err)
	}
	defer releaseB()
	var db string
	if err := poolB.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil || db != b.name {
		t.Errorf("current_database() = %q, %v; want %q", db, err, b.name)
	}
	if err := poolA.Ping(ctx); err == nil {
		t.Error("the evicted pool still works")
	}
	again, releaseAgain, err := svc.OrgPool(ctx, b.name)
	if err != nil {
		t.Fatal(err)
	}
	releaseAgain()
	if again != poolB {
		t.Error("a second OrgPool for the same database built another pool")
	}
}

func TestServiceRidesOutAServerRestart(t *testing.T) {
	ctx := testContext(t)
	server := startPostgres(t)
	var logs logBuffer
	policy := retry.Policy{Attempts: 8, Base: 250 * time.Millisecond, Factor: 2, Jitter: 0.1, Cap: 2 * time.Second}
	svc, err := New(ctx, Config{AdminDSN: server.AdminDSN(), Retry: policy}, logs.logger())
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if err := svc.HealthCheck(ctx); err != nil {
		t.Fatal(err)
	}

	if err := server.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := svc.HealthCheck(ctx); err == nil {
		t.Error("HealthCheck passed with the server stopped")
	} else if c := Classify(err); !c.Transient() {
		t.Errorf("HealthCheck error %v is of class %q, want a transient one", err, c)
	}
	restarted := make(chan error, 1)
	go func() {
		time.Sleep(time.Second)
		restarted <- server.Start(ctx)
	}()

	tn := newTenant(t)
	if change, err := svc.EnsureRole(ctx, tn.roleSpec()); err != nil || change != Created {
		t.Fatalf("EnsureRole across the restart = %v, %v; want Created", change, err)
	}
	if err := <-restarted; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "Retrying after a transient error") {
		t.Errorf("no retry was logged:\n%s", logs.String())
	}
}
