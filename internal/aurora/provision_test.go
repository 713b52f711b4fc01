package aurora

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/orgforge/orgforge/internal/devstack"
	"github.com/orgforge/orgforge/internal/retry"
)

func TestEveryEnsureCalledAgainChangesNothingAndRunsNoDDL(t *testing.T) {
	svc, ctx, tn := setUp(t)
	exts := []string{"pgcrypto", "citext"}

	start := time.Now()
	role, err := svc.EnsureRole(ctx, tn.roleSpec())
	if err != nil {
		t.Fatal(err)
	}
	db, err := svc.EnsureDatabase(ctx, tn.name, tn.name, tn.marker)
	if err != nil {
		t.Fatal(err)
	}
	secured, err := svc.SecureDatabase(ctx, tn.name, tn.name)
	if err != nil {
		t.Fatal(err)
	}
	provisioning := time.Since(start)
	created, err := svc.EnsureExtensions(ctx, tn.name, exts)
	if err != nil {
		t.Fatal(err)
	}
	first := []any{role, db, secured, created}
	if diff := cmp.Diff([]any{Created, Created, Updated, exts}, first); diff != "" {
		t.Errorf("first calls (-want +got):\n%s", diff)
	}

	ddl := svc.DDLCount()
	start = time.Now()
	// The controller's resync: the password is kept, so no verifier.
	resync := tn.roleSpec()
	resync.Verifier = ""
	role, err = svc.EnsureRole(ctx, resync)
	if err != nil {
		t.Fatal(err)
	}
	db, err = svc.EnsureDatabase(ctx, tn.name, tn.name, tn.marker)
	if err != nil {
		t.Fatal(err)
	}
	secured, err = svc.SecureDatabase(ctx, tn.name, tn.name)
	if err != nil {
		t.Fatal(err)
	}
	resyncTime := time.Since(start)
	created, err = svc.EnsureExtensions(ctx, tn.name, exts)
	if err != nil {
		t.Fatal(err)
	}
	second := []any{role, db, secured, created}
	if diff := cmp.Diff([]any{Unchanged, Unchanged, Unchanged, []string(nil)}, second); diff != "" {
		t.Errorf("second calls (-want +got):\n%s", diff)
	}
	if got := svc.DDLCount(); got != ddl {
		t.Errorf("second calls ran %d DDL statements, want none", got-ddl)
	}
	t.Logf("EnsureRole+EnsureDatabase+SecureDatabase for one organization: %s to create, %s to resync",
		provisioning.Round(time.Millisecond), resyncTime.Round(time.Millisecond))
}

func TestEnsureRoleCreatesALoginThatAcceptsOnlyItsPassword(t *testing.T) {
	svc, ctx, tn := setUp(t)
	ensureRole(t, svc, tn)

	conn, err := connectAs(ctx, tn.name, tn.password, "postgres")
	if err != nil {
		t.Fatalf("logging in with the password: %v", err)
	}
	var user string
	if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil || user != tn.name {
		t.Errorf("current_user = %q, %v; want %q", user, err, tn.name)
	}
	_ = conn.Close(ctx)
	_, err = connectAs(ctx, tn.name, tn.password+"x", "postgres")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Errorf("login with a wrong password: %v, want 28P01", err)
	}

	type attrs struct {
		Super, CreateDB, CreateRole, Inherit, Login bool
		ConnLimit                                   int32
		Comment                                     string
		AdminIsMember                               bool
	}
	var got attrs
	err = superuser(t, "postgres").QueryRow(ctx, `SELECT rolsuper, rolcreatedb, rolcreaterole, rolinherit, rolcanlogin,
			rolconnlimit, shobj_description(oid, 'pg_authid'), pg_has_role($2, oid, 'MEMBER')
		FROM pg_roles WHERE rolname = $1`, tn.name, devstack.AdminUser).
		Scan(&got.Super, &got.CreateDB, &got.CreateRole, &got.Inherit, &got.Login, &got.ConnLimit, &got.Comment, &got.AdminIsMember)
	if err != nil {
		t.Fatal(err)
	}
	want := attrs{Inherit: true, Login: true, ConnLimit: 5, Comment: tn.marker.String(), AdminIsMember: true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("role (-want +got):\n%s", diff)
	}
}

