package registry_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"

	"github.com/orgforge/orgforge/internal/aurora"
	"github.com/orgforge/orgforge/internal/devstack"
	"github.com/orgforge/orgforge/internal/registry"
)

// fleetMajors are the majors of the fleet's servers, one cluster each.
var fleetMajors = []int{13, 17}

var (
	fleetOnce  sync.Once
	fleetStack *devstack.Stack
	fleetErr   error
)

// fleet returns the servers of fleetMajors, started on first use and
// stopped by closeFleet when the package's tests end.
func fleet(t *testing.T) []*devstack.Postgres {
	t.Helper()
	fleetOnce.Do(func() {
		var opts devstack.Options
		for _, m := range fleetMajors {
			opts.Clusters = append(opts.Clusters, devstack.PostgresOptions{Major: m})
		}
		fleetStack, fleetErr = devstack.Start(context.Background(), opts)
	})
	if fleetErr != nil {
		t.Fatal(fleetErr)
	}
	return fleetStack.Clusters
}

func closeFleet() {
	if fleetStack != nil {
		_ = fleetStack.Close()
	}
}

// clusterName is the name the tests give the cluster of fleet server i.
func clusterName(i int) string { return fmt.Sprintf("pg%d", fleetMajors[i]) }

// newClusters returns an empty set with the tests' retry policy, closed
// when the test ends.
func newClusters(t *testing.T, opts registry.ClustersOptions) *registry.Clusters {
	t.Helper()
	opts.Retry = &fast
	cs := registry.NewClusters(logr.Discard(), opts)
	t.Cleanup(cs.Close)
	return cs
}

// ensureFleet ensures a service for every fleet server and returns them.
func ensureFleet(t *testing.T, cs *registry.Clusters) []*aurora.Service {
	t.Helper()
	var services []*aurora.Service
	for i, pg := range fleet(t) {
		svc, err := cs.Ensure(context.Background(), clusterName(i), aurora.Config{AdminDSN: pg.AdminDSN()})
		if err != nil {
			t.Fatal(err)
		}
		services = append(services, svc)
	}
	return services
}

// checkMajors checks that every cluster's service reaches its own server.
func checkMajors(t *testing.T, cs *registry.Clusters) {
	t.Helper()
	for i, want := range fleetMajors {
		svc, ok := cs.Get(clusterName(i))
		if !ok {
			t.Errorf("cluster %s has no service", clusterName(i))
			continue
		}
		facts, err := svc.ServerFacts(context.Background())
		if err != nil {
			t.Errorf("cluster %s: %v", clusterName(i), err)
		} else if facts.Major != want {
			t.Errorf("cluster %s reaches PostgreSQL %d; want %d", clusterName(i), facts.Major, want)
		}
	}
}

func TestClustersReachEachClustersOwnServer(t *testing.T) {
	cs := newClusters(t, registry.ClustersOptions{})
	ensureFleet(t, cs)
	checkMajors(t, cs)
	want := strings.Join([]string{clusterName(0), clusterName(1)}, ",")
	if got := strings.Join(cs.Names(), ","); got != want {
		t.Errorf("Names = %s; want %s", got, want)
	}
}

func TestAnUnreachableClusterFailsAloneNamingItselfAndItsEndpoint(t *testing.T) {
	cs := newClusters(t, registry.ClustersOptions{})
	ensureFleet(t, cs)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	const password = "unreachable-Pa55word"
	endpoint := net.JoinHostPort("127.0.0.1", strconv.Itoa(closedPort))
	dsn := "postgres://" + devstack.AdminUser + ":" + password + "@" + endpoint + "/postgres?sslmode=disable"
	_, err = cs.Ensure(context.Background(), "unreachable", aurora.Config{AdminDSN: dsn})
	if err == nil {
		t.Fatal("Ensure succeeded for a cluster on a closed port")
	}
	for _, want := range []string{`cluster "unreachable"`, endpoint} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if strings.Contains(err.Error(), password) {
		t.Errorf("the error holds the password: %q", err)
	}
	if _, ok := cs.Get("unreachable"); ok {
		t.Error("the unreachable cluster has a service")
	}
	checkMajors(t, cs)
	health := cs.Health(context.Background())
	if len(health) != len(fleetMajors) {
		t.Errorf("Health reports %d clusters; want the %d that have a service: %v", len(health), len(fleetMajors), health)
	}
	for name, err := range health {
		if err != nil {
			t.Errorf("cluster %s: %v", name, err)
		}
	}
}

