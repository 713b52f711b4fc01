package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/aurora"
	"github.com/orgforge/orgforge/internal/placement"
)

// fakeClient is an API server in memory, for the steps' logic; the
// reconciler's behaviour is proven on the real stack.
func fakeClient(t *testing.T, objs ...client.Object) client.WithWatch {
	t.Helper()
	return fakeClientWith(t, interceptor.Funcs{}, objs...)
}

func fakeClientWith(t *testing.T, funcs interceptor.Funcs, objs ...client.Object) client.WithWatch {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := tenancyv1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	return fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).
		WithStatusSubresource(&tenancyv1alpha1.DatabaseCluster{}, &tenancyv1alpha1.Organization{}).
		WithInterceptorFuncs(funcs).Build()
}

// fakeClusters is ClusterServices whose Ensure fails as told: the service
// of a reachable cluster is a real connection, which these tests do not
// make.
type fakeClusters struct {
	mu      sync.Mutex
	err     error
	ensured []aurora.Config
	removed []string
}

func (f *fakeClusters) Ensure(_ context.Context, _ string, cfg aurora.Config) (*aurora.Service, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ensured = append(f.ensured, cfg)
	return nil, f.err
}

func (f *fakeClusters) Get(string) (*aurora.Service, bool) { return nil, false }

func (f *fakeClusters) Remove(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = append(f.removed, name)
}

// eventLog records Events as "Type Reason: note".
type eventLog struct {
	mu     sync.Mutex
	events []string
}

func (l *eventLog) Eventf(_ runtime.Object, _ runtime.Object, eventtype, reason, _ string, note string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, eventtype+" "+reason+": "+fmt.Sprintf(note, args...))
}

// clusterFixture is a reconciler over a fake API server.
type clusterFixture struct {
	r           *DatabaseClusterReconciler
	c           client.Client
	clusters    *fakeClusters
	events      *eventLog
	statusWrite int
}

func newClusterFixture(t *testing.T, objs ...client.Object) *clusterFixture {
	t.Helper()
	f := &clusterFixture{clusters: &fakeClusters{err: errors.New(`cluster "east": aurora: east:5432/admin: connecting: connection refused`)}, events: &eventLog{}}
	f.c = fakeClientWith(t, interceptor.Funcs{
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			f.statusWrite++
			return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
		},
	}, objs...)
	f.r = &DatabaseClusterReconciler{
		Client: f.c, APIReader: f.c, Recorder: f.events, Clusters: f.clusters,
		Ledger: NewLedger(f.c), MaxConnections: 6,
		Flags: FlagsCluster{AdminDSN: "postgres://admin:pw@east:5432/postgres", Tenant: TenantEndpoint{Host: "east-proxy", Port: 6432, SSLMode: "require"}},
	}
	return f
}

func (f *clusterFixture) reconcile(t *testing.T, name string) ctrl.Result {
	t.Helper()
	res, err := f.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKey{Name: name}})
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	return res
}

func (f *clusterFixture) get(t *testing.T, name string) *tenancyv1alpha1.DatabaseCluster {
	t.Helper()
	dbc := &tenancyv1alpha1.DatabaseCluster{}
	if err := f.c.Get(context.Background(), client.ObjectKey{Name: name}, dbc); err != nil {
		t.Fatal(err)
	}
	return dbc
}

func (f *clusterFixture) fleet(name string) (placement.ClusterUsage, bool) {
	for _, cu := range f.r.Ledger.Fleet.Clusters() {
		if cu.Cluster.Name == name {
			return cu, true
		}
	}
	return placement.ClusterUsage{}, false
}

func readyOf(dbc *tenancyv1alpha1.DatabaseCluster) string {
	c := meta.FindStatusCondition(dbc.Status.Conditions, tenancyv1alpha1.ConditionReady)
	if c == nil {
		return "none"
	}
	return string(c.Status) + " " + c.Reason + ": " + c.Message
}

func fromFlags(name string, capacity *int32) *tenancyv1alpha1.DatabaseCluster {
	return &tenancyv1alpha1.DatabaseCluster{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"region": "east"}, Generation: 1},
		Spec: tenancyv1alpha1.DatabaseClusterSpec{
			Admin:    tenancyv1alpha1.AdminSpec{FromFlags: true},
			Capacity: tenancyv1alpha1.ClusterCapacity{MaxDatabases: 50, MaxConnections: capacity},
		},
	}
}