func TestEnsureRoleChangesThePasswordOnlyWhenGivenAVerifier(t *testing.T) {
	svc, ctx, tn := setUp(t)
	ensureRole(t, svc, tn)
	logsIn := func(pw string) bool {
		conn, err := connectAs(ctx, tn.name, pw, "postgres")
		if err != nil {
			return false
		}
		_ = conn.Close(ctx)
		return true
	}

	keep := tn.roleSpec()
	keep.Verifier = ""
	keep.ConnLimit = 9
	if change, err := svc.EnsureRole(ctx, keep); err != nil || change != Updated {
		t.Fatalf("EnsureRole with a new limit = %v, %v; want Updated", change, err)
	}
	if info, err := svc.InspectRole(ctx, tn.name); err != nil || info.ConnLimit != 9 {
		t.Errorf("connection limit = %d, %v; want 9", info.ConnLimit, err)
	}
	if !logsIn(tn.password) {
		t.Error("changing the connection limit changed the password")
	}

	rotated, v := newPassword(t)
	rotate := keep
	rotate.Verifier = v
	if change, err := svc.EnsureRole(ctx, rotate); err != nil || change != Updated {
		t.Fatalf("EnsureRole with a verifier = %v, %v; want Updated", change, err)
	}
	if !logsIn(rotated) || logsIn(tn.password) {
		t.Errorf("after rotation: new password logs in = %v, old = %v; want true, false", logsIn(rotated), logsIn(tn.password))
	}
}

