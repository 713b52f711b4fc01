package aurora

import (
	"context"
	"errors"
	"github.com/google/go-cmp/cmp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orgforge/orgforge/internal/retry"
	"github.com/orgforge/orgforge/internal/testutil"
)

// markDatabase creates database name as the superuser, with comment as its
// comment unless it is empty: a database orgforge did not make, or one whose
// role is gone.
func markDatabase(t *testing.T, su *pgx.Conn, name, comment string) {
	t.Helper()
	mustExec(t, su, "CREATE DATABASE "+ident(name))
	if comment != "" {
		q, err := quoteLiteral(comment)
		if err != nil {
			t.Fatal(err)
		}
		mustExec(t, su, "COMMENT ON DATABASE "+ident(name)+" IS "+q)
	}
}

// markRole is markDatabase for a role.
func markRole(t *testing.T, su *pgx.Conn, name, comment string) {
	t.Helper()
	mustExec(t, su, "CREATE ROLE "+ident(name))
	if comment != "" {
		q, err := quoteLiteral(comment)
		if err != nil {
			t.Fatal(err)
		}
		mustExec(t, su, "COMMENT ON ROLE "+ident(name)+" IS "+q)
	}
}

func TestFindOrganizationFindsOnlyItsOwnMarkedRoleOrDatabase(t *testing.T) {
	svc := newService(t)
	su := superuser(t, "postgres")
	other := Marker{Org: "someone-else", UID: "11111111-2222"}
	cases := map[string]struct {
		// setUp makes what the server holds of tenant tn.
		setUp func(t *testing.T, tn tenant)
		want  bool
	}{
		"nothing of that name": {setUp: func(*testing.T, tenant) {}},
		"its marked role only": {setUp: func(t *testing.T, tn tenant) { markRole(t, su, tn.name, tn.marker.String()) }, want: true},
		"its marked database only": {
			setUp: func(t *testing.T, tn tenant) { markDatabase(t, su, tn.name, tn.marker.String()) },
			want:  true,
		},
		"its role and database, as provisioned": {setUp: func(t *testing.T, tn tenant) { provision(t, svc, tn) }, want: true},
		"marked with another UID of the same name": {
			setUp: func(t *testing.T, tn tenant) {
				markRole(t, su, tn.name, Marker{Org: tn.marker.Org, UID: "an-older-uid"}.String())
			},
			want: true,
		},
		"another organization's marker": {
			setUp: func(t *testing.T, tn tenant) {
				markRole(t, su, tn.name, other.String())
				markDatabase(t, su, tn.name, other.String())
			},
		},
		"unmarked, of the same names": {
			setUp: func(t *testing.T, tn tenant) {
				markRole(t, su, tn.name, "")
				markDatabase(t, su, tn.name, "")
			},
		},
		"a comment that only looks like its marker": {
			setUp: func(t *testing.T, tn tenant) {
				markRole(t, su, tn.name, tn.marker.String()+" (restored)")
				markDatabase(t, su, tn.name, "orgforge:org="+tn.marker.Org)
			},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			tn := newTenant(t)
			tc.setUp(t, tn)
			got, err := svc.FindOrganization(testContext(t), tn.marker.Org, tn.name, tn.name)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("FindOrganization(%q) = %t, want %t", tn.marker.Org, got, tc.want)
			}
		})
	}
}

func TestFindOrganizationLooksUpEachNameAsItsOwnKind(t *testing.T) {
	svc, ctx, tn := setUp(t)
	su := superuser(t, "postgres")
	// The marked role is named like the database asked for, and the
	// marked database like the role: neither is the organization's.
	markRole(t, su, tn.name+"_db", tn.marker.String())
	markDatabase(t, su, tn.name+"_role", tn.marker.String())
	got, err := svc.FindOrganization(ctx, tn.marker.Org, tn.name+"_db", tn.name+"_role")
	if err != nil {
		t.Fatal(err)
	}
	if got {
		t.Error("FindOrganization matched a role by the database's name, or a database by the role's")
	}
	if found, err := svc.FindOrganization(ctx, tn.marker.Org, tn.name+"_role", tn.name+"_db"); err != nil || !found {
		t.Errorf("FindOrganization with the names the right way round = %t, %v; want true", found, err)
	}
}

