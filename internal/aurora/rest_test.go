package aurora

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/orgforge/orgforge/internal/devstack"
	"github.com/orgforge/orgforge/internal/testutil"
)

// restTenant is a tenant provisioned as the controller leaves it, with
// logins when it rotates, and the drift a test makes to it.
type restTenant struct {
	tenant
	logins *LoginsSpec
}

func (rt restTenant) rest() Rest {
	role := rt.roleSpec()
	role.Verifier = ""
	r := Rest{Role: role, Database: rt.name}
	if rt.logins != nil {
		ls := *rt.logins
		ls.Logins = slices.Clone(ls.Logins)
		for i := range ls.Logins {
			ls.Logins[i].Verifier = ""
		}
		r.Logins = &ls
		r.Role.NoLogin = true
	}
	return r
}

// ensure runs the Ensure calls of a resync, which repair any drift.
func (rt restTenant) ensure(t *testing.T, svc *Service) {
	t.Helper()
	ctx := testContext(t)
	r := rt.rest()
	if _, err := svc.EnsureRole(ctx, r.Role); err != nil {
		t.Fatalf("EnsureRole: %v", err)
	}
	if _, err := svc.EnsureDatabase(ctx, rt.name, rt.name, rt.marker); err != nil {
		t.Fatalf("EnsureDatabase: %v", err)
	}
	if _, err := svc.SecureDatabaseAccess(ctx, rt.name, rt.name); err != nil {
		t.Fatalf("SecureDatabaseAccess: %v", err)
	}
	if r.Logins != nil {
		if _, err := svc.EnsureLogins(ctx, *r.Logins); err != nil {
			t.Fatalf("EnsureLogins: %v", err)
		}
	}
}

// provisionRest provisions a tenant marked with a cluster, with two logins
// of which the first is active when logins is set.
func provisionRest(t *testing.T, svc *Service, logins bool) restTenant {
	t.Helper()
	rt := restTenant{tenant: newTenant(t)}
	rt.marker.Cluster = "k8s-" + randomHex(t, 4)
	provision(t, svc, rt.tenant)
	if !logins {
		return rt
	}
	first, second := rt.name+"$1", rt.name+"$2"
	_, v1 := newPassword(t)
	_, v2 := newPassword(t)
	ls := LoginsSpec{Owner: rt.name, Database: rt.name, Marker: rt.marker, ConnLimit: 5,
		Logins: []Login{{Name: first, Active: true, Verifier: v1}, {Name: second, Active: true, Verifier: v2}}}
	if _, err := svc.EnsureLogins(testContext(t), ls); err != nil {
		t.Fatal(err)
	}
	// The second is revoked, as at the end of a grace period.
	ls.Logins = []Login{{Name: first, Active: true}, {Name: second}}
	if _, err := svc.EnsureLogins(testContext(t), ls); err != nil {
		t.Fatal(err)
	}
	rt.logins = &ls
	// The owner stops being a login once there are logins.
	role := rt.roleSpec()
	role.Verifier, role.NoLogin = "", true
	if _, err := svc.EnsureRole(testContext(t), role); err != nil {
		t.Fatal(err)
	}
	return rt
}