func TestEnsureRoleRefusesACleartextPasswordAndANewRoleWithoutOne(t *testing.T) {
	svc, ctx, tn := setUp(t)
	cleartext := tn.roleSpec()
	cleartext.Verifier = tn.password
	noPassword := tn.roleSpec()
	noPassword.Verifier = ""
	for name, spec := range map[string]RoleSpec{"cleartext": cleartext, "no password": noPassword} {
		_, err := svc.EnsureRole(ctx, spec)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
		if strings.Contains(errString(err), tn.password) {
			t.Errorf("%s: error holds the password", name)
		}
	}
	if info, err := svc.InspectRole(ctx, tn.name); err != nil || info.Exists {
		t.Errorf("role exists = %v, %v; want no role", info.Exists, err)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestEnsureRoleRepairsLoginAndTheAdminsMembership(t *testing.T) {
	svc, ctx, tn := setUp(t)
	ensureRole(t, svc, tn)
	su := superuser(t, "postgres")
	// The admin's own grant of the role, which gives it the role's rights.
	// From PostgreSQL 16 the admin also holds ADMIN on a role it created,
	// granted by the bootstrap superuser; a plain REVOKE would take that
	// too, and with it any way for the admin to get the role back.
	mustExec(t, su, "ALTER ROLE "+ident(tn.name)+" NOLOGIN")
	mustExec(t, su, "REVOKE "+ident(tn.name)+" FROM "+ident(devstack.AdminUser)+" GRANTED BY "+ident(devstack.AdminUser))
	hasRights := func() (login, rights bool) {
		t.Helper()
		err := su.QueryRow(ctx, `SELECT rolcanlogin, pg_has_role($2, oid, 'USAGE') FROM pg_roles WHERE rolname = $1`,
			tn.name, devstack.AdminUser).Scan(&login, &rights)
		if err != nil {
			t.Fatal(err)
		}
		return login, rights
	}
	if _, rights := hasRights(); rights {
		t.Fatal("the admin still has the role's rights after the REVOKE")
	}

	spec := tn.roleSpec()
	spec.Verifier = ""
	if change, err := svc.EnsureRole(ctx, spec); err != nil || change != Updated {
		t.Fatalf("EnsureRole = %v, %v; want Updated", change, err)
	}
	if login, rights := hasRights(); !login || !rights {
		t.Errorf("login = %v, admin has the role's rights = %v; want both", login, rights)
	}
	if _, err := svc.EnsureDatabase(ctx, tn.name, tn.name, tn.marker); err != nil {
		t.Errorf("EnsureDatabase owned by the repaired role: %v", err)
	}
}

func TestEnsureRoleAndDropRoleLeaveARoleWithoutOurMarkerAlone(t *testing.T) {
	svc := newService(t)
	ctx := testContext(t)
	su := superuser(t, "postgres")
	mine := newTenant(t)
	cases := map[string]string{
		"no comment":                      "",
		"a human comment":                 "the finance team's login",
		"another organization's marker":   Marker{Org: "other", UID: "1"}.String(),
		"same organization, previous uid": Marker{Org: mine.marker.Org, UID: "previous"}.String(),
	}
	for name, comment := range cases {
		t.Run(name, func(t *testing.T) {
			tn := newTenant(t)
			tn.marker = mine.marker
			mustExec(t, su, "CREATE ROLE "+ident(tn.name)+" LOGIN CONNECTION LIMIT 2 PASSWORD 'theirs'")
			if comment != "" {
				mustExec(t, su, "COMMENT ON ROLE "+ident(tn.name)+" IS "+mustQuote(comment))
			}
			before := svc.DDLCount()

			_, err := svc.EnsureRole(ctx, tn.roleSpec())
			if !errors.Is(err, ErrConflict) {
				t.Errorf("EnsureRole: err = %v, want ErrConflict", err)
			}
			if _, err := svc.DropRole(ctx, tn.name, tn.marker); !errors.Is(err, ErrConflict) {
				t.Errorf("DropRole: err = %v, want ErrConflict", err)
			}
			if got := svc.DDLCount(); got != before {
				t.Errorf("ran %d DDL statements on a role that is not ours", got-before)
			}
			info, err := svc.InspectRole(ctx, tn.name)
			if err != nil {
				t.Fatal(err)
			}
			want := RoleInfo{Exists: true, Comment: comment, ConnLimit: 2, CanLogin: true}
			if diff := cmp.Diff(want, info, cmpopts.IgnoreFields(RoleInfo{}, "Marker", "HasMarker")); diff != "" {
				t.Errorf("role after (-want +got):\n%s", diff)
			}
			conn, err := connectAs(ctx, tn.name, "theirs", "postgres")
			if err != nil {
				t.Errorf("the role's own password no longer works: %v", err)
			} else {
				_ = conn.Close(ctx)
			}
		})
	}
}

func TestEnsureDatabaseAndDropDatabaseLeaveADatabaseWithoutOurMarkerAlone(t *testing.T) {
	svc := newService(t)
	ctx := testContext(t)
	su := superuser(t, "postgres")
	mine := newTenant(t)
	ensureRole(t, svc, mine)
	other := newTenant(t)
	ensureRole(t, svc, other)
	cases := map[string]struct {
		owner, comment string
	}{
		"unmarked, owned by the superuser":         {"postgres", ""},
		"a human comment, owned by our role":       {mine.name, "payroll, do not touch"},
		"another organization's marker":            {other.name, other.marker.String()},
		"unmarked, owned by another organization":  {other.name, ""},
		"our marker with another uid, our owner":   {mine.name, Marker{Org: mine.marker.Org, UID: "old"}.String()},
		"a human comment, owned by the superuser":  {"postgres", "legacy"},
		"another organization's marker, superuser": {"postgres", other.marker.String()},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			name := "foreign_" + randomHex(t, 4)
			mustExec(t, su, "CREATE DATABASE "+ident(name)+" OWNER "+ident(tc.owner))
			if tc.comment != "" {
				mustExec(t, su, "COMMENT ON DATABASE "+ident(name)+" IS "+mustQuote(tc.comment))
			}
			data := superuser(t, name)
			mustExec(t, data, "CREATE TABLE accounts (id int PRIMARY KEY, balance numeric)")
			mustExec(t, data, "INSERT INTO accounts VALUES (1, 10), (2, 20), (3, 30)")
			_ = data.Close(ctx)
			before := svc.DDLCount()

			if _, err := svc.EnsureDatabase(ctx, name, mine.name, mine.marker); !errors.Is(err, ErrConflict) {
				t.Errorf("EnsureDatabase: err = %v, want ErrConflict", err)
			}
			if _, err := svc.DropDatabase(ctx, name, mine.marker); !errors.Is(err, ErrConflict) {
				t.Errorf("DropDatabase: err = %v, want ErrConflict", err)
			}
			if got := svc.DDLCount(); got != before {
				t.Errorf("ran %d DDL statements on a database that is not ours", got-before)
			}
			var rows int
			if err := superuser(t, name).QueryRow(ctx, "SELECT count(*) FROM accounts").Scan(&rows); err != nil || rows != 3 {
				t.Errorf("rows = %d, %v; want 3", rows, err)
			}
			info, err := svc.Inspect(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			if info.Comment != tc.comment || info.Owner != tc.owner {
				t.Errorf("comment, owner = %q, %q; want %q, %q", info.Comment, info.Owner, tc.comment, tc.owner)
			}
		})
	}
}

func TestEnsureDatabaseFinishesACreationInterruptedBeforeTheMarker(t *testing.T) {
	svc, ctx, tn := setUp(t)
	ensureRole(t, svc, tn)
	// As if the operator died between CREATE DATABASE and COMMENT.
	mustExec(t, superuser(t, "postgres"), "CREATE DATABASE "+ident(tn.name)+" OWNER "+ident(tn.name))

	if change, err := svc.EnsureDatabase(ctx, tn.name, tn.name, tn.marker); err != nil || change != Created {
		t.Fatalf("EnsureDatabase = %v, %v; want Created", change, err)
	}
	info, err := svc.Inspect(ctx, tn.name)
	if err != nil {
		t.Fatal(err)
	}
	if !info.HasMarker || info.Marker != tn.marker {
		t.Errorf("marker = %+v (%v), want %+v", info.Marker, info.HasMarker, tn.marker)
	}
}

func TestEnsureDatabaseGivesItsDatabaseBackToTheOwner(t *testing.T) {
	svc, ctx, a := setUp(t)
	b := newTenant(t)
	provision(t, svc, a)
	ensureRole(t, svc, b)
	mustExec(t, superuser(t, "postgres"), "ALTER DATABASE "+ident(a.name)+" OWNER TO "+ident(b.name))

	if change, err := svc.EnsureDatabase(ctx, a.name, a.name, a.marker); err != nil || change != Updated {
		t.Fatalf("EnsureDatabase = %v, %v; want Updated", change, err)
	}
	if info, err := svc.Inspect(ctx, a.name); err != nil || info.Owner != a.name {
		t.Errorf("owner = %q, %v; want %q", info.Owner, err, a.name)
	}
}

func TestEnsureDatabaseRefusesAnOwnerThatIsNotTheOrganizations(t *testing.T) {
	svc, ctx, a := setUp(t)
	b := newTenant(t)
	ensureRole(t, svc, b)
	if _, err := svc.EnsureDatabase(ctx, a.name, b.name, a.marker); !errors.Is(err, ErrConflict) {
		t.Errorf("owner of another organization: err = %v, want ErrConflict", err)
	}
	if _, err := svc.EnsureDatabase(ctx, a.name, a.name, a.marker); !errors.Is(err, ErrInvalid) {
		t.Errorf("owner that does not exist: err = %v, want ErrInvalid", err)
	}
	if info, err := svc.Inspect(ctx, a.name); err != nil || info.Exists {
		t.Errorf("database exists = %v, %v; want none", info.Exists, err)
	}
}

func TestSecureDatabaseLetsOnlyItsTenantIn(t *testing.T) {
	svc, ctx, a := setUp(t)
	b := newTenant(t)
	provision(t, svc, a)
	provision(t, svc, b)

	_, err := connectAs(ctx, b.name, b.password, a.name)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		t.Errorf("tenant b connecting to a's database: %v, want permission denied (42501)", err)
	}

	var publicConnect, publicTemp bool
	err = superuser(t, a.name).QueryRow(ctx, `SELECT has_database_privilege('public', current_database(), 'CONNECT'),
			has_database_privilege('public', current_database(), 'TEMPORARY')`).Scan(&publicConnect, &publicTemp)
	if err != nil {
		t.Fatal(err)
	}
	if publicConnect || publicTemp {
		t.Errorf("PUBLIC connect=%v temp=%v; want neither", publicConnect, publicTemp)
	}
	if diff := cmp.Diff(wantSchemaPublic(t, a), readSchemaPublic(t, a.name)); diff != "" {
		t.Errorf("schema public (-want +got):\n%s", diff)
	}

	conn, err := connectAs(ctx, a.name, a.password, a.name)
	if err != nil {
		t.Fatalf("tenant a connecting to its database: %v", err)
	}
	defer func() { _ = conn.Close(ctx) }()
	if _, err := conn.Exec(ctx, "CREATE TABLE notes (id serial PRIMARY KEY, body text)"); err != nil {
		t.Fatalf("tenant creating a table in its schema public: %v", err)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO notes (body) VALUES ('hello')"); err != nil {
		t.Fatal(err)
	}
}

