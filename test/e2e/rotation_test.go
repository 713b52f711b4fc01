package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/controllers"
	"github.com/orgforge/orgforge/internal/aurora"
	"github.com/orgforge/orgforge/internal/devstack"
	"github.com/orgforge/orgforge/internal/naming"
	"github.com/orgforge/orgforge/internal/testutil"
)

// rotationGrace is the grace period of the rotation tests: the API's
// shortest, so that they wait as little as they can.
const rotationGrace = 10 * time.Second

// withGrace sets spec.credentials.gracePeriod.
func withGrace(d time.Duration) testutil.OrgOption {
	return func(o *tenancyv1alpha1.Organization) { o.Spec.Credentials.GracePeriod = &metav1.Duration{Duration: d} }
}

// setRotationToken sets spec.credentials.rotationToken, as GitOps would.
func setRotationToken(t *testing.T, name, token string) {
	t.Helper()
	o := &tenancyv1alpha1.Organization{ObjectMeta: metav1.ObjectMeta{Name: name}}
	patch := fmt.Sprintf(`{"spec":{"credentials":{"rotationToken":%q}}}`, token)
	if err := k8s.Patch(context.Background(), o, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		t.Fatal(err)
	}
}

// steadyApp is an application holding a pool of open connections: it
// queries through each of them until stopped and counts what fails.
type steadyApp struct {
	pool    *pgxpool.Pool
	pids    []int32
	queries atomic.Int64
	failed  atomic.Int64
	lastErr atomic.Value
	stop    context.CancelFunc
	done    sync.WaitGroup
}

