package aurora

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestUsageCountsTheSessionsOfTheRoleAndItsLoginsAndTheDatabaseGrowing(t *testing.T) {
	svc, ctx, tn := setUp(t)
	provision(t, svc, tn)
	// The operator's own session in the database, as the admin, is not
	// the tenant's.
	if _, err := svc.EnsureExtensions(ctx, tn.name, []string{"citext"}); err != nil {
		t.Fatal(err)
	}
	before, err := svc.Usage(ctx, tn.name, tn.name)
	if err != nil {
		t.Fatal(err)
	}
	if before.DatabaseBytes <= 0 || before.Connections != 0 {
		t.Fatalf("Usage of a new database = %+v; want a size and no sessions", before)
	}

	// A login that is a member of the organization's role, as a rotation's
	// logins are, counts; so do sessions to another database.
	su := superuser(t, "postgres")
	login := tn.name + "_1"
	mustExec(t, su, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s' IN ROLE %s", ident(login), tn.verifier, ident(tn.name)))
	t.Cleanup(func() { mustExec(t, superuser(t, "postgres"), "DROP ROLE IF EXISTS "+ident(login)) })
	var sessions []*pgx.Conn
	for _, c := range []struct{ user, db string }{{tn.name, tn.name}, {tn.name, "postgres"}, {login, tn.name}} {
		conn, err := connectAs(ctx, c.user, tn.password, c.db)
		if err != nil {
			t.Fatalf("connecting as %s to %s: %v", c.user, c.db, err)
		}
		sessions = append(sessions, conn)
	}
	mustExec(t, sessions[0], "CREATE TABLE filler AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 20000) g")

	after, err := svc.Usage(ctx, tn.name, tn.name)
	if err != nil {
		t.Fatal(err)
	}
	if after.Connections != 3 {
		t.Errorf("Connections = %d with 3 sessions of the role and its login open, want 3", after.Connections)
	}
	if after.DatabaseBytes < before.DatabaseBytes+4_000_000 {
		t.Errorf("DatabaseBytes = %d after writing about 4.6 MB, was %d", after.DatabaseBytes, before.DatabaseBytes)
	}
	for _, s := range sessions {
		if err := s.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func TestUsageOfAMissingDatabaseIsAnErrorAndAnInvalidNameNeverReachesTheServer(t *testing.T) {
	svc, ctx, tn := setUp(t)
	if _, err := svc.Usage(ctx, tn.name, tn.name); err == nil {
		t.Error("Usage of a database that does not exist succeeded")
	}
	if _, err := svc.Usage(ctx, "", tn.name); !errors.Is(err, ErrInvalid) {
		t.Errorf("Usage of an empty name: err = %v, want ErrInvalid", err)
	}
}
