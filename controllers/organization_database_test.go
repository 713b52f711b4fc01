package controllers

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/aurora"
	"github.com/orgforge/orgforge/internal/config"
)

// fakeDatabase answers InspectRole and the two securing calls, and notes
// which it was asked; any other call panics on the nil interface.
type fakeDatabase struct {
	Database
	roleExists bool
	calls      []string
}

func (f *fakeDatabase) InspectRole(context.Context, string) (aurora.RoleInfo, error) {
	f.calls = append(f.calls, "InspectRole")
	return aurora.RoleInfo{Exists: f.roleExists}, nil
}

func (f *fakeDatabase) SecureDatabase(context.Context, string, string) (aurora.Change, error) {
	f.calls = append(f.calls, "SecureDatabase")
	return aurora.Unchanged, nil
}

func (f *fakeDatabase) SecureDatabaseAccess(context.Context, string, string) (aurora.Change, error) {
	f.calls = append(f.calls, "SecureDatabaseAccess")
	return aurora.Unchanged, nil
}

// fakeCreds makes the password "new" and the verifier "v(password)".
type fakeCreds struct{}

func (fakeCreds) NewPassword() (string, error)      { return "new", nil }
func (fakeCreds) Verifier(p string) (string, error) { return "v(" + p + ")", nil }

func TestTheRoleGetsAPasswordOnlyWhenTheSecretOrTheRoleIsNew(t *testing.T) {
	type want struct {
		Calls              []string
		Password, Verifier string
	}
	cases := map[string]struct {
		db         databaseState
		roleExists bool
		want       want
	}{
		"no Secret: a new password": {
			want: want{Password: "new", Verifier: "v(new)"},
		},
		"the Secret's password and the role exists: nothing to set": {
			db: databaseState{password: "kept"}, roleExists: true,
			want: want{Calls: []string{"InspectRole"}, Password: "kept"},
		},
		"the Secret's password and no role: the role is created with it": {
			db:   databaseState{password: "kept"},
			want: want{Calls: []string{"InspectRole"}, Password: "kept", Verifier: "v(kept)"},
		},
		"a password edited in the Secret is set without asking the role": {
			db: databaseState{password: "edited", edited: true}, roleExists: true,
			want: want{Password: "edited", Verifier: "v(edited)"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			db := &fakeDatabase{roleExists: tc.roleExists}
			r := &OrganizationReconciler{Creds: fakeCreds{}}
			s := &scope{role: "org_acme", db: tc.db, dbs: db}
			if err := r.rolePassword(context.Background(), s); err != nil {
				t.Fatal(err)
			}
			got := want{Calls: db.calls, Password: s.db.password, Verifier: s.db.verifier}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestAResyncOfAReadyDatabaseOnlyChecksWhoMayConnect(t *testing.T) {
	ready := metav1.Condition{Type: tenancyv1alpha1.ConditionDatabaseReady, Status: metav1.ConditionTrue}
	cases := map[string]struct {
		changed              bool
		generation, observed int64
		conds                []metav1.Condition
		want                 string
	}{
		"resync of a Ready generation":  {false, 2, 2, []metav1.Condition{ready}, "SecureDatabaseAccess"},
		"a database created or updated": {true, 2, 2, []metav1.Condition{ready}, "SecureDatabase"},
		"a new generation":              {false, 3, 2, []metav1.Condition{ready}, "SecureDatabase"},
		"DatabaseReady is not yet True": {false, 1, 0, nil, "SecureDatabase"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			db := &fakeDatabase{}
			r := &OrganizationReconciler{}
			org := &tenancyv1alpha1.Organization{}
			org.Generation, org.Status.ObservedGeneration, org.Status.Conditions = tc.generation, tc.observed, tc.conds
			s := &scope{org: org, database: "org_acme", role: "org_acme", db: databaseState{changed: tc.changed}, dbs: db}
			if err := r.secureDatabase(context.Background(), s); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]string{tc.want}, db.calls); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOnlyASettledOrganizationIsCheckedAgainstTheSnapshot(t *testing.T) {
	settledScope := func() *scope {
		org := &tenancyv1alpha1.Organization{}
		org.Generation, org.Status.ObservedGeneration = 3, 3
		for _, c := range []string{tenancyv1alpha1.ConditionReady, tenancyv1alpha1.ConditionDatabaseReady} {
			org.Status.Conditions = append(org.Status.Conditions, metav1.Condition{Type: c, Status: metav1.ConditionTrue})
		}
		return &scope{org: org, db: databaseState{secret: &corev1.Secret{}, password: "kept"}}
	}
	cases := map[string]struct {
		edit func(s *scope)
		want bool
	}{
		"Ready at its generation, the Secret's password kept": {edit: func(*scope) {}, want: true},
		"a new generation":         {edit: func(s *scope) { s.org.Generation++ }},
		"placed by this reconcile": {edit: func(s *scope) { s.placedNow = true }},
		"DatabaseReady not True": {edit: func(s *scope) {
			s.org.Status.Conditions[1].Status = metav1.ConditionFalse
		}},
		"Ready False for its storage only": {edit: func(s *scope) {
			s.org.Status.Conditions[0].Status = metav1.ConditionFalse
		}, want: true},
		"no Secret":                   {edit: func(s *scope) { s.db.secret, s.db.password = nil, "" }},
		"a password edited":           {edit: func(s *scope) { s.db.edited = true }},
		"a rotation":                  {edit: func(s *scope) { s.db.switched, s.db.verifier = true, "v" }},
		"a grace period ended":        {edit: func(s *scope) { s.db.revoked = "org_acme$1" }},
		"a retained Secret adopted":   {edit: func(s *scope) { s.db.adoption = "from" }},
		"logins of an earlier holder": {edit: func(s *scope) { s.db.markedLogins = true }},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s := settledScope()
			tc.edit(s)
			if got := settled(s); got != tc.want {
				t.Errorf("settled = %t, want %t", got, tc.want)
			}
		})
	}
}

func TestTheSnapshotMaxAgeDefaultsToAQuarterOfTheResyncUpTo30s(t *testing.T) {
	cases := map[string]struct {
		resync, flag, want time.Duration
	}{
		"the default resync":              {resync: 10 * time.Minute, want: 30 * time.Second},
		"a short resync":                  {resync: 20 * time.Second, want: 5 * time.Second},
		"set":                             {resync: 10 * time.Minute, flag: time.Minute, want: time.Minute},
		"negative turns the snapshot off": {resync: 10 * time.Minute, flag: -1, want: 0},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := &config.Config{ResyncPeriod: tc.resync}
			cfg.Database.SnapshotMaxAge = tc.flag
			if got := SettingsFrom(cfg).SnapshotMaxAge; got != tc.want {
				t.Errorf("SnapshotMaxAge = %s, want %s", got, tc.want)
			}
		})
	}
}
