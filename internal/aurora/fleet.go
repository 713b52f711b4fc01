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

// Inventory is what a server holds of the organizations, by ownership
// marker.
type Inventory struct {
	// Databases counts the marked databases, whichever Organization they
	// belong to.
	Databases int
	// Organizations are the Organizations that have a marked role or a
	// marked database on the server: the role is created before the
	// database, so an organization interrupted between the two is here
	// too.
	Organizations map[string]bool
}

// Inventory lists the organizations' marked databases and roles on this
// server: what a DatabaseCluster's status reports beside the placements the
// operator counts, so that a difference between the two shows, and what
// placement consults for a cluster that cannot be searched at the moment.
// Transient failures are retried.
func (s *Service) Inventory(ctx context.Context) (Inventory, error) {
	// The prefix narrows the scan on the server; ParseMarker decides, so
	// that a comment that merely starts like a marker is not counted.
	const query = `SELECT kind, c FROM (
			SELECT 'database' AS kind, shobj_description(d.oid, 'pg_database') AS c FROM pg_database d
			UNION ALL
			SELECT 'role', shobj_description(r.oid, 'pg_authid') FROM pg_roles r
		) m WHERE starts_with(c, $1)`
	inv, err := runValue(ctx, s, "Inventory", func(ctx context.Context) (Inventory, error) {
		rows, err := s.admin.Query(ctx, query, markerPrefix)
		if err != nil {
			return Inventory{}, err
		}
		type row struct{ Kind, Comment string }
		marked, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
		if err != nil {
			return Inventory{}, err
		}
		inv := Inventory{Organizations: map[string]bool{}}
		for _, r := range marked {
			m, ok := ParseMarker(r.Comment)
			if !ok {
				continue
			}
			inv.Organizations[m.Org] = true
			if r.Kind == "database" {
				inv.Databases++
			}
		}
		return inv, nil
	})
	if err != nil {
		return Inventory{}, fmt.Errorf("aurora: %s: listing the organizations' databases and roles: %w", s.endpoint, err)
	}
	return inv, nil
}