// startApp opens a pool of n connections with uri and keeps all of them
// busy.
func startApp(t *testing.T, uri string, n int) *steadyApp {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(uri)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MinConns, cfg.MaxConns = int32(n), int32(n)
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	app := &steadyApp{pool: pool}
	app.pids = app.backends(t, n)
	ctx, cancel := context.WithCancel(context.Background())
	app.stop = cancel
	for range n {
		app.done.Add(1)
		go func() {
			defer app.done.Done()
			for ctx.Err() == nil {
				var one int
				if err := pool.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil && ctx.Err() == nil {
					app.failed.Add(1)
					app.lastErr.Store(err.Error())
				}
				app.queries.Add(1)
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	t.Cleanup(func() { app.stop(); app.done.Wait(); pool.Close() })
	return app
}

// backends holds all n of the pool's connections at once and returns
// their server process ids, sorted: the same ids later mean that none of
// the connections was dropped and replaced.
func (a *steadyApp) backends(t *testing.T, n int) []int32 {
	t.Helper()
	ctx := context.Background()
	var pids []int32
	var held []*pgxpool.Conn
	for range n {
		c, err := a.pool.Acquire(ctx)
		if err != nil {
			t.Fatalf("acquiring a pool connection: %v", err)
		}
		held = append(held, c)
		var pid int32
		if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			t.Fatalf("querying through a pool connection: %v", err)
		}
		pids = append(pids, pid)
	}
	for _, c := range held {
		c.Release()
	}
	sort.Slice(pids, func(i, j int) bool { return pids[i] < pids[j] })
	return pids
}

// uriOf is the Secret's uri with its username and password replaced.
func uriOf(s *corev1.Secret, userKey, passwordKey string) string {
	uri := string(s.Data["uri"])
	cur := string(s.Data["username"]) + ":" + string(s.Data["password"]) + "@"
	return strings.Replace(uri, cur, string(s.Data[userKey])+":"+string(s.Data[passwordKey])+"@", 1)
}

func exec(t *testing.T, uri, sql string) {
	t.Helper()
	// pgxpool, which takes the uri's pool_* parameters.
	conn, err := pgxpool.New(context.Background(), uri)
	if err != nil {
		t.Fatalf("logging in for %q: %v", sql, err)
	}
	defer conn.Close()
	if _, err := conn.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func queryString(t *testing.T, uri, sql string) string {
	t.Helper()
	// pgxpool, which takes the uri's pool_* parameters.
	conn, err := pgxpool.New(context.Background(), uri)
	if err != nil {
		t.Fatalf("logging in for %q: %v", sql, err)
	}
	defer conn.Close()
	var s string
	if err := conn.QueryRow(context.Background(), sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

// rotateAndWait sets a new rotation token and waits for the Secret to
// switch to another login, then for that login's predecessor to stop
// working. It checks the grace period in between and returns the Secret
// during the grace period and the times each took.
func rotateAndWait(t *testing.T, o *tenancyv1alpha1.Organization, token string) (grace *corev1.Secret, switched, revoked time.Duration) {
	t.Helper()
	ctx := context.Background()
	name := o.Name + "-database"
	before := secret(t, o, name)
	start := time.Now()
	setRotationToken(t, o.Name, token)
	testutil.Eventually(t, 60*time.Second, "the database Secret to switch logins", func() (bool, string) {
		grace = secret(t, o, name)
		return string(grace.Data["username"]) != string(before.Data["username"]), string(grace.Data["username"])
	})
	switched = time.Since(start)
	if got, want := string(grace.Data["previous-username"]), string(before.Data["username"]); got != want {
		t.Errorf("previous-username = %q, want the login before the switch, %q", got, want)
	}
	if string(grace.Data["previous-password"]) != string(before.Data["password"]) {
		t.Error("previous-password is not the password before the switch")
	}
	if grace.Annotations[controllers.AnnotationPreviousValidUntil] == "" || grace.Annotations[controllers.AnnotationRotationToken] != token {
		t.Errorf("annotations during the grace period = %v", grace.Annotations)
	}
	oldURI := uriOf(grace, "previous-username", "previous-password")
	// During the grace period both log in with new connections.
	if err := login(ctx, string(grace.Data["uri"])); err != nil {
		t.Errorf("the new login does not work: %v", err)
	}
	if err := login(ctx, oldURI); err != nil && time.Since(start) < rotationGrace {
		t.Errorf("the previous login stopped working within its grace period: %v", err)
	}
	testutil.Eventually(t, 60*time.Second, "the previous login to stop working", func() (bool, string) {
		err := login(ctx, oldURI)
		return err != nil, "it still logs in"
	})
	revoked = time.Since(start)
	testutil.Eventually(t, 30*time.Second, "previous-* to leave the Secret", func() (bool, string) {
		s := secret(t, o, name)
		_, has := s.Data["previous-password"]
		return !has && s.Annotations[controllers.AnnotationPreviousValidUntil] == "", fmt.Sprint(s.Annotations)
	})
	if err := login(ctx, string(secret(t, o, name).Data["uri"])); err != nil {
		t.Errorf("the current login does not work after the grace period: %v", err)
	}
	return grace, switched, revoked
}

// TestFleetRotationOfTheDatabaseLoginDropsNoConnection rotates an organization's
// database credentials twice on each PostgreSQL major of the fleet, while
// an application holds a pool of open connections through the first login.
func TestFleetRotationOfTheDatabaseLoginDropsNoConnection(t *testing.T) {
	startOperator(t, nil)
	var mu sync.Mutex
	var timings []string
	for _, major := range fleetMajors {
		t.Run(fmt.Sprintf("PostgreSQL%d", major), func(t *testing.T) {
			t.Parallel()
			cluster := fmt.Sprintf("rotate-pg%d", major)
			newCluster(t, cluster, fleetServer(t, major), map[string]string{"fleet-test": cluster})
			waitCluster(t, cluster, "True", tenancyv1alpha1.ReasonConnected)
			name := fmt.Sprintf("rotate-%d", major)
			o := applyReady(t, testutil.NewOrg(name, testutil.OnCluster(cluster), withGrace(rotationGrace),
				testutil.WithStorageAccess(tenancyv1alpha1.StorageAccessNone)))
			owner := naming.RoleName(name)
			logins := naming.LoginNames(name)
			first := secret(t, o, name+"-database")
			if got := string(first.Data["username"]); got != owner {
				t.Fatalf("before any rotation the Secret's login is %q, want the owner %q", got, owner)
			}
			firstURI := string(first.Data["uri"])
			exec(t, firstURI, "CREATE TABLE before_rotation (x int); INSERT INTO before_rotation VALUES (1)")
			app := startApp(t, firstURI, 3)

			grace, switched1, revoked1 := rotateAndWait(t, o, "one")
			if got := string(grace.Data["username"]); got != logins[0] {
				t.Errorf("first rotation switched to %q, want %q", got, logins[0])
			}
			// What the new login creates is the owner's, and the old
			// login's sessions use it.
			newURI := string(grace.Data["uri"])
			exec(t, newURI, "CREATE TABLE after_rotation (x int); INSERT INTO after_rotation VALUES (2); INSERT INTO before_rotation VALUES (2)")
			if got := queryString(t, newURI, "SELECT tableowner FROM pg_tables WHERE tablename = 'after_rotation'"); got != owner {
				t.Errorf("a table created through login %s is owned by %q, want the owner %q", logins[0], got, owner)
			}
			var n int
			if err := app.pool.QueryRow(context.Background(), "SELECT count(*) FROM after_rotation").Scan(&n); err != nil || n != 1 {
				t.Errorf("the old login's pool cannot read the new login's table: %d, %v", n, err)
			}

			o = waitReady(t, name)
			if st := o.Status.Credentials; st.DatabaseLogin != logins[0] || st.RotationToken != "one" || st.LastRotation == nil {
				t.Errorf("status.credentials after the first rotation = %+v", st)
			}

			// The second rotation goes to the other login and back
			// through none of the owner's.
			grace, switched2, revoked2 := rotateAndWait(t, o, "two")
			if got, prev := string(grace.Data["username"]), string(grace.Data["previous-username"]); got != logins[1] || prev != logins[0] {
				t.Errorf("second rotation: login %q, previous %q; want %q and %q", got, prev, logins[1], logins[0])
			}
			if err := login(context.Background(), firstURI); err == nil {
				t.Error("the owner's password still logs in after its grace period")
			}

			// The pool opened before both rotations never lost a
			// connection: the same server processes serve it.
			if got := app.backends(t, 3); !slices.Equal(got, app.pids) {
				t.Errorf("the pool's connections changed from %v to %v: some were dropped", app.pids, got)
			}
			if f := app.failed.Load(); f != 0 {
				t.Errorf("%d of %d queries of the open pool failed, last: %v", f, app.queries.Load(), app.lastErr.Load())
			}
			t.Logf("PostgreSQL %d: %d queries through 3 open connections, %d failed, 0 connections dropped", major, app.queries.Load(), app.failed.Load())
			mu.Lock()
			timings = append(timings, fmt.Sprintf("pg%d: switched %v, %v; revoked %v, %v", major,
				switched1.Round(time.Millisecond), switched2.Round(time.Millisecond), revoked1.Round(time.Millisecond), revoked2.Round(time.Millisecond)))
			mu.Unlock()
		})
	}
	t.Cleanup(func() {
		t.Logf("rotation timings (trigger to Secret switched; to old login refused, grace %v): %s", rotationGrace, strings.Join(timings, "; "))
	})
}

// faultyLogins fails EnsureLogins, before it reaches the server, while
// failing is set.
type faultyLogins struct {
	controllers.Database
	failing *atomic.Bool
}

func (f faultyLogins) EnsureLogins(ctx context.Context, spec aurora.LoginsSpec) ([]aurora.LoginChange, error) {
	if f.failing.Load() {
		return nil, errors.New("injected: the operator stops before the logins")
	}
	return f.Database.EnsureLogins(ctx, spec)
}

// failSecretUpdates fails every update of the Secret named name while
// failing is set: the logins have changed, the Secret has not.
func failSecretUpdates(name string, failing *atomic.Bool) func(client.Client) client.Client {
	return func(c client.Client) client.Client {
		w, ok := c.(client.WithWatch)
		if !ok {
			w = unwatched{c}
		}
		return interceptor.NewClient(w, interceptor.Funcs{
			Update: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.UpdateOption) error {
				if _, isSecret := o.(*corev1.Secret); isSecret && o.GetName() == name && failing.Load() {
					return errors.New("injected: the operator stops before the Secret is written")
				}
				return c.Update(ctx, o, opts...)
			},
		})
	}
}

// loginsThatWork lists which of the organization's owner and logins may
// log in, as the server says.
func loginsThatWork(t *testing.T, org string) []string {
	t.Helper()
	return loginsThatWorkOn(t, stack.Postgres, org)
}

// loginsThatWorkOn is loginsThatWork on the server pg.
func loginsThatWorkOn(t *testing.T, pg *devstack.Postgres, org string) []string {
	t.Helper()
	su := testutil.Superuser(t, pg, "postgres")
	l := naming.LoginNames(org)
	rows, err := su.Query(context.Background(), "SELECT rolname FROM pg_roles WHERE rolcanlogin AND rolname = ANY($1) ORDER BY rolname",
		[]string{naming.RoleName(org), l[0], l[1]})
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// checkSecretHoldsTheOnlyLogins checks that the database Secret's current
// login works, its previous one too while the Secret keeps it, and that no
// other login of the organization can log in: nothing has a password that
// the Secret does not hold.
func checkSecretHoldsTheOnlyLogins(t *testing.T, o *tenancyv1alpha1.Organization) {
	t.Helper()
	checkSecretHoldsTheOnlyLoginsOn(t, stack.Postgres, o)
}

// checkSecretHoldsTheOnlyLoginsOn is checkSecretHoldsTheOnlyLogins for an
// organization on the server pg.
func checkSecretHoldsTheOnlyLoginsOn(t *testing.T, pg *devstack.Postgres, o *tenancyv1alpha1.Organization) {
	t.Helper()
	s := secret(t, o, o.Name+"-database")
	if err := login(context.Background(), string(s.Data["uri"])); err != nil {
		t.Errorf("the Secret's current login %s does not work: %v", s.Data["username"], err)
	}
	want := []string{string(s.Data["username"])}
	if prev := string(s.Data["previous-username"]); prev != "" {
		want = append(want, prev)
	}
	slices.Sort(want)
	if got := loginsThatWorkOn(t, pg, o.Name); !slices.Equal(got, want) {
		t.Errorf("logins that may log in = %v, want the Secret's %v", got, want)
	}
}

// TestRotationInterruptedAtEachStepLeavesOneWorkingCredential interrupts a
// rotation before its logins change, then between the logins and the
// Secret's switch, then between the old login's revocation and the
// Secret's clean-up, with a restart of the operator in the middle, and
// checks after each that the Secret holds a working credential and that no
// login outside it can log in.
func TestRotationInterruptedAtEachStepLeavesOneWorkingCredential(t *testing.T) {
	var loginsFail, secretFails atomic.Bool
	const name = "rotcrash"
	wrapDB := func(_ string, db controllers.Database) controllers.Database {
		return faultyLogins{Database: db, failing: &loginsFail}
	}
	op := launchOperator(t, operatorOptions{db: wrapDB, wrap: failSecretUpdates(name+"-database", &secretFails)})
	// Registered before the Organization's clean-up, so it runs after it:
	// the operator that is running then deletes the Organization.
	t.Cleanup(func() { op.stop() })
	o := applyReady(t, testutil.NewOrg(name, withGrace(rotationGrace), testutil.WithStorageAccess(tenancyv1alpha1.StorageAccessNone)))
	first := secret(t, o, name+"-database")
	wait := func(what string, ok func() bool) {
		t.Helper()
		testutil.Eventually(t, 60*time.Second, what, func() (bool, string) { return ok(), "" })
	}

	// 1. Stopped before the logins: the budget of two logins is taken,
	// nothing else. The trigger is withdrawn while the fault lasts: the
	// budget goes back and the Organization is Ready again.
	loginsFail.Store(true)
	setRotationToken(t, name, "a")
	o = waitCondition(t, name, tenancyv1alpha1.ConditionDatabaseReady, "False", "", 30*time.Second)
	if o.Annotations[controllers.AnnotationBudgetedLogins] != "2" {
		t.Errorf("the budget does not count two logins before the switch: %v", o.Annotations)
	}
	checkSecretHoldsTheOnlyLogins(t, o)
	setRotationToken(t, name, "")
	wait("the budget of the second login to be given back", func() bool {
		o = waitReady(t, name)
		return o.Annotations[controllers.AnnotationBudgetedLogins] == ""
	})
	loginsFail.Store(false)
	checkSecretHoldsTheOnlyLogins(t, o)

	// 2. Stopped between the logins and the Secret: login $1 has a new
	// password that no Secret holds. Withdrawn, while the Secret still
	// cannot be written, it is revoked.
	secretFails.Store(true)
	setRotationToken(t, name, "b")
	wait("login $1 to get its password", func() bool { return slices.Contains(loginsThatWork(t, name), naming.LoginNames(name)[0]) })
	if s := secret(t, o, name+"-database"); string(s.Data["password"]) != string(first.Data["password"]) {
		t.Fatal("the Secret changed although its updates fail")
	}
	setRotationToken(t, name, "")
	wait("login $1, which no Secret holds, to be revoked", func() bool {
		return slices.Equal(loginsThatWork(t, name), []string{naming.RoleName(name)})
	})
	secretFails.Store(false)
	checkSecretHoldsTheOnlyLogins(t, o)

	// 3. The same crash, and the operator restarted: the new one finishes
	// the rotation.
	secretFails.Store(true)
	setRotationToken(t, name, "c")
	wait("login $1 to get its password", func() bool { return slices.Contains(loginsThatWork(t, name), naming.LoginNames(name)[0]) })
	op.stop()
	op = launchOperator(t, operatorOptions{db: wrapDB, wrap: failSecretUpdates(name+"-database", &secretFails)})
	secretFails.Store(false)
	wait("the Secret to switch to login $1", func() bool {
		return string(secret(t, o, name+"-database").Data["username"]) == naming.LoginNames(name)[0]
	})
	checkSecretHoldsTheOnlyLogins(t, o)

	// 4. Stopped after the grace period between the revocation and the
	// Secret: the owner cannot log in, the Secret still lists it as
	// previous; the restarted operator cleans the Secret up.
	secretFails.Store(true)
	wait("the owner to be revoked at the end of the grace period", func() bool {
		return slices.Equal(loginsThatWork(t, name), []string{naming.LoginNames(name)[0]})
	})
	if s := secret(t, o, name+"-database"); string(s.Data["previous-username"]) != naming.RoleName(name) {
		t.Fatalf("previous-username = %q while Secret updates fail", s.Data["previous-username"])
	}
	op.stop()
	op = launchOperator(t, operatorOptions{db: wrapDB, wrap: failSecretUpdates(name+"-database", &secretFails)})
	secretFails.Store(false)
	wait("previous-* to leave the Secret", func() bool {
		_, has := secret(t, o, name+"-database").Data["previous-username"]
		return !has
	})
	o = waitReady(t, name)
	checkSecretHoldsTheOnlyLogins(t, o)
	if o.Annotations[controllers.AnnotationBudgetedLogins] != "" {
		t.Errorf("the budget still counts two logins after the grace period: %v", o.Annotations)
	}

	// Settled, a rotated organization's resyncs write nothing.
	writes := op.writes.Load()
	time.Sleep(2*resync + time.Second)
	if n := op.writes.Load() - writes; n != 0 {
		t.Errorf("%d writes in two resyncs of a rotated organization, want 0", n)
	}
	// Deleted, its logins go with its owner role.
	deleteAndWait(t, name)
	su := testutil.Superuser(t, stack.Postgres, "postgres")
	l := naming.LoginNames(name)
	if n := count(t, su, "SELECT count(*) FROM pg_roles WHERE rolname = ANY($1)", []string{naming.RoleName(name), l[0], l[1]}); n != 0 {
		t.Errorf("%d of the owner and logins are left after deletion", n)
	}
}

// TestFleetRotationWaitsForTheBudgetOfASecondLogin fills a DatabaseCluster's
// connection budget and rotates one of its organizations: the two logins
// of a grace period do not fit, so the rotation waits, saying so, until
// budget is freed; during the grace period the organization counts twice.
func TestFleetRotationWaitsForTheBudgetOfASecondLogin(t *testing.T) {
	startOperator(t, nil)
	labels := map[string]string{"fleet-test": "rotbudget"}
	newCluster(t, "rotbudget", fleetServer(t, 15), labels, withCapacity(10))
	waitCluster(t, "rotbudget", "True", tenancyv1alpha1.ReasonConnected)
	opts := []testutil.OrgOption{testutil.WithPool(1, 5), testutil.OnClustersLabelled(labels), withGrace(rotationGrace),
		testutil.WithStorageAccess(tenancyv1alpha1.StorageAccessNone)}
	o := applyReady(t, testutil.NewOrg("rotbudget-a", opts...))
	applyReady(t, testutil.NewOrg("rotbudget-b", opts...))
	budget := func(want string) {
		t.Helper()
		testutil.Eventually(t, 30*time.Second, "budget "+want, func() (bool, string) {
			dbc := &tenancyv1alpha1.DatabaseCluster{}
			if err := k8s.Get(context.Background(), client.ObjectKey{Name: "rotbudget"}, dbc); err != nil {
				return false, err.Error()
			}
			return dbc.Status.ConnectionBudget == want, dbc.Status.ConnectionBudget
		})
	}
	budget("10/10")

	setRotationToken(t, "rotbudget-a", "x")
	testutil.Eventually(t, 30*time.Second, "DatabaseReady to say the rotation waits for budget", func() (bool, string) {
		o = waitReady(t, "rotbudget-a")
		c := testutil.ConditionOf(o, tenancyv1alpha1.ConditionDatabaseReady)
		return strings.Contains(c.Message, "rotation") && strings.Contains(c.Message, "budget"), c.Message
	})
	if got := string(secret(t, o, "rotbudget-a-database").Data["username"]); got != naming.RoleName("rotbudget-a") {
		t.Fatalf("the Secret switched to %q although the budget is full", got)
	}

	deleteAndWait(t, "rotbudget-b")
	testutil.Eventually(t, 60*time.Second, "the rotation to go on once budget is freed", func() (bool, string) {
		s := secret(t, o, "rotbudget-a-database")
		return string(s.Data["username"]) == naming.LoginNames("rotbudget-a")[0], string(s.Data["username"])
	})
	budget("10/10")
	// The reconcile that switched the Secret writes the status after it.
	testutil.Eventually(t, 30*time.Second, "DatabaseReady to stop saying the rotation waits", func() (bool, string) {
		c := testutil.ConditionOf(waitReady(t, "rotbudget-a"), tenancyv1alpha1.ConditionDatabaseReady)
		return !strings.Contains(c.Message, "budget"), c.Message
	})
	budget("5/10")
}
