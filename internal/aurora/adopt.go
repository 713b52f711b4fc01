package aurora

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Marked is a role or a database whose ownership marker names an
// Organization.
type Marked struct {
	// Kind is "role" or "database".
	Kind string
	Name string
	// Marker is the object's marker as found.
	Marker Marker
}

// String names the object, for events and status: "role org_acme".
func (m Marked) String() string { return m.Kind + " " + m.Name }

// MarkedFor lists the roles and databases whose markers name Organization
// org, whatever their UID and cluster: the owner role and database, and
// any login role marked for it. Roles come first, then databases, each
// sorted by name. Transient failures are retried.
func (s *Service) MarkedFor(ctx context.Context, org string) ([]Marked, error) {
	if err := markerPart("org", org, maxOrgLen); err != nil {
		return nil, err
	}
	// The prefix narrows the scan on the server; ParseMarker decides.
	const query = `SELECT kind, name, c FROM (
			SELECT 'role' AS kind, r.rolname::text AS name, shobj_description(r.oid, 'pg_authid') AS c FROM pg_roles r
			UNION ALL
			SELECT 'database', d.datname::text, shobj_description(d.oid, 'pg_database') FROM pg_database d
		) m WHERE starts_with(c, $1) ORDER BY kind DESC, name`
	prefix := markerPrefix + "org=" + org + ";uid="
	found, err := runValue(ctx, s, "MarkedFor", func(ctx context.Context) ([]Marked, error) {
		rows, err := s.admin.Query(ctx, query, prefix)
		if err != nil {
			return nil, err
		}
		type row struct{ Kind, Name, Comment string }
		all, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
		if err != nil {
			return nil, err
		}
		var out []Marked
		for _, r := range all {
			if m, ok := ParseMarker(r.Comment); ok && m.Org == org {
				out = append(out, Marked{Kind: r.Kind, Name: r.Name, Marker: m})
			}
		}
		return out, nil
	})
	if err != nil {
		return nil, fmt.Errorf("aurora: %s: listing the roles and databases of Organization %q: %w", s.endpoint, org, err)
	}
	return found, nil
}

// Remark marks objects, as MarkedFor found them, with to: the adoption of
// an earlier Organization's roles and databases. Every comment is written in
// one transaction, so a crash leaves all of them or none re-marked; one
// whose comment changed since it was found is ErrConflict and nothing is
// re-marked. The admin is first made a member of each database's owner,
// which it needs to comment on the database.
func (s *Service) Remark(ctx context.Context, objects []Marked, to Marker) error {
	if err := to.Validate(); err != nil {
		return err
	}
	for _, o := range objects {
		if err := validName(o.Kind, o.Name); err != nil {
			return err
		}
		if o.Kind != "role" && o.Kind != "database" {
			return fmt.Errorf("%w: cannot re-mark a %s", ErrInvalid, o.Kind)
		}
	}
	err := s.run(ctx, "Remark", func(ctx context.Context) error {
		return s.withAdminConn(ctx, func(q querier) error {
			return s.remark(ctx, q, objects, to)
		})
	})
	for _, o := range objects {
		s.snaps.wrote(o.Name)
	}
	if err != nil {
		return err
	}
	for _, o := range objects {
		s.log.Info("Re-marked "+o.Kind, o.Kind, o.Name, "fromUID", o.Marker.UID, "uid", to.UID)
	}
	return nil
}

func (s *Service) remark(ctx context.Context, q querier, objects []Marked, to Marker) error {
	// Commenting on a database takes its owner's rights: the admin is
	// made a member of each owner first, each GRANT committed on its own,
	// harmless to keep, and seen by the session before the comments.
	for _, o := range objects {
		if o.Kind != "database" {
			continue
		}
		db, err := s.observeDatabase(ctx, q, o.Name)
		if err != nil {
			return err
		}
		if !db.exists {
			return fmt.Errorf("%w: database %q is gone since it was found", ErrConflict, o.Name)
		}
		owner, err := s.observeRole(ctx, q, db.owner)
		if err != nil {
			return err
		}
		if err := s.ensureMember(ctx, q, db.owner, owner); err != nil {
			return err
		}
	}
	conn, ok := q.(interface {
		Begin(ctx context.Context) (pgx.Tx, error)
	})
	if !ok {
		return errors.New("aurora: re-marking needs a connection that begins transactions")
	}
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		for _, o := range objects {
			var comment string
			var err error
			if o.Kind == "role" {
				var st roleState
				st, err = s.observeRole(ctx, tx, o.Name)
				comment = st.comment
			} else {
				var st dbState
				st, err = s.observeDatabase(ctx, tx, o.Name)
				comment = st.comment
			}
			if err != nil {
				return err
			}
			if comment == to.String() {
				// An attempt whose commit was not acknowledged.
				continue
			}
			if comment != o.Marker.String() {
				return fmt.Errorf("%w: the marker of %s %q changed while it was being adopted", ErrConflict, o.Kind, o.Name)
			}
			stmt := fmt.Sprintf("COMMENT ON %s %s IS %s", kindKeyword(o.Kind), ident(o.Name), mustQuote(to.String()))
			if err := s.execDDL(ctx, tx, stmt); err != nil {
				return fmt.Errorf("marking %s %q: %w", o.Kind, o.Name, refusedDespiteMembership(err))
			}
		}
		return nil
	})
}

func kindKeyword(kind string) string {
	if kind == "role" {
		return "ROLE"
	}
	return "DATABASE"
}

// PasswordWorks reports whether role may log in to database with password,
// trying it on the admin's endpoint: whether a retained Secret's password is
// still the role's. A refused password, or a role that may not log in, is
// false; an error means the answer is unknown (the server is down, or the
// role's connection limit is reached). The connection counts against the
// service's cap as one of a tenant database's.
func (s *Service) PasswordWorks(ctx context.Context, database, role, password string) (bool, error) {
	if err := validName("database", database); err != nil {
		return false, err
	}
	if err := validName("role", role); err != nil {
		return false, err
	}
	// The slot of the database's pool is held while the login is tried,
	// so that the try stays within MaxConnections.
	_, release, err := s.OrgPool(ctx, database)
	if err != nil {
		return false, err
	}
	defer release()
	cc := s.orgConfig.ConnConfig.Copy()
	cc.Database, cc.User, cc.Password = database, role, password
	return runValue(ctx, s, "PasswordWorks", func(ctx context.Context) (bool, error) {
		conn, err := pgx.ConnectConfig(ctx, cc)
		if err == nil {
			awaitServerClose(conn, s.cfg.ConnectTimeout)
			_ = conn.Close(ctx)
			return true, nil
		}
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			switch pgErr.Code {
			case "28P01", "28000": // invalid_password, invalid_authorization_specification
				return false, nil
			case "3D000", "42501":
				// No such database, or no CONNECT on it: PostgreSQL
				// says so only once the password was accepted.
				return true, nil
			}
		}
		// The error may quote the connection string; the password is
		// never part of it.
		return false, fmt.Errorf("logging in as role %q to database %q: %w", role, database, err)
	})
}
