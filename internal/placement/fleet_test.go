package placement_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/orgforge/orgforge/internal/placement"
)

func newFleet(t *testing.T, clusters ...placement.Cluster) *placement.Fleet {
	t.Helper()
	f := placement.NewFleet()
	for _, c := range clusters {
		if err := f.SetCluster(c); err != nil {
			t.Fatalf("SetCluster(%q): %v", c.Name, err)
		}
	}
	return f
}

func mustPlace(t *testing.T, f *placement.Fleet, r placement.Request) placement.Placement {
	t.Helper()
	p, err := f.Place(r)
	if err != nil {
		t.Fatalf("Place(%q): %v", r.Organization, err)
	}
	return p
}

// usage is each cluster's usage by name.
func usage(f *placement.Fleet) map[string]placement.Usage {
	out := map[string]placement.Usage{}
	for _, cu := range f.Clusters() {
		out[cu.Cluster.Name] = cu.Used
	}
	return out
}

func TestFleetSpreadsOrganizationsByBudgetLeft(t *testing.T) {
	f := newFleet(t, ready("a", 30), ready("b", 50), ready("c", 40))
	var got []string
	for i := range 12 {
		got = append(got, mustPlace(t, f, req(fmt.Sprintf("org-%d", i), 10)).Cluster)
	}
	want := []string{"b", "b", "c", "a", "b", "c", "a", "b", "c", "a", "b", "c"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("clusters in placement order (-want +got):\n%s", diff)
	}
	if _, err := f.Place(req("org-12", 10)); !errors.Is(err, placement.ErrNoCapacity) {
		t.Errorf("Place on a full fleet = %v, want ErrNoCapacity", err)
	}
}

func TestFleetPlacesOnceCapacityAppears(t *testing.T) {
	full := ready("a", 20)
	cases := map[string]struct {
		start  placement.Cluster
		change placement.Cluster
		want   string
	}{
		"capacity raised":         {start: full, change: ready("a", 30), want: "a"},
		"uncordoned":              {start: cordoned(ready("a", 100)), change: ready("a", 100), want: "a"},
		"ready again":             {start: notReady(ready("a", 100)), change: ready("a", 100), want: "a"},
		"a new cluster":           {start: full, change: ready("b", 100), want: "b"},
		"a database slot added":   {start: maxDatabases(ready("a", 100), 1), change: maxDatabases(ready("a", 100), 2), want: "a"},
		"labels the selector fit": {start: ready("a", 100), change: labelled(ready("a", 100), map[string]string{"tier": "gold"}), want: "a"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f := newFleet(t, tc.start)
			if _, err := f.Record(placement.Placement{Organization: "first", Cluster: "a", MaxConnections: 20}); err != nil {
				t.Fatalf("Record: %v", err)
			}
			r := selecting(req("acme", 10), nil)
			if tc.change.Labels != nil {
				r = selecting(r, tc.change.Labels)
			}
			if _, err := f.Place(r); !errors.Is(err, placement.ErrNoCapacity) {
				t.Fatalf("Place before the change = %v, want ErrNoCapacity", err)
			}
			if err := f.SetCluster(tc.change); err != nil {
				t.Fatalf("SetCluster: %v", err)
			}
			if got := mustPlace(t, f, r).Cluster; got != tc.want {
				t.Errorf("placed on %q, want %q", got, tc.want)
			}
		})
	}
}

func TestFleetNeverPlacesAnOrganizationTwice(t *testing.T) {
	f := newFleet(t, ready("a", 100), ready("b", 200))
	first := mustPlace(t, f, req("acme", 10))
	for name, r := range map[string]placement.Request{
		"the same request":         req("acme", 10),
		"a pin to another cluster": pinned(req("acme", 10), "a"),
		"a selector matching none": selecting(req("acme", 10), map[string]string{"region": "mars"}),
		"a larger pool":            req("acme", 50),
	} {
		if got := mustPlace(t, f, r); got != first {
			t.Errorf("%s: Place = %+v, want the first placement %+v", name, got, first)
		}
	}
	want := map[string]placement.Usage{"a": {}, "b": {Databases: 1, Connections: 10}}
	if diff := cmp.Diff(want, usage(f)); diff != "" {
		t.Errorf("usage (-want +got):\n%s", diff)
	}
}

