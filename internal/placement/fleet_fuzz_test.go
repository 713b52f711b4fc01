package placement_test

import (
	"fmt"
	"testing"

	"github.com/orgforge/orgforge/internal/placement"
)

// FuzzFleetNeverExceedsABudget runs random sequences of Place, Release,
// Resize and cordon changes over three clusters and checks after every step
// that no cluster is over either capacity and that each cluster's usage is
// exactly the sum of the placements on it. The first three bytes size the
// clusters; each following pair of bytes is one step.
func FuzzFleetNeverExceedsABudget(f *testing.F) {
	for _, seed := range [][]byte{
		{50, 40, 30, 0, 10, 4, 10, 8, 10, 12, 10, 2, 40, 1, 30},
		{10, 10, 10, 0, 9, 0, 9, 4, 2, 3, 10, 7, 39, 0, 1},
		{0, 255, 7, 0, 200, 1, 0x85, 5, 0xa5, 4, 3, 6, 3, 2, 0, 0, 20},
		{99, 1, 1, 0, 24, 16, 24, 32, 24, 3, 24, 7, 30, 19, 38, 2, 0, 0, 24},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 3 {
			return
		}
		names := []string{"a", "b", "c"}
		fleet := placement.NewFleet()
		clusters := map[string]placement.Cluster{}
		for i, name := range names {
			c := maxDatabases(ready(name, int(data[i])), 1+int(data[i])%5)
			clusters[name] = c
			if err := fleet.SetCluster(c); err != nil {
				t.Fatal(err)
			}
		}
		for i := 3; i+1 < len(data); i += 2 {
			op, arg := data[i], data[i+1]
			org := fmt.Sprintf("org-%d", op>>3%16)
			switch op % 8 {
			case 0, 1, 2:
				r := req(org, int(arg%25))
				if arg&0x80 != 0 {
					r = pinned(r, names[arg>>5%3])
				}
				_, _ = fleet.Place(r)
			case 3, 4:
				fleet.Release(org)
			case 5, 6:
				_, _ = fleet.Resize(org, int(arg%40))
			case 7:
				c := clusters[names[arg%3]]
				c.Schedulable = !c.Schedulable
				clusters[c.Name] = c
				if err := fleet.SetCluster(c); err != nil {
					t.Fatal(err)
				}
			}
			checkLedger(t, fleet)
		}
	})
}

// checkLedger fails when a cluster is over budget or its usage is not the
// sum of the placements on it.
func checkLedger(t *testing.T, f *placement.Fleet) {
	t.Helper()
	for _, cu := range f.Clusters() {
		if over := cu.OverBudget(); over != "" {
			t.Fatalf("cluster %s over budget: %s", cu.Cluster.Name, over)
		}
		var sum placement.Usage
		for _, org := range f.Organizations(cu.Cluster.Name) {
			p, ok := f.Lookup(org)
			if !ok || p.Cluster != cu.Cluster.Name {
				t.Fatalf("%s listed on %s but placed at %+v", org, cu.Cluster.Name, p)
			}
			sum.Databases++
			sum.Connections += p.MaxConnections
		}
		if sum != cu.Used {
			t.Fatalf("cluster %s reports %+v, its placements sum to %+v", cu.Cluster.Name, cu.Used, sum)
		}
	}
}
