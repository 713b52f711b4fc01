package controllers

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
)

func withCondition(o *tenancyv1alpha1.Organization, status metav1.ConditionStatus, reason string) *tenancyv1alpha1.Organization {
	o = o.DeepCopy()
	for _, t := range []string{tenancyv1alpha1.ConditionDatabaseReady, tenancyv1alpha1.ConditionStorageReady} {
		meta.SetStatusCondition(&o.Status.Conditions, metav1.Condition{Type: t, Status: status, Reason: reason, Message: "spec.namespace is a system namespace"})
	}
	return o
}

// A reconcile that reads the Organization from a cache that has not yet
// seen the status the previous one wrote sees the failure as new again.
func TestAFailureSeenAgainThroughAStaleCacheIsWarnedOnce(t *testing.T) {
	stale := &tenancyv1alpha1.Organization{}
	stale.UID = "u-1"
	failed := withCondition(stale, metav1.ConditionFalse, tenancyv1alpha1.ReasonInvalidSpec)
	log := &eventLog{}
	r := &OrganizationReconciler{Recorder: log}

	r.failureEvents(stale, failed)
	r.failureEvents(stale, failed)
	if len(log.events) != 1 {
		t.Fatalf("events after the same failure read twice from a stale cache = %q, want one Warning", log.events)
	}

	// Once the conditions recover, the same failure is news again.
	ready := withCondition(stale, metav1.ConditionTrue, tenancyv1alpha1.ReasonProvisioned)
	r.failureEvents(failed, ready)
	r.failureEvents(ready, failed)
	if len(log.events) != 2 {
		t.Errorf("events after the failure came back = %q, want a second Warning", log.events)
	}

	// Another Organization failing the same way is warned of too.
	other := stale.DeepCopy()
	other.UID = "u-2"
	r.failureEvents(other, withCondition(other, metav1.ConditionFalse, tenancyv1alpha1.ReasonInvalidSpec))
	if len(log.events) != 3 {
		t.Errorf("events = %q, want a Warning for the second Organization", log.events)
	}
}