func TestEnsureExtensionsCreatesTrustedExtensionsOwnedByTheTenant(t *testing.T) {
	svc, ctx, tn := setUp(t)
	provision(t, svc, tn)
	exts := []string{"pgcrypto", "citext", "uuid-ossp", "hstore", "pgcrypto"}

	created, err := svc.EnsureExtensions(ctx, tn.name, exts)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"pgcrypto", "citext", "uuid-ossp", "hstore"}, created); diff != "" {
		t.Errorf("created (-want +got):\n%s", diff)
	}
	rows, err := superuser(t, tn.name).Query(ctx,
		`SELECT extname || ' ' || pg_get_userbyid(extowner) FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY extname`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"citext " + tn.name, "hstore " + tn.name, "pgcrypto " + tn.name, "uuid-ossp " + tn.name}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("extensions and owners (-want +got):\n%s", diff)
	}

	conn, err := connectAs(ctx, tn.name, tn.password, tn.name)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	var digest string
	if err := conn.QueryRow(ctx, "SELECT encode(digest('abc', 'sha256'), 'hex')").Scan(&digest); err != nil {
		t.Errorf("tenant using pgcrypto: %v", err)
	}
}

func TestEnsureExtensionsRefusesWhatTheServerCannotInstall(t *testing.T) {
	svc, ctx, tn := setUp(t)
	provision(t, svc, tn)

	before := svc.DDLCount()
	_, err := svc.EnsureExtensions(ctx, tn.name, []string{"pgcrypto", "no_such_extension"})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(errString(err), `"no_such_extension"`) {
		t.Errorf("unknown extension: err = %v, want ErrInvalid naming it", err)
	}
	if got := svc.DDLCount(); got != before {
		t.Errorf("ran %d DDL statements, want none when one extension is missing", got-before)
	}
	// file_fdw reads the server's files: untrusted, superuser only.
	_, err = svc.EnsureExtensions(ctx, tn.name, []string{"file_fdw"})
	if Classify(err) != retry.ClassPermission {
		t.Errorf("untrusted extension: err = %v (class %q), want a permission error", err, Classify(err))
	}
	var n int
	if err := superuser(t, tn.name).QueryRow(ctx, `SELECT count(*) FROM pg_extension WHERE extname <> 'plpgsql'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("extensions installed = %d, %v; want none", n, err)
	}
}

func TestCheckExtensionsRefusesWhatATenantCannotCreate(t *testing.T) {
	s := newService(t)
	ctx := testContext(t)
	cases := map[string]struct {
		exts []string
		want string
	}{
		"none":                   {nil, ""},
		"trusted extensions":     {[]string{"pgcrypto", "citext", "pgcrypto"}, ""},
		"one the server lacks":   {[]string{"pgcrypto", "no_such_extension"}, `extension "no_such_extension" is not available`},
		"superuser only":         {[]string{"file_fdw", "dblink"}, `extension "dblink" and "file_fdw" can only be created by a superuser`},
		"name the server cuts":   {[]string{strings.Repeat("e", 64)}, "longer than 63 bytes"},
		"name with a NUL":        {[]string{"pg\x00crypto"}, "not valid UTF-8 text"},
		"SQL posing as its name": {[]string{"pgcrypto; DROP DATABASE postgres"}, `extension "pgcrypto; DROP DATABASE postgres" is not available`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			ddl := s.DDLCount()
			err := s.CheckExtensions(ctx, tc.exts)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("CheckExtensions(%q): %v", tc.exts, err)
			case tc.want != "" && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("CheckExtensions(%q) = %v; want ErrInvalid saying %q", tc.exts, err, tc.want)
			}
			if s.DDLCount() != ddl {
				t.Error("CheckExtensions sent DDL")
			}
		})
	}
}

func TestDropDatabaseEndsTenantSessionsAndDropRoleLeavesNoRole(t *testing.T) {
	svc, ctx, tn := setUp(t)
	provision(t, svc, tn)
	session, err := connectAs(ctx, tn.name, tn.password, tn.name)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = session.Close(ctx) }()
	// The operator's own pool on the database is in use too.
	if _, err := svc.EnsureExtensions(ctx, tn.name, []string{"citext"}); err != nil {
		t.Fatal(err)
	}
	elsewhere, err := connectAs(ctx, tn.name, tn.password, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = elsewhere.Close(ctx) }()

	if dropped, err := svc.DropDatabase(ctx, tn.name, tn.marker); err != nil || !dropped {
		t.Fatalf("DropDatabase = %v, %v; want dropped", dropped, err)
	}
	if err := session.Ping(ctx); err == nil {
		t.Error("the tenant's session survived the drop of its database")
	}
	if dropped, err := svc.DropRole(ctx, tn.name, tn.marker); err != nil || !dropped {
		t.Fatalf("DropRole = %v, %v; want dropped", dropped, err)
	}
	if err := elsewhere.Ping(ctx); err == nil {
		t.Error("the tenant's session to another database survived the drop of its role")
	}

	var databases, roles int
	err = superuser(t, "postgres").QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_database WHERE datname = $1),
		(SELECT count(*) FROM pg_roles WHERE rolname = $1)`, tn.name).Scan(&databases, &roles)
	if err != nil || databases != 0 || roles != 0 {
		t.Errorf("databases, roles named %s = %d, %d, %v; want none", tn.name, databases, roles, err)
	}
	if dropped, err := svc.DropDatabase(ctx, tn.name, tn.marker); err != nil || dropped {
		t.Errorf("DropDatabase again = %v, %v; want false, nil", dropped, err)
	}
	if dropped, err := svc.DropRole(ctx, tn.name, tn.marker); err != nil || dropped {
		t.Errorf("DropRole again = %v, %v; want false, nil", dropped, err)
	}
}

