package aurora

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Change says what an Ensure call did, so that callers record an event only
// when something changed.
type Change int

const (
	// Unchanged means the object was already as asked; no DDL was sent.
	Unchanged Change = iota
	// Created means the object did not exist, or its creation had been
	// interrupted, and is now complete.
	Created
	// Updated means the object existed and was altered.
	Updated
)

// String returns the change's name.
func (c Change) String() string {
	switch c {
	case Unchanged:
		return "Unchanged"
	case Created:
		return "Created"
	case Updated:
		return "Updated"
	}
	return fmt.Sprintf("Change(%d)", int(c))
}

// RoleSpec is the login role of an Organization.
type RoleSpec struct {
	// Name is the role's name.
	Name string
	// Marker is written as the role's comment.
	Marker Marker
	// Verifier is the SCRAM-SHA-256 verifier of the password to set. Empty
	// keeps the current password; a new role needs one.
	Verifier string
	// ConnLimit is the role's CONNECTION LIMIT; -1 is no limit.
	ConnLimit int32
	// NoLogin makes the role NOLOGIN with no password: once credentials
	// rotate, the owner of the database is no longer a login (see
	// EnsureLogins). A new role needs no verifier then.
	NoLogin bool
}

// conflictError is ErrConflict with a message for the Organization's status.
type conflictError struct {
	kind, name string
	// holder describes the marker found, if any.
	holder string
}

func (e *conflictError) Error() string {
	return fmt.Sprintf("%s %q already exists and %s; rename or drop it, or give the Organization another name",
		e.kind, e.name, e.holder)
}

func (e *conflictError) Is(target error) bool { return target == ErrConflict }

// conflict is the ErrConflict of an object of kind whose comment is not
// mine's marker; it names the Organization the comment marks, and its
// Kubernetes cluster when that is not mine's.
func conflict(kind, name, comment string, mine Marker) error {
	return &conflictError{kind: kind, name: name, holder: Holder(comment, mine)}
}

// Holder describes, for a message, who an object with comment belongs to, as
// seen by the Organization of mine.
func Holder(comment string, mine Marker) string {
	m, ok := ParseMarker(comment)
	switch {
	case !ok:
		return "has no orgforge ownership marker"
	case !mine.SameCluster(m):
		return fmt.Sprintf("belongs to Organization %q (uid %s) of another Kubernetes cluster, whose orgforge cluster identity is %s",
			m.Org, m.UID, m.Cluster)
	}
	return fmt.Sprintf("belongs to Organization %q (uid %s)", m.Org, m.UID)
}

// isOurs reports whether a comment is a marker m owns.
func isOurs(comment string, m Marker) bool {
	got, ok := ParseMarker(comment)
	return ok && m.Owns(got)
}

// remarks reports whether comment, ours, is to be written again as m: it
// predates the cluster part of markers.
func remarks(comment string, m Marker) bool {
	got, ok := ParseMarker(comment)
	return ok && m.Remarks(got)
}

// roleState is what the service observes of a role.
type roleState struct {
	exists    bool
	canLogin  bool
	connLimit int32
	comment   string
	// member tells whether the admin may act as the role: create a
	// database it owns, alter its objects, end its sessions.
	member bool
}

func (s *Service) observeRole(ctx context.Context, q querier, name string) (roleState, error) {
	var st roleState
	err := q.QueryRow(ctx, `SELECT r.rolcanlogin, r.rolconnlimit,
			COALESCE(shobj_description(r.oid, 'pg_authid'), ''),
			pg_has_role(current_user, r.oid, $2)
		FROM pg_roles r WHERE r.rolname = $1`, name, s.rules.memberPrivilege).Scan(&st.canLogin, &st.connLimit, &st.comment, &st.member)
	if st.exists, err = found(err, "role", name); !st.exists {
		return roleState{}, err
	}
	return st, nil
}

// dbState is what the service observes of a database.
type dbState struct {
	exists  bool
	owner   string
	comment string
}

func (s *Service) observeDatabase(ctx context.Context, q querier, name string) (dbState, error) {
	var st dbState
	err := q.QueryRow(ctx, `SELECT pg_get_userbyid(d.datdba),
			COALESCE(shobj_description(d.oid, 'pg_database'), '')
		FROM pg_database d WHERE d.datname = $1`, name).Scan(&st.owner, &st.comment)
	if st.exists, err = found(err, "database", name); !st.exists {
		return dbState{}, err
	}
	return st, nil
}

