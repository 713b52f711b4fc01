package controllers

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/aurora"
	"github.com/orgforge/orgforge/internal/placement"
)

func TestInUseNamesAtMostTenOrganizations(t *testing.T) {
	names := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("org-%02d", i)
		}
		return out
	}
	cases := map[string]struct {
		orgs []string
		want string
	}{
		"one": {names(1), "Held by 1 organization: org-00; the DatabaseCluster is deleted once they are gone"},
		"ten": {names(10), "Held by 10 organizations: org-00, org-01, org-02, org-03, org-04, org-05, org-06, org-07, org-08, org-09; the DatabaseCluster is deleted once they are gone"},
		"eleven": {names(11), "Held by 11 organizations: org-00, org-01, org-02, org-03, org-04, org-05, org-06, org-07, org-08, org-09, " +
			"and 1 more; the DatabaseCluster is deleted once they are gone"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			rep := inUse(tc.orgs, placement.ClusterUsage{})
			if rep.message != tc.want || rep.reason != tenancyv1alpha1.ReasonInUse || rep.ready {
				t.Errorf("inUse = %+v; want message %q", rep, tc.want)
			}
		})
	}
	// However many organizations, and however long their names, the
	// message stays bounded.
	long := make([]string, 5000)
	for i := range long {
		long[i] = fmt.Sprintf("%0253d", i)
	}
	msg := inUse(long, placement.ClusterUsage{}).message
	if strings.Contains(msg, long[heldNamesLimit]) || len(msg) > heldNamesLimit*260+200 {
		t.Errorf("a message for %d organizations is %d bytes and names the 11th: %t", len(long), len(msg), strings.Contains(msg, long[heldNamesLimit]))
	}
	if !strings.Contains(msg, "and 4990 more") {
		t.Errorf("message %q does not say how many more", msg[len(msg)-80:])
	}
}

// clusterSummary is what the status tests compare.
type clusterSummary struct {
	Conditions         map[string]string
	ObservedGeneration int64
	Kstatus            kstatus.Status
	Status             tenancyv1alpha1.DatabaseClusterStatus
}

func summariseCluster(t *testing.T, dbc *tenancyv1alpha1.DatabaseCluster) clusterSummary {
	t.Helper()
	s := clusterSummary{
		Conditions:         conditionsAt(t, dbc.Status.Conditions, dbc.Generation),
		ObservedGeneration: dbc.Status.ObservedGeneration,
		Kstatus:            kstatusOf(t, dbc),
		Status:             dbc.Status,
	}
	s.Status.Conditions = nil
	s.Status.ObservedGeneration = 0
	return s
}

// conditionsAt is each condition as "Status Reason: Message", each checked
// to describe generation gen.
func conditionsAt(t *testing.T, conds []metav1.Condition, gen int64) map[string]string {
	t.Helper()
	out := make(map[string]string, len(conds))
	for _, c := range conds {
		out[c.Type] = fmt.Sprintf("%s %s: %s", c.Status, c.Reason, c.Message)
		if c.ObservedGeneration != gen {
			t.Errorf("condition %s describes generation %d, the object is at %d", c.Type, c.ObservedGeneration, gen)
		}
	}
	return out
}

// kstatusOf is what kstatus, as kubectl wait and Flux use it, makes of obj.
func kstatusOf(t *testing.T, obj runtime.Object) kstatus.Status {
	t.Helper()
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err == nil {
		var res *kstatus.Result
		if res, err = kstatus.Compute(&unstructured.Unstructured{Object: u}); err == nil {
			return res.Status
		}
	}
	t.Fatal(err)
	return ""
}

// notReady is the conditions of a cluster that is not Ready, for one cause,
// with progress (Reconciling or Stalled) True for it.
func notReady(progress, reason, message string) map[string]string {
	return map[string]string{"Ready": "False " + reason + ": " + message, progress: "True " + reason + ": " + message}
}