func TestFleetResizeIsCheckedAgainstTheBudget(t *testing.T) {
	cases := map[string]struct {
		org       string
		to        int
		wantErr   error
		wantConns int
	}{
		"a raise within the budget":        {org: "acme", to: 30, wantConns: 30},
		"a raise to the budget exactly":    {org: "acme", to: 60, wantConns: 60},
		"a raise one over keeps the limit": {org: "acme", to: 61, wantErr: placement.ErrOverBudget, wantConns: 10},
		"a cut always succeeds":            {org: "acme", to: 1, wantConns: 1},
		"an organization not placed":       {org: "ghost", to: 5, wantErr: placement.ErrNotPlaced, wantConns: 10},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f := newFleet(t, cordoned(ready("a", 100)))
			for _, p := range []placement.Placement{{Organization: "acme", Cluster: "a", MaxConnections: 10}, {Organization: "other", Cluster: "a", MaxConnections: 40}} {
				if _, err := f.Record(p); err != nil {
					t.Fatalf("Record: %v", err)
				}
			}
			if _, err := f.Resize(tc.org, tc.to); !errors.Is(err, tc.wantErr) {
				t.Fatalf("Resize = %v, want %v", err, tc.wantErr)
			}
			if p, _ := f.Lookup("acme"); p.MaxConnections != tc.wantConns {
				t.Errorf("acme's maxConnections = %d, want %d", p.MaxConnections, tc.wantConns)
			}
			if got := usage(f)["a"].Connections; got != tc.wantConns+40 {
				t.Errorf("cluster's budgeted connections = %d, want %d", got, tc.wantConns+40)
			}
		})
	}
}

func TestFleetReleaseFreesTheBudget(t *testing.T) {
	f := newFleet(t, maxDatabases(ready("a", 20), 2))
	mustPlace(t, f, req("one", 10))
	mustPlace(t, f, req("two", 10))
	if _, err := f.Place(req("three", 1)); !errors.Is(err, placement.ErrNoCapacity) {
		t.Fatalf("Place on a full cluster = %v, want ErrNoCapacity", err)
	}
	if !f.Release("one") || f.Release("one") {
		t.Fatal("Release should report the placement once")
	}
	if got := mustPlace(t, f, req("three", 10)).Cluster; got != "a" {
		t.Errorf("placed on %q after a release, want a", got)
	}
	if _, ok := f.Lookup("one"); ok {
		t.Error("a released organization is still placed")
	}
}

