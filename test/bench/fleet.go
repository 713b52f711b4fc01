package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/testutil"
)

// The fleet scenario applies N Organizations at once to an operator with
// fleetClusters DatabaseClusters, each on a PostgreSQL server of its own,
// and sets it beside the single-cluster run of the same N: the orgforge
// side of the N scenario when the run has one, else a single-cluster side
// of its own. The Organizations select the fleet's clusters by label, so
// that the operator's default cluster takes none of them.
const fleetClusters = 3

// labelFleet marks the fleet's DatabaseClusters; its Organizations select
// them by it.
const labelFleet = "bench.orgforge.io/fleet"

// fleetSecretNamespace holds the fleet's admin Secrets.
const fleetSecretNamespace = "bench-fleet"

// defaultCluster names the operator's own cluster in the fleet's figures.
const defaultCluster = tenancyv1alpha1.DefaultClusterName

// FleetResult is the fleet scenario: the same N on one cluster and on
// fleetClusters, and how the fleet's organizations were spread.
type FleetResult struct {
	N           int `json:"n"`
	Concurrency int `json:"concurrency"`
	// CapacityPerCluster is each fleet cluster's
	// spec.capacity.maxConnections; PoolMaxConnections is each
	// organization's pool maxConnections, what its cluster's budget counts.
	CapacityPerCluster int32 `json:"capacityPerCluster"`
	PoolMaxConnections int32 `json:"poolMaxConnections"`
	// SingleFrom names the scenario whose orgforge side (round 1) is the
	// single-cluster run; empty when the fleet scenario ran its own.
	SingleFrom string    `json:"singleFrom,omitempty"`
	Single     FleetSide `json:"single"`
	Fleet      FleetSide `json:"fleet"`
	// ReadyRatio is the fleet's orgs/s over the single cluster's; P50Ratio
	// and P95Ratio are the fleet's apply→Ready percentiles over the single
	// cluster's.
	ReadyRatio float64 `json:"readyRatio"`
	P50Ratio   float64 `json:"p50Ratio"`
	P95Ratio   float64 `json:"p95Ratio"`
	// Clusters are the fleet's clusters once every organization was
	// Ready, in name order.
	Clusters []ClusterUse `json:"clusters"`
	// SpreadPoints is the most used cluster's budget use less the least
	// used one's, in percentage points.
	SpreadPoints float64 `json:"spreadPoints"`
	// DefaultDatabases counts the fleet side's organization databases on
	// the default cluster's server, which no organization selects.
	DefaultDatabases int `json:"defaultDatabases"`
	// Duplicates are the organizations whose database is on more than one
	// server, or on none.
	Duplicates []string `json:"duplicates,omitempty"`
	// Errors are what failed the scenario: a side that did not finish, a
	// duplicate, a budget exceeded, records that disagree.
	Errors []string `json:"errors,omitempty"`
}

// FleetSide is one run of the fleet scenario, creations only.
type FleetSide struct {
	Clusters int   `json:"clusters"`
	Create   Phase `json:"create"`
	// Placement is the placement step's time per reconcile over the
	// creations (orgforge_reconcile_step_duration_seconds{step="placement"});
	// every reconcile runs it, the first places the organization.
	Placement  Quantiles      `json:"placement"`
	Reconciles map[string]int `json:"reconciles"`
	PeakRSSMiB float64        `json:"peakRssMiB"`
	CPUSeconds float64        `json:"cpuSeconds"`
}

// ClusterUse is one fleet cluster's share of the organizations.
type ClusterUse struct {
	Name string `json:"name"`
	// Capacity and Budgeted are its status.connections; UsePercent is
	// Budgeted over Capacity.
	Capacity   int32   `json:"capacity"`
	Budgeted   int32   `json:"budgeted"`
	UsePercent float64 `json:"usePercent"`
	// Organizations is its status.organizations; Placed counts the
	// organizations whose status names it; Databases counts their
	// databases on its server.
	Organizations int32 `json:"organizations"`
	Placed        int   `json:"placed"`
	Databases     int   `json:"databases"`
	// AnnotatedBudget sums the budgeted-connections annotations of the
	// organizations placed on it.
	AnnotatedBudget int `json:"annotatedBudget"`
}

