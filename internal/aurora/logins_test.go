package aurora

import (
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
)

// loginsSpec is tenant tn's logins spec with login active under verifier
// and other inactive.
func (tn tenant) loginsSpec(login, verifier, other string) LoginsSpec {
	return LoginsSpec{Owner: tn.name, Database: tn.name, Marker: tn.marker, ConnLimit: 5, Logins: []Login{
		{Name: login, Active: true, Verifier: verifier},
		{Name: other},
	}}
}

func queryOne[T any](t *testing.T, conn *pgx.Conn, sql string) T {
	t.Helper()
	var v T
	if err := conn.QueryRow(testContext(t), sql).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

func TestALoginCreatesWhatTheOwnerOwnsAndItsRevocationEndsNoSession(t *testing.T) {
	svc, ctx, tn := setUp(t)
	provision(t, svc, tn)
	login, other := tn.name+"$1", tn.name+"$2"
	password, verifier := newPassword(t)
	changes, err := svc.EnsureLogins(ctx, tn.loginsSpec(login, verifier, other))
	if err != nil || len(changes) != 1 || changes[0].Change != Created {
		t.Fatalf("EnsureLogins = %+v, %v; want login created", changes, err)
	}

	conn, err := connectAs(ctx, login, password, tn.name)
	if err != nil {
		t.Fatalf("the login does not log in: %v", err)
	}
	defer conn.Close(ctx)
	if got := queryOne[string](t, conn, "SELECT current_user"); got != tn.name {
		t.Errorf("a session of the login runs as %q, want the owner %q", got, tn.name)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE through_login (x int); INSERT INTO through_login VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if got := queryOne[string](t, conn, "SELECT tableowner::text FROM pg_tables WHERE tablename = 'through_login'"); got != tn.name {
		t.Errorf("a table created through the login is owned by %q, want %q", got, tn.name)
	}
	owner, err := connectAs(ctx, tn.name, tn.password, tn.name)
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close(ctx)
	if n := queryOne[int](t, owner, "SELECT count(*) FROM through_login"); n != 1 {
		t.Errorf("the owner's login reads %d rows of the login's table", n)
	}
	if serverVersion(t) >= 150000 {
		// NOINHERIT: a session that gives up the owner's role owns nothing.
		if _, err := conn.Exec(ctx, "SET ROLE NONE; CREATE TABLE as_login (x int)"); err == nil {
			t.Error("a login that set its role back to itself created a table")
		}
		if _, err := conn.Exec(ctx, "RESET ROLE"); err != nil {
			t.Fatal(err)
		}
	}

	// Asked again, nothing is sent.
	before := svc.ddl.Load()
	if changes, err := svc.EnsureLogins(ctx, tn.loginsSpec(login, "", other)); err != nil || len(changes) != 0 {
		t.Errorf("EnsureLogins again = %+v, %v; want no change", changes, err)
	}
	if n := svc.ddl.Load() - before; n != 0 {
		t.Errorf("EnsureLogins of logins as asked sent %d DDL statements", n)
	}

	// Revoked, it can no longer log in, and its open session goes on.
	spec := tn.loginsSpec(other, verifier, login)
	changes, err = svc.EnsureLogins(ctx, spec)
	if err != nil || len(changes) != 2 || !changes[1].Revoked {
		t.Fatalf("EnsureLogins = %+v, %v; want the other created and the login revoked", changes, err)
	}
	if _, err := connectAs(ctx, login, password, tn.name); err == nil {
		t.Error("a revoked login still logs in")
	}
	if n := queryOne[int](t, conn, "SELECT count(*) FROM through_login"); n != 1 {
		t.Errorf("the revoked login's open session reads %d rows", n)
	}
	// The owner too, once it is no longer a login.
	rs := tn.roleSpec()
	rs.NoLogin, rs.Verifier = true, ""
	if change, err := svc.EnsureRole(ctx, rs); err != nil || change != Updated {
		t.Fatalf("EnsureRole NOLOGIN = %v, %v", change, err)
	}
	if _, err := connectAs(ctx, tn.name, tn.password, tn.name); err == nil {
		t.Error("the owner still logs in once NOLOGIN")
	}
	if n := queryOne[int](t, owner, "SELECT count(*) FROM through_login"); n != 1 {
		t.Errorf("the owner's open session reads %d rows after NOLOGIN", n)
	}

	// Dropped with the database, the logins leave nothing behind.
	conn.Close(ctx)
	owner.Close(ctx)
	if _, err := svc.DropDatabase(ctx, tn.name, tn.marker); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{login, other, tn.name} {
		if dropped, err := svc.DropRole(ctx, name, tn.marker); err != nil || !dropped {
			t.Errorf("DropRole(%s) = %v, %v", name, dropped, err)
		}
	}
}

func TestALoginNameHeldByAnotherRoleIsAConflictAndIsLeftAlone(t *testing.T) {
	svc, ctx, tn := setUp(t)
	provision(t, svc, tn)
	login, other := tn.name+"$1", tn.name+"$2"
	su := superuser(t, "postgres")
	mustExec(t, su, "CREATE ROLE "+ident(login)+" LOGIN PASSWORD 'theirs'")
	_, verifier := newPassword(t)
	if _, err := svc.EnsureLogins(ctx, tn.loginsSpec(login, verifier, other)); !errors.Is(err, ErrConflict) {
		t.Errorf("EnsureLogins over a foreign role: err = %v, want ErrConflict", err)
	}
	if _, err := svc.EnsureLogins(ctx, tn.loginsSpec(other, verifier, login)); err != nil {
		t.Fatal(err)
	}
	if !queryOne[bool](t, su, "SELECT rolcanlogin FROM pg_roles WHERE rolname = '"+login+"'") {
		t.Error("an inactive login name held by a foreign role was revoked")
	}
	mustExec(t, su, "DROP ROLE "+ident(login))
}
