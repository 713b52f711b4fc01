package controllers

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
)

func TestStorageIsAtRestOnlyWhenReadyForTheCurrentSpecAndPrefix(t *testing.T) {
	const prefix = "orgs/acme/"
	ready := func(status metav1.ConditionStatus, gen int64) metav1.Condition {
		return metav1.Condition{Type: tenancyv1alpha1.ConditionReady, Status: status, ObservedGeneration: gen, Reason: "R"}
	}
	cases := map[string]struct {
		generation, observed int64
		conditions           []metav1.Condition
		statusPrefix         string
		want                 bool
	}{
		"Ready for its spec":               {generation: 2, observed: 2, conditions: []metav1.Condition{ready(metav1.ConditionTrue, 2)}, statusPrefix: prefix, want: true},
		"never Ready":                      {generation: 1, observed: 0, statusPrefix: ""},
		"not Ready":                        {generation: 2, observed: 2, conditions: []metav1.Condition{ready(metav1.ConditionFalse, 2)}, statusPrefix: prefix},
		"Ready for an older spec":          {generation: 3, observed: 2, conditions: []metav1.Condition{ready(metav1.ConditionTrue, 2)}, statusPrefix: prefix},
		"Ready under another prefix":       {generation: 2, observed: 2, conditions: []metav1.Condition{ready(metav1.ConditionTrue, 2)}, statusPrefix: "orgs/old/"},
		"status of the spec, Ready before": {generation: 3, observed: 3, conditions: []metav1.Condition{ready(metav1.ConditionTrue, 2)}, statusPrefix: prefix},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			org := &tenancyv1alpha1.Organization{ObjectMeta: metav1.ObjectMeta{Name: "acme", Generation: tc.generation}}
			org.Status.ObservedGeneration = tc.observed
			org.Status.Conditions = tc.conditions
			org.Status.Storage.Prefix = tc.statusPrefix
			s := newScope(org)
			s.prefix = prefix
			if got := s.storageAtRest(); got != tc.want {
				t.Errorf("storageAtRest() = %v, want %v", got, tc.want)
			}
		})
	}
}
