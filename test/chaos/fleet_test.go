package chaos_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/aurora"
	"github.com/orgforge/orgforge/internal/naming"
	"github.com/orgforge/orgforge/internal/testutil"
)

// fleetSecretNamespace holds the fleet's admin Secrets.
const fleetSecretNamespace = "orgforge-system"

// fleetCluster is one of the scenario's DatabaseClusters and the server it
// names.
type fleetCluster struct {
	name   string
	srv    server
	budget int
}

// TestFleetPlacementSurvivesKillsAndAClusterOutage applies organizations
// all at once over three DatabaseClusters, on PostgreSQL 13, 15 and 17,
// whose connection budgets fit them exactly. While they are being placed
// the operator is SIGKILLed and started again, and one cluster's server is
// stopped for a while, across a kill. Once the world settles, every
// organization is placed once (its annotation and status agree, its
// database is on that cluster's server and on no other), nothing is left
// that no organization owns, and no cluster is over its budget.
func TestFleetPlacementSurvivesKillsAndAClusterOutage(t *testing.T) {
	sc := env.scale
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 16))
	t.Logf("kill schedule seed %d", seed)
	labels := map[string]string{"chaos-scenario": "fleet"}

	clusters := make([]fleetCluster, len(fleetMajors))
	for i, m := range fleetMajors {
		// The budgets add up to the organizations, each of which
		// budgets one connection.
		budget := sc.fleetOrgs / len(fleetMajors)
		if i < sc.fleetOrgs%len(fleetMajors) {
			budget++
		}
		clusters[i] = fleetCluster{name: fmt.Sprintf("fleet-%d", m), srv: env.servers[i+1], budget: budget}
	}
	// Made before the organizations' clean-up, so that it runs after it.
	makeFleet(t, clusters, labels)
	all := names("fleet", sc.fleetOrgs)
	cleanupOrgs(t, all)

	op := startOperator(t, "fleet-0")
	op.waitStarted(t)
	for _, c := range clusters {
		waitClusterReady(t, op, c.name)
	}

	start := time.Now()
	errs := testutil.Parallel(all, 16, func(name string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return env.k8s.Create(ctx, testutil.NewOrg(name, testutil.WithPool(1, 1), testutil.OnClustersLabelled(labels),
			testutil.WithStorageAccess(tenancyv1alpha1.StorageAccessNone)))
	})
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	// Each round but the last ends in a SIGKILL at a random moment within
	// about the time placement takes. The cluster in the middle of the
	// list is stopped at the start of the middle round, so that a kill
	// lands in its outage and the next operator starts without it, and is
	// started again in the round after.
	down := clusters[len(clusters)/2]
	outageRound := sc.fleetKills / 2
	window := time.Duration(sc.fleetOrgs) * 200 * time.Millisecond / time.Duration(sc.fleetKills+1)
	var (
		atKills        []string
		pendingKills   int
		downAt         time.Time
		downFor        time.Duration
		placedAtOutage int
		placedInOutage int
		unreachable    bool
		lastStart      time.Time
	)
	restarted := true
	t.Cleanup(func() {
		if !restarted {
			_ = down.srv.pg.Start(context.Background())
		}
	})
	for round := 0; ; round++ {
		if round > 0 {
			op = startOperator(t, fmt.Sprintf("fleet-%d", round))
			lastStart = time.Now()
			// Every other round lets the operator come up first, so
			// that kills land both in start-up and in placement.
			if round%2 == 0 {
				op.waitStarted(t)
			}
		}
		if round == outageRound {
			placedAtOutage, _ = countPlaced(all)
			if err := down.srv.pg.Stop(); err != nil {
				t.Fatalf("stopping %s: %v", down.srv.name, err)
			}
			restarted = false
			downAt = time.Now()
		}
		if round == outageRound+1 {
			unreachable = watchCluster(t, op, down.name, downAt.Add(sc.fleetOutage)) || unreachable
			placed, _ := countPlaced(all)
			placedInOutage = placed - placedAtOutage
			if err := down.srv.pg.Start(context.Background()); err != nil {
				t.Fatalf("starting %s again: %v", down.srv.name, err)
			}
			restarted = true
			downFor = time.Since(downAt)
		}
		if round == sc.fleetKills {
			break
		}
		pause := 300*time.Millisecond + time.Duration(rng.Int64N(int64(window)))
		if round == outageRound {
			unreachable = watchCluster(t, op, down.name, time.Now().Add(pause))
		} else {
			time.Sleep(pause)
		}
		assertAlive(t, op)
		placed, ready := countPlaced(all)
		if ready < len(all) {
			pendingKills++
		}
		atKills = append(atKills, fmt.Sprintf("%d placed/%d Ready", placed, ready))
		op.Kill()
		sum.kill("fleet")
	}
	waitReady(t, all, sc.converge)
	total, settle := time.Since(start), time.Since(lastStart)
	assertAlive(t, op)
	sum.outage(fmt.Sprintf("fleet cluster %s %s", down.name, downFor.Round(time.Second)))

	world := checkFleet(t, clusters, all)
	if t.Failed() {
		t.FailNow()
	}
	sum.orgs(len(all), 0)
	var spread []string
	for _, c := range clusters {
		spread = append(spread, fmt.Sprintf("%s %d/%d", c.name, world.placed[c.name], c.budget))
	}
	sum.figure("fleet: %d orgs applied at once over %d clusters under %d SIGKILLs (%d while work was pending; at the kills %s) and a %s outage of %s (%d placed when it began, %d more while it lasted; Ready=False Unreachable seen: %v); all Ready in %s, %s after the last restart",
		len(all), len(clusters), sc.fleetKills, pendingKills, strings.Join(atKills, ", "), downFor.Round(time.Second), down.name,
		placedAtOutage, placedInOutage, unreachable, total.Round(time.Second), settle.Round(time.Second))
	sum.figure("fleet: placed %s; %d duplicates, %d orphans, %d budgets exceeded",
		strings.Join(spread, ", "), world.duplicates, world.orphans, world.exceeded)

	start = time.Now()
	errs = testutil.Parallel(all, 16, func(name string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		o := &tenancyv1alpha1.Organization{ObjectMeta: metav1.ObjectMeta{Name: name}}
		return client.IgnoreNotFound(env.k8s.Delete(ctx, o))
	})
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	awaitGone(t, []*operator{op}, group{"fleet", all})
	for _, c := range clusters {
		deleteCluster(t, c.name)
	}
	sum.figure("fleet: %d orgs deleted and their %d clusters released in %s; no database or role left on any server",
		len(all), len(clusters), time.Since(start).Round(time.Second))
}

