package controllers

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/aurora"
)

func TestRecordAdoptionAddsToWhatAnEarlierReconcileRecorded(t *testing.T) {
	earlier := metav1.Unix(1000, 0)
	cases := map[string]struct {
		before  *tenancyv1alpha1.AdoptionStatus
		adopted map[string][]string
		want    *tenancyv1alpha1.AdoptionStatus
		events  []string
	}{
		"nothing adopted": {},
		"a first adoption": {
			adopted: map[string][]string{"u1": {"role org_acme", "database org_acme"}},
			want:    &tenancyv1alpha1.AdoptionStatus{FromUID: "u1", Resources: []string{"database org_acme", "role org_acme"}},
			events:  []string{"Normal Adopted: Adopted database org_acme, role org_acme from Organization acme (uid u1)"},
		},
		// A crash after the roles were re-marked: the next reconcile adds
		// the Secret, and keeps the time of the first.
		"the rest of an interrupted adoption": {
			before:  &tenancyv1alpha1.AdoptionStatus{FromUID: "u1", Resources: []string{"role org_acme"}, Time: earlier},
			adopted: map[string][]string{"u1": {"Secret org-acme/acme-database", "role org_acme"}},
			want: &tenancyv1alpha1.AdoptionStatus{FromUID: "u1", Resources: []string{"role org_acme", "Secret org-acme/acme-database"},
				Time: earlier},
			events: []string{"Normal Adopted: Adopted Secret org-acme/acme-database, role org_acme from Organization acme (uid u1)"},
		},
		"an adoption from another UID replaces the record": {
			before:  &tenancyv1alpha1.AdoptionStatus{FromUID: "u1", Resources: []string{"role org_acme"}, Time: earlier},
			adopted: map[string][]string{"u2": {"prefix s3://b/orgs/acme/"}},
			want:    &tenancyv1alpha1.AdoptionStatus{FromUID: "u2", Resources: []string{"prefix s3://b/orgs/acme/"}},
			events:  []string{"Normal Adopted: Adopted prefix s3://b/orgs/acme/ from Organization acme (uid u2)"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			org := &tenancyv1alpha1.Organization{}
			org.Name, org.UID = "acme", "u9"
			org.Status.Adoption = tc.before.DeepCopy()
			s := newScope(org)
			for uid, resources := range tc.adopted {
				s.adopted.add(uid, resources...)
			}
			log := &eventLog{}
			(&OrganizationReconciler{Recorder: log}).recordAdoption(s)
			got := org.Status.Adoption
			if got != nil && tc.want != nil && tc.want.Time.IsZero() {
				if got.Time.IsZero() {
					t.Error("a new adoption record has no time")
				}
				got.Time = metav1.Time{}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("status.adoption (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.events, log.events); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOnlyTheOrganizationsOwnNamesAreAdopted(t *testing.T) {
	org := &tenancyv1alpha1.Organization{}
	org.Name = "acme"
	s := newScope(org)
	cases := map[string]struct {
		object aurora.Marked
		want   bool
	}{
		"its database":             {aurora.Marked{Kind: "database", Name: "org_acme"}, true},
		"its owner role":           {aurora.Marked{Kind: "role", Name: "org_acme"}, true},
		"its first login role":     {aurora.Marked{Kind: "role", Name: "org_acme$1"}, true},
		"its second login role":    {aurora.Marked{Kind: "role", Name: "org_acme$2"}, true},
		"org acme-1's owner role":  {aurora.Marked{Kind: "role", Name: "org_acme_1"}, false},
		"a tenant's own database":  {aurora.Marked{Kind: "database", Name: "org_other"}, false},
		"a database of its role's": {aurora.Marked{Kind: "database", Name: "org_acme_1"}, false},
		"a role of a longer name":  {aurora.Marked{Kind: "role", Name: "org_acmecorp"}, false},
		"a role of another tenant": {aurora.Marked{Kind: "role", Name: "org_other"}, false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := s.namedForAdoption(tc.object); got != tc.want {
				t.Errorf("namedForAdoption(%s) = %v, want %v", tc.object, got, tc.want)
			}
		})
	}
}