// sameAsObservers checks that snap reads of rt's objects what the per-org
// observers read of them live.
func sameAsObservers(t *testing.T, svc *Service, snap *snapshot, rt restTenant) {
	t.Helper()
	ctx := testContext(t)
	role, err := svc.observeRole(ctx, svc.admin, rt.name)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := snap.roles[rt.name]
	live := roleSnap{comment: commentHash(role.comment), connLimit: role.connLimit, canLogin: role.canLogin, member: role.member}
	if !role.exists {
		live = roleSnap{}
	}
	fromSnap := roleSnap{comment: got.comment, connLimit: got.connLimit, canLogin: got.canLogin, member: got.member}
	if diff := cmp.Diff(live, fromSnap, cmp.AllowUnexported(roleSnap{})); diff != "" || ok != role.exists {
		t.Errorf("role %s: snapshot (found %t) against observeRole (found %t) (-live +snapshot):\n%s", rt.name, ok, role.exists, diff)
	}
	db, err := svc.observeDatabase(ctx, svc.admin, rt.name)
	if err != nil {
		t.Fatal(err)
	}
	publicHas, err := svc.publicHasAccess(ctx, rt.name)
	if err != nil {
		t.Fatal(err)
	}
	gotDB := snap.dbs[rt.name]
	liveDB := dbSnap{comment: commentHash(db.comment), owner: db.owner, publicHas: publicHas, connect: gotDB.connect}
	if diff := cmp.Diff(liveDB, gotDB, cmp.AllowUnexported(dbSnap{})); diff != "" {
		t.Errorf("database %s: snapshot against observeDatabase and publicHasAccess (-live +snapshot):\n%s", rt.name, diff)
	}
	if rt.logins == nil {
		return
	}
	logins, err := svc.observeLogins(ctx, *rt.logins)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range rt.logins.Logins {
		st, ok := snap.roles[l.Name]
		type seen struct {
			Found, CanLogin, Inherit, Member, InOwner, Connect bool
			ConnLimit                                          int32
			Comment                                            uint64
			Config                                             []string
		}
		lv, found := logins[l.Name]
		want := seen{Found: found, CanLogin: lv.canLogin, Inherit: lv.inherit, Member: lv.member, InOwner: lv.inOwner,
			Connect: lv.connect, ConnLimit: lv.connLimit, Config: lv.config}
		if found {
			want.Comment = commentHash(lv.comment)
		}
		var gotLogin seen
		if ok {
			gotLogin = seen{Found: true, CanLogin: st.canLogin, Inherit: st.inherit, Member: st.member,
				InOwner: slices.Contains(st.memberOf, rt.name), Connect: slices.Contains(gotDB.connect, l.Name),
				ConnLimit: st.connLimit, Comment: st.comment, Config: st.config}
		}
		if diff := cmp.Diff(want, gotLogin); diff != "" {
			t.Errorf("login %s: snapshot against observeLogins (-live +snapshot):\n%s", l.Name, diff)
		}
	}
}

func TestTheSnapshotReadsWhatTheObserversReadAndSeesEveryDrift(t *testing.T) {
	servers := map[string]*devstack.Postgres{"default": pg}
	if major := binariesMajor(t, pg); major != 13 {
		server, err := devstack.StartPostgres(testContext(t), t.TempDir(), devstack.PostgresOptions{Major: 13})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = server.Close() })
		servers["13"] = server
	}
	for name, server := range servers {
		t.Run(name, func(t *testing.T) { snapshotSeesEveryDrift(t, server) })
	}
}

// drift is a change someone else makes to a tenant's objects, which the
// Ensure calls repair.
type drift struct {
	logins bool
	sql    func(rt restTenant, admin string) []string
}