// found tells from the error of a row's scan whether the row of object
// name, of kind, was there.
func found(err error, kind, name string) (bool, error) {
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("reading %s %q: %w", kind, name, err)
	}
	return true, nil
}

func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

// EnsureRole makes the Organization's login role exist as spec says. A role
// of that name that does not carry spec.Marker is left untouched and
// reported as ErrConflict. The admin is made a member of the role, which a
// non-superuser needs to create a database owned by it and to drop it.
func (s *Service) EnsureRole(ctx context.Context, spec RoleSpec) (Change, error) {
	if err := spec.validate(); err != nil {
		return Unchanged, err
	}
	change, err := runValue(ctx, s, "EnsureRole", func(ctx context.Context) (Change, error) {
		return s.ensureRole(ctx, spec)
	})
	if err != nil || change != Unchanged {
		s.snaps.wrote(spec.Name)
	}
	if err != nil {
		return Unchanged, err
	}
	switch change {
	case Created:
		s.log.Info("Created role", "role", spec.Name, "connectionLimit", spec.ConnLimit)
	case Updated:
		s.log.Info("Updated role", "role", spec.Name, "connectionLimit", spec.ConnLimit, "passwordSet", spec.Verifier != "")
	}
	return change, nil
}

// validate refuses, before anything is sent, a spec the server must never
// see.
func (spec RoleSpec) validate() error {
	if err := validName("role", spec.Name); err != nil {
		return err
	}
	if err := spec.Marker.Validate(); err != nil {
		return err
	}
	if spec.Verifier != "" && !strings.HasPrefix(spec.Verifier, "SCRAM-SHA-256$") {
		// Never let a cleartext password reach the server, or its logs.
		return fmt.Errorf("%w: the password of role %q must be given as a SCRAM-SHA-256 verifier", ErrInvalid, spec.Name)
	}
	if spec.ConnLimit < -1 {
		return fmt.Errorf("%w: connection limit %d of role %q is below -1", ErrInvalid, spec.ConnLimit, spec.Name)
	}
	return nil
}

// password is spec's verifier as an SQL literal.
func (spec RoleSpec) password() (string, error) {
	password, err := quoteLiteral(spec.Verifier)
	if err != nil {
		return "", fmt.Errorf("%w: password verifier of role %q: %v", ErrInvalid, spec.Name, err)
	}
	return password, nil
}

func (s *Service) ensureRole(ctx context.Context, spec RoleSpec) (Change, error) {
	st, err := s.observeRole(ctx, s.admin, spec.Name)
	if err != nil {
		return Unchanged, err
	}
	var stmts []string
	change := Updated
	switch {
	case !st.exists:
		stmts, err = createRoleStatements(spec)
		change = Created
	case !isOurs(st.comment, spec.Marker):
		return Unchanged, conflict("role", spec.Name, st.comment, spec.Marker)
	default:
		stmts, err = alterRoleStatements(spec, st)
	}
	if err != nil || len(stmts) == 0 {
		return Unchanged, err
	}
	if err := s.execAll(ctx, s.admin, stmts); err != nil {
		return Unchanged, fmt.Errorf("%s role %q: %w", verb(change), spec.Name, err)
	}
	return change, nil
}

// createRoleStatements creates spec's role, marks it and makes the admin a
// member.
func createRoleStatements(spec RoleSpec) ([]string, error) {
	login := "NOLOGIN"
	if !spec.NoLogin {
		if spec.Verifier == "" {
			return nil, fmt.Errorf("%w: role %q does not exist and no password verifier was given to create it", ErrInvalid, spec.Name)
		}
		password, err := spec.password()
		if err != nil {
			return nil, err
		}
		login = "LOGIN PASSWORD " + password
	}
	role := ident(spec.Name)
	// INHERIT, PostgreSQL's default: with NOINHERIT the role would not get
	// the rights of pg_database_owner over its own database's schema
	// public, nor would the admin, acting through it.
	return []string{
		fmt.Sprintf("CREATE ROLE %s WITH NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT NOREPLICATION NOBYPASSRLS CONNECTION LIMIT %d %s",
			role, spec.ConnLimit, login),
		fmt.Sprintf("COMMENT ON ROLE %s IS %s", role, mustQuote(spec.Marker.String())),
		fmt.Sprintf("GRANT %s TO CURRENT_USER", role),
	}, nil
}

