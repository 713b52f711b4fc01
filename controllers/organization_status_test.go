package controllers

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
)

// statusSummary is what the kstatus tests compare: every condition as
// "Status Reason", status.observedGeneration, and what kstatus makes of it.
type statusSummary struct {
	Conditions         map[string]string
	ObservedGeneration int64
	Kstatus            kstatus.Status
}

// summary is the statusSummary of observedGeneration observed, kstatus ks
// and conditions given as "Type=Status Reason".
func summary(observed int64, ks kstatus.Status, conds ...string) statusSummary {
	s := statusSummary{Conditions: map[string]string{}, ObservedGeneration: observed, Kstatus: ks}
	for _, c := range conds {
		t, sr, _ := strings.Cut(c, "=")
		s.Conditions[t] = sr
	}
	return s
}

func summarise(t *testing.T, org *tenancyv1alpha1.Organization) statusSummary {
	t.Helper()
	s := statusSummary{Conditions: map[string]string{}, ObservedGeneration: org.Status.ObservedGeneration}
	for _, c := range org.Status.Conditions {
		if c.ObservedGeneration != org.Generation {
			t.Errorf("condition %s describes generation %d, the Organization is at %d", c.Type, c.ObservedGeneration, org.Generation)
		}
		s.Conditions[c.Type] = fmt.Sprintf("%s %s", c.Status, c.Reason)
	}
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(org)
	if err != nil {
		t.Fatal(err)
	}
	res, err := kstatus.Compute(&unstructured.Unstructured{Object: obj})
	if err != nil {
		t.Fatal(err)
	}
	s.Kstatus = res.Status
	return s
}

// orgAt is an Organization at generation gen whose status says it was last
// done with generation observed and has the conditions given.
func orgAt(gen, observed int64, conds ...metav1.Condition) *tenancyv1alpha1.Organization {
	o := &tenancyv1alpha1.Organization{}
	o.Name, o.Generation = "acme", gen
	o.Status.ObservedGeneration = observed
	for _, c := range conds {
		c.ObservedGeneration = observed
		o.Status.Conditions = append(o.Status.Conditions, c)
	}
	return o
}

func cond(t string, s metav1.ConditionStatus, reason string) metav1.Condition {
	return metav1.Condition{Type: t, Status: s, Reason: reason, Message: reason}
}

