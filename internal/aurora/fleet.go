package aurora

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// FindOrganization reports whether this server holds a role named role or a
// database named database whose ownership marker names Organization org,
// whatever its UID: the third record of a placement, by which an
// Organization that lost its status and annotation is found again on the
// fleet. Objects of those names that are unmarked, or marked as another
// Organization's, do not count. Transient failures are retried.
func (s *Service) FindOrganization(ctx context.Context, org, database, role string) (bool, error) {
	if err := validName("database", database); err != nil {
		return false, err
	}
	if err := validName("role", role); err != nil {
		return false, err
	}
	// Both objects' comments in one round trip; the name columns compare
	// as PostgreSQL's name type, which validName keeps from truncating.
	const query = `SELECT COALESCE(shobj_description(r.oid, 'pg_authid'), '')
			FROM pg_roles r WHERE r.rolname = $1
		UNION ALL
		SELECT COALESCE(shobj_description(d.oid, 'pg_database'), '')
			FROM pg_database d WHERE d.datname = $2`
	found, err := runValue(ctx, s, "FindOrganization", func(ctx context.Context) (bool, error) {
		rows, err := s.admin.Query(ctx, query, role, database)
		if err != nil {
			return false, err
		}
		comments, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return false, err
		}
		for _, c := range comments {
			if m, ok := ParseMarker(c); ok && m.Org == org {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return false, fmt.Errorf("aurora: %s: looking for Organization %q's role and database: %w", s.endpoint, org, err)
	}
	return found, nil
}

// OrganizationDatabases counts the databases on this server that carry an
// orgforge ownership marker, whichever Organization they belong to: what a
// DatabaseCluster's status reports beside the placements the operator
// counts, so that a difference between the two shows. Transient failures are
// retried.
func (s *Service) OrganizationDatabases(ctx context.Context) (int, error) {
	// The prefix narrows the scan on the server; ParseMarker decides, so
	// that a comment that merely starts like a marker is not counted.
	const query = `SELECT c FROM (
			SELECT shobj_description(d.oid, 'pg_database') AS c FROM pg_database d
		) m WHERE starts_with(c, $1)`
	n, err := runValue(ctx, s, "OrganizationDatabases", func(ctx context.Context) (int, error) {
		rows, err := s.admin.Query(ctx, query, markerPrefix)
		if err != nil {
			return 0, err
		}
		comments, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return 0, err
		}
		n := 0
		for _, c := range comments {
			if _, ok := ParseMarker(c); ok {
				n++
			}
		}
		return n, nil
	})
	if err != nil {
		return 0, fmt.Errorf("aurora: %s: counting the organizations' databases: %w", s.endpoint, err)
	}
	return n, nil
}