func TestDropDatabaseDropsAnUnmarkedDatabaseOfTheOrganizationsRole(t *testing.T) {
	svc, ctx, tn := setUp(t)
	ensureRole(t, svc, tn)
	mustExec(t, superuser(t, "postgres"), "CREATE DATABASE "+ident(tn.name)+" OWNER "+ident(tn.name))

	if dropped, err := svc.DropDatabase(ctx, tn.name, tn.marker); err != nil || !dropped {
		t.Fatalf("DropDatabase = %v, %v; want dropped", dropped, err)
	}
	if info, err := svc.Inspect(ctx, tn.name); err != nil || info.Exists {
		t.Errorf("database exists = %v, %v; want gone", info.Exists, err)
	}
}

func TestInspectReportsTheDatabaseAndItsRole(t *testing.T) {
	svc, ctx, tn := setUp(t)
	provision(t, svc, tn)

	db, err := svc.Inspect(ctx, tn.name)
	if err != nil {
		t.Fatal(err)
	}
	wantDB := DatabaseInfo{Exists: true, Owner: tn.name, Comment: tn.marker.String(), Marker: tn.marker, HasMarker: true, ConnLimit: 5}
	if diff := cmp.Diff(wantDB, db, cmpopts.IgnoreFields(DatabaseInfo{}, "SizeBytes")); diff != "" {
		t.Errorf("Inspect (-want +got):\n%s", diff)
	}
	if db.SizeBytes <= 0 {
		t.Errorf("SizeBytes = %d, want the database's size", db.SizeBytes)
	}
	role, err := svc.InspectRole(ctx, tn.name)
	if err != nil {
		t.Fatal(err)
	}
	wantRole := RoleInfo{Exists: true, Comment: tn.marker.String(), Marker: tn.marker, HasMarker: true, ConnLimit: 5, CanLogin: true}
	if diff := cmp.Diff(wantRole, role); diff != "" {
		t.Errorf("InspectRole (-want +got):\n%s", diff)
	}

	missing, err := svc.Inspect(ctx, "org_missing_"+randomHex(t, 4))
	if err != nil || missing != (DatabaseInfo{}) {
		t.Errorf("Inspect of a missing database = %+v, %v; want zero, nil", missing, err)
	}
	missingRole, err := svc.InspectRole(ctx, "org_missing_"+randomHex(t, 4))
	if err != nil || missingRole != (RoleInfo{}) {
		t.Errorf("InspectRole of a missing role = %+v, %v; want zero, nil", missingRole, err)
	}
}

