package main

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
)

func TestBucketQuantileInterpolatesInsideTheBucketLikeHistogramQuantile(t *testing.T) {
	inf := math.Inf(1)
	// 10 observations: 4 at or below 1 ms, 4 more at or below 2 ms, 2 more
	// at or below 4 ms.
	b := []bucket{{0.001, 4}, {0.002, 8}, {0.004, 10}, {inf, 10}}
	cases := map[string]struct {
		q       float64
		buckets []bucket
		want    float64
	}{
		"empty":                           {0.5, nil, 0},
		"no observations":                 {0.5, []bucket{{0.001, 0}, {inf, 0}}, 0},
		"median in the second bucket":     {0.5, b, 0.00125},
		"p95 in the third":                {0.95, b, 0.0035},
		"in the first, from zero":         {0.2, b, 0.0005},
		"in +Inf takes the highest bound": {0.95, []bucket{{0.001, 1}, {inf, 10}}, 0.001},
		"a rank on a bound is that bound": {0.4, b, 0.001},
		"empty buckets below are skipped": {0.5, []bucket{{0.001, 0}, {0.002, 0}, {0.004, 2}, {inf, 2}}, 0.003},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := bucketQuantile(tc.q, tc.buckets); math.Abs(got-tc.want) > 1e-12 {
				t.Errorf("bucketQuantile(%v) = %v, want %v", tc.q, got, tc.want)
			}
		})
	}
}

func TestOperatorMetricsDeltaEstimatesPlacementFromTheBucketsBetweenScrapes(t *testing.T) {
	scrape := func(counts []uint64, sum float64) OperatorMetrics {
		bounds := []float64{0.001, 0.002, 0.004}
		h := &dto.Histogram{SampleCount: ref[uint64](counts[len(counts)-1]), SampleSum: ref[float64](sum)}
		for i, ub := range bounds {
			h.Bucket = append(h.Bucket, &dto.Bucket{UpperBound: ref[float64](ub), CumulativeCount: ref[uint64](counts[i])})
		}
		other := &dto.Histogram{SampleCount: ref[uint64](100), SampleSum: ref[float64](50),
			Bucket: []*dto.Bucket{{UpperBound: ref[float64](0.001), CumulativeCount: ref[uint64](0)}}}
		name := "orgforge_reconcile_step_duration_seconds"
		fams := map[string]*dto.MetricFamily{name: {Name: ref[string](name), Metric: []*dto.Metric{
			{Label: []*dto.LabelPair{{Name: ref[string]("step"), Value: ref[string]("placement")}}, Histogram: h},
			{Label: []*dto.LabelPair{{Name: ref[string]("step"), Value: ref[string]("database")}}, Histogram: other},
		}}}
		return operatorMetrics(fams)
	}
	// Before: 5 fast ones. After: 5 more at or below 1 ms and 10 between
	// 2 and 4 ms; the step named database does not count.
	before := scrape([]uint64{5, 5, 5}, 0.004)
	after := scrape([]uint64{10, 10, 20}, 0.004+0.004+0.03)
	got := after.delta(before).Placement
	want := Quantiles{Count: 15, MeanMs: 2.27, P50Ms: 2.5, P95Ms: 3.85}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("placement over the phase (-want +got):\n%s", diff)
	}
}

