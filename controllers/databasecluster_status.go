package controllers

import (
	"fmt"
	"math"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/aurora"
	"github.com/orgforge/orgforge/internal/placement"
)

// clusterReport is what one reconcile of a DatabaseCluster found: the
// input of setClusterStatus.
type clusterReport struct {
	// ready, reason and message are the Ready condition.
	ready   bool
	reason  string
	message string
	// stalled says the cluster waits for a person: kstatus Stalled rather
	// than Reconciling.
	stalled bool
	// checked says the server was checked, well or not: lastHealthCheck.
	checked bool
	// acted says the operator acted on the spec's generation, whatever
	// came of it: observedGeneration. An error of Kubernetes' leaves it.
	acted bool
	// server is what the check found, when ready.
	server serverCheck
	// usage is the cluster in the fleet: its capacity and what is placed.
	usage placement.ClusterUsage
}

// serverCheck is what a health check of a cluster's server found.
type serverCheck struct {
	endpoint  string
	facts     aurora.ServerFacts
	inventory aurora.Inventory
}

// connected is the report of a cluster whose server answered.
func connected(check serverCheck, usage placement.ClusterUsage) clusterReport {
	return clusterReport{
		ready: true, reason: tenancyv1alpha1.ReasonConnected, checked: true, acted: true, server: check, usage: usage,
		message: fmt.Sprintf("Connected to %s, PostgreSQL %s", check.endpoint, check.facts.Version),
	}
}

// unreachable is the report of a cluster whose service could not be built
// or whose server did not answer. aurora's errors name the endpoint and
// the admin user, never the DSN.
func unreachable(err error, usage placement.ClusterUsage) clusterReport {
	return clusterReport{reason: tenancyv1alpha1.ReasonUnreachable, message: conditionMessage(err), checked: true, acted: true, usage: usage}
}

// invalidClusterSpec is the report of a cluster whose admin connection
// cannot be made from its spec and Secrets.
func invalidClusterSpec(err error, usage placement.ClusterUsage) clusterReport {
	return clusterReport{reason: tenancyv1alpha1.ReasonInvalidSpec, message: conditionMessage(err), stalled: true, acted: true, usage: usage}
}

// kubernetesError is the report of a reconcile that an error of the API
// server's stopped; it is retried with backoff.
func kubernetesError(err error, usage placement.ClusterUsage) clusterReport {
	return clusterReport{reason: tenancyv1alpha1.ReasonKubernetesError, message: conditionMessage(err), usage: usage}
}

// heldNamesLimit bounds the organizations an InUse message names.
const heldNamesLimit = 10

// inUse is the report of a cluster being deleted while orgs, by name, are
// placed on it. It names the first heldNamesLimit of them, so that the
// message stays short however many there are.
func inUse(orgs []string, usage placement.ClusterUsage) clusterReport {
	names := strings.Join(orgs[:min(len(orgs), heldNamesLimit)], ", ")
	if more := len(orgs) - heldNamesLimit; more > 0 {
		names += fmt.Sprintf(", and %d more", more)
	}
	noun := "organizations"
	if len(orgs) == 1 {
		noun = "organization"
	}
	return clusterReport{
		reason:  tenancyv1alpha1.ReasonInUse,
		message: fmt.Sprintf("Held by %d %s: %s; the DatabaseCluster is deleted once they are gone", len(orgs), noun, names),
		acted:   true,
		usage:   usage,
	}
}

// setClusterStatus writes a report into the status. The counts and budget
// come from the fleet, whatever the server's health; the server version
// and its databases only from a check that passed, the last ones found
// staying otherwise. observedGeneration is the last generation the
// operator acted on, as the API says: whether the server answered is
// Ready's to tell, and kstatus reads Reconciling before it.
func setClusterStatus(dbc *tenancyv1alpha1.DatabaseCluster, rep clusterReport, now metav1.Time) {
	st := &dbc.Status
	st.Organizations = clampInt32(rep.usage.Used.Databases)
	st.Connections = tenancyv1alpha1.ConnectionBudget{
		Budgeted: clampInt32(rep.usage.Used.Connections),
		Capacity: clampInt32(rep.usage.Cluster.Capacity.MaxConnections),
	}
	st.ConnectionBudget = fmt.Sprintf("%d/%d", st.Connections.Budgeted, st.Connections.Capacity)
	if rep.ready {
		st.ServerVersion = rep.server.facts.Version
		st.Databases = clampInt32(rep.server.inventory.Databases)
	}
	if rep.checked {
		st.LastHealthCheck = &now
	}
	ready := metav1.Condition{
		Type: tenancyv1alpha1.ConditionReady, Status: metav1.ConditionFalse,
		Reason: rep.reason, Message: rep.message, ObservedGeneration: dbc.Generation,
	}
	if rep.ready {
		ready.Status = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&st.Conditions, ready)
	setClusterProgress(dbc, ready, rep.stalled)
	if rep.acted {
		st.ObservedGeneration = dbc.Generation
	}
}

// setClusterProgress sets the kstatus conditions as an Organization's are
// set (see setProgressConditions): none while Ready is True; otherwise
// Stalled when a person must act, else Reconciling, each with Ready's
// reason and message. The one that does not apply is removed, not set
// False.
func setClusterProgress(dbc *tenancyv1alpha1.DatabaseCluster, ready metav1.Condition, stalled bool) {
	conds := &dbc.Status.Conditions
	if ready.Status == metav1.ConditionTrue {
		meta.RemoveStatusCondition(conds, tenancyv1alpha1.ConditionReconciling)
		meta.RemoveStatusCondition(conds, tenancyv1alpha1.ConditionStalled)
		return
	}
	progress, other := tenancyv1alpha1.ConditionReconciling, tenancyv1alpha1.ConditionStalled
	if stalled {
		progress, other = other, progress
	}
	ready.Type, ready.Status = progress, metav1.ConditionTrue
	meta.RemoveStatusCondition(conds, other)
	meta.SetStatusCondition(conds, ready)
}

// statusWriteNeeded decides whether a reconcile writes the status. Any
// change but lastHealthCheck's is written at once. lastHealthCheck alone is
// written when the recorded one is at least interval old (the heartbeat
// interval, the resync period): a cluster whose health and counts hold
// steady costs one write per interval, and a check or reconcile in between
// costs none. The recorded time may thus lag the last check by up to
// interval.
func statusWriteNeeded(before, after *tenancyv1alpha1.DatabaseClusterStatus, now time.Time, interval time.Duration) bool {
	unchecked := *after
	unchecked.LastHealthCheck = before.LastHealthCheck
	if !equality.Semantic.DeepEqual(*before, unchecked) {
		return true
	}
	if after.LastHealthCheck == nil || after.LastHealthCheck.Equal(before.LastHealthCheck) {
		return false
	}
	return before.LastHealthCheck == nil || now.Sub(before.LastHealthCheck.Time) >= interval
}

// clusterCapacity is the connection budget in force: the spec's, or the
// default from the server's settings and the operator's own connections
// on it.
func clusterCapacity(spec tenancyv1alpha1.ClusterCapacity, facts aurora.ServerFacts, operatorConnections int32) int {
	if spec.MaxConnections != nil {
		return int(*spec.MaxConnections)
	}
	if operatorConnections == 0 {
		operatorConnections = aurora.DefaultMaxConnections
	}
	return placement.DefaultMaxConnections(facts.MaxConnections, facts.SuperuserReservedConnections,
		facts.ReservedConnections, int(operatorConnections))
}

func clampInt32(n int) int32 {
	return int32(max(math.MinInt32, min(n, math.MaxInt32)))
}
