package aurora

import (
	"context"
	"fmt"
)

// ServerFacts is what the fleet needs to know of a cluster's server: its
// version, for the DatabaseCluster's status, and its connection slots, from
// which a cluster's connection budget defaults.
type ServerFacts struct {
	// Version is server_version, for example "17.10".
	Version string
	// Major is the major of server_version_num, for example 17.
	Major int
	// MaxConnections is max_connections: every slot, the reserved ones
	// included.
	MaxConnections int
	// SuperuserReservedConnections is superuser_reserved_connections, the
	// slots only superusers may take (rdsadmin's, on Aurora).
	SuperuserReservedConnections int
	// ReservedConnections is reserved_connections, the slots only roles
	// granted pg_use_reserved_connections may take; 0 before PostgreSQL
	// 16, which has no such setting.
	ReservedConnections int
}

// ServerFacts reads the server's version and connection settings, as the
// admin, retrying transient failures.
func (s *Service) ServerFacts(ctx context.Context) (ServerFacts, error) {
	// Before PostgreSQL 16 reserved_connections is no setting, and reading
	// it would fail; those servers reserve no such slots.
	reserved := "0"
	if s.rules.reservedConnections {
		reserved = "current_setting('reserved_connections')::int"
	}
	query := `SELECT current_setting('server_version'),
			current_setting('server_version_num')::int / 10000,
			current_setting('max_connections')::int,
			current_setting('superuser_reserved_connections')::int,
			` + reserved
	facts, err := runValue(ctx, s, "ServerFacts", func(ctx context.Context) (ServerFacts, error) {
		var f ServerFacts
		err := s.admin.QueryRow(ctx, query).Scan(&f.Version, &f.Major, &f.MaxConnections,
			&f.SuperuserReservedConnections, &f.ReservedConnections)
		return f, err
	})
	if err != nil {
		return ServerFacts{}, fmt.Errorf("aurora: %s: reading the server's version and connection settings: %w", s.endpoint, err)
	}
	return facts, nil
}