func placedOrg(name, cluster string, maxConnections int32) *tenancyv1alpha1.Organization {
	org := &tenancyv1alpha1.Organization{ObjectMeta: metav1.ObjectMeta{
		Name: name, Annotations: map[string]string{tenancyv1alpha1.AnnotationCluster: cluster},
	}}
	org.Spec.Database.Pool.MaxConnections = maxConnections
	return org
}

func TestAnUnreachableClusterIsNotReadyAndCheckedAgainSoon(t *testing.T) {
	f := newClusterFixture(t, fromFlags("east", new(int32(100))), placedOrg("acme", "east", 10))
	res := f.reconcile(t, "east")
	if res.RequeueAfter != unreachableRetry {
		t.Errorf("RequeueAfter = %v, want %v", res.RequeueAfter, unreachableRetry)
	}
	dbc := f.get(t, "east")
	if !controllerutil.ContainsFinalizer(dbc, tenancyv1alpha1.ClusterFinalizerName) {
		t.Error("the finalizer was not added")
	}
	if got, want := readyOf(dbc), `False Unreachable: cluster "east": aurora: east:5432/admin: connecting: connection refused`; got != want {
		t.Errorf("Ready = %q, want %q", got, want)
	}
	if !meta.IsStatusConditionTrue(dbc.Status.Conditions, tenancyv1alpha1.ConditionReconciling) || dbc.Status.LastHealthCheck == nil {
		t.Errorf("status %+v; want Reconciling and a last health check", dbc.Status)
	}
	if dbc.Status.Organizations != 1 || dbc.Status.ConnectionBudget != "10/100" {
		t.Errorf("status counts %d organizations, budget %q; want 1 and 10/100", dbc.Status.Organizations, dbc.Status.ConnectionBudget)
	}
	want := placement.ClusterUsage{
		Cluster: placement.Cluster{Name: "east", Labels: map[string]string{"region": "east"}, Schedulable: true,
			Capacity: placement.Capacity{MaxDatabases: 50, MaxConnections: 100}},
		Used: placement.Usage{Databases: 1, Connections: 10},
	}
	if got, _ := f.fleet("east"); !cmp.Equal(want, got) {
		t.Errorf("fleet (-want +got):\n%s", cmp.Diff(want, got))
	}
	if diff := cmp.Diff([]aurora.Config{{AdminDSN: f.r.Flags.AdminDSN, MaxConnections: 6}}, f.clusters.ensured); diff != "" {
		t.Errorf("Ensure's configs (-want +got):\n%s", diff)
	}
	if got, _ := f.r.Ledger.Tenant("east"); got != f.r.Flags.Tenant {
		t.Errorf("tenant endpoint %+v, want the flags' %+v", got, f.r.Flags.Tenant)
	}
	if diff := cmp.Diff([]string{`Warning Unreachable: Cluster "east": aurora: east:5432/admin: connecting: connection refused`}, f.events.events); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}

	// Still down: no second Event, and no status write before the health
	// interval is up.
	writes := f.statusWrite
	f.reconcile(t, "east")
	if f.statusWrite != writes || len(f.events.events) != 1 {
		t.Errorf("a second reconcile that found the same made %d status writes and %d Events", f.statusWrite-writes, len(f.events.events)-1)
	}
}

// TestACheckThatFindsNothingNewWritesTheHeartbeatOncePerResyncPeriod: a
// fleet at rest writes next to nothing. Checks between heartbeats leave the
// DatabaseCluster as it was; once the recorded check is a heartbeat
// interval old, the next check writes lastHealthCheck again.
func TestACheckThatFindsNothingNewWritesTheHeartbeatOncePerResyncPeriod(t *testing.T) {
	f := newClusterFixture(t, fromFlags("east", new(int32(100))), placedOrg("acme", "east", 10))
	f.r.HealthInterval, f.r.HeartbeatInterval = time.Millisecond, time.Hour
	f.reconcile(t, "east")
	first := f.get(t, "east")
	if first.Status.LastHealthCheck == nil {
		t.Fatalf("the first check wrote no lastHealthCheck: %+v", first.Status)
	}
	// lastHealthCheck is kept to the second: let one go by, so that a
	// write would show.
	time.Sleep(1100 * time.Millisecond)
	for range 3 {
		f.reconcile(t, "east")
	}
	if got := f.get(t, "east"); got.ResourceVersion != first.ResourceVersion {
		t.Errorf("checks within the heartbeat interval rewrote the cluster: resourceVersion %s -> %s, lastHealthCheck %v -> %v",
			first.ResourceVersion, got.ResourceVersion, first.Status.LastHealthCheck, got.Status.LastHealthCheck)
	}

	f.r.HeartbeatInterval = time.Second
	f.reconcile(t, "east")
	if got := f.get(t, "east"); got.Status.LastHealthCheck == nil || !got.Status.LastHealthCheck.After(first.Status.LastHealthCheck.Time) {
		t.Errorf("a check past the heartbeat interval left lastHealthCheck at %v, want later than %v", got.Status.LastHealthCheck, first.Status.LastHealthCheck)
	}
}

