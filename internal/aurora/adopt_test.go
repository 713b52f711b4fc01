package aurora

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMarkedForListsEveryRoleAndDatabaseOfTheNameAndRemarkTakesThemAll(t *testing.T) {
	svc := newService(t)
	ctx := testContext(t)
	su := superuser(t, "postgres")
	tn := newTenant(t)
	provision(t, svc, tn)
	// A login role marked for the same Organization, and one of an
	// Organization whose name starts the same.
	login := tn.name + "_1"
	if _, err := svc.EnsureRole(ctx, RoleSpec{Name: login, Marker: tn.marker, Verifier: tn.verifier, ConnLimit: 5}); err != nil {
		t.Fatal(err)
	}
	markRole(t, su, tn.name+"x", Marker{Org: tn.marker.Org + "x", UID: tn.marker.UID}.String())

	found, err := svc.MarkedFor(ctx, tn.marker.Org)
	if err != nil {
		t.Fatal(err)
	}
	want := []Marked{{"role", tn.name, tn.marker}, {"role", login, tn.marker}, {"database", tn.name, tn.marker}}
	if diff := cmp.Diff(want, found); diff != "" {
		t.Fatalf("MarkedFor (-want +got):\n%s", diff)
	}

	// One object's marker changed since it was found: nothing is taken.
	mine := Marker{Org: tn.marker.Org, UID: "new-uid", Cluster: "k1"}
	stale := append([]Marked{}, found...)
	stale[2].Marker.UID = "not-what-it-carries"
	if err := svc.Remark(ctx, stale, mine); !errors.Is(err, ErrConflict) {
		t.Fatalf("Remark of a changed marker: err = %v, want ErrConflict", err)
	}
	if again, _ := svc.MarkedFor(ctx, tn.marker.Org); !cmp.Equal(found, again) {
		t.Fatalf("a refused Remark changed markers: %+v", again)
	}

	if err := svc.Remark(ctx, found, mine); err != nil {
		t.Fatal(err)
	}
	// As a retry after a commit whose answer was lost would.
	if err := svc.Remark(ctx, found, mine); err != nil {
		t.Errorf("Remark again: %v", err)
	}
	after, err := svc.MarkedFor(ctx, tn.marker.Org)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range after {
		if m.Marker != mine {
			t.Errorf("%s is marked %+v after Remark, want %+v", m, m.Marker, mine)
		}
	}
	// Ours now, for every Ensure call.
	if _, err := svc.EnsureDatabase(ctx, tn.name, tn.name, mine); err != nil {
		t.Errorf("EnsureDatabase after the adoption: %v", err)
	}
}

func TestPasswordWorksTellsTheRolesPasswordFromAnother(t *testing.T) {
	svc := newService(t)
	ctx := testContext(t)
	tn := newTenant(t)
	provision(t, svc, tn)
	other, _ := newPassword(t)
	cases := map[string]struct {
		database, role, password string
		want                     bool
	}{
		"its password":     {tn.name, tn.name, tn.password, true},
		"another password": {tn.name, tn.name, other, false},
		"no such role":     {tn.name, tn.name + "_gone", tn.password, false},
		// PostgreSQL looks for the database only once the password is
		// accepted.
		"its password, no such database":     {tn.name + "_gone", tn.name, tn.password, true},
		"another password, no such database": {tn.name + "_gone", tn.name, other, false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := svc.PasswordWorks(ctx, tc.database, tc.role, tc.password)
			if err != nil || got != tc.want {
				t.Errorf("PasswordWorks = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}