func TestNamesPostgreSQLWouldTruncateAreRefused(t *testing.T) {
	svc, ctx, tn := setUp(t)
	long := strings.Repeat("x", 64)
	spec := tn.roleSpec()
	spec.Name = long
	if _, err := svc.EnsureRole(ctx, spec); !errors.Is(err, ErrInvalid) {
		t.Errorf("EnsureRole(64-byte name): err = %v, want ErrInvalid", err)
	}
	if _, err := svc.EnsureDatabase(ctx, long, tn.name, tn.marker); !errors.Is(err, ErrInvalid) {
		t.Errorf("EnsureDatabase(64-byte name): err = %v, want ErrInvalid", err)
	}
	if _, _, err := svc.OrgPool(ctx, long); !errors.Is(err, ErrInvalid) {
		t.Errorf("OrgPool(64-byte name): err = %v, want ErrInvalid", err)
	}
}

func TestARefusalDespiteMembershipIsRetriedOnANewConnectionAndTheSuspectOneClosed(t *testing.T) {
	svc := newService(t)
	ctx := testContext(t)
	refused := &pgconn.PgError{Code: "42501", Message: "must be owner of database x"}

	var pids []uint32
	err := svc.withAdminConn(ctx, func(q querier) error {
		var pid uint32
		if err := q.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			return err
		}
		pids = append(pids, pid)
		if len(pids) == 1 {
			return fmt.Errorf("creating database: %w", refusedDespiteMembership(refused))
		}
		return nil
	})
	if err != nil || len(pids) != 2 {
		t.Fatalf("withAdminConn = %v after %d attempts; want success on the second", err, len(pids))
	}
	if pids[0] == pids[1] {
		t.Errorf("the retry ran on the refusing session %d; want a new one", pids[0])
	}
	var open int
	if err := superuser(t, "postgres").QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pids[0]).Scan(&open); err != nil {
		t.Fatal(err)
	}
	if open != 0 {
		t.Errorf("the refusing session %d is still open", pids[0])
	}

	attempts := 0
	err = svc.withAdminConn(ctx, func(querier) error {
		attempts++
		return refusedDespiteMembership(refused)
	})
	if !errors.Is(err, refused) || attempts != staleAttempts {
		t.Errorf("a lasting refusal: err %v after %d attempts; want it returned after %d", err, attempts, staleAttempts)
	}
	if total, max := svc.admin.Stat().TotalConns(), svc.admin.Stat().MaxConns(); total > max {
		t.Errorf("the admin pool holds %d connections after the retries; its cap is %d", total, max)
	}

	// A refusal fn did not vouch for, like any other error, is returned at
	// once: a real lack of privilege is not retried.
	for _, other := range []error{refused, &pgconn.PgError{Code: "42P04"}} {
		attempts = 0
		if err := svc.withAdminConn(ctx, func(querier) error { attempts++; return other }); !errors.Is(err, other) || attempts != 1 {
			t.Errorf("%v: err %v after %d attempts; want it returned at once", other, err, attempts)
		}
	}
}

