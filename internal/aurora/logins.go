package aurora

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// LoginsSpec is the set of login roles through which an Organization's
// applications connect once its credentials rotate. The owner role keeps
// owning the database and everything in it; each login is a member of the
// owner whose sessions start as the owner (ALTER ROLE ... SET role), so
// every object created through any login belongs to the owner, and a login
// can go without leaving anything behind.
type LoginsSpec struct {
	// Owner is the role that owns Database.
	Owner    string
	Database string
	// Marker is written as each login's comment, as on the owner.
	Marker Marker
	// ConnLimit is each active login's CONNECTION LIMIT.
	ConnLimit int32
	Logins    []Login
}

// Login is one login role of a LoginsSpec.
type Login struct {
	Name string
	// Active logins may log in. An inactive one that exists is made
	// NOLOGIN with no password; one that does not exist is not created.
	Active bool
	// Verifier is the SCRAM-SHA-256 verifier of the password to set on an
	// active login; empty keeps its password. A login to create needs one.
	Verifier string
}

// LoginChange is what EnsureLogins did to one login.
type LoginChange struct {
	Name   string
	Change Change
	// Revoked is set when the login was made NOLOGIN.
	Revoked bool
}

// loginState is what the service observes of a login role.
type loginState struct {
	name      string
	canLogin  bool
	inherit   bool
	connLimit int32
	comment   string
	config    []string
	// member tells whether the admin may act as the login; inOwner
	// whether the login is a member of the owner; connect whether it may
	// connect to the database by a grant of its own.
	member, inOwner, connect bool
}

// EnsureLogins makes each of spec.Logins as it asks, observing all of them
// in one query and sending DDL only for what differs. A login of that name
// that does not carry spec.Marker is ErrConflict when it is to be active
// and is left alone otherwise. The database must exist.
//
// A login is NOINHERIT: it holds no privilege of the owner until its
// session takes the owner's role, as its role setting does at every
// connection. A session that sets its role back to the login itself can
// then own nothing (from PostgreSQL 15, when schema public is the
// owner's); it may still connect, by its own CONNECT grant.
func (s *Service) EnsureLogins(ctx context.Context, spec LoginsSpec) ([]LoginChange, error) {
	if err := spec.validate(); err != nil {
		return nil, err
	}
	changes, err := runValue(ctx, s, "EnsureLogins", func(ctx context.Context) ([]LoginChange, error) {
		return s.ensureLogins(ctx, spec)
	})
	if err != nil || len(changes) > 0 {
		names := []string{spec.Owner, spec.Database}
		for _, l := range spec.Logins {
			names = append(names, l.Name)
		}
		s.snaps.wrote(names...)
	}
	if err != nil {
		return nil, err
	}
	for _, c := range changes {
		switch {
		case c.Revoked:
			s.log.Info("Revoked login", "role", c.Name)
		case c.Change == Created:
			s.log.Info("Created login", "role", c.Name, "owner", spec.Owner, "connectionLimit", spec.ConnLimit)
		case c.Change == Updated:
			s.log.Info("Updated login", "role", c.Name, "connectionLimit", spec.ConnLimit)
		}
	}
	return changes, nil
}

func (spec LoginsSpec) validate() error {
	if err := validName("role", spec.Owner); err != nil {
		return err
	}
	if err := validName("database", spec.Database); err != nil {
		return err
	}
	if err := spec.Marker.Validate(); err != nil {
		return err
	}
	for _, l := range spec.Logins {
		rs := RoleSpec{Name: l.Name, Marker: spec.Marker, Verifier: l.Verifier, ConnLimit: spec.ConnLimit}
		if err := rs.validate(); err != nil {
			return err
		}
		if l.Name == spec.Owner {
			return fmt.Errorf("%w: login %q is the owner role", ErrInvalid, l.Name)
		}
	}
	return nil
}