func TestFindOrganizationRefusesNamesTheServerWouldTruncate(t *testing.T) {
	svc, ctx, tn := setUp(t)
	long := strings.Repeat("x", maxIdentLen+1)
	for _, names := range [][2]string{{long, tn.name}, {tn.name, long}, {"", tn.name}} {
		if _, err := svc.FindOrganization(ctx, tn.marker.Org, names[0], names[1]); !errors.Is(err, ErrInvalid) {
			t.Errorf("FindOrganization(database %q, role %q) error = %v; want ErrInvalid", names[0], names[1], err)
		}
	}
}

func TestInventoryCountsMarkedDatabasesAndNamesTheirOrganizations(t *testing.T) {
	ctx := testContext(t)
	server := startPostgres(t)
	var logs logBuffer
	policy := retry.Policy{Attempts: 2, Base: 10 * time.Millisecond, Factor: 2, Cap: 100 * time.Millisecond}
	svc, err := New(ctx, Config{AdminDSN: server.AdminDSN(), Retry: policy}, logs.logger())
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	inventory := func() Inventory {
		t.Helper()
		inv, err := svc.Inventory(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return inv
	}
	count := func() int { return inventory().Databases }
	if n := count(); n != 0 {
		t.Fatalf("a new server holds %d organizations' databases, want 0", n)
	}

	su := testutil.Superuser(t, server, "postgres")
	tenants := []tenant{newTenant(t), newTenant(t)}
	for _, tn := range tenants {
		ensure := func(err error) {
			if err != nil {
				t.Fatal(err)
			}
		}
		_, err := svc.EnsureRole(ctx, tn.roleSpec())
		ensure(err)
		_, err = svc.EnsureDatabase(ctx, tn.name, tn.name, tn.marker)
		ensure(err)
	}
	// Left over from an organization whose role is gone: still its.
	markDatabase(t, su, "org_leftover", Marker{Org: "leftover", UID: "0123-4567"}.String())
	// None of these is an organization's database.
	markDatabase(t, su, "app", "")
	markDatabase(t, su, "app_notes", "orgforge: the team's notes")
	markDatabase(t, su, "app_truncated", "orgforge:org=acme")
	markRole(t, su, "org_role_only", Marker{Org: "role-only", UID: "89ab-cdef"}.String())

	inv := inventory()
	if inv.Databases != 3 {
		t.Errorf("Inventory counts %d databases, want 3: two provisioned and one left over", inv.Databases)
	}
	want := map[string]bool{tenants[0].marker.Org: true, tenants[1].marker.Org: true, "leftover": true, "role-only": true}
	if diff := cmp.Diff(want, inv.Organizations); diff != "" {
		t.Errorf("organizations found by marker (-want +got):\n%s", diff)
	}

	if err := server.Stop(); err != nil {
		t.Fatal(err)
	}
	calls := map[string]func(context.Context) error{
		"Inventory": func(ctx context.Context) error { _, err := svc.Inventory(ctx); return err },
		"FindOrganization": func(ctx context.Context) error {
			_, err := svc.FindOrganization(ctx, "acme", "org_acme", "org_acme")
			return err
		},
	}
	for name, call := range calls {
		err := call(ctx)
		if err == nil {
			t.Fatalf("%s answered with the server stopped", name)
		}
		if !strings.Contains(err.Error(), svc.Endpoint()) || !Classify(err).Transient() {
			t.Errorf("%s: error %q (class %q); want a transient one naming %s", name, err, Classify(err), svc.Endpoint())
		}
		if !strings.Contains(logs.String(), `"operation"="`+name+`"`) {
			t.Errorf("%s was not retried:\n%s", name, logs.String())
		}
	}
}