var drifts = map[string]drift{
	"connection limit altered": {sql: func(rt restTenant, _ string) []string {
		return []string{"ALTER ROLE " + ident(rt.name) + " CONNECTION LIMIT 99"}
	}},
	"role NOLOGIN": {sql: func(rt restTenant, _ string) []string {
		return []string{"ALTER ROLE " + ident(rt.name) + " NOLOGIN"}
	}},
	"role's marker without its cluster": {sql: func(rt restTenant, _ string) []string {
		m := rt.marker
		m.Cluster = ""
		return []string{"COMMENT ON ROLE " + ident(rt.name) + " IS " + mustQuote(m.String())}
	}},
	"database's marker without its cluster": {sql: func(rt restTenant, _ string) []string {
		m := rt.marker
		m.Cluster = ""
		return []string{"COMMENT ON DATABASE " + ident(rt.name) + " IS " + mustQuote(m.String())}
	}},
	"PUBLIC granted CONNECT": {sql: func(rt restTenant, _ string) []string {
		return []string{"GRANT CONNECT ON DATABASE " + ident(rt.name) + " TO PUBLIC"}
	}},
	"admin no longer a member": {sql: func(rt restTenant, admin string) []string {
		return []string{fmt.Sprintf("REVOKE %s FROM %s GRANTED BY %s", ident(rt.name), ident(admin), ident(admin))}
	}},
	"login INHERIT": {logins: true, sql: func(rt restTenant, _ string) []string {
		return []string{"ALTER ROLE " + ident(rt.name+"$1") + " INHERIT"}
	}},
	"login's CONNECT revoked": {logins: true, sql: func(rt restTenant, _ string) []string {
		return []string{fmt.Sprintf("REVOKE CONNECT ON DATABASE %s FROM %s", ident(rt.name), ident(rt.name+"$1"))}
	}},
	"login out of the owner": {logins: true, sql: func(rt restTenant, admin string) []string {
		return []string{fmt.Sprintf("REVOKE %s FROM %s GRANTED BY %s", ident(rt.name), ident(rt.name+"$1"), ident(admin))}
	}},
	"login's role setting reset": {logins: true, sql: func(rt restTenant, _ string) []string {
		return []string{"ALTER ROLE " + ident(rt.name+"$1") + " RESET role"}
	}},
	"revoked login may log in again": {logins: true, sql: func(rt restTenant, _ string) []string {
		return []string{"ALTER ROLE " + ident(rt.name+"$2") + " LOGIN"}
	}},
	"login's connection limit altered": {logins: true, sql: func(rt restTenant, _ string) []string {
		return []string{"ALTER ROLE " + ident(rt.name+"$1") + " CONNECTION LIMIT 1"}
	}},
}

func snapshotSeesEveryDrift(t *testing.T, server *devstack.Postgres) {
	ctx := testContext(t)
	svc := newService(t, func(c *Config) { c.AdminDSN = server.AdminDSN() })
	su := testutil.Superuser(t, server, "postgres")
	// Every snapshot is read anew: each AtRest below sees the server as
	// it is.
	const fresh = time.Nanosecond
	plain, rotated := provisionRest(t, svc, false), provisionRest(t, svc, true)
	for _, rt := range []restTenant{plain, rotated} {
		if !svc.AtRest(ctx, rt.rest(), fresh) {
			t.Fatalf("tenant %s as provisioned is not at rest", rt.name)
		}
		snap := svc.snaps.cur
		sameAsObservers(t, svc, snap, rt)
	}

	for name, d := range drifts {
		t.Run(name, func(t *testing.T) {
			rt := provisionRest(t, svc, d.logins)
			if !svc.AtRest(ctx, rt.rest(), fresh) {
				t.Fatal("not at rest before the drift")
			}
			for _, stmt := range d.sql(rt, devstack.AdminUser) {
				mustExec(t, su, stmt)
			}
			if svc.AtRest(ctx, rt.rest(), fresh) {
				t.Error("at rest after the drift")
			}
			sameAsObservers(t, svc, svc.snaps.cur, rt)
			ddl := svc.DDLCount()
			rt.ensure(t, svc)
			if svc.DDLCount() == ddl {
				t.Error("the Ensure calls sent nothing: the drift made no difference to repair")
			}
			if !svc.AtRest(ctx, rt.rest(), fresh) {
				t.Error("not at rest once repaired")
			}
			sameAsObservers(t, svc, svc.snaps.cur, rt)
		})
	}
}