func TestHealthReportsOnlyTheStoppedClusterAndItsRecovery(t *testing.T) {
	ctx := context.Background()
	cs := newClusters(t, registry.ClustersOptions{})
	ensureFleet(t, cs)
	stopped := fleet(t)[1]
	if err := stopped.Stop(); err != nil {
		t.Fatal(err)
	}
	health := cs.Health(ctx)
	if err := stopped.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := health[clusterName(0)]; err != nil {
		t.Errorf("cluster %s, still running: %v", clusterName(0), err)
	}
	if err := health[clusterName(1)]; err == nil || !strings.Contains(err.Error(), clusterName(1)) {
		t.Errorf("cluster %s, stopped: %v; want an error naming it", clusterName(1), err)
	}
	for name, err := range cs.Health(ctx) {
		if err != nil {
			t.Errorf("cluster %s after its server returned: %v", name, err)
		}
	}
}

func TestRemoveClosesTheClustersServiceAndLeavesTheOthers(t *testing.T) {
	ctx := context.Background()
	cs := newClusters(t, registry.ClustersOptions{})
	services := ensureFleet(t, cs)
	cs.Remove(clusterName(0))
	if _, ok := cs.Get(clusterName(0)); ok {
		t.Error("the removed cluster still has a service")
	}
	if err := services[0].HealthCheck(ctx); err == nil {
		t.Error("the removed cluster's service still answers; its pool should be closed")
	}
	if err := services[1].HealthCheck(ctx); err != nil {
		t.Errorf("cluster %s, not removed: %v", clusterName(1), err)
	}
	if got := cs.Names(); len(got) != 1 || got[0] != clusterName(1) {
		t.Errorf("Names = %v; want [%s]", got, clusterName(1))
	}

	cs.Close()
	if err := services[1].HealthCheck(ctx); err == nil {
		t.Error("a service still answers after Close")
	}
	if _, err := cs.Ensure(ctx, clusterName(0), aurora.Config{AdminDSN: fleet(t)[0].AdminDSN()}); !errors.Is(err, registry.ErrClustersClosed) {
		t.Errorf("Ensure after Close: %v; want %v", err, registry.ErrClustersClosed)
	}
}