// makeFleet makes the scenario's DatabaseClusters, labelled, each with its
// admin DSN in a Secret, and deletes them when the test ends, with an
// operator of its own should the test have stopped its last one.
func makeFleet(t *testing.T, clusters []fleetCluster, labels map[string]string) {
	t.Helper()
	ctx := t.Context()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fleetSecretNamespace}}
	if err := env.k8s.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	for _, c := range clusters {
		secret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: fleetSecretNamespace, Name: c.name + "-admin"},
			StringData: map[string]string{"dsn": c.srv.pg.AdminDSN()},
		}
		dbc := &tenancyv1alpha1.DatabaseCluster{ObjectMeta: metav1.ObjectMeta{Name: c.name, Labels: labels}}
		dbc.Spec.Admin.DSNSecretRef = &tenancyv1alpha1.SecretReference{Namespace: secret.Namespace, Name: secret.Name}
		dbc.Spec.Tenant.SSLMode = "disable"
		dbc.Spec.Capacity.MaxConnections = ptr.To(int32(c.budget))
		if err := env.k8s.Create(ctx, secret); err != nil {
			t.Fatalf("creating the admin Secret of %s: %v", c.name, err)
		}
		if err := env.k8s.Create(ctx, dbc); err != nil {
			t.Fatalf("creating DatabaseCluster %s: %v", c.name, err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var left []string
		for _, c := range clusters {
			err := env.k8s.Get(ctx, client.ObjectKey{Name: c.name}, &tenancyv1alpha1.DatabaseCluster{})
			if err == nil {
				left = append(left, c.name)
			}
		}
		if len(left) > 0 {
			op := startOperator(t, "fleet-cleanup")
			defer op.stop()
			for _, name := range left {
				deleteCluster(t, name)
			}
		}
		for _, c := range clusters {
			s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: fleetSecretNamespace, Name: c.name + "-admin"}}
			_ = env.k8s.Delete(ctx, s)
		}
	})
}

// getCluster reads a DatabaseCluster.
func getCluster(ctx context.Context, name string) (*tenancyv1alpha1.DatabaseCluster, error) {
	dbc := &tenancyv1alpha1.DatabaseCluster{}
	err := env.k8s.Get(ctx, client.ObjectKey{Name: name}, dbc)
	return dbc, err
}

// waitClusterReady waits until the operator has connected to a
// DatabaseCluster at its generation.
func waitClusterReady(t *testing.T, op *operator, name string) {
	t.Helper()
	testutil.EventuallyEvery(t, poll, 2*time.Minute, "DatabaseCluster "+name+" Ready", func() (bool, string) {
		assertAlive(t, op)
		dbc, err := getCluster(t.Context(), name)
		if err != nil {
			return false, err.Error()
		}
		c := meta.FindStatusCondition(dbc.Status.Conditions, tenancyv1alpha1.ConditionReady)
		if c == nil {
			return false, "no Ready condition"
		}
		return c.Status == metav1.ConditionTrue && dbc.Status.ObservedGeneration == dbc.Generation,
			fmt.Sprintf("%s/%s: %s", c.Status, c.Reason, c.Message)
	})
}

