package placement_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orgforge/orgforge/internal/placement"
)

// ready is a Ready, schedulable cluster with a connection budget and no cap
// on databases; cases change what they test.
func ready(name string, maxConnections int) placement.Cluster {
	return placement.Cluster{Name: name, Ready: true, Schedulable: true,
		Capacity: placement.Capacity{MaxConnections: maxConnections}}
}

// used puts usage on a cluster for Choose.
func used(c placement.Cluster, databases, connections int) placement.ClusterUsage {
	return placement.ClusterUsage{Cluster: c, Used: placement.Usage{Databases: databases, Connections: connections}}
}

func labelled(c placement.Cluster, labels map[string]string) placement.Cluster {
	c.Labels = labels
	return c
}

func notReady(c placement.Cluster) placement.Cluster {
	c.Ready = false
	return c
}

func cordoned(c placement.Cluster) placement.Cluster {
	c.Schedulable = false
	return c
}

func maxDatabases(c placement.Cluster, n int) placement.Cluster {
	c.Capacity.MaxDatabases = n
	return c
}

func req(org string, maxConnections int) placement.Request {
	return placement.Request{Organization: org, MaxConnections: maxConnections}
}

func pinned(r placement.Request, cluster string) placement.Request {
	r.ClusterRef = cluster
	return r
}

func selecting(r placement.Request, labels map[string]string) placement.Request {
	r.ClusterSelector = &metav1.LabelSelector{MatchLabels: labels}
	return r
}

// noCapacity asserts err is a NoCapacityError and returns it.
func noCapacity(t *testing.T, err error) *placement.NoCapacityError {
	t.Helper()
	var nc *placement.NoCapacityError
	if !errors.As(err, &nc) || !errors.Is(err, placement.ErrNoCapacity) {
		t.Fatalf("error = %v, want a NoCapacityError wrapping ErrNoCapacity", err)
	}
	return nc
}

