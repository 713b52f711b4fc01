package aurora

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Usage is what an organization uses of its server.
type Usage struct {
	// DatabaseBytes is pg_database_size of its database.
	DatabaseBytes int64
	// Connections counts the client sessions of its role and of the
	// logins that are members of it, in any database.
	Connections int32
}

// usageQuery reads both figures in one round trip, on the admin pool.
// pg_database_size stats the files of one database: its cost grows with the
// number of relations in it, not with their size. pg_stat_activity is read
// from shared memory, one entry per server slot. A session counts when its
// user is the role, or a member of the role that can neither create roles
// nor is a superuser: the organization's logins, not the admin, which is a
// member of every organization's role. A session whose backend_type the
// admin may not see (a login it has no privileges of) counts as a client;
// the parallel workers of a query, which are not connections, are told
// apart wherever the admin may see them.
const usageQuery = `SELECT pg_database_size(d.oid),
		(SELECT count(*) FROM pg_stat_activity a
			WHERE (a.backend_type = 'client backend' OR a.backend_type IS NULL)
			AND (a.usesysid = r.oid OR a.usesysid IN (
				SELECT m.member FROM pg_auth_members m JOIN pg_roles mr ON mr.oid = m.member
				WHERE m.roleid = r.oid AND NOT mr.rolcreaterole AND NOT mr.rolsuper)))
	FROM pg_database d CROSS JOIN pg_roles r
	WHERE d.datname = $1 AND r.rolname = $2`

// Usage reads the size of database and the sessions open by role and its
// member logins, in one statement on the admin pool, each attempt bounded
// by the statement timeout and transient failures retried. A database or
// role the server does not hold is an error.
func (s *Service) Usage(ctx context.Context, database, role string) (Usage, error) {
	if err := validName("database", database); err != nil {
		return Usage{}, err
	}
	if err := validName("role", role); err != nil {
		return Usage{}, err
	}
	u, err := runValue(ctx, s, "Usage", func(ctx context.Context) (Usage, error) {
		var u Usage
		err := s.admin.QueryRow(ctx, usageQuery, database, role).Scan(&u.DatabaseBytes, &u.Connections)
		if errors.Is(err, pgx.ErrNoRows) {
			return Usage{}, fmt.Errorf("no database %q or no role %q", database, role)
		}
		return u, err
	})
	if err != nil {
		return Usage{}, fmt.Errorf("aurora: %s: reading the usage of database %q: %w", s.endpoint, database, err)
	}
	return u, nil
}