func TestEnsureKeepsTheServiceUntilItsConfigurationChanges(t *testing.T) {
	ctx := context.Background()
	cs := newClusters(t, registry.ClustersOptions{MaxConnections: 4})
	pg := fleet(t)[0]
	name := clusterName(0)
	cfg := aurora.Config{AdminDSN: pg.AdminDSN(), MaxConnections: 2}
	first, err := cs.Ensure(ctx, name, cfg)
	if err != nil {
		t.Fatal(err)
	}
	same, err := cs.Ensure(ctx, name, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if same != first {
		t.Error("Ensure with an unchanged configuration built a new service")
	}

	cfg.MaxConnections = 3
	changed, err := cs.Ensure(ctx, name, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if changed == first {
		t.Fatal("Ensure with a changed configuration kept the old service")
	}
	if err := first.HealthCheck(ctx); err == nil {
		t.Error("the replaced service still answers; it should be closed")
	}
	if err := changed.HealthCheck(ctx); err != nil {
		t.Errorf("the new service: %v", err)
	}
	if got, ok := cs.Get(name); !ok || got != changed {
		t.Error("Get does not return the new service")
	}

	// A change that cannot be built leaves the working service in force.
	cfg.AdminDSN = pg.DSN(devstack.AdminUser, "not-the-password", "postgres")
	if _, err := cs.Ensure(ctx, name, cfg); err == nil {
		t.Fatal("Ensure succeeded with a wrong password")
	}
	if got, ok := cs.Get(name); !ok || got != changed {
		t.Error("a failed change took the cluster's working service away")
	}
	if err := changed.HealthCheck(ctx); err != nil {
		t.Errorf("the working service after a failed change: %v", err)
	}
}

func TestEachClusterIsCappedAndTheTotalIsReported(t *testing.T) {
	ctx := context.Background()
	cs := newClusters(t, registry.ClustersOptions{MaxConnections: 3})
	pgs := fleet(t)
	if _, err := cs.Ensure(ctx, clusterName(0), aurora.Config{AdminDSN: pgs[0].AdminDSN()}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Ensure(ctx, clusterName(1), aurora.Config{AdminDSN: pgs[1].AdminDSN(), MaxConnections: 2}); err != nil {
		t.Fatal(err)
	}
	if got := cs.MaxConnections(); got != 3+2 {
		t.Errorf("MaxConnections = %d; want 5, the cap for the cluster that set none and 2", got)
	}

	_, err := cs.Ensure(ctx, "greedy", aurora.Config{AdminDSN: pgs[0].AdminDSN(), MaxConnections: 4})
	if !errors.Is(err, aurora.ErrInvalid) || !strings.Contains(err.Error(), `cluster "greedy"`) {
		t.Errorf("Ensure over the cap: %v; want an invalid-configuration error naming the cluster", err)
	}
	if _, ok := cs.Get("greedy"); ok {
		t.Error("a cluster over the cap has a service")
	}
	cs.Remove(clusterName(1))
	if got := cs.MaxConnections(); got != 3 {
		t.Errorf("MaxConnections after a removal = %d; want 3", got)
	}
}

func TestConcurrentEnsuresOfAClusterShareOneService(t *testing.T) {
	cs := newClusters(t, registry.ClustersOptions{})
	pgs := fleet(t)
	const callers = 8
	got := make([]*aurora.Service, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			// Half the callers ask for each cluster.
			svc, err := cs.Ensure(context.Background(), clusterName(i%2), aurora.Config{AdminDSN: pgs[i%2].AdminDSN()})
			if err != nil {
				t.Error(err)
			}
			got[i] = svc
		})
	}
	wg.Wait()
	for i := range callers {
		if want, _ := cs.Get(clusterName(i % 2)); got[i] != want {
			t.Errorf("caller %d got a service other than cluster %s's", i, clusterName(i%2))
		}
	}
	checkMajors(t, cs)
}

func TestTheTotalCapRefusesANewClusterOrARaiseThatWouldExceedIt(t *testing.T) {
	ctx := context.Background()
	cs := newClusters(t, registry.ClustersOptions{MaxConnections: 4, MaxTotalConnections: 6})
	pgs := fleet(t)
	first := clusterName(0)
	if _, err := cs.Ensure(ctx, first, aurora.Config{AdminDSN: pgs[0].AdminDSN()}); err != nil {
		t.Fatal(err)
	}
	if got := cs.MaxTotalConnections(); got != 6 {
		t.Errorf("MaxTotalConnections = %d; want 6", got)
	}

	// 4 + 4 > 6: the second cluster, at the per-cluster cap, does not fit.
	second := clusterName(1)
	_, err := cs.Ensure(ctx, second, aurora.Config{AdminDSN: pgs[1].AdminDSN()})
	if !errors.Is(err, registry.ErrTotalConnections) {
		t.Fatalf("Ensure over the total cap: %v; want %v", err, registry.ErrTotalConnections)
	}
	for _, want := range []string{`cluster "` + second + `"`, "asks for 4", "at most 4 per cluster", "hold 4", "total cap of 6"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if _, ok := cs.Get(second); ok {
		t.Error("a cluster over the total cap has a service")
	}

	// 4 + 2 fits exactly.
	if _, err := cs.Ensure(ctx, second, aurora.Config{AdminDSN: pgs[1].AdminDSN(), MaxConnections: 2}); err != nil {
		t.Fatalf("Ensure that fits the total cap exactly: %v", err)
	}
	want := map[string]int32{first: 4, second: 2}
	if diff := cmp.Diff(want, cs.ConnectionCaps()); diff != "" {
		t.Errorf("ConnectionCaps (-want +got):\n%s", diff)
	}

	// Raising the second cluster's cap goes over; the service stays.
	kept, _ := cs.Get(second)
	_, err = cs.Ensure(ctx, second, aurora.Config{AdminDSN: pgs[1].AdminDSN(), MaxConnections: 3})
	if !errors.Is(err, registry.ErrTotalConnections) {
		t.Errorf("a raise over the total cap: %v; want %v", err, registry.ErrTotalConnections)
	}
	if got, ok := cs.Get(second); !ok || got != kept {
		t.Error("a refused raise took the cluster's service away")
	}
	// Lowering the first cluster's cap is a replacement that always fits,
	// and makes room for the raise.
	if _, err := cs.Ensure(ctx, first, aurora.Config{AdminDSN: pgs[0].AdminDSN(), MaxConnections: 3}); err != nil {
		t.Fatalf("lowering a cluster's cap: %v", err)
	}
	if _, err := cs.Ensure(ctx, second, aurora.Config{AdminDSN: pgs[1].AdminDSN(), MaxConnections: 3}); err != nil {
		t.Errorf("a raise that fits once another cluster was lowered: %v", err)
	}
	if got := cs.MaxConnections(); got != 6 {
		t.Errorf("MaxConnections = %d; want 6, the total cap", got)
	}

	// A removed cluster's share is free again.
	cs.Remove(first)
	if _, err := cs.Ensure(ctx, "third", aurora.Config{AdminDSN: pgs[0].AdminDSN(), MaxConnections: 3}); err != nil {
		t.Errorf("Ensure after a removal freed room: %v", err)
	}
}

func TestConcurrentNewClustersNeverTogetherExceedTheTotalCap(t *testing.T) {
	cs := newClusters(t, registry.ClustersOptions{MaxConnections: 2, MaxTotalConnections: 6})
	pgs := fleet(t)
	const callers = 8
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			_, errs[i] = cs.Ensure(context.Background(), fmt.Sprintf("c%d", i), aurora.Config{AdminDSN: pgs[i%2].AdminDSN()})
		})
	}
	wg.Wait()
	var built int
	for i, err := range errs {
		switch {
		case err == nil:
			built++
		case !errors.Is(err, registry.ErrTotalConnections):
			t.Errorf("cluster c%d: %v; want a service or %v", i, err, registry.ErrTotalConnections)
		}
	}
	if built != 3 || len(cs.Names()) != 3 || cs.MaxConnections() != 6 {
		t.Errorf("%d Ensures succeeded, clusters %v hold %d connections; want 3 clusters of 2 filling the total cap of 6",
			built, cs.Names(), cs.MaxConnections())
	}
}

func TestOpenConnectionsReportsEachClustersService(t *testing.T) {
	cs := newClusters(t, registry.ClustersOptions{})
	services := ensureFleet(t, cs)
	open := cs.OpenConnections()
	if len(open) != len(services) {
		t.Fatalf("OpenConnections reports %v; want the %d clusters", open, len(services))
	}
	for i, svc := range services {
		// Each service is connected: New checked its admin on one
		// connection, which the admin pool keeps.
		if got, want := open[clusterName(i)], svc.OpenConnections(); got != want || got < 1 {
			t.Errorf("cluster %s: %d open connections; want its service's %d, at least 1", clusterName(i), got, want)
		}
	}
	cs.Remove(clusterName(0))
	if _, ok := cs.OpenConnections()[clusterName(0)]; ok {
		t.Error("a removed cluster is still reported")
	}
}