// watchCluster waits until the given time, with the operator alive, and
// reports whether the DatabaseCluster showed Ready=False (Unreachable)
// meanwhile.
func watchCluster(t *testing.T, op *operator, name string, until time.Time) bool {
	t.Helper()
	seen := false
	for time.Now().Before(until) {
		assertAlive(t, op)
		if dbc, err := getCluster(t.Context(), name); err == nil {
			c := meta.FindStatusCondition(dbc.Status.Conditions, tenancyv1alpha1.ConditionReady)
			seen = seen || (c != nil && c.Status == metav1.ConditionFalse && c.Reason == tenancyv1alpha1.ReasonUnreachable)
		}
		time.Sleep(min(poll, time.Until(until)))
	}
	return seen
}

// deleteCluster deletes a DatabaseCluster and waits until its finalizer
// has let it go, which it does once nothing is placed on it.
func deleteCluster(t *testing.T, name string) {
	t.Helper()
	ctx := context.Background()
	dbc := &tenancyv1alpha1.DatabaseCluster{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := env.k8s.Delete(ctx, dbc); err != nil && !apierrors.IsNotFound(err) {
		t.Fatalf("deleting DatabaseCluster %s: %v", name, err)
	}
	testutil.EventuallyEvery(t, poll, 2*time.Minute, "DatabaseCluster "+name+" to be released", func() (bool, string) {
		dbc, err := getCluster(ctx, name)
		if apierrors.IsNotFound(err) {
			return true, ""
		}
		if err != nil {
			return false, err.Error()
		}
		c := meta.FindStatusCondition(dbc.Status.Conditions, tenancyv1alpha1.ConditionReady)
		return false, fmt.Sprintf("finalizers %v, Ready %v", dbc.Finalizers, c)
	})
}

// countPlaced counts the named Organizations that have a recorded
// placement, and those that are Ready.
func countPlaced(names []string) (placed, ready int) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	all, err := orgs(ctx)
	if err != nil {
		return 0, 0
	}
	for _, n := range names {
		o, ok := all[n]
		if !ok {
			continue
		}
		if o.Annotations[tenancyv1alpha1.AnnotationCluster] != "" {
			placed++
		}
		if testutil.ReadyAtGeneration(o) {
			ready++
		}
	}
	return placed, ready
}

// fleetWorld is what checkFleet found.
type fleetWorld struct {
	// placed is how many organizations are placed on each cluster.
	placed map[string]int
	// duplicates are databases or roles on a server other than their
	// organization's cluster's; orphans are those of no live
	// organization; exceeded are clusters over their budget.
	duplicates, orphans, exceeded int
}

