package testutil

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/orgforge/orgforge/internal/devstack"
)

// Superuser opens a connection to db as the stack's bootstrap superuser,
// for a test to inspect or tamper with what the operator made; it is
// closed when the test ends. The operator never uses this login.
func Superuser(t testing.TB, pg *devstack.Postgres, db string) *pgx.Conn {
	t.Helper()
	conn, err := SuperuserConn(context.Background(), pg, db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// SuperuserConn opens a connection to db as the stack's bootstrap
// superuser; the caller closes it.
func SuperuserConn(ctx context.Context, pg *devstack.Postgres, db string) (*pgx.Conn, error) {
	return pgx.Connect(ctx, pg.SuperuserDSN(db))
}

// SuperuserExec runs sql in db as the bootstrap superuser on a connection
// of its own.
func SuperuserExec(ctx context.Context, pg *devstack.Postgres, db, sql string) error {
	conn, err := SuperuserConn(ctx, pg, db)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(ctx) }()
	_, err = conn.Exec(ctx, sql)
	return err
}

// IsInsufficientPrivilege reports PostgreSQL's refusal for lack of rights,
// SQLSTATE 42501.
func IsInsufficientPrivilege(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42501"
}