func TestFleetRecordSeedsPlacementsWithoutTheCapacityCheck(t *testing.T) {
	cases := map[string]struct {
		record   []placement.Placement
		wantErr  error
		wantOver string
		want     placement.Usage
	}{
		"within the budget": {
			record: []placement.Placement{{Organization: "x", Cluster: "a", MaxConnections: 50}},
			want:   placement.Usage{Databases: 1, Connections: 50},
		},
		"over the connection budget is recorded and reported": {
			record:   []placement.Placement{{Organization: "x", Cluster: "a", MaxConnections: 80}, {Organization: "y", Cluster: "a", MaxConnections: 40}},
			wantOver: "connections 120/100",
			want:     placement.Usage{Databases: 2, Connections: 120},
		},
		"over both capacities": {
			record:   []placement.Placement{{Organization: "x", Cluster: "a", MaxConnections: 10}, {Organization: "y", Cluster: "a", MaxConnections: 10}, {Organization: "z", Cluster: "a", MaxConnections: 90}},
			wantOver: "databases 3/2, connections 110/100",
			want:     placement.Usage{Databases: 3, Connections: 110},
		},
		"recorded again with a new pool size": {
			record: []placement.Placement{{Organization: "x", Cluster: "a", MaxConnections: 10}, {Organization: "x", Cluster: "a", MaxConnections: 30}},
			want:   placement.Usage{Databases: 1, Connections: 30},
		},
		"found on a second cluster keeps the first": {
			record:  []placement.Placement{{Organization: "x", Cluster: "b", MaxConnections: 10}, {Organization: "x", Cluster: "a", MaxConnections: 10}},
			wantErr: placement.ErrPlacedElsewhere,
		},
		"on a cluster the fleet does not know": {
			record:  []placement.Placement{{Organization: "x", Cluster: "gone", MaxConnections: 10}},
			wantErr: placement.ErrUnknownCluster,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f := newFleet(t, maxDatabases(ready("a", 100), 2), ready("b", 100))
			var cu placement.ClusterUsage
			var err error
			for _, p := range tc.record {
				cu, err = f.Record(p)
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Record = %v, want %v", err, tc.wantErr)
			}
			if got := cu.OverBudget(); got != tc.wantOver {
				t.Errorf("OverBudget = %q, want %q", got, tc.wantOver)
			}
			if got := usage(f)["a"]; got != tc.want {
				t.Errorf("usage of a = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestFleetLoweredCapacityClosesTheClusterAndIsReported(t *testing.T) {
	f := newFleet(t, ready("a", 100))
	mustPlace(t, f, req("acme", 60))
	if err := f.SetCluster(ready("a", 50)); err != nil {
		t.Fatalf("SetCluster: %v", err)
	}
	if got := f.Clusters()[0].OverBudget(); got != "connections 60/50" {
		t.Errorf("OverBudget = %q, want connections 60/50", got)
	}
	if _, err := f.Place(req("next", 0)); !errors.Is(err, placement.ErrNoCapacity) {
		t.Errorf("Place on an over-budget cluster = %v, want ErrNoCapacity", err)
	}
	if _, err := f.Resize("acme", 55); err != nil {
		t.Errorf("a cut on an over-budget cluster = %v, want it accepted", err)
	}
}

func TestFleetRemoveClusterRefusesWhileOrganizationsRemain(t *testing.T) {
	f := newFleet(t, ready("a", 100))
	mustPlace(t, f, req("acme", 10))
	if err := f.RemoveCluster("a"); !errors.Is(err, placement.ErrClusterInUse) {
		t.Fatalf("RemoveCluster with an organization = %v, want ErrClusterInUse", err)
	}
	if diff := cmp.Diff([]string{"acme"}, f.Organizations("a")); diff != "" {
		t.Errorf("organizations on a (-want +got):\n%s", diff)
	}
	f.Release("acme")
	if err := f.RemoveCluster("a"); err != nil {
		t.Fatalf("RemoveCluster once empty: %v", err)
	}
	if got := f.Clusters(); len(got) != 0 {
		t.Errorf("clusters after removal = %+v, want none", got)
	}
}

// TestFleetConcurrentPlacementNeverOversubscribes applies 200 organizations
// at once, each from two reconciles racing, over three clusters whose
// budgets (one bound by databases, two by connections) fit exactly 200.
func TestFleetConcurrentPlacementNeverOversubscribes(t *testing.T) {
	clusters := []placement.Cluster{maxDatabases(ready("a", 1000), 50), ready("b", 700), ready("c", 800)}
	f := newFleet(t, clusters...)
	const orgs, conns = 200, 10
	results := make([][2]placement.Placement, orgs)
	errs := make(chan error, 2*orgs)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range orgs {
		for j := range 2 {
			wg.Go(func() {
				<-start
				p, err := f.Place(req(fmt.Sprintf("org-%03d", i), conns))
				if err != nil {
					errs <- err
				}
				results[i][j] = p
			})
		}
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Place: %v", err)
	}
	placed := map[string]string{}
	for _, cu := range f.Clusters() {
		if over := cu.OverBudget(); over != "" {
			t.Errorf("cluster %s over budget: %s", cu.Cluster.Name, over)
		}
		for _, org := range f.Organizations(cu.Cluster.Name) {
			if prev, dup := placed[org]; dup {
				t.Errorf("%s placed on %s and %s", org, prev, cu.Cluster.Name)
			}
			placed[org] = cu.Cluster.Name
		}
	}
	if len(placed) != orgs {
		t.Errorf("%d organizations placed, want %d", len(placed), orgs)
	}
	for i, r := range results {
		if r[0] != r[1] || placed[r[0].Organization] != r[0].Cluster {
			t.Errorf("org-%03d: racing reconciles got %+v and %+v, ledger says %q", i, r[0], r[1], placed[r[0].Organization])
		}
	}
	if _, err := f.Place(req("one-more", 1)); !errors.Is(err, placement.ErrNoCapacity) {
		t.Errorf("Place on the full fleet = %v, want ErrNoCapacity", err)
	}
}