// poolMaxConnections is what the bench's Organizations ask for, and so
// what a cluster's connection budget counts for each.
func poolMaxConnections() int32 {
	return newOrganization("x", "x").Spec.Database.Pool.MaxConnections
}

// fleetCapacity is each fleet cluster's connection budget for n
// organizations: the fleet holds one and a half times what they ask for,
// so that no cluster could take them all and the rule, not a full
// cluster, decides the spread.
func fleetCapacity(n int, pool int32) int32 {
	return int32(math.Ceil(1.5 * float64(n) * float64(pool) / fleetClusters))
}

// fleetScenario is the scenario the fleet side runs as.
func fleetScenario(o *options) scenario {
	return scenario{Name: fmt.Sprintf("fleet-n%d-c%d", o.fleetN, o.concurrency), N: o.fleetN,
		Concurrency: o.concurrency, Rounds: 1, Round: 1}
}

// runFleet runs the fleet scenario: the single-cluster side when no
// scenario of the run has the same N at the same concurrency, then the
// fleet side.
func runFleet(ctx context.Context, o *options, res *Results) *FleetResult {
	sc := fleetScenario(o)
	pool := poolMaxConnections()
	fr := &FleetResult{N: sc.N, Concurrency: sc.Concurrency, PoolMaxConnections: pool,
		CapacityPerCluster: fleetCapacity(sc.N, pool)}
	if s := res.find(sc.N, sc.Concurrency); s != nil && s.Orgforge.Operator != nil && s.Orgforge.Create.N == sc.N {
		fr.SingleFrom = s.Name
		fr.Single = fleetSideOf(s.Orgforge, 1)
		logf("%s: the single-cluster run is %s's orgforge side", sc.Name, s.Name)
	} else {
		single := sc
		single.Name = sc.Name + "-single"
		var sr ScenarioResult
		if err := runOperatorSide(ctx, o, single, &sr, res); err != nil {
			fr.Errors = append(fr.Errors, fmt.Sprintf("%s: %v", single.Name, err))
		}
		fr.Single = fleetSideOf(sr.Orgforge, 1)
	}
	if ctx.Err() != nil {
		fr.Errors = append(fr.Errors, sc.Name+": not run: "+ctx.Err().Error())
		return fr
	}
	if err := runFleetSide(ctx, o, sc, fr, res); err != nil {
		fr.Errors = append(fr.Errors, fmt.Sprintf("%s: %v", sc.Name, err))
	}
	s, f := fr.Single.Create, fr.Fleet.Create
	fr.ReadyRatio = ratio(f.OrgsPerSecond, s.OrgsPerSecond)
	fr.P50Ratio, fr.P95Ratio = ratio(f.P50Seconds, s.P50Seconds), ratio(f.P95Seconds, s.P95Seconds)
	logf("%s: all Ready in %.1fs on %d clusters against %.1fs on one (orgs/s ratio %.2f); placement p50 %.2f / %.2f ms; spread of budget use %.2f points",
		sc.Name, f.Seconds, fleetClusters, s.Seconds, fr.ReadyRatio, fr.Fleet.Placement.P50Ms, fr.Single.Placement.P50Ms, fr.SpreadPoints)
	return fr
}

// fleetSideOf is an orgforge side's figures for the fleet's table.
func fleetSideOf(s SideResult, clusters int) FleetSide {
	fs := FleetSide{Clusters: clusters, Create: s.Create}
	if d := s.Operator; d != nil {
		fs.Placement = d.CreateMetrics.Placement
		fs.Reconciles = d.CreateMetrics.Reconciles
		fs.PeakRSSMiB = d.CreateProcess.PeakRSSMiB
		fs.CPUSeconds = d.CreateProcess.CPUSeconds
	}
	return fs
}