func TestPlacementProblemsFindDuplicatesMissingAndDisagreeingRecords(t *testing.T) {
	orgs := []placedOrg{
		{Name: "good", Database: "org_good", Cluster: "fleet-1", Annotation: "fleet-1"},
		{Name: "twice", Database: "org_twice", Cluster: "fleet-1", Annotation: "fleet-1"},
		{Name: "nowhere", Database: "org_nowhere", Cluster: "fleet-2", Annotation: "fleet-2"},
		{Name: "elsewhere", Database: "org_elsewhere", Cluster: "fleet-2", Annotation: "fleet-2"},
		{Name: "annotated", Database: "org_annotated", Cluster: "fleet-3", Annotation: "fleet-1"},
	}
	where := map[string][]string{
		"org_good": {"fleet-1"}, "org_twice": {"fleet-1", "fleet-2"}, "org_elsewhere": {"fleet-3"},
		"org_annotated": {"fleet-3"},
	}
	dups, problems := placementProblems(orgs, where)
	if diff := cmp.Diff([]string{"twice", "nowhere"}, dups); diff != "" {
		t.Errorf("duplicates (-want +got):\n%s", diff)
	}
	for _, who := range []string{"twice", "nowhere", "elsewhere", "annotated"} {
		found := false
		for _, p := range problems {
			found = found || strings.HasPrefix(p, who+"'s ")
		}
		if !found {
			t.Errorf("no problem names %s: %q", who, problems)
		}
	}
	if len(problems) != 4 {
		t.Errorf("%d problems, want 4: %q", len(problems), problems)
	}
	if dups, problems := placementProblems(orgs[:1], where); len(dups)+len(problems) != 0 {
		t.Errorf("a well placed organization has problems: %q %q", dups, problems)
	}
	if got := databasesBy(where); !cmp.Equal(got, map[string]int{"fleet-1": 2, "fleet-2": 1, "fleet-3": 2}) {
		t.Errorf("databases by server: %v", got)
	}
}

func TestSpreadAndBudgetsOfTheFleetsClusters(t *testing.T) {
	uses := []ClusterUse{
		{Name: "fleet-1", Capacity: 250, Budgeted: 170, UsePercent: 68, AnnotatedBudget: 170},
		{Name: "fleet-2", Capacity: 250, Budgeted: 160, UsePercent: 64, AnnotatedBudget: 160},
		{Name: "fleet-3", Capacity: 250, Budgeted: 170, UsePercent: 68, AnnotatedBudget: 170},
	}
	if got := spreadPoints(uses); got != 4 {
		t.Errorf("spread %v points, want 4", got)
	}
	if got := spreadPoints(nil); got != 0 {
		t.Errorf("spread of no clusters %v, want 0", got)
	}
	if p := budgetProblems(uses); len(p) != 0 {
		t.Errorf("clusters within their budget reported: %q", p)
	}
	uses[1].AnnotatedBudget = 260
	uses[2].Budgeted = 251
	p := budgetProblems(uses)
	if len(p) != 2 || !strings.HasPrefix(p[0], "fleet-2 is over its budget") || !strings.HasPrefix(p[1], "fleet-3 is over its budget") {
		t.Errorf("over budget: %q", p)
	}
}

func TestFleetCapacityHoldsOneAndAHalfTimesTheOrganizations(t *testing.T) {
	cases := map[string]struct {
		n    int
		want int32
	}{"500": {500, 2500}, "50": {50, 250}, "rounds up": {7, 35}}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := fleetCapacity(tc.n, 10)
			if got != tc.want {
				t.Errorf("fleetCapacity(%d, 10) = %d, want %d", tc.n, got, tc.want)
			}
			if int(got)*fleetClusters < tc.n*10 || int(got) >= tc.n*10 {
				t.Errorf("capacity %d each: the fleet must hold all, no cluster all", got)
			}
		})
	}
}

func TestQuickRunsTheFleetAtTheNOfAnNScenario(t *testing.T) {
	o, err := parseFlags([]string{"--quick"})
	if err != nil {
		t.Fatal(err)
	}
	if o.fleetN != 50 || fleetScenario(o).Name != "fleet-n50-c4" {
		t.Errorf("--quick runs the fleet at N=%d as %s, want 50 (an N scenario's)", o.fleetN, fleetScenario(o).Name)
	}
	if o, err := parseFlags(nil); err != nil || o.fleetN != 500 {
		t.Errorf("the default fleet N is %d (%v), want 500", o.fleetN, err)
	}
	if _, err := parseFlags([]string{"--fleet-n", "-1"}); err == nil {
		t.Error("--fleet-n -1 was accepted")
	}
}