// alterRoleStatements brings our existing role st to spec; none when it is
// already so.
func alterRoleStatements(spec RoleSpec, st roleState) ([]string, error) {
	role := ident(spec.Name)
	var opts, stmts []string
	switch {
	case spec.NoLogin && st.canLogin:
		// Sessions already open are not ended: PostgreSQL checks LOGIN
		// only when a session starts.
		opts = append(opts, "NOLOGIN PASSWORD NULL")
	case !spec.NoLogin && !st.canLogin:
		opts = append(opts, "LOGIN")
	}
	if st.connLimit != spec.ConnLimit {
		opts = append(opts, fmt.Sprintf("CONNECTION LIMIT %d", spec.ConnLimit))
	}
	if spec.Verifier != "" && !spec.NoLogin {
		// The current verifier cannot be read without superuser, so a given
		// verifier is always set: callers pass one only to change the
		// password.
		password, err := spec.password()
		if err != nil {
			return nil, err
		}
		opts = append(opts, "PASSWORD "+password)
	}
	if len(opts) > 0 {
		stmts = append(stmts, fmt.Sprintf("ALTER ROLE %s WITH %s", role, strings.Join(opts, " ")))
	}
	if remarks(st.comment, spec.Marker) {
		stmts = append(stmts, fmt.Sprintf("COMMENT ON ROLE %s IS %s", role, mustQuote(spec.Marker.String())))
	}
	if !st.member {
		stmts = append(stmts, fmt.Sprintf("GRANT %s TO CURRENT_USER", role))
	}
	return stmts, nil
}

// execAll sends stmts, all DDL, in one transaction on pool.
func (s *Service) execAll(ctx context.Context, pool *pgxpool.Pool, stmts []string) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for _, stmt := range stmts {
			if err := s.execDDL(ctx, tx, stmt); err != nil {
				return err
			}
		}
		return nil
	})
}

func verb(c Change) string {
	if c == Created {
		return "creating"
	}
	return "updating"
}

// mustQuote quotes a string known to be quotable, such as a valid marker.
func mustQuote(s string) string {
	q, err := quoteLiteral(s)
	if err != nil {
		panic(fmt.Sprintf("aurora: quoting a validated string: %v", err))
	}
	return q
}

// ensureMember makes the admin a member of role, which must be ours.
func (s *Service) ensureMember(ctx context.Context, q querier, role string, st roleState) error {
	if st.member {
		return nil
	}
	if err := s.execDDL(ctx, q, fmt.Sprintf("GRANT %s TO CURRENT_USER", ident(role))); err != nil {
		return fmt.Errorf("granting role %q to the admin: %w", role, err)
	}
	return nil
}

// ownerRole observes the role meant to own an Organization's database and
// checks that it is the Organization's.
func (s *Service) ownerRole(ctx context.Context, q querier, owner string, m Marker) (roleState, error) {
	st, err := s.observeRole(ctx, q, owner)
	if err != nil {
		return roleState{}, err
	}
	if !st.exists {
		return roleState{}, fmt.Errorf("%w: owner role %q does not exist", ErrInvalid, owner)
	}
	if !isOurs(st.comment, m) {
		return roleState{}, conflict("role", owner, st.comment, m)
	}
	return st, nil
}

// EnsureDatabase makes the Organization's database exist, owned by owner,
// which must be a role carrying the same marker. A database of that name is
// taken as the Organization's when it carries the marker, or carries no
// comment at all and is owned by owner: its creation was interrupted before
// the comment, which is then written. Any other is left untouched and
// reported as ErrConflict.
func (s *Service) EnsureDatabase(ctx context.Context, name, owner string, marker Marker) (Change, error) {
	if err := validName("database", name); err != nil {
		return Unchanged, err
	}
	if err := validName("role", owner); err != nil {
		return Unchanged, err
	}
	if err := marker.Validate(); err != nil {
		return Unchanged, err
	}
	change, err := runValue(ctx, s, "EnsureDatabase", func(ctx context.Context) (Change, error) {
		return onAdminConn(ctx, s, func(q querier) (Change, error) {
			return s.ensureDatabase(ctx, q, name, owner, marker)
		})
	})
	if err != nil || change != Unchanged {
		s.snaps.wrote(name, owner)
	}
	if err != nil {
		return Unchanged, err
	}
	switch change {
	case Created:
		s.log.Info("Created database", "database", name, "owner", owner)
	case Updated:
		s.log.Info("Changed owner of database", "database", name, "owner", owner)
	}
	return change, nil
}