func TestAClusterWhoseSecretIsMissingIsStalledAndNotConnected(t *testing.T) {
	dbc := &tenancyv1alpha1.DatabaseCluster{
		ObjectMeta: metav1.ObjectMeta{Name: "west", Generation: 3},
		Spec: tenancyv1alpha1.DatabaseClusterSpec{Admin: tenancyv1alpha1.AdminSpec{
			DSNSecretRef: &tenancyv1alpha1.SecretReference{Namespace: "ops", Name: "west-admin"},
		}},
	}
	f := newClusterFixture(t, dbc)
	res := f.reconcile(t, "west")
	if res.RequeueAfter != invalidSpecRetry {
		t.Errorf("RequeueAfter = %v, want %v: Secrets are not watched", res.RequeueAfter, invalidSpecRetry)
	}
	got := f.get(t, "west")
	want := "False InvalidSpec: the admin connection cannot be made: Secret ops/west-admin was not found"
	if readyOf(got) != want || !meta.IsStatusConditionTrue(got.Status.Conditions, tenancyv1alpha1.ConditionStalled) || got.Status.ObservedGeneration != 3 {
		t.Errorf("Ready %q, status %+v; want %q, Stalled and observedGeneration 3", readyOf(got), got.Status, want)
	}
	if len(f.clusters.ensured) != 0 {
		t.Errorf("Ensure was called %d times for a cluster with no admin connection", len(f.clusters.ensured))
	}
	if cu, ok := f.fleet("west"); !ok || cu.Cluster.Ready {
		t.Errorf("fleet has %+v, %t; want west, not Ready", cu, ok)
	}
}