func TestMarkdownSetsTheFleetBesideOneClusterAndNamesItsFailures(t *testing.T) {
	f := &FleetResult{N: 50, Concurrency: 4, CapacityPerCluster: 250, PoolMaxConnections: 10, SingleFrom: "n50-c4",
		Single:     FleetSide{Create: Phase{N: 50, Completed: 50, Seconds: 20, OrgsPerSecond: 2.5}, Placement: Quantiles{Count: 100, MeanMs: 3, P50Ms: 2, P95Ms: 8}},
		Fleet:      FleetSide{Create: Phase{N: 50, Completed: 50, Seconds: 16, OrgsPerSecond: 3.1}, Placement: Quantiles{Count: 100, MeanMs: 4, P50Ms: 3, P95Ms: 9}},
		ReadyRatio: 1.24, SpreadPoints: 1.5,
		Clusters: []ClusterUse{{Name: "fleet-1", Capacity: 250, Budgeted: 170, UsePercent: 68, Organizations: 17, Placed: 17, Databases: 17}},
	}
	r := &Results{Machine: Machine{Cores: 2}, Settings: Settings{Concurrency: 4}, Fleet: f}
	md := markdown(r)
	for _, want := range []string{
		"## Fleet: N=50 on 3 DatabaseClusters against one",
		"the orgforge side of n50-c4 (round 1)",
		"| one cluster (default) | 20.0 | 2.5 |",
		"| fleet, 3 clusters | 16.0 | 3.1 |",
		"| 100 | 4.00 / 3.00 / 9.00 |",
		"| fleet / one | | **1.24** |",
		"| fleet-1 | 250 | 170 | 68.0 | 17 | 17 | 17 |",
		"**1.50 percentage points**",
		"[fleet latency CDF](fleet-latency-cdf.png)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("results.md lacks %q", want)
		}
	}
	if strings.Contains(md, "failed") {
		t.Error("results.md says a fleet without errors failed")
	}
	f.Errors = []string{"fleet-2 is over its budget"}
	if md := markdown(r); !strings.Contains(md, "**The fleet scenario failed:**\n\n- fleet-2 is over its budget") {
		t.Error("results.md does not name the fleet's failure")
	}
	if md := markdown(&Results{Settings: Settings{Concurrency: 4}}); strings.Contains(md, "Fleet") || strings.Contains(md, "fleet") {
		t.Error("results.md speaks of a fleet that did not run")
	}
}

// ref points at a copy of v, for the metrics' protobuf fields.
func ref[T any](v T) *T { return &v }

func TestPlotsOfARunOfTheFleetAloneIncludeItsLatencyCDF(t *testing.T) {
	o, err := parseFlags([]string{"--n", "", "--sweep", "", "--fleet-n", "20"})
	if err != nil {
		t.Fatal(err)
	}
	if got := plan(o); len(got) != 0 {
		t.Fatalf("--n '' --sweep '' plans %d scenarios besides the fleet", len(got))
	}
	side := FleetSide{Create: Phase{N: 3, Completed: 3, LatenciesMs: []int64{100, 200, 300}}}
	r := &Results{Settings: Settings{Concurrency: 4, FleetN: 20}, Fleet: &FleetResult{N: 20, Concurrency: 4, Single: side, Fleet: side}}
	r.Targets = evaluateTargets(r)
	dir := t.TempDir()
	if err := writePlots(dir, r); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "fleet-latency-cdf.png")); err != nil || fi.Size() == 0 {
		t.Errorf("no fleet latency plot: %v", err)
	}
}

func TestBucketsOfAScrapeCountTheInfBucketOnce(t *testing.T) {
	text := `# TYPE orgforge_reconcile_step_duration_seconds histogram
orgforge_reconcile_step_duration_seconds_bucket{step="placement",le="0.001"} 2
orgforge_reconcile_step_duration_seconds_bucket{step="placement",le="0.002"} 3
orgforge_reconcile_step_duration_seconds_bucket{step="placement",le="+Inf"} 4
orgforge_reconcile_step_duration_seconds_sum{step="placement"} 1.004
orgforge_reconcile_step_duration_seconds_count{step="placement"} 4
`
	fams, err := parseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	got := bucketsOf(fams, "orgforge_reconcile_step_duration_seconds", map[string]string{"step": "placement"})
	want := []bucket{{0.001, 2}, {0.002, 3}, {math.Inf(1), 4}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(bucket{})); diff != "" {
		t.Errorf("buckets (-want +got):\n%s", diff)
	}
	if q := operatorMetrics(fams).Placement; q.P50Ms != 1 || q.Count != 4 {
		t.Errorf("placement %+v, want a median of 1 ms over 4", q)
	}
}