// runFleetSide starts a stack with fleetClusters more servers, makes a
// DatabaseCluster of each, applies the N Organizations selecting them,
// times them until Ready, and checks where their databases are.
func runFleetSide(ctx context.Context, o *options, sc scenario, fr *FleetResult, res *Results) error {
	dir := sc.stackDir(o, "fleet")
	e, err := startEnvWith(ctx, o, dir, true, fleetClusters)
	if err != nil {
		return fmt.Errorf("starting the stack: %w", err)
	}
	defer func() { _ = e.close() }()
	e.noteVersions(ctx, res)

	selector := map[string]string{labelFleet: sc.Name}
	clusters, err := makeFleetClusters(ctx, e, selector, fr.CapacityPerCluster)
	if err != nil {
		return err
	}
	flags := operatorFlags{maxConcurrentReconciles: sc.Concurrency, databaseMaxConnections: o.dbMaxConns}
	op, err := startOperator(ctx, o.manager, e.st, dir, "operator-fleet", flags)
	if err != nil {
		return err
	}
	defer op.stop()
	if err := waitClustersConnected(ctx, e.kube, clusters, time.Minute); err != nil {
		return fmt.Errorf("%w (operator log %s)", err, op.LogPath)
	}

	tctx, stopTracker := context.WithCancel(ctx)
	t := startTracker(tctx, e.kube, sc.Name)
	defer func() { stopTracker(); <-t.done }()
	names := orgNames("org", sc)
	before, err := op.scrape(ctx)
	if err != nil {
		return fmt.Errorf("operator metrics: %w", err)
	}
	logf("%s: orgforge create on %d DatabaseClusters, applying %d Organizations", sc.Name, fleetClusters, sc.N)
	cpu := takeCPU(op.Cmd.Process.Pid)
	applied, applyErrs := applyAll(ctx, e.kube, names, sc.Name, o.appliers, t, testutil.OnClustersLabelled(selector), testutil.WithStorageAccess(o.access))
	missing := t.waitAll(ctx, names, readyMap, o.phaseTimeout)
	p := newPhase(sc.N, applied, t.times(readyMap))
	p.CPUSeconds = takeCPU(op.Cmd.Process.Pid).since(cpu)
	for _, err := range firstErrors(applyErrs, 5) {
		p.Errors = append(p.Errors, err.Error())
	}
	fr.Fleet = FleetSide{Clusters: fleetClusters, Create: p}
	if after, err := op.scrape(ctx); err == nil {
		m := operatorMetrics(after).delta(operatorMetrics(before))
		fr.Fleet.Placement, fr.Fleet.Reconciles = m.Placement, m.Reconciles
	} else {
		return fmt.Errorf("operator metrics: %w", err)
	}
	if st, err := op.stats(); err == nil {
		fr.Fleet.PeakRSSMiB, fr.Fleet.CPUSeconds = st.PeakRSSMiB, round(st.CPUSeconds, 2)
	}
	logf("%s: orgforge Ready %d/%d in %.1fs (%.1f/s), p50 %.2fs p95 %.2fs; placement step mean %.2f ms over %d reconciles",
		sc.Name, p.Completed, sc.N, p.Seconds, p.OrgsPerSecond, p.P50Seconds, p.P95Seconds, fr.Fleet.Placement.MeanMs, fr.Fleet.Placement.Count)
	if len(missing) > 0 {
		return fmt.Errorf("%d Organizations not Ready after %s, e.g. %s (operator log %s)", len(missing), o.phaseTimeout, missing[0], op.LogPath)
	}
	return checkFleet(ctx, e, clusters, sc.Name, fr)
}

// makeFleetClusters makes, for each of the stack's extra servers, an admin
// Secret holding its DSN and a labelled DatabaseCluster with the capacity
// given, and returns their names.
func makeFleetClusters(ctx context.Context, e *env, labels map[string]string, capacity int32) ([]string, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fleetSecretNamespace}}
	if err := e.kube.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("creating namespace %s: %w", ns.Name, err)
	}
	var names []string
	for i, f := range e.fleet {
		name := fmt.Sprintf("fleet-%d", i+1)
		secret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: fleetSecretNamespace, Name: name + "-admin"},
			StringData: map[string]string{"dsn": f.pg.AdminDSN()},
		}
		if err := e.kube.Create(ctx, secret); err != nil {
			return nil, fmt.Errorf("creating the admin Secret of %s: %w", name, err)
		}
		dbc := &tenancyv1alpha1.DatabaseCluster{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
		dbc.Spec.Admin.DSNSecretRef = &tenancyv1alpha1.SecretReference{Namespace: secret.Namespace, Name: secret.Name}
		dbc.Spec.Tenant.SSLMode = "disable"
		dbc.Spec.Capacity.MaxConnections = &capacity
		if err := e.kube.Create(ctx, dbc); err != nil {
			return nil, fmt.Errorf("creating DatabaseCluster %s: %w", name, err)
		}
		names = append(names, name)
	}
	return names, nil
}