func (s *Service) ensureDatabase(ctx context.Context, q querier, name, owner string, marker Marker) (Change, error) {
	db, err := s.observeDatabase(ctx, q, name)
	if err != nil {
		return Unchanged, err
	}
	adopt := db.exists && db.comment == "" && db.owner == owner
	if db.exists && !adopt && !isOurs(db.comment, marker) {
		return Unchanged, conflict("database", name, db.comment, marker)
	}
	role, err := s.ownerRole(ctx, q, owner, marker)
	if err != nil {
		return Unchanged, err
	}
	mark := ddlStep{fmt.Sprintf("COMMENT ON DATABASE %s IS %s", ident(name), mustQuote(marker.String())),
		fmt.Sprintf("marking database %q", name)}
	var steps []ddlStep
	change := Created
	switch {
	case !db.exists:
		// CREATE DATABASE cannot run in a transaction: should the comment
		// fail, the next call adopts the database by its owner.
		steps = []ddlStep{{fmt.Sprintf("CREATE DATABASE %s OWNER %s", ident(name), ident(owner)),
			fmt.Sprintf("creating database %q", name)}, mark}
	case adopt:
		steps = []ddlStep{mark}
	case db.owner != owner:
		steps = []ddlStep{{fmt.Sprintf("ALTER DATABASE %s OWNER TO %s", ident(name), ident(owner)),
			fmt.Sprintf("changing owner of database %q from %q", name, db.owner)}}
		if remarks(db.comment, marker) {
			steps = append(steps, mark)
		}
		change = Updated
	case remarks(db.comment, marker):
		// Written before markers recorded the cluster.
		steps = []ddlStep{mark}
		change = Updated
	default:
		return Unchanged, nil
	}
	if err := s.ensureMember(ctx, q, owner, role); err != nil {
		return Unchanged, err
	}
	for _, step := range steps {
		if err := s.execDDL(ctx, q, step.stmt); err != nil {
			return Unchanged, fmt.Errorf("%s: %w", step.doing, refusedDespiteMembership(err))
		}
	}
	if adopt {
		s.log.Info("Adopted database left unmarked by an interrupted creation", "database", name, "owner", owner)
	}
	return change, nil
}

// ddlStep is a DDL statement that needs the admin's membership in the
// owner, and what it does, for its error.
type ddlStep struct{ stmt, doing string }

// SecureDatabase closes an Organization's database to everyone but its
// owner (and the admin, a member of the owner): PUBLIC loses its default
// CONNECT and TEMPORARY. From PostgreSQL 15 the owner also gets schema
// public, and PUBLIC may not create in it; before 15 schema public is left
// to the bootstrap superuser who owns it (see versionRules).
func (s *Service) SecureDatabase(ctx context.Context, name, owner string) (Change, error) {
	return s.secure(ctx, "SecureDatabase", name, owner, true)
}

// SecureDatabaseAccess is SecureDatabase for a database secured before: it
// looks inside the database, at schema public, only when PUBLIC may still
// connect to it, which is how a database whose securing was interrupted
// looks (SecureDatabase revokes PUBLIC's access last). Otherwise it opens no
// session in the tenant's database, so it is cheap enough for every resync.
// Before PostgreSQL 15 it never looks inside, as there is nothing to do.
func (s *Service) SecureDatabaseAccess(ctx context.Context, name, owner string) (Change, error) {
	return s.secure(ctx, "SecureDatabaseAccess", name, owner, false)
}

func (s *Service) secure(ctx context.Context, operation, name, owner string, inside bool) (Change, error) {
	if err := validName("database", name); err != nil {
		return Unchanged, err
	}
	if err := validName("role", owner); err != nil {
		return Unchanged, err
	}
	change, err := runValue(ctx, s, operation, func(ctx context.Context) (Change, error) {
		return s.secureDatabase(ctx, name, owner, inside)
	})
	if err != nil || change != Unchanged {
		s.snaps.wrote(name)
	}
	if err != nil {
		return Unchanged, err
	}
	if change != Unchanged {
		s.log.Info("Secured database", "database", name, "owner", owner)
	}
	return change, nil
}

