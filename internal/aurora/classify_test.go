package aurora

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/orgforge/orgforge/internal/retry"
)

func TestClassifyTellsTransientFromPermanentErrors(t *testing.T) {
	pgErr := func(code string) error {
		return fmt.Errorf("creating database %q: %w", "org_x", &pgconn.PgError{Code: code})
	}
	cases := map[string]struct {
		err  error
		want retry.Class
	}{
		"nil":                       {nil, retry.ClassNone},
		"admin shutdown":            {pgErr("57P01"), retry.ClassUnavailable},
		"crash shutdown":            {pgErr("57P02"), retry.ClassUnavailable},
		"cannot connect now":        {pgErr("57P03"), retry.ClassUnavailable},
		"too many connections":      {pgErr("53300"), retry.ClassUnavailable},
		"serialization failure":     {pgErr("40001"), retry.ClassUnavailable},
		"connection failure":        {pgErr("08006"), retry.ClassNetwork},
		"insufficient privilege":    {pgErr("42501"), retry.ClassPermission},
		"wrong password":            {pgErr("28P01"), retry.ClassPermission},
		"no pg_hba entry":           {pgErr("28000"), retry.ClassPermission},
		"syntax error":              {pgErr("42601"), retry.ClassInvalid},
		"duplicate database":        {pgErr("42P04"), retry.ClassInvalid},
		"invalid text":              {pgErr("22P02"), retry.ClassInvalid},
		"no such database":          {pgErr("3D000"), retry.ClassInvalid},
		"internal error":            {pgErr("XX000"), retry.ClassOther},
		"conflict":                  {fmt.Errorf("x: %w", ErrConflict), retry.ClassConflict},
		"conflict message":          {conflict("role", "org_x", "", Marker{}), retry.ClassConflict},
		"invalid":                   {fmt.Errorf("x: %w", ErrInvalid), retry.ClassInvalid},
		"privilege":                 {fmt.Errorf("x: %w", ErrPrivilege), retry.ClassPermission},
		"connection refused":        {fmt.Errorf("dial: %w", syscall.ECONNREFUSED), retry.ClassNetwork},
		"deadline":                  {context.DeadlineExceeded, retry.ClassNetwork},
		"canceled":                  {context.Canceled, retry.ClassCanceled},
		"anything else":             {errors.New("boom"), retry.ClassOther},
		"invalid beats a pg error":  {fmt.Errorf("%w: %w", ErrInvalid, &pgconn.PgError{Code: "57P01"}), retry.ClassInvalid},
		"pg error beats the socket": {fmt.Errorf("%w: %w", &pgconn.PgError{Code: "42501"}, syscall.ECONNRESET), retry.ClassPermission},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, Classify(tc.err)); diff != "" {
				t.Errorf("Classify(%v) (-want +got):\n%s", tc.err, diff)
			}
		})
	}
}

func TestConflictErrorsSayWhatHoldsTheNameAndWhatToDo(t *testing.T) {
	cases := map[string]struct {
		comment string
		want    string
	}{
		"unmarked": {"", `database "org_acme" already exists and has no orgforge ownership marker; rename or drop it, or give the Organization another name`},
		"another organization": {"orgforge:org=other;uid=42",
			`database "org_acme" already exists and belongs to Organization "other" (uid 42); rename or drop it, or give the Organization another name`},
		"the same organization of another cluster": {"orgforge:org=acme;uid=42;cluster=k2",
			`database "org_acme" already exists and belongs to Organization "acme" (uid 42) of another Kubernetes cluster, whose orgforge cluster identity is k2; rename or drop it, or give the Organization another name`},
		"an old marker names no cluster": {"orgforge:org=acme;uid=42",
			`database "org_acme" already exists and belongs to Organization "acme" (uid 42); rename or drop it, or give the Organization another name`},
		"this cluster is not named": {"orgforge:org=acme;uid=42;cluster=k1",
			`database "org_acme" already exists and belongs to Organization "acme" (uid 42); rename or drop it, or give the Organization another name`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			err := conflict("database", "org_acme", tc.comment, Marker{Org: "acme", UID: "7", Cluster: "k1"})
			if !errors.Is(err, ErrConflict) {
				t.Errorf("errors.Is(%v, ErrConflict) = false", err)
			}
			if diff := cmp.Diff(tc.want, err.Error()); diff != "" {
				t.Errorf("message (-want +got):\n%s", diff)
			}
		})
	}
}