func TestOneSnapshotServesEveryOrganizationUntilItIsOld(t *testing.T) {
	svc, ctx, _ := setUp(t)
	var rts []restTenant
	for range 4 {
		rts = append(rts, provisionRest(t, svc, false))
	}
	rts = append(rts, provisionRest(t, svc, true))
	before := svc.Statements()
	for range 3 {
		for _, rt := range rts {
			if !svc.AtRest(ctx, rt.rest(), time.Hour) {
				t.Fatalf("tenant %s is not at rest", rt.name)
			}
		}
	}
	if got := svc.Statements() - before; got != 1 {
		t.Errorf("%d statements for 3 checks of %d organizations, want the one snapshot", got, len(rts))
	}
	// A snapshot older than the age asked is read again.
	time.Sleep(10 * time.Millisecond)
	before = svc.Statements()
	if !svc.AtRest(ctx, rts[0].rest(), 5*time.Millisecond) {
		t.Fatal("not at rest")
	}
	if got := svc.Statements() - before; got != 1 {
		t.Errorf("%d statements for a check past the snapshot's age, want 1", got)
	}
}

func TestASnapshotTakenBeforeTheServicesOwnWriteIsNotTrusted(t *testing.T) {
	svc, ctx, _ := setUp(t)
	rt := provisionRest(t, svc, false)
	if !svc.AtRest(ctx, rt.rest(), time.Hour) {
		t.Fatal("not at rest as provisioned")
	}
	// The operator lowers the limit, then is asked for the old one again:
	// the snapshot, which still shows the old one, must not skip the
	// write back.
	lowered := rt.rest()
	lowered.Role.ConnLimit = 2
	if _, err := svc.EnsureRole(ctx, lowered.Role); err != nil {
		t.Fatal(err)
	}
	if svc.AtRest(ctx, rt.rest(), time.Hour) {
		t.Error("at rest by a snapshot taken before the service changed the role")
	}
	if svc.AtRest(ctx, lowered, time.Hour) {
		t.Error("at rest with the new limit by a snapshot taken before it was set")
	}
	if !svc.AtRest(ctx, lowered, time.Nanosecond) {
		t.Error("a snapshot read after the change does not show it")
	}
}

func TestAnUnreadableSnapshotIsNotAtRestAndIsReadAgainOnceTheServerIsBack(t *testing.T) {
	ctx := testContext(t)
	server := startPostgres(t)
	svc := newService(t, func(c *Config) { c.AdminDSN = server.AdminDSN() })
	rt := provisionRest(t, svc, false)
	if err := server.Stop(); err != nil {
		t.Fatal(err)
	}
	const maxAge = 200 * time.Millisecond
	if svc.AtRest(ctx, rt.rest(), maxAge) {
		t.Error("at rest with the server down")
	}
	if err := server.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// Until a max age has passed the failed read stands; then the next
	// check reads again.
	testutil.Eventually(t, 30*time.Second, "at rest again", func() (bool, string) {
		return svc.AtRest(ctx, rt.rest(), maxAge), "not at rest"
	})
}

// TestASnapshotReadBeforeARefreshIsNotTrustedWithWritesTheRefreshPruned
// holds one snapshot while a write and a refresh pass: the refresh drops
// the record of the write, which the held snapshot does not show, so the
// held one must not be trusted for it.
func TestASnapshotReadBeforeARefreshIsNotTrustedWithWritesTheRefreshPruned(t *testing.T) {
	var ss snapshots
	read := func(context.Context) (*snapshot, error) { return &snapshot{}, nil }
	held, err := ss.get(context.Background(), time.Hour, read)
	if err != nil {
		t.Fatal(err)
	}
	ss.wrote("org_acme")
	if !ss.writtenSince(held, []string{"org_acme"}) {
		t.Fatal("a snapshot read before a write is trusted for the object written")
	}
	ss.mu.Lock()
	ss.cur.taken = time.Now().Add(-2 * time.Hour)
	ss.mu.Unlock()
	fresh, err := ss.get(context.Background(), time.Hour, read)
	if err != nil || fresh == held {
		t.Fatalf("no refresh: %v", err)
	}
	if !ss.writtenSince(held, []string{"org_acme"}) {
		t.Error("after a refresh pruned the record, the snapshot read before the write is trusted for the object written")
	}
	if ss.writtenSince(fresh, []string{"org_acme"}) {
		t.Error("the snapshot read after the write is not trusted")
	}
}