func (s *Service) secureDatabase(ctx context.Context, name, owner string, inside bool) (Change, error) {
	// The admin pool first, released before the tenant pool is taken, so
	// that no call holds a connection while waiting for another.
	publicHas, err := s.publicHasAccess(ctx, name)
	if err != nil {
		return Unchanged, err
	}
	change := Unchanged
	// Schema public first and PUBLIC's access last, so that a database
	// PUBLIC can still reach is one whose schema may not be done yet.
	if s.rules.securesSchemaPublic && (inside || publicHas) {
		if change, err = s.schemaPublic(ctx, name, owner, change); err != nil {
			return change, err
		}
	}
	if !publicHas {
		return change, nil
	}
	if err := s.execDDL(ctx, s.admin, fmt.Sprintf("REVOKE ALL ON DATABASE %s FROM PUBLIC", ident(name))); err != nil {
		return change, fmt.Errorf("revoking PUBLIC's privileges on database %q: %w", name, err)
	}
	return Updated, nil
}

// publicHasAccess reports whether PUBLIC holds any privilege on database
// name, as every new database grants it CONNECT and TEMPORARY.
func (s *Service) publicHasAccess(ctx context.Context, name string) (bool, error) {
	var publicHas bool
	err := s.admin.QueryRow(ctx, `SELECT EXISTS (
			SELECT 1 FROM aclexplode(COALESCE(d.datacl, acldefault('d', d.datdba))) a WHERE a.grantee = 0)
		FROM pg_database d WHERE d.datname = $1`, name).Scan(&publicHas)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, fmt.Errorf("%w: database %q does not exist", ErrInvalid, name)
	}
	if err != nil {
		return false, fmt.Errorf("reading privileges on database %q: %w", name, err)
	}
	return publicHas, nil
}

// schemaPublic is the part of SecureDatabase done in the tenant's database.
func (s *Service) schemaPublic(ctx context.Context, name, owner string, change Change) (Change, error) {
	pool, release, err := s.OrgPool(ctx, name)
	if err != nil {
		return change, err
	}
	defer release()
	var ownsPublic, publicCreates bool
	err = pool.QueryRow(ctx, `SELECT n.nspowner = r.oid, has_schema_privilege('public', n.oid, 'CREATE')
		FROM pg_namespace n, pg_roles r WHERE n.nspname = 'public' AND r.rolname = $1`, owner).Scan(&ownsPublic, &publicCreates)
	if errors.Is(err, pgx.ErrNoRows) {
		// No schema public (its owner dropped it), or no such owner.
		return change, nil
	}
	if err != nil {
		return change, fmt.Errorf("reading schema public of database %q: %w", name, err)
	}
	var stmts []string
	if !ownsPublic {
		stmts = append(stmts, "ALTER SCHEMA public OWNER TO "+ident(owner))
	}
	if publicCreates {
		stmts = append(stmts, "REVOKE CREATE ON SCHEMA public FROM PUBLIC")
	}
	if len(stmts) == 0 {
		return change, nil
	}
	if err := s.execAll(ctx, pool, stmts); err != nil {
		return change, fmt.Errorf("securing schema public of database %q: %w", name, err)
	}
	return Updated, nil
}

// EnsureExtensions creates, in database db, those of exts that are not
// there yet, and returns them. They are created as the database's owner, so
// they belong to the tenant; PostgreSQL lets a non-superuser create trusted
// extensions only (pgcrypto, citext, uuid-ossp, hstore…). An extension the
// server does not offer is ErrInvalid, and nothing is created.
func (s *Service) EnsureExtensions(ctx context.Context, db string, exts []string) ([]string, error) {
	if err := validName("database", db); err != nil {
		return nil, err
	}
	var want []string
	for _, e := range exts {
		if err := validName("extension", e); err != nil {
			return nil, err
		}
		if !slices.Contains(want, e) {
			want = append(want, e)
		}
	}
	if len(want) == 0 {
		return nil, nil
	}
	created, err := runValue(ctx, s, "EnsureExtensions", func(ctx context.Context) ([]string, error) {
		return s.ensureExtensions(ctx, db, want)
	})
	if err != nil {
		return nil, err
	}
	if len(created) > 0 {
		s.log.Info("Created extensions", "database", db, "extensions", created)
	}
	return created, nil
}