// checkFleet checks the fleet against the world once every named
// Organization is Ready, and returns what it found:
//   - each is placed on one of the clusters, its annotation and status
//     agree, and its budget annotation is its pool's maxConnections;
//   - its database and role are on that cluster's server, with its
//     marker, and on no other server (a duplicate otherwise);
//   - no database or role of the scenario is on any server without a live
//     Organization placed on that server's cluster (an orphan otherwise);
//   - no cluster's placed maxConnections add up to more than its budget,
//     and each cluster's status and server count what is placed on it;
//   - each database Secret logs in to its database on that server.
func checkFleet(t *testing.T, clusters []fleetCluster, names []string) fleetWorld {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	all, err := orgs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byCluster := map[string]fleetCluster{}
	for _, c := range clusters {
		byCluster[c.name] = c
	}
	// Where each organization is placed, and what it budgets there.
	home := map[string]string{}
	placed, budgeted := map[string]int{}, map[string]int{}
	for _, n := range names {
		o, ok := all[n]
		if !ok {
			t.Errorf("%s is missing", n)
			continue
		}
		a, s := o.Annotations[tenancyv1alpha1.AnnotationCluster], o.Status.Database.Cluster
		if _, known := byCluster[a]; !known || a != s {
			t.Errorf("%s: annotation says cluster %q, status says %q; want one of the scenario's clusters in both", n, a, s)
			continue
		}
		b, err := strconv.Atoi(o.Annotations[tenancyv1alpha1.AnnotationBudgetedConnections])
		if err != nil || b != int(o.Spec.Database.Pool.MaxConnections) {
			t.Errorf("%s: budgeted connections %q, want its pool's %d", n, o.Annotations[tenancyv1alpha1.AnnotationBudgetedConnections], o.Spec.Database.Pool.MaxConnections)
		}
		home[n] = a
		placed[a]++
		budgeted[a] += int(o.Spec.Database.Pool.MaxConnections)
	}

	// Every server, the default one too: a database or role of the
	// scenario belongs on its organization's cluster's server only.
	dbPrefix := naming.DatabaseName("fleet")
	clusterOf := map[string]string{} // server name -> cluster
	for _, c := range clusters {
		clusterOf[c.srv.name] = c.name
	}
	owners := map[string]string{} // database and role name -> organization
	for _, n := range names {
		owners[naming.DatabaseName(n)] = n
	}
	var w fleetWorld
	found := map[string]int{} // organization -> servers holding its database
	for _, srv := range env.servers {
		dbs, err := databasesOn(ctx, srv.su, dbPrefix)
		if err != nil {
			t.Fatalf("listing databases of %s: %v", srv.name, err)
		}
		rls, err := rolesOn(ctx, srv.su, dbPrefix)
		if err != nil {
			t.Fatalf("listing roles of %s: %v", srv.name, err)
		}
		for kind, objs := range map[string]map[string]pgObject{"database": dbs, "role": rls} {
			for name, obj := range objs {
				org, ok := owners[name]
				switch {
				case !ok || all[org] == nil:
					w.orphans++
					t.Errorf("orphan: %s %s on %s belongs to no live Organization", kind, name, srv.name)
				case home[org] != clusterOf[srv.name]:
					w.duplicates++
					t.Errorf("duplicate: %s %s is on %s; %s is placed on %q", kind, name, srv.name, org, home[org])
				default:
					if kind == "database" {
						found[org]++
						if obj.owner != name {
							t.Errorf("database %s on %s is owned by %s", name, srv.name, obj.owner)
						}
					}
					if want := (aurora.Marker{Org: org, UID: string(all[org].UID), Cluster: env.clusterID}).String(); obj.comment != want {
						t.Errorf("%s %s on %s carries %q, want the marker %q", kind, name, srv.name, obj.comment, want)
					}
				}
			}
		}
		if c, ok := clusterOf[srv.name]; ok && len(dbs) != placed[c] {
			t.Errorf("%s holds %d of the scenario's databases; %d organizations are placed on %s", srv.name, len(dbs), placed[c], c)
		}
	}
	for _, n := range names {
		if home[n] != "" && found[n] != 1 {
			t.Errorf("%s's database is on %d servers, want exactly its cluster's (%s)", n, found[n], home[n])
		}
	}

	total := 0
	for _, c := range clusters {
		total += placed[c.name]
		if budgeted[c.name] > c.budget {
			w.exceeded++
			t.Errorf("%s budgets %d connections of a capacity of %d", c.name, budgeted[c.name], c.budget)
		}
		// The cluster's own account follows its placements.
		want := fmt.Sprintf("%d orgs, %d databases, %d/%d", placed[c.name], placed[c.name], budgeted[c.name], c.budget)
		testutil.EventuallyEvery(t, poll, time.Minute, c.name+"'s status to count "+want, func() (bool, string) {
			dbc, err := getCluster(ctx, c.name)
			if err != nil {
				return false, err.Error()
			}
			st := dbc.Status
			got := fmt.Sprintf("%d orgs, %d databases, %d/%d", st.Organizations, st.Databases, st.Connections.Budgeted, st.Connections.Capacity)
			return got == want, got
		})
	}
	if total != len(names) {
		t.Errorf("%d organizations placed of %d", total, len(names))
	}

	errs := testutil.Parallel(names, 4, func(n string) error {
		o := all[n]
		if o == nil || home[n] == "" {
			return nil
		}
		return checkFleetLogin(ctx, o, byCluster[home[n]].srv)
	})
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	w.placed = placed
	return w
}

// checkFleetLogin logs in with the organization's database Secret, as an
// application would, and checks it reaches its database on its cluster's
// server.
func checkFleetLogin(ctx context.Context, o *tenancyv1alpha1.Organization, srv server) error {
	ds, err := getSecret(ctx, o, naming.DatabaseSecretName(o.Name))
	if err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, string(ds.Data["uri"]))
	if err != nil {
		return fmt.Errorf("%s: the uri does not open a pool: %w", o.Name, err)
	}
	defer pool.Close()
	var user, db string
	var port int
	if err := pool.QueryRow(ctx, "SELECT current_user, current_database(), inet_server_port()").Scan(&user, &db, &port); err != nil {
		return fmt.Errorf("%s: login with the database Secret: %w", o.Name, err)
	}
	if want := naming.DatabaseName(o.Name); user != want || db != want || port != srv.pg.Port {
		return fmt.Errorf("%s: logged in as %s to %s on port %d, want %s on %s's port %d", o.Name, user, db, port, want, srv.name, srv.pg.Port)
	}
	return nil
}
