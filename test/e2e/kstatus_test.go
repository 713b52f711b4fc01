package e2e_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/naming"
	"github.com/orgforge/orgforge/internal/testutil"
)

// kstatusOf reads the Organization from the API server, as Flux does, and
// returns what kstatus makes of it.
func kstatusOf(t *testing.T, name string) *kstatus.Result {
	t.Helper()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(tenancyv1alpha1.GroupVersion.WithKind("Organization"))
	if err := k8s.Get(context.Background(), client.ObjectKey{Name: name}, u); err != nil {
		t.Fatal(err)
	}
	return compute(t, u)
}

func compute(t *testing.T, u *unstructured.Unstructured) *kstatus.Result {
	t.Helper()
	res, err := kstatus.Compute(u)
	if err != nil {
		t.Fatalf("kstatus of %s: %v", u.GetName(), err)
	}
	return res
}

// waitKstatus waits until kstatus computes want for the live Organization.
func waitKstatus(t *testing.T, name string, want kstatus.Status) *kstatus.Result {
	t.Helper()
	var res *kstatus.Result
	testutil.Eventually(t, 60*time.Second, fmt.Sprintf("kstatus %s for %s", want, name), func() (bool, string) {
		res = kstatusOf(t, name)
		return res.Status == want, fmt.Sprintf("%s: %s", res.Status, res.Message)
	})
	return res
}

// progressConditions returns the Organization's Reconciling and Stalled
// conditions as "Type=Status Reason", the ones present.
func progressConditions(t *testing.T, name string) []string {
	t.Helper()
	o := &tenancyv1alpha1.Organization{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Name: name}, o); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, typ := range []string{tenancyv1alpha1.ConditionReconciling, tenancyv1alpha1.ConditionStalled} {
		if c := meta.FindStatusCondition(o.Status.Conditions, typ); c != nil {
			out = append(out, fmt.Sprintf("%s=%s %s", c.Type, c.Status, c.Reason))
		}
	}
	return out
}

func TestKstatusSeesAnOrganizationInProgressUntilItIsProvisioned(t *testing.T) {
	ctx := context.Background()
	// A namespace being deleted, held by a finalizer, makes the operator
	// wait: provisioning that resolves by itself once the namespace is gone.
	held := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kstatus-held", Finalizers: []string{"orgforge.io/test-hold"}}}
	if err := k8s.Create(ctx, held); err != nil {
		t.Fatal(err)
	}
	release := func() {
		ns := &corev1.Namespace{}
		if err := k8s.Get(ctx, client.ObjectKey{Name: held.Name}, ns); err != nil {
			return
		}
		// The namespace controller's part too, so the namespace goes
		// whether or not the stack runs one.
		ns.Spec.Finalizers = nil
		if err := k8s.SubResource("finalize").Update(ctx, ns); err != nil {
			t.Errorf("finalizing namespace %s: %v", held.Name, err)
		}
		ns.Finalizers = nil
		if err := k8s.Update(ctx, ns); client.IgnoreNotFound(err) != nil {
			t.Errorf("releasing namespace %s: %v", held.Name, err)
		}
	}
	t.Cleanup(release)
	if err := k8s.Delete(ctx, held); err != nil {
		t.Fatal(err)
	}

	startOperator(t, nil)
	o := testutil.NewOrg("kstatus-held", testutil.InNamespace(held.Name))
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		t.Fatal(err)
	}
	// Created as Flux applies it, unstructured, so the API server's answer
	// is kept as it came: the Organization before the operator wrote a
	// status. kstatus must see it in progress, not current.
	created := &unstructured.Unstructured{Object: obj}
	created.SetGroupVersionKind(tenancyv1alpha1.GroupVersion.WithKind("Organization"))
	if err := k8s.Create(ctx, created); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteAndWait(t, o.Name) })
	if res := compute(t, created); res.Status != kstatus.InProgressStatus {
		t.Errorf("as created: kstatus %s (%s), want InProgress", res.Status, res.Message)
	}

	waitCondition(t, o.Name, tenancyv1alpha1.ConditionReconciling, "True", tenancyv1alpha1.ReasonProvisioning, 30*time.Second)
	if res := kstatusOf(t, o.Name); res.Status != kstatus.InProgressStatus {
		t.Errorf("waiting for the namespace: kstatus %s (%s), want InProgress", res.Status, res.Message)
	}

	release()
	waitKstatus(t, o.Name, kstatus.CurrentStatus)
	if got := progressConditions(t, o.Name); len(got) != 0 {
		t.Errorf("Ready Organization still has %v", got)
	}
}