func TestSecureDatabaseAccessEntersTheDatabaseOnlyWhenPublicCanStillConnect(t *testing.T) {
	svc := newService(t)
	ctx := testContext(t)
	a := newTenant(t)
	provision(t, svc, a)
	su := superuser(t, "postgres")

	tenantSessions := func() int {
		var n int
		if err := su.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = $2",
			a.name, svc.cfg.ApplicationName).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	closeTenantPool := func() {
		svc.orgs.forget(a.name)
		for deadline := time.Now().Add(5 * time.Second); tenantSessions() != 0; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the tenant pool's session did not end")
			}
		}
	}

	// A secured database: nothing to do, and no session inside it.
	closeTenantPool()
	ddl := svc.DDLCount()
	if change, err := svc.SecureDatabaseAccess(ctx, a.name, a.name); err != nil || change != Unchanged || svc.DDLCount() != ddl {
		t.Errorf("SecureDatabaseAccess on a secured database = %v, %v with %d DDL; want Unchanged and none", change, err, svc.DDLCount()-ddl)
	}
	if n := tenantSessions(); n != 0 {
		t.Errorf("%d sessions in the tenant's database; want none", n)
	}

	// What an interrupted SecureDatabase leaves: PUBLIC may connect, and
	// schema public is as the server made it.
	mustExec(t, su, "GRANT CONNECT, TEMPORARY ON DATABASE "+ident(a.name)+" TO PUBLIC")
	inside := superuser(t, a.name)
	mustExec(t, inside, "ALTER SCHEMA public OWNER TO "+ident(madeSchemaPublic(t).Owner))
	mustExec(t, inside, "GRANT CREATE ON SCHEMA public TO PUBLIC")
	change, err := svc.SecureDatabaseAccess(ctx, a.name, a.name)
	if err != nil || change != Updated {
		t.Fatalf("SecureDatabaseAccess = %v, %v; want Updated", change, err)
	}
	var publicConnect bool
	if err := su.QueryRow(ctx, "SELECT has_database_privilege('public', $1, 'CONNECT')", a.name).Scan(&publicConnect); err != nil {
		t.Fatal(err)
	}
	if publicConnect {
		t.Error("after SecureDatabaseAccess PUBLIC may still connect")
	}
	if diff := cmp.Diff(wantSchemaPublic(t, a), readSchemaPublic(t, a.name)); diff != "" {
		t.Errorf("schema public after SecureDatabaseAccess (-want +got):\n%s", diff)
	}
}