func TestSetClusterStatus(t *testing.T) {
	now := metav1.NewTime(time.Date(2026, 12, 1, 6, 0, 0, 0, time.UTC))
	earlier := metav1.NewTime(now.Add(-time.Hour))
	usage := placement.ClusterUsage{
		Cluster: placement.Cluster{Name: "east", Capacity: placement.Capacity{MaxConnections: 400}},
		Used:    placement.Usage{Databases: 3, Connections: 30},
	}
	check := serverCheck{endpoint: "east:5432", facts: aurora.ServerFacts{Version: "17.5", Major: 17}, inventory: aurora.Inventory{Databases: 4}}
	// was is the status of a cluster that was connected at generation 1.
	was := tenancyv1alpha1.DatabaseClusterStatus{
		ServerVersion: "16.9", Databases: 2, LastHealthCheck: &earlier, ObservedGeneration: 1,
		Conditions: []metav1.Condition{{Type: "Ready", Status: "True", Reason: "Connected", ObservedGeneration: 1}},
	}
	counted := func(s tenancyv1alpha1.DatabaseClusterStatus) tenancyv1alpha1.DatabaseClusterStatus {
		s.Organizations = 3
		s.Connections = tenancyv1alpha1.ConnectionBudget{Budgeted: 30, Capacity: 400}
		s.ConnectionBudget = "30/400"
		return s
	}
	cases := map[string]struct {
		rep  clusterReport
		want clusterSummary
	}{
		"connected": {
			rep: connected(check, usage),
			want: clusterSummary{
				Conditions:         map[string]string{"Ready": "True Connected: Connected to east:5432, PostgreSQL 17.5"},
				ObservedGeneration: 2, Kstatus: kstatus.CurrentStatus,
				Status: counted(tenancyv1alpha1.DatabaseClusterStatus{ServerVersion: "17.5", Databases: 4, LastHealthCheck: &now}),
			},
		},
		"unreachable": {
			rep: unreachable(fmt.Errorf("cluster %q: aurora: east:5432/admin: connecting: connection refused", "east"), usage),
			want: clusterSummary{
				Conditions:         notReady("Reconciling", "Unreachable", `cluster "east": aurora: east:5432/admin: connecting: connection refused`),
				ObservedGeneration: 2, Kstatus: kstatus.InProgressStatus,
				// What the last good check found stays.
				Status: counted(tenancyv1alpha1.DatabaseClusterStatus{ServerVersion: "16.9", Databases: 2, LastHealthCheck: &now}),
			},
		},
		"invalid spec": {
			rep: invalidClusterSpec(fmt.Errorf("%w: Secret ops/x was not found", errClusterSpec), usage),
			want: clusterSummary{
				Conditions:         notReady("Stalled", "InvalidSpec", "the admin connection cannot be made: Secret ops/x was not found"),
				ObservedGeneration: 2, Kstatus: kstatus.FailedStatus,
				Status: counted(tenancyv1alpha1.DatabaseClusterStatus{ServerVersion: "16.9", Databases: 2, LastHealthCheck: &earlier}),
			},
		},
		"in use": {
			rep: inUse([]string{"a", "b"}, usage),
			want: clusterSummary{
				Conditions:         notReady("Reconciling", "InUse", "Held by 2 organizations: a, b; the DatabaseCluster is deleted once they are gone"),
				ObservedGeneration: 2, Kstatus: kstatus.InProgressStatus,
				Status: counted(tenancyv1alpha1.DatabaseClusterStatus{ServerVersion: "16.9", Databases: 2, LastHealthCheck: &earlier}),
			},
		},
		"an error of the API server's": {
			rep: kubernetesError(errors.New(`secrets "x" is forbidden`), usage),
			want: clusterSummary{
				Conditions: notReady("Reconciling", "KubernetesError", `secrets "x" is forbidden`),
				// Not acted on: the generation is not observed.
				ObservedGeneration: 1, Kstatus: kstatus.InProgressStatus,
				Status: counted(tenancyv1alpha1.DatabaseClusterStatus{ServerVersion: "16.9", Databases: 2, LastHealthCheck: &earlier}),
			},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dbc := &tenancyv1alpha1.DatabaseCluster{ObjectMeta: metav1.ObjectMeta{Name: "east", Generation: 2}, Status: *was.DeepCopy()}
			// A kstatus condition of an earlier state must go.
			dbc.Status.Conditions = append(dbc.Status.Conditions, metav1.Condition{Type: "Stalled", Status: "True", Reason: "InvalidSpec", ObservedGeneration: 1})
			setClusterStatus(dbc, tc.rep, now)
			if diff := cmp.Diff(tc.want, summariseCluster(t, dbc)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestStatusWriteNeededWritesTheHealthCheckTimeOncePerInterval(t *testing.T) {
	const interval = 30 * time.Second
	at := time.Date(2026, 12, 1, 6, 0, 0, 0, time.UTC)
	status := func(checked time.Time, orgs int32) *tenancyv1alpha1.DatabaseClusterStatus {
		s := &tenancyv1alpha1.DatabaseClusterStatus{Organizations: orgs}
		if !checked.IsZero() {
			s.LastHealthCheck = new(metav1.NewTime(checked))
		}
		return s
	}
	cases := map[string]struct {
		before, after *tenancyv1alpha1.DatabaseClusterStatus
		want          bool
	}{
		"nothing changed, not checked":           {status(at, 1), status(at, 1), false},
		"first check":                            {status(time.Time{}, 1), status(at, 1), true},
		"checked again within the interval":      {status(at, 1), status(at.Add(interval-time.Second), 1), false},
		"checked again an interval later":        {status(at, 1), status(at.Add(interval), 1), true},
		"a count changed within the interval":    {status(at, 1), status(at.Add(time.Second), 2), true},
		"a count changed, without a check":       {status(at, 1), status(at, 2), true},
		"nothing recorded and nothing to record": {status(time.Time{}, 1), status(time.Time{}, 1), false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			now := at
			if tc.after.LastHealthCheck != nil {
				now = tc.after.LastHealthCheck.Time
			}
			if got := statusWriteNeeded(tc.before, tc.after, now, interval); got != tc.want {
				t.Errorf("statusWriteNeeded = %t, want %t", got, tc.want)
			}
		})
	}
}

func TestClusterCapacityIsTheSpecsOrTheServersLessItsReserve(t *testing.T) {
	facts := aurora.ServerFacts{MaxConnections: 1000, SuperuserReservedConnections: 3, ReservedConnections: 2}
	cases := map[string]struct {
		spec     tenancyv1alpha1.ClusterCapacity
		operator int32
		want     int
	}{
		"the spec's":              {tenancyv1alpha1.ClusterCapacity{MaxConnections: new(int32(250))}, 8, 250},
		"the spec's zero":         {tenancyv1alpha1.ClusterCapacity{MaxConnections: new(int32(0))}, 8, 0},
		"the server's":            {tenancyv1alpha1.ClusterCapacity{}, 8, placement.DefaultMaxConnections(1000, 3, 2, 8)},
		"the server's, default 4": {tenancyv1alpha1.ClusterCapacity{}, 0, placement.DefaultMaxConnections(1000, 3, 2, aurora.DefaultMaxConnections)},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := clusterCapacity(tc.spec, facts, tc.operator); got != tc.want {
				t.Errorf("clusterCapacity = %d, want %d", got, tc.want)
			}
		})
	}
	if got := clusterCapacity(tenancyv1alpha1.ClusterCapacity{}, facts, 8); got >= 1000-3-2-8 || got <= 0 {
		t.Errorf("the default budget %d leaves no headroom of 1000 connections", got)
	}
}