func TestChooseAppliesThePlacementRule(t *testing.T) {
	eu := map[string]string{"region": "eu"}
	us := map[string]string{"region": "us"}
	cases := map[string]struct {
		req       placement.Request
		clusters  []placement.ClusterUsage
		want      string
		wantSkips []placement.Skip
	}{
		"most connection budget left wins, not the largest cluster": {
			req:      req("acme", 10),
			clusters: []placement.ClusterUsage{used(ready("a", 100), 5, 50), used(ready("b", 100), 1, 10), used(ready("c", 200), 15, 150)},
			want:     "b",
		},
		"ties go by name": {
			req:      req("acme", 10),
			clusters: []placement.ClusterUsage{used(ready("c", 100), 0, 0), used(ready("b", 100), 0, 0), used(ready("d", 90), 0, 0)},
			want:     "b",
		},
		"a pin chooses its cluster though others have more left": {
			req:      pinned(req("acme", 10), "a"),
			clusters: []placement.ClusterUsage{used(ready("a", 100), 5, 80), used(ready("b", 100), 0, 0)},
			want:     "a",
		},
		"a selector chooses among the matching clusters": {
			req:      selecting(req("acme", 10), eu),
			clusters: []placement.ClusterUsage{used(labelled(ready("a", 100), eu), 5, 80), used(labelled(ready("b", 100), us), 0, 0), used(labelled(ready("c", 100), eu), 5, 50)},
			want:     "c",
		},
		"an empty selector selects every cluster": {
			req:      placement.Request{Organization: "acme", MaxConnections: 10, ClusterSelector: &metav1.LabelSelector{}},
			clusters: []placement.ClusterUsage{used(labelled(ready("a", 100), eu), 0, 0)},
			want:     "a",
		},
		"a pin and a selector must both match": {
			req:      selecting(pinned(req("acme", 10), "b"), eu),
			clusters: []placement.ClusterUsage{used(labelled(ready("a", 100), eu), 0, 0), used(labelled(ready("b", 100), us), 0, 0)},
			wantSkips: []placement.Skip{
				{Cluster: "a", Reason: placement.SkipNotSelected, Message: `not the clusterRef "b"`},
				{Cluster: "b", Reason: placement.SkipNotSelected, Message: "not selected by clusterSelector"},
			},
		},
		"a cluster that is not ready is skipped": {
			req:      req("acme", 10),
			clusters: []placement.ClusterUsage{used(notReady(ready("a", 1000)), 0, 0), used(ready("b", 100), 0, 50)},
			want:     "b",
		},
		"a cordoned cluster is skipped": {
			req:      req("acme", 10),
			clusters: []placement.ClusterUsage{used(cordoned(ready("a", 1000)), 0, 0), used(ready("b", 100), 0, 50)},
			want:     "b",
		},
		"a cluster with every database slot taken is skipped": {
			req:      req("acme", 10),
			clusters: []placement.ClusterUsage{used(maxDatabases(ready("a", 1000), 3), 3, 30), used(ready("b", 100), 0, 50)},
			want:     "b",
		},
		"the last database slot is taken": {
			req:      req("acme", 10),
			clusters: []placement.ClusterUsage{used(maxDatabases(ready("a", 1000), 3), 2, 20)},
			want:     "a",
		},
		"no database cap when maxDatabases is zero": {
			req:      req("acme", 1),
			clusters: []placement.ClusterUsage{used(ready("a", 100_000), 50_000, 50_000)},
			want:     "a",
		},
		"a request that fills the connection budget exactly fits": {
			req:      req("acme", 10),
			clusters: []placement.ClusterUsage{used(ready("a", 100), 9, 90)},
			want:     "a",
		},
		"a request one connection over the budget is skipped": {
			req:       req("acme", 10),
			clusters:  []placement.ClusterUsage{used(ready("a", 100), 9, 91)},
			wantSkips: []placement.Skip{{Cluster: "a", Reason: placement.SkipConnectionsFull, Message: "connections would use 91+10 of 100"}},
		},
		"every reason is named, the selected clusters first": {
			req: selecting(req("acme", 10), eu),
			clusters: []placement.ClusterUsage{
				used(labelled(ready("a", 100), us), 0, 0),
				used(labelled(ready("e", 100), eu), 9, 95),
				used(labelled(maxDatabases(ready("d", 100), 4), eu), 4, 40),
				used(labelled(cordoned(ready("c", 100)), eu), 0, 0),
				used(labelled(notReady(ready("b", 100)), eu), 0, 0),
			},
			wantSkips: []placement.Skip{
				{Cluster: "b", Reason: placement.SkipNotReady, Message: "not ready"},
				{Cluster: "c", Reason: placement.SkipCordoned, Message: "cordoned"},
				{Cluster: "d", Reason: placement.SkipDatabasesFull, Message: "databases full 4/4"},
				{Cluster: "e", Reason: placement.SkipConnectionsFull, Message: "connections would use 95+10 of 100"},
				{Cluster: "a", Reason: placement.SkipNotSelected, Message: "not selected by clusterSelector"},
			},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := placement.Choose(tc.req, tc.clusters)
			if tc.wantSkips == nil {
				if err != nil || got != tc.want {
					t.Fatalf("Choose = %q, %v; want %q", got, err, tc.want)
				}
				return
			}
			if diff := cmp.Diff(tc.wantSkips, noCapacity(t, err).Skipped); diff != "" {
				t.Errorf("skipped clusters (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNoCapacityMessageNamesEachClusterAndWhy(t *testing.T) {
	var many []placement.ClusterUsage
	for i := range 11 {
		many = append(many, used(notReady(ready(fmt.Sprintf("c%02d", i), 100)), 0, 0))
	}
	cases := map[string]struct {
		req      placement.Request
		clusters []placement.ClusterUsage
		want     string
	}{
		"each skipped cluster with its reason": {
			req:      req("acme", 10),
			clusters: []placement.ClusterUsage{used(ready("b", 100), 9, 95), used(cordoned(ready("a", 100)), 0, 0)},
			want:     `no DatabaseCluster can take organization "acme" with maxConnections 10: a: cordoned; b: connections would use 95+10 of 100`,
		},
		"an empty fleet": {
			req:  req("acme", 10),
			want: `no DatabaseCluster can take organization "acme" with maxConnections 10: no DatabaseCluster exists`,
		},
		"a pin to a cluster that does not exist": {
			req:      pinned(req("acme", 10), "gone"),
			clusters: []placement.ClusterUsage{used(ready("a", 100), 0, 0)},
			want:     `no DatabaseCluster can take organization "acme" with maxConnections 10: clusterRef "gone": no such DatabaseCluster; a: not the clusterRef "gone"`,
		},
		"a long list is bounded": {
			req:      req("acme", 10),
			clusters: many,
			want: `no DatabaseCluster can take organization "acme" with maxConnections 10: ` +
				"c00: not ready; c01: not ready; c02: not ready; c03: not ready; c04: not ready; c05: not ready; c06: not ready; c07: not ready; and 3 more",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := placement.Choose(tc.req, tc.clusters)
			if got := noCapacity(t, err).Error(); got != tc.want {
				t.Errorf("message:\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestChooseRefusesInvalidRequests(t *testing.T) {
	cases := map[string]placement.Request{
		"no organization":         req("", 10),
		"negative maxConnections": req("acme", -1),
		"a malformed selector": {Organization: "acme", MaxConnections: 10, ClusterSelector: &metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "region", Operator: "Near"}}}},
	}
	for name, r := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := placement.Choose(r, []placement.ClusterUsage{used(ready("a", 100), 0, 0)})
			if !errors.Is(err, placement.ErrInvalid) {
				t.Errorf("error = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestDefaultMaxConnectionsLeavesTheReserve(t *testing.T) {
	cases := map[string]struct {
		server, superuser, reserved, operator int
		want                                  int
	}{
		"Aurora's largest writer keeps a tenth":        {server: 5000, superuser: 3, operator: 5, want: 5000 - 3 - 5 - 500},
		"PostgreSQL 16 reserved_connections count too": {server: 1000, superuser: 3, reserved: 5, operator: 5, want: 1000 - 3 - 5 - 5 - 100},
		"a stock server keeps the floor headroom":      {server: 100, superuser: 3, operator: 4, want: 100 - 3 - 4 - 10},
		"a tenth is rounded up":                        {server: 205, superuser: 3, operator: 2, want: 205 - 3 - 2 - 21},
		"a server too small for a reserve gives zero":  {server: 12, superuser: 3, operator: 2, want: 0},
		"negative settings are not added back":         {server: 100, superuser: -3, reserved: -1, operator: -4, want: 90},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := placement.DefaultMaxConnections(tc.server, tc.superuser, tc.reserved, tc.operator); got != tc.want {
				t.Errorf("DefaultMaxConnections = %d, want %d", got, tc.want)
			}
		})
	}
}