// schemaPublic is who owns schema public of a database and whether PUBLIC
// may create in it.
type schemaPublic struct {
	Owner         string
	PublicCreates bool
}

func readSchemaPublic(t *testing.T, db string) schemaPublic {
	t.Helper()
	var got schemaPublic
	err := superuser(t, db).QueryRow(testContext(t), `SELECT pg_get_userbyid(nspowner), has_schema_privilege('public', oid, 'CREATE')
		FROM pg_namespace WHERE nspname = 'public'`).Scan(&got.Owner, &got.PublicCreates)
	if err != nil {
		t.Fatalf("reading schema public of %s: %v", db, err)
	}
	return got
}

// madeSchemaPublic is schema public as the server makes it in a new
// database: from PostgreSQL 15 the database owner's, closed to PUBLIC;
// before, the bootstrap superuser's, open to PUBLIC.
func madeSchemaPublic(t *testing.T) schemaPublic {
	if serverVersion(t) >= 150000 {
		return schemaPublic{Owner: "pg_database_owner"}
	}
	var bootstrap string
	if err := superuser(t, "postgres").QueryRow(testContext(t), "SELECT rolname FROM pg_roles WHERE oid = 10").Scan(&bootstrap); err != nil {
		t.Fatal(err)
	}
	return schemaPublic{Owner: bootstrap, PublicCreates: true}
}

// wantSchemaPublic is schema public of tenant tn's secured database: from
// PostgreSQL 15 the tenant's and closed to PUBLIC; before 15 as the server
// made it, since only a superuser may change it.
func wantSchemaPublic(t *testing.T, tn tenant) schemaPublic {
	if serverVersion(t) >= 150000 {
		return schemaPublic{Owner: tn.name}
	}
	return madeSchemaPublic(t)
}