func (s *Service) observeLogins(ctx context.Context, spec LoginsSpec) (map[string]loginState, error) {
	names := make([]string, len(spec.Logins))
	for i, l := range spec.Logins {
		names[i] = l.Name
	}
	rows, err := s.admin.Query(ctx, `SELECT r.rolname, r.rolcanlogin, r.rolinherit, r.rolconnlimit,
			COALESCE(shobj_description(r.oid, 'pg_authid'), ''), COALESCE(r.rolconfig, '{}'),
			pg_has_role(current_user, r.oid, $2),
			EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles o ON o.oid = m.roleid
				WHERE m.member = r.oid AND o.rolname = $3),
			EXISTS (SELECT 1 FROM pg_database d, aclexplode(d.datacl) a
				WHERE d.datname = $4 AND a.grantee = r.oid AND a.privilege_type = 'CONNECT')
		FROM pg_roles r WHERE r.rolname = ANY($1)`, names, s.rules.memberPrivilege, spec.Owner, spec.Database)
	if err != nil {
		return nil, fmt.Errorf("reading login roles of %q: %w", spec.Owner, err)
	}
	found := map[string]loginState{}
	var st loginState
	_, err = pgx.ForEachRow(rows, []any{&st.name, &st.canLogin, &st.inherit, &st.connLimit, &st.comment, &st.config,
		&st.member, &st.inOwner, &st.connect}, func() error {
		found[st.name] = st
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading login roles of %q: %w", spec.Owner, err)
	}
	return found, nil
}

func (s *Service) ensureLogins(ctx context.Context, spec LoginsSpec) ([]LoginChange, error) {
	found, err := s.observeLogins(ctx, spec)
	if err != nil {
		return nil, err
	}
	var changes []LoginChange
	for _, l := range spec.Logins {
		st, exists := found[l.Name]
		var stmts []string
		c := LoginChange{Name: l.Name, Change: Updated}
		switch {
		case !l.Active:
			if !exists || !st.canLogin || !isOurs(st.comment, spec.Marker) {
				continue
			}
			stmts = []string{fmt.Sprintf("ALTER ROLE %s WITH NOLOGIN PASSWORD NULL", ident(l.Name))}
			c.Revoked = true
		case !exists:
			stmts, err = createLoginStatements(spec, l)
			c.Change = Created
		case !isOurs(st.comment, spec.Marker):
			return changes, conflict("role", l.Name, st.comment, spec.Marker)
		default:
			stmts, err = alterLoginStatements(spec, l, st)
		}
		if err != nil {
			return changes, err
		}
		if len(stmts) == 0 {
			continue
		}
		if err := s.execAll(ctx, s.admin, stmts); err != nil {
			return changes, fmt.Errorf("%s login %q: %w", verb(c.Change), l.Name, err)
		}
		changes = append(changes, c)
	}
	return changes, nil
}

// createLoginStatements creates login l of spec, marks it, makes the admin
// a member, puts it in the owner and gives it CONNECT.
func createLoginStatements(spec LoginsSpec, l Login) ([]string, error) {
	if l.Verifier == "" {
		return nil, fmt.Errorf("%w: login %q does not exist and no password verifier was given to create it", ErrInvalid, l.Name)
	}
	password, err := RoleSpec{Name: l.Name, Verifier: l.Verifier}.password()
	if err != nil {
		return nil, err
	}
	role := ident(l.Name)
	return append([]string{
		fmt.Sprintf("CREATE ROLE %s WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS CONNECTION LIMIT %d PASSWORD %s",
			role, spec.ConnLimit, password),
		fmt.Sprintf("COMMENT ON ROLE %s IS %s", role, mustQuote(spec.Marker.String())),
		fmt.Sprintf("GRANT %s TO CURRENT_USER", role),
	}, loginLinks(spec, l.Name, loginState{})...), nil
}

// alterLoginStatements brings our existing login st to l; none when it is
// already so.
func alterLoginStatements(spec LoginsSpec, l Login, st loginState) ([]string, error) {
	var opts, stmts []string
	if !st.canLogin {
		opts = append(opts, "LOGIN")
	}
	if st.inherit {
		opts = append(opts, "NOINHERIT")
	}
	if st.connLimit != spec.ConnLimit {
		opts = append(opts, fmt.Sprintf("CONNECTION LIMIT %d", spec.ConnLimit))
	}
	if l.Verifier != "" {
		password, err := RoleSpec{Name: l.Name, Verifier: l.Verifier}.password()
		if err != nil {
			return nil, err
		}
		opts = append(opts, "PASSWORD "+password)
	}
	if !st.member {
		stmts = append(stmts, fmt.Sprintf("GRANT %s TO CURRENT_USER", ident(l.Name)))
	}
	if len(opts) > 0 {
		stmts = append(stmts, fmt.Sprintf("ALTER ROLE %s WITH %s", ident(l.Name), strings.Join(opts, " ")))
	}
	return append(stmts, loginLinks(spec, l.Name, st)...), nil
}

// loginLinks ties login name to the owner and the database, as far as st
// says it is not yet.
func loginLinks(spec LoginsSpec, name string, st loginState) []string {
	role := ident(name)
	var stmts []string
	if !st.inOwner {
		stmts = append(stmts, fmt.Sprintf("GRANT %s TO %s", ident(spec.Owner), role))
	}
	if !slices.Contains(st.config, "role="+spec.Owner) {
		stmts = append(stmts, fmt.Sprintf("ALTER ROLE %s SET role = %s", role, mustQuote(spec.Owner)))
	}
	if !st.connect {
		stmts = append(stmts, fmt.Sprintf("GRANT CONNECT ON DATABASE %s TO %s", ident(spec.Database), role))
	}
	return stmts
}