// ensureDefaultCluster makes the operator's DatabaseCluster "default"
// before the operator does, with a connection budget of capacity. The one
// the operator makes takes its budget from the server's max_connections
// (300 on the stack), which holds a few dozen organizations of pool 10; the
// bench's organizations never open their pools, so it gives the cluster a
// budget for all of them instead. The operator keeps a DatabaseCluster
// that exists.
func ensureDefaultCluster(ctx context.Context, c client.Client, capacity int32) error {
	dbc := &tenancyv1alpha1.DatabaseCluster{ObjectMeta: metav1.ObjectMeta{Name: defaultCluster}}
	dbc.Spec.Admin.FromFlags = true
	dbc.Spec.Capacity.MaxConnections = &capacity
	if err := c.Create(ctx, dbc); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating DatabaseCluster %s: %w", defaultCluster, err)
	}
	return nil
}

// waitClustersConnected waits until each DatabaseCluster is Ready, its
// server reached.
func waitClustersConnected(ctx context.Context, c client.Client, names []string, timeout time.Duration) error {
	_, last, err := testutil.Poll(ctx, 200*time.Millisecond, timeout, func() (bool, string) {
		for _, name := range names {
			dbc := &tenancyv1alpha1.DatabaseCluster{}
			if err := c.Get(ctx, client.ObjectKey{Name: name}, dbc); err != nil {
				return false, err.Error()
			}
			cond := meta.FindStatusCondition(dbc.Status.Conditions, tenancyv1alpha1.ConditionReady)
			if cond == nil || cond.Status != metav1.ConditionTrue {
				return false, fmt.Sprintf("DatabaseCluster %s not Ready: %+v", name, cond)
			}
		}
		return true, ""
	})
	if err != nil {
		return fmt.Errorf("DatabaseClusters not connected after %s: %s", timeout, last)
	}
	return nil
}

// placedOrg is one Organization's three records of its placement that the
// bench can read from Kubernetes.
type placedOrg struct {
	Name       string
	Database   string
	Cluster    string // status.database.cluster
	Annotation string // the cluster annotation
	Budgeted   int    // the budgeted-connections annotation
}

// checkFleet checks, once every organization is Ready, that each one's
// database is on exactly one server, the one its records name, and that no
// cluster's budget is exceeded, and fills fr's clusters and spread. Every
// problem is one of fr.Errors.
func checkFleet(ctx context.Context, e *env, clusters []string, run string, fr *FleetResult) error {
	list := &tenancyv1alpha1.OrganizationList{}
	if err := e.kube.List(ctx, list, client.MatchingLabels{labelRun: run}); err != nil {
		return fmt.Errorf("listing Organizations: %w", err)
	}
	orgs := make([]placedOrg, 0, len(list.Items))
	for _, org := range list.Items {
		p := placedOrg{Name: org.Name, Database: org.Status.Database.Name, Cluster: org.Status.Database.Cluster,
			Annotation: org.Annotations[tenancyv1alpha1.AnnotationCluster]}
		p.Budgeted, _ = strconv.Atoi(org.Annotations[tenancyv1alpha1.AnnotationBudgetedConnections])
		orgs = append(orgs, p)
	}
	servers := map[string]*pgx.Conn{defaultCluster: e.su}
	for i, name := range clusters {
		servers[name] = e.fleet[i].su
	}
	where := map[string][]string{}
	for _, server := range sortedKeys(servers) {
		dbs, err := orgDatabases(ctx, servers[server])
		if err != nil {
			return fmt.Errorf("listing the databases of %s: %w", server, err)
		}
		for _, db := range dbs {
			where[db] = append(where[db], server)
		}
	}
	dups, problems := placementProblems(orgs, where)
	fr.Duplicates = dups
	fr.Errors = append(fr.Errors, problems...)
	counts := databasesBy(where)
	fr.DefaultDatabases = counts[defaultCluster]
	if fr.DefaultDatabases > 0 {
		fr.Errors = append(fr.Errors, fmt.Sprintf("%d organization databases on the default cluster's server, which no organization selects", fr.DefaultDatabases))
	}

	// The DatabaseClusters' status follows the placements through a watch;
	// it is read once it counts what the servers hold.
	uses, err := waitClusterUse(ctx, e.kube, clusters, orgs, counts, time.Minute)
	fr.Clusters = uses
	if err != nil {
		fr.Errors = append(fr.Errors, err.Error())
	}
	fr.Errors = append(fr.Errors, budgetProblems(uses)...)
	fr.SpreadPoints = spreadPoints(uses)
	if len(fr.Errors) > 0 {
		return fmt.Errorf("the fleet's checks failed (%d problems)", len(fr.Errors))
	}
	return nil
}