func TestKstatusSeesAnOutageInProgressNotFailed(t *testing.T) {
	startOperator(t, nil)
	restartPostgres := stopPostgres(t)
	apply(t, testutil.NewOrg("kstatus-down"))
	waitCondition(t, "kstatus-down", tenancyv1alpha1.ConditionDatabaseReady, "False", tenancyv1alpha1.ReasonDatabaseUnavailable, 30*time.Second)
	if res := kstatusOf(t, "kstatus-down"); res.Status != kstatus.InProgressStatus {
		t.Errorf("during the outage: kstatus %s (%s), want InProgress", res.Status, res.Message)
	}
	if got := progressConditions(t, "kstatus-down"); len(got) != 1 || got[0] != "Reconciling=True DatabaseUnavailable" {
		t.Errorf("during the outage: %v, want Reconciling=True DatabaseUnavailable alone", got)
	}
	restartPostgres()
	waitKstatus(t, "kstatus-down", kstatus.CurrentStatus)
}

func TestKstatusSeesAnInvalidSpecFailedUntilItIsFixed(t *testing.T) {
	startOperator(t, nil)
	ctx := context.Background()
	apply(t, testutil.NewOrg("kstatus-invalid"))
	waitKstatus(t, "kstatus-invalid", kstatus.CurrentStatus)

	// A new generation that cannot be provisioned, on a Ready Organization.
	o := &tenancyv1alpha1.Organization{}
	if err := k8s.Get(ctx, client.ObjectKey{Name: "kstatus-invalid"}, o); err != nil {
		t.Fatal(err)
	}
	o.Spec.Database.Extensions = []tenancyv1alpha1.ExtensionName{"no_such_extension"}
	if err := k8s.Update(ctx, o); err != nil {
		t.Fatal(err)
	}
	res := waitKstatus(t, "kstatus-invalid", kstatus.FailedStatus)
	if want := `DatabaseReady and StorageReady InvalidSpec: invalid request: extension "no_such_extension" is not available`; !strings.HasPrefix(res.Message, want) {
		t.Errorf("kstatus message %q does not say %q", res.Message, want)
	}
	if got := progressConditions(t, "kstatus-invalid"); len(got) != 1 || got[0] != "Stalled=True InvalidSpec" {
		t.Errorf("invalid spec: %v, want Stalled=True InvalidSpec alone", got)
	}

	if err := k8s.Get(ctx, client.ObjectKey{Name: "kstatus-invalid"}, o); err != nil {
		t.Fatal(err)
	}
	o.Spec.Database.Extensions = nil
	if err := k8s.Update(ctx, o); err != nil {
		t.Fatal(err)
	}
	waitKstatus(t, "kstatus-invalid", kstatus.CurrentStatus)
	if got := progressConditions(t, "kstatus-invalid"); len(got) != 0 {
		t.Errorf("fixed Organization still has %v", got)
	}
}

func TestKstatusSeesAConflictFailedUntilItIsResolved(t *testing.T) {
	startOperator(t, nil)
	ctx := context.Background()
	db := naming.DatabaseName("kstatus-conflict")
	su := testutil.Superuser(t, stack.Postgres, "postgres")
	if _, err := su.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = su.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)")
	})
	apply(t, testutil.NewOrg("kstatus-conflict"))
	res := waitKstatus(t, "kstatus-conflict", kstatus.FailedStatus)
	if !strings.Contains(res.Message, "DatabaseReady Conflict:") {
		t.Errorf("kstatus message %q does not give the conflict", res.Message)
	}

	// A person removes the foreign database and asks for a retry.
	if _, err := su.Exec(ctx, "DROP DATABASE "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)"); err != nil {
		t.Fatal(err)
	}
	o := &tenancyv1alpha1.Organization{}
	if err := k8s.Get(ctx, client.ObjectKey{Name: "kstatus-conflict"}, o); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(o.DeepCopy())
	o.Annotations = map[string]string{"orgforge.io/retry": "1"}
	if err := k8s.Patch(ctx, o, patch); err != nil {
		t.Fatal(err)
	}
	waitKstatus(t, "kstatus-conflict", kstatus.CurrentStatus)
	if got := progressConditions(t, "kstatus-conflict"); len(got) != 0 {
		t.Errorf("resolved Organization still has %v", got)
	}
}