// CheckExtensions returns ErrInvalid when the server does not offer one of
// exts, or offers it to superusers only, so that a spec naming one is
// refused before anything is created for it. Extensions are created as the
// organization's role (see EnsureExtensions), which may create trusted
// extensions only. It reads pg_available_extension_versions on the admin
// database, which lists what the whole server offers.
func (s *Service) CheckExtensions(ctx context.Context, exts []string) error {
	for _, e := range exts {
		if err := validName("extension", e); err != nil {
			return err
		}
	}
	if len(exts) == 0 {
		return nil
	}
	creatable := map[string]bool{}
	err := s.run(ctx, "CheckExtensions", func(ctx context.Context) error {
		rows, err := s.admin.Query(ctx, `SELECT e.name, v.trusted OR NOT v.superuser
			FROM pg_available_extensions e
			JOIN pg_available_extension_versions v ON v.name = e.name AND v.version = e.default_version
			WHERE e.name = ANY($1)`, exts)
		if err != nil {
			return err
		}
		var name string
		var ok bool
		_, err = pgx.ForEachRow(rows, []any{&name, &ok}, func() error {
			creatable[name] = ok
			return nil
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("reading the server's extensions: %w", err)
	}
	var missing, privileged []string
	for _, e := range slices.Compact(slices.Sorted(slices.Values(exts))) {
		ok, found := creatable[e]
		switch {
		case !found:
			missing = append(missing, fmt.Sprintf("%q", e))
		case !ok:
			privileged = append(privileged, fmt.Sprintf("%q", e))
		}
	}
	switch {
	case len(missing) > 0:
		return fmt.Errorf("%w: extension %s is not available on the PostgreSQL server", ErrInvalid, joinAnd(missing))
	case len(privileged) > 0:
		return fmt.Errorf("%w: extension %s can only be created by a superuser; an organization may use trusted extensions only", ErrInvalid, joinAnd(privileged))
	}
	return nil
}

func (s *Service) ensureExtensions(ctx context.Context, db string, want []string) ([]string, error) {
	pool, release, err := s.OrgPool(ctx, db)
	if err != nil {
		return nil, err
	}
	defer release()
	rows, err := pool.Query(ctx, `SELECT name, installed_version IS NOT NULL
		FROM pg_available_extensions WHERE name = ANY($1)`, want)
	if err != nil {
		return nil, fmt.Errorf("reading extensions of database %q: %w", db, err)
	}
	installed := map[string]bool{}
	var name string
	var isInstalled bool
	_, err = pgx.ForEachRow(rows, []any{&name, &isInstalled}, func() error {
		installed[name] = isInstalled
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading extensions of database %q: %w", db, err)
	}
	var missing, create []string
	for _, e := range want {
		is, ok := installed[e]
		switch {
		case !ok:
			missing = append(missing, fmt.Sprintf("%q", e))
		case !is:
			create = append(create, e)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: extension %s is not available on the PostgreSQL server", ErrInvalid, joinAnd(missing))
	}
	if len(create) == 0 {
		return nil, nil
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var owner string
		if err := tx.QueryRow(ctx, `SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()`).Scan(&owner); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "SET LOCAL ROLE "+ident(owner)); err != nil {
			return fmt.Errorf("acting as owner %q: %w", owner, err)
		}
		for _, e := range create {
			if err := s.execDDL(ctx, tx, "CREATE EXTENSION IF NOT EXISTS "+ident(e)); err != nil {
				return fmt.Errorf("creating extension %q: %w", e, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("creating extensions in database %q: %w", db, err)
	}
	return create, nil
}

// DropDatabase drops an Organization's database, ending its sessions. It
// refuses, with ErrConflict, a database that carries another marker, or
// none unless its owner carries marker. It reports false when there was no
// database to drop.
func (s *Service) DropDatabase(ctx context.Context, name string, marker Marker) (bool, error) {
	return s.drop(ctx, "DropDatabase", "database", name, marker, func(ctx context.Context, sent *bool) (bool, error) {
		return onAdminConn(ctx, s, func(q querier) (bool, error) {
			return s.dropDatabase(ctx, q, name, marker, sent)
		})
	})
}

// drop runs operation, the drop of the object name of kind, which must
// carry marker, and logs it. sent survives the attempts: a DROP that took
// effect before its connection failed leaves the next attempt nothing to
// drop, and still counts as dropped.
func (s *Service) drop(ctx context.Context, operation, kind, name string, marker Marker,
	fn func(ctx context.Context, sent *bool) (bool, error)) (bool, error) {
	if err := validName(kind, name); err != nil {
		return false, err
	}
	if err := marker.Validate(); err != nil {
		return false, err
	}
	var sent bool
	dropped, err := runValue(ctx, s, operation, func(ctx context.Context) (bool, error) {
		return fn(ctx, &sent)
	})
	if sent || err != nil {
		s.snaps.wrote(name)
	}
	if err != nil {
		return false, err
	}
	if dropped {
		s.log.Info("Dropped "+kind, kind, name)
	}
	return dropped, nil
}

func (s *Service) dropDatabase(ctx context.Context, q querier, name string, marker Marker, sent *bool) (bool, error) {
	db, err := s.observeDatabase(ctx, q, name)
	if err != nil || !db.exists {
		return *sent && err == nil, err
	}
	role, err := s.observeRole(ctx, q, db.owner)
	if err != nil {
		return false, err
	}
	ownerOurs := role.exists && isOurs(role.comment, marker)
	if !isOurs(db.comment, marker) && !(db.comment == "" && ownerOurs) {
		return false, conflict("database", name, db.comment, marker)
	}
	// Dropping needs the rights of the owner; the admin has them as a
	// member, which it can regain only over a role of ours.
	if ownerOurs {
		if err := s.ensureMember(ctx, q, db.owner, role); err != nil {
			return false, err
		}
	}
	s.orgs.forget(name)
	*sent = true
	if err := s.execDDL(ctx, q, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", ident(name))); err != nil {
		if ownerOurs {
			err = refusedDespiteMembership(err)
		}
		return false, fmt.Errorf("dropping database %q: %w", name, err)
	}
	return true, nil
}

// DropRole drops an Organization's role after ending its sessions. It
// refuses, with ErrConflict, a role that does not carry marker, and reports
// false when there was no role to drop. The role's database must be dropped
// first.
func (s *Service) DropRole(ctx context.Context, name string, marker Marker) (bool, error) {
	return s.drop(ctx, "DropRole", "role", name, marker, func(ctx context.Context, sent *bool) (bool, error) {
		return s.dropRole(ctx, name, marker, sent)
	})
}

func (s *Service) dropRole(ctx context.Context, name string, marker Marker, sent *bool) (bool, error) {
	st, err := s.observeRole(ctx, s.admin, name)
	if err != nil || !st.exists {
		return *sent && err == nil, err
	}
	if !isOurs(st.comment, marker) {
		return false, conflict("role", name, st.comment, marker)
	}
	// A dropped role's open sessions would live on; end them.
	var ended int
	if err := s.admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE usename = $1 AND pid <> pg_backend_pid()`, name).Scan(&ended); err != nil {
		return false, fmt.Errorf("ending sessions of role %q: %w", name, err)
	}
	if ended > 0 {
		s.log.Info("Ended sessions of role", "role", name, "sessions", ended)
	}
	*sent = true
	if err := s.execDDL(ctx, s.admin, "DROP ROLE IF EXISTS "+ident(name)); err != nil {
		return false, fmt.Errorf("dropping role %q: %w", name, err)
	}
	return true, nil
}

// RoleInfo is what InspectRole observes of a role.
type RoleInfo struct {
	Exists bool
	// Comment is the role's comment; Marker is it parsed, when HasMarker.
	Comment   string
	Marker    Marker
	HasMarker bool
	ConnLimit int32
	CanLogin  bool
}

// InspectRole reports on role name; a missing role is not an error.
func (s *Service) InspectRole(ctx context.Context, name string) (RoleInfo, error) {
	if err := validName("role", name); err != nil {
		return RoleInfo{}, err
	}
	st, err := runValue(ctx, s, "InspectRole", func(ctx context.Context) (roleState, error) {
		return s.observeRole(ctx, s.admin, name)
	})
	if err != nil {
		return RoleInfo{}, err
	}
	info := RoleInfo{Exists: st.exists, Comment: st.comment, ConnLimit: st.connLimit, CanLogin: st.canLogin}
	info.Marker, info.HasMarker = ParseMarker(st.comment)
	return info, nil
}