// orgDatabases lists the organization databases on a server.
func orgDatabases(ctx context.Context, su *pgx.Conn) ([]string, error) {
	rows, err := su.Query(ctx, `SELECT datname FROM pg_database WHERE datname LIKE 'org\_%' ORDER BY 1`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// databasesBy counts the databases on each server.
func databasesBy(where map[string][]string) map[string]int {
	out := map[string]int{}
	for _, servers := range where {
		for _, s := range servers {
			out[s]++
		}
	}
	return out
}

// placementProblems checks each organization's database against the
// servers where each database is: on exactly one (else a duplicate), the
// one the organization's status names, which its annotation names too.
func placementProblems(orgs []placedOrg, where map[string][]string) (duplicates, problems []string) {
	for _, o := range orgs {
		on := where[o.Database]
		switch {
		case o.Database == "":
			problems = append(problems, fmt.Sprintf("%s has no database in its status", o.Name))
		case len(on) != 1:
			duplicates = append(duplicates, o.Name)
			problems = append(problems, fmt.Sprintf("%s's database %s is on %d servers %v, want exactly one", o.Name, o.Database, len(on), on))
		case on[0] != o.Cluster:
			problems = append(problems, fmt.Sprintf("%s's database is on %s, its status says %q", o.Name, on[0], o.Cluster))
		}
		if o.Annotation != o.Cluster {
			problems = append(problems, fmt.Sprintf("%s's annotation says cluster %q, its status %q", o.Name, o.Annotation, o.Cluster))
		}
	}
	return duplicates, problems
}

// waitClusterUse reads the clusters' status until each counts the
// organizations placed on it and their budget as the organizations' own
// records do, and returns the last reading, in name order; an error says
// which cluster never did.
func waitClusterUse(ctx context.Context, c client.Client, clusters []string, orgs []placedOrg, databases map[string]int, timeout time.Duration) ([]ClusterUse, error) {
	placed, annotated := map[string]int{}, map[string]int{}
	for _, o := range orgs {
		placed[o.Cluster]++
		annotated[o.Cluster] += o.Budgeted
	}
	var uses []ClusterUse
	_, last, err := testutil.Poll(ctx, 250*time.Millisecond, timeout, func() (bool, string) {
		uses = uses[:0]
		var behind []string
		for _, name := range clusters {
			dbc := &tenancyv1alpha1.DatabaseCluster{}
			if err := c.Get(ctx, client.ObjectKey{Name: name}, dbc); err != nil {
				return false, err.Error()
			}
			st := dbc.Status
			u := ClusterUse{Name: name, Capacity: st.Connections.Capacity, Budgeted: st.Connections.Budgeted,
				Organizations: st.Organizations, Placed: placed[name], Databases: databases[name], AnnotatedBudget: annotated[name]}
			if u.Capacity > 0 {
				u.UsePercent = round(100*float64(u.Budgeted)/float64(u.Capacity), 2)
			}
			uses = append(uses, u)
			if int(u.Organizations) != u.Placed || int(u.Budgeted) != u.AnnotatedBudget {
				behind = append(behind, fmt.Sprintf("%s counts %d organizations and %d connections, they say %d and %d",
					name, u.Organizations, u.Budgeted, u.Placed, u.AnnotatedBudget))
			}
		}
		return len(behind) == 0, strings.Join(behind, "; ")
	})
	if err != nil {
		return uses, fmt.Errorf("DatabaseClusters' status after %s: %s", timeout, last)
	}
	return uses, nil
}

// budgetProblems names each cluster whose budget is exceeded, by its status
// or by its organizations' annotations.
func budgetProblems(uses []ClusterUse) []string {
	var out []string
	for _, u := range uses {
		if u.Budgeted > u.Capacity || u.AnnotatedBudget > int(u.Capacity) {
			out = append(out, fmt.Sprintf("%s is over its budget: %d connections budgeted by its status, %d by its organizations, capacity %d",
				u.Name, u.Budgeted, u.AnnotatedBudget, u.Capacity))
		}
	}
	return out
}

// spreadPoints is the most used cluster's budget use less the least used
// one's, in percentage points.
func spreadPoints(uses []ClusterUse) float64 {
	if len(uses) == 0 {
		return 0
	}
	pcts := make([]float64, len(uses))
	for i, u := range uses {
		pcts[i] = u.UsePercent
	}
	return round(slices.Max(pcts)-slices.Min(pcts), 2)
}

// writeFleet writes the fleet scenario's tables.
func writeFleet(w func(string, ...any), f *FleetResult) {
	if f == nil {
		return
	}
	w("## Fleet: N=%d on %d DatabaseClusters against one, concurrency %d\n\n", f.N, fleetClusters, f.Concurrency)
	single := "a single-cluster side of its own, just before"
	if f.SingleFrom != "" {
		single = fmt.Sprintf("the orgforge side of %s (round 1)", f.SingleFrom)
	}
	w("The N Organizations are applied at once to an operator with %d more DatabaseClusters, each on a PostgreSQL server of its own on the same machine, with a budget of %d connections each; they select those clusters by label, so the default cluster takes none. Each asks for a pool of %d connections. The single-cluster run is %s, on the default cluster alone. Placement is the placement step's time per reconcile (orgforge_reconcile_step_duration_seconds{step=\"placement\"}; the median and p95 estimated from its buckets); every reconcile runs it, the first one places.\n\n",
		fleetClusters, f.CapacityPerCluster, f.PoolMaxConnections, single)
	w("| run | all Ready s | orgs/s | apply→Ready p50 / p95 s | placement reconciles | placement mean / p50 / p95 ms | operator CPU s | operator peak RSS MiB |\n")
	w("|---|---:|---:|---|---:|---|---:|---:|\n")
	row := func(label string, s FleetSide) {
		c, pl := s.Create, s.Placement
		w("| %s | %s | %.1f | %.2f / %.2f | %d | %.2f / %.2f / %.2f | %.1f | %.1f |\n", label, secs(c), c.OrgsPerSecond,
			c.P50Seconds, c.P95Seconds, pl.Count, pl.MeanMs, pl.P50Ms, pl.P95Ms, s.CPUSeconds, s.PeakRSSMiB)
	}
	row("one cluster (default)", f.Single)
	row(fmt.Sprintf("fleet, %d clusters", fleetClusters), f.Fleet)
	w("| fleet / one | | **%.2f** | %.2f / %.2f | | | | |\n\n", f.ReadyRatio, f.P50Ratio, f.P95Ratio)
	if len(f.Clusters) > 0 {
		w("| cluster | capacity | budgeted | use %% | organizations (status) | placed (organizations' status) | databases on its server |\n")
		w("|---|---:|---:|---:|---:|---:|---:|\n")
		for _, u := range f.Clusters {
			w("| %s | %d | %d | %.1f | %d | %d | %d |\n", u.Name, u.Capacity, u.Budgeted, u.UsePercent, u.Organizations, u.Placed, u.Databases)
		}
		w("\nSpread of budget use: **%.2f percentage points** (most used less least used). Duplicates (a database on more than one server, or none): %d. Databases on the default cluster's server: %d.\n\n",
			f.SpreadPoints, len(f.Duplicates), f.DefaultDatabases)
	}
	if len(f.Errors) > 0 {
		w("**The fleet scenario failed:**\n\n")
		for _, e := range f.Errors {
			w("- %s\n", strings.ReplaceAll(e, "\n", " "))
		}
		w("\n")
	}
}