func TestSetConditionsReportsProgressAndStallsAsKstatusReadsThem(t *testing.T) {
	var (
		ready      = cond(tenancyv1alpha1.ConditionReady, metav1.ConditionTrue, tenancyv1alpha1.ReasonProvisioned)
		stalled    = cond(tenancyv1alpha1.ConditionStalled, metav1.ConditionTrue, tenancyv1alpha1.ReasonInvalidSpec)
		recon      = cond(tenancyv1alpha1.ConditionReconciling, metav1.ConditionTrue, tenancyv1alpha1.ReasonProvisioning)
		down       = result{reason: tenancyv1alpha1.ReasonDatabaseUnavailable, message: "PostgreSQL at db:5432 is unavailable (connection refused); retrying with backoff"}
		invalid    = result{reason: tenancyv1alpha1.ReasonInvalidSpec, message: `extension "nope" is not available on the server`}
		conflict   = result{reason: tenancyv1alpha1.ReasonConflict, message: "database org_acme exists and was not created by orgforge"}
		storageOK  = provisioned
		databaseOK = provisioned
		outage     = errors.New("connection refused")
	)
	cases := map[string]struct {
		org     *tenancyv1alpha1.Organization
		outcome outcome
		err     error
		want    statusSummary
	}{
		"first reconcile waits for the namespace": {
			org:     orgAt(1, 0),
			outcome: outcome{database: result{reason: tenancyv1alpha1.ReasonProvisioning, message: "Waiting for namespace org-acme"}, storage: result{reason: tenancyv1alpha1.ReasonProvisioning, message: "Waiting for namespace org-acme"}},
			err:     errors.New("namespace org-acme is being deleted"),
			want:    summary(0, kstatus.InProgressStatus, "Ready=False Provisioning", "DatabaseReady=False Provisioning", "StorageReady=False Provisioning", "Reconciling=True Provisioning"),
		},
		"first reconcile with PostgreSQL down": {
			org:     orgAt(1, 0),
			outcome: outcome{database: down, storage: storageOK},
			err:     outage,
			want:    summary(0, kstatus.InProgressStatus, "Ready=False DatabaseUnavailable", "DatabaseReady=False DatabaseUnavailable", "StorageReady=True Provisioned", "Reconciling=True DatabaseUnavailable"),
		},
		"outage during a resync of a Ready generation": {
			org:     orgAt(3, 3, ready),
			outcome: outcome{database: down, storage: storageOK},
			err:     outage,
			want:    summary(3, kstatus.InProgressStatus, "Ready=False DatabaseUnavailable", "DatabaseReady=False DatabaseUnavailable", "StorageReady=True Provisioned", "Reconciling=True DatabaseUnavailable"),
		},
		"provisioned": {
			org:     orgAt(2, 1, recon),
			outcome: outcome{database: databaseOK, storage: storageOK},
			want:    summary(2, kstatus.CurrentStatus, "Ready=True Provisioned", "DatabaseReady=True Provisioned", "StorageReady=True Provisioned"),
		},
		"provisioned after the spec was fixed": {
			org:     orgAt(3, 2, stalled),
			outcome: outcome{database: databaseOK, storage: storageOK},
			want:    summary(3, kstatus.CurrentStatus, "Ready=True Provisioned", "DatabaseReady=True Provisioned", "StorageReady=True Provisioned"),
		},
		"invalid spec on a new generation of a Ready Organization": {
			org:     orgAt(2, 1, ready, recon),
			outcome: outcome{database: invalid, storage: invalid},
			want:    summary(2, kstatus.FailedStatus, "Ready=False InvalidSpec", "DatabaseReady=False InvalidSpec", "StorageReady=False InvalidSpec", "Stalled=True InvalidSpec"),
		},
		"a Secret edited to a password the role cannot take": {
			org:     orgAt(4, 4, ready),
			outcome: outcome{database: result{reason: tenancyv1alpha1.ReasonInvalidSecret, message: "Secret org-acme/acme-database: its password is empty"}, storage: storageOK},
			want:    summary(4, kstatus.FailedStatus, "Ready=False InvalidSecret", "DatabaseReady=False InvalidSecret", "StorageReady=True Provisioned", "Stalled=True InvalidSecret"),
		},
		"conflict while storage is down": {
			org:     orgAt(1, 0),
			outcome: outcome{database: conflict, storage: result{reason: tenancyv1alpha1.ReasonStorageUnavailable, message: "S3 or IAM is unavailable (throttled); retrying with backoff"}},
			err:     outage,
			want:    summary(1, kstatus.FailedStatus, "Ready=False NotReady", "DatabaseReady=False Conflict", "StorageReady=False StorageUnavailable", "Stalled=True Conflict"),
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s := &scope{org: tc.org, namespace: "org-acme", outcome: tc.outcome}
			setConditions(tc.org, s, tc.err)
			if diff := cmp.Diff(tc.want, summarise(t, tc.org)); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStalledAndReconcilingMessagesNameThePartAndItsCause(t *testing.T) {
	invalid := result{reason: tenancyv1alpha1.ReasonInvalidSpec, message: `extension "nope" is not available on the server`}
	down := result{reason: tenancyv1alpha1.ReasonStorageUnavailable, message: "S3 or IAM is unavailable (connection refused); retrying with backoff"}
	conflict := result{reason: tenancyv1alpha1.ReasonConflict, message: "database org_acme exists and was not created by orgforge"}
	outage := errors.New("connection refused")
	cases := map[string]struct {
		outcome   outcome
		err       error
		condition string
		want      string
	}{
		"an invalid spec of the database": {outcome{database: invalid, storage: provisioned}, nil,
			tenancyv1alpha1.ConditionStalled, `DatabaseReady InvalidSpec: extension "nope" is not available on the server`},
		"storage down": {outcome{database: provisioned, storage: down}, outage,
			tenancyv1alpha1.ConditionReconciling, "StorageReady StorageUnavailable: " + down.message},
		"one cause of both halves is said once": {outcome{database: invalid, storage: invalid}, nil,
			tenancyv1alpha1.ConditionStalled, "DatabaseReady and StorageReady InvalidSpec: " + invalid.message},
		"a conflict stalls while the other half is down": {outcome{database: conflict, storage: down}, outage,
			tenancyv1alpha1.ConditionStalled, "DatabaseReady Conflict: " + conflict.message},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			org := orgAt(1, 0)
			setConditions(org, &scope{org: org, outcome: tc.outcome}, tc.err)
			c := meta.FindStatusCondition(org.Status.Conditions, tc.condition)
			if c == nil || c.Message != tc.want {
				t.Errorf("%s = %+v, want message %q", tc.condition, c, tc.want)
			}
		})
	}
}

func TestSetDeletingConditionIsReconcilingNeverStalled(t *testing.T) {
	cases := map[string]*tenancyv1alpha1.Organization{
		"was Ready": orgAt(1, 1,
			cond(tenancyv1alpha1.ConditionReady, metav1.ConditionTrue, tenancyv1alpha1.ReasonProvisioned)),
		"was stalled on an invalid spec": orgAt(1, 1,
			cond(tenancyv1alpha1.ConditionReady, metav1.ConditionFalse, tenancyv1alpha1.ReasonInvalidSpec),
			cond(tenancyv1alpha1.ConditionStalled, metav1.ConditionTrue, tenancyv1alpha1.ReasonInvalidSpec)),
	}
	for name, org := range cases {
		t.Run(name, func(t *testing.T) {
			now := metav1.Now()
			org.DeletionTimestamp = &now
			setDeletingCondition(org, errors.New("dropping database org_acme: connection refused"))
			want := statusSummary{Conditions: map[string]string{
				"Ready": "False Deleting", "Reconciling": "True Deleting",
			}, ObservedGeneration: 1, Kstatus: kstatus.TerminatingStatus}
			if diff := cmp.Diff(want, summarise(t, org)); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadyNamesTheOneCauseOfAFailureOrElseNotReady(t *testing.T) {
	down := result{reason: tenancyv1alpha1.ReasonDatabaseUnavailable}
	throttled := result{reason: tenancyv1alpha1.ReasonStorageUnavailable}
	invalid := result{reason: tenancyv1alpha1.ReasonInvalidSpec}
	cases := map[string]struct {
		outcome     outcome
		status      metav1.ConditionStatus
		reason, msg string
	}{
		"both done": {outcome{provisioned, provisioned},
			metav1.ConditionTrue, tenancyv1alpha1.ReasonProvisioned, "Organization is provisioned"},
		"nothing ran yet": {outcome{},
			metav1.ConditionFalse, tenancyv1alpha1.ReasonNotReady, "DatabaseReady: Provisioning; StorageReady: Provisioning"},
		"one cause of both": {outcome{invalid, invalid},
			metav1.ConditionFalse, tenancyv1alpha1.ReasonInvalidSpec, "DatabaseReady: InvalidSpec; StorageReady: InvalidSpec"},
		"the database fails, storage is done": {outcome{down, provisioned},
			metav1.ConditionFalse, tenancyv1alpha1.ReasonDatabaseUnavailable, "DatabaseReady: DatabaseUnavailable"},
		"storage fails, the database is done": {outcome{provisioned, throttled},
			metav1.ConditionFalse, tenancyv1alpha1.ReasonStorageUnavailable, "StorageReady: StorageUnavailable"},
		"the database fails, storage did not run": {outcome{down, result{}},
			metav1.ConditionFalse, tenancyv1alpha1.ReasonNotReady, "DatabaseReady: DatabaseUnavailable; StorageReady: Provisioning"},
		"two different causes": {outcome{down, throttled},
			metav1.ConditionFalse, tenancyv1alpha1.ReasonNotReady, "DatabaseReady: DatabaseUnavailable; StorageReady: StorageUnavailable"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			want := metav1.Condition{Type: tenancyv1alpha1.ConditionReady, Status: tc.status, Reason: tc.reason, Message: tc.msg, ObservedGeneration: 7}
			if diff := cmp.Diff(want, readyCondition(tc.outcome, 7)); diff != "" {
				t.Errorf("Ready (-want +got):\n%s", diff)
			}
		})
	}
}