func TestADeletingClusterIsHeldWhileOrganizationsArePlacedOnIt(t *testing.T) {
	dbc := fromFlags("east", new(int32(100)))
	dbc.Finalizers = []string{tenancyv1alpha1.ClusterFinalizerName}
	f := newClusterFixture(t, dbc, placedOrg("acme", "east", 10), placedOrg("globex", "east", 5), placedOrg("initech", "west", 5))
	ctx := context.Background()
	f.reconcile(t, "east")
	if err := f.c.Delete(ctx, f.get(t, "east")); err != nil {
		t.Fatal(err)
	}

	res := f.reconcile(t, "east")
	if res.RequeueAfter != inUseRetry {
		t.Errorf("RequeueAfter = %v, want %v", res.RequeueAfter, inUseRetry)
	}
	held := f.get(t, "east")
	want := "False InUse: Held by 2 organizations: acme, globex; the DatabaseCluster is deleted once they are gone"
	if readyOf(held) != want || !controllerutil.ContainsFinalizer(held, tenancyv1alpha1.ClusterFinalizerName) {
		t.Errorf("Ready %q, finalizers %v; want %q and the finalizer", readyOf(held), held.Finalizers, want)
	}
	if last := f.events.events[len(f.events.events)-1]; last != "Warning InUse: "+want[len("False InUse: "):] {
		t.Errorf("last Event %q; want the InUse one", last)
	}
	if cu, _ := f.fleet("east"); cu.Cluster.Schedulable {
		t.Error("a deleting cluster is still schedulable in the fleet")
	}
	if len(f.clusters.removed) != 0 {
		t.Errorf("the service of a held cluster was removed: %v", f.clusters.removed)
	}

	// The Organizations are gone from the API server a moment before
	// their reconciler releases them from the fleet: the cluster is
	// looked at again soon.
	for _, name := range []string{"acme", "globex"} {
		if err := f.c.Delete(ctx, &tenancyv1alpha1.Organization{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
			t.Fatal(err)
		}
	}
	if res := f.reconcile(t, "east"); res.RequeueAfter != releaseRetry {
		t.Errorf("with its organizations gone but not yet released, RequeueAfter = %v, want %v", res.RequeueAfter, releaseRetry)
	}

	// The organizations are released: the cluster is let go.
	f.r.Ledger.Fleet.Release("acme")
	f.r.Ledger.Fleet.Release("globex")
	f.reconcile(t, "east")
	if err := f.c.Get(ctx, client.ObjectKey{Name: "east"}, &tenancyv1alpha1.DatabaseCluster{}); !strings.Contains(fmt.Sprint(err), "not found") {
		t.Errorf("the released cluster is still there: %v", err)
	}
	if _, ok := f.fleet("east"); ok {
		t.Error("the fleet still has the released cluster")
	}
	if _, ok := f.r.Ledger.Tenant("east"); ok {
		t.Error("the released cluster's tenant endpoint is still published")
	}
	if diff := cmp.Diff([]string{"east"}, f.clusters.removed); diff != "" {
		t.Errorf("services removed (-want +got):\n%s", diff)
	}
}

func TestAClusterGoneWithoutItsFinalizerKeepsTheServiceOfItsOrganizations(t *testing.T) {
	f := newClusterFixture(t, placedOrg("acme", "gone-held", 10))
	f.reconcile(t, "gone-held")
	f.reconcile(t, "gone-empty")
	if diff := cmp.Diff([]string{"gone-empty"}, f.clusters.removed); diff != "" {
		t.Errorf("services removed (-want +got):\n%s", diff)
	}
	if cu, ok := f.fleet("gone-held"); !ok || cu.Cluster.Schedulable || cu.Used.Databases != 1 {
		t.Errorf("fleet has %+v, %t; want the held cluster, cordoned, with its organization", cu, ok)
	}
}

// fakeServer is a cluster's service that answers as told.
type fakeServer struct {
	health, facts, databases error
}

func (fakeServer) Endpoint() string                    { return "east:5432" }
func (s fakeServer) HealthCheck(context.Context) error { return s.health }
func (s fakeServer) Inventory(context.Context) (aurora.Inventory, error) {
	return aurora.Inventory{Databases: 7}, s.databases
}

func (s fakeServer) ServerFacts(context.Context) (aurora.ServerFacts, error) {
	return aurora.ServerFacts{Version: "15.8", Major: 15, MaxConnections: 500}, s.facts
}

func TestCheckServerFailsOnAnyOfItsChecks(t *testing.T) {
	down := errors.New("aurora: east:5432: ping: connection refused")
	for name, srv := range map[string]fakeServer{
		"health": {health: down}, "facts": {facts: down}, "databases": {databases: down},
	} {
		if _, err := checkServer(context.Background(), srv); !errors.Is(err, down) {
			t.Errorf("%s failing: error %v, want %v", name, err, down)
		}
	}
	got, err := checkServer(context.Background(), fakeServer{})
	want := serverCheck{endpoint: "east:5432", facts: aurora.ServerFacts{Version: "15.8", Major: 15, MaxConnections: 500}, inventory: aurora.Inventory{Databases: 7}}
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(serverCheck{})); diff != "" {
		t.Errorf("checkServer (-want +got):\n%s", diff)
	}
}

func TestPlacementChangedLetsThroughOnlyWhatChangesACluster(t *testing.T) {
	p := placementChanged()
	placed := placedOrg("acme", "east", 10)
	unplaced := &tenancyv1alpha1.Organization{ObjectMeta: metav1.ObjectMeta{Name: "acme"}}
	statusOnly := placed.DeepCopy()
	statusOnly.Status.Namespace = "org-acme"
	raised := placed.DeepCopy()
	raised.Spec.Database.Pool.MaxConnections = 20
	cases := map[string]struct {
		got, want bool
	}{
		"created placed":      {p.Create(event.CreateEvent{Object: placed}), true},
		"created unplaced":    {p.Create(event.CreateEvent{Object: unplaced}), false},
		"placed by an update": {p.Update(event.UpdateEvent{ObjectOld: unplaced, ObjectNew: placed}), true},
		"status only":         {p.Update(event.UpdateEvent{ObjectOld: placed, ObjectNew: statusOnly}), false},
		"budget raised":       {p.Update(event.UpdateEvent{ObjectOld: placed, ObjectNew: raised}), true},
		"deleted placed":      {p.Delete(event.DeleteEvent{Object: placed}), true},
		"deleted unplaced":    {p.Delete(event.DeleteEvent{Object: unplaced}), false},
	}
	for name, tc := range cases {
		if tc.got != tc.want {
			t.Errorf("%s: %t, want %t", name, tc.got, tc.want)
		}
	}
	if got := clusterOfOrganization(context.Background(), placed); len(got) != 1 || got[0].Name != "east" {
		t.Errorf("clusterOfOrganization = %v, want east", got)
	}
	if got := clusterOfOrganization(context.Background(), &corev1.Secret{}); got != nil {
		t.Errorf("clusterOfOrganization of a Secret = %v", got)
	}
}
