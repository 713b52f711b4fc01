package e2e_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/controllers"
	"github.com/orgforge/orgforge/internal/aurora"
	"github.com/orgforge/orgforge/internal/naming"
	"github.com/orgforge/orgforge/internal/testutil"
)

// These tests need the stack's kube-controller-manager: without it a
// deleted namespace never finishes terminating and nothing with an owner
// reference is ever collected, so each of them waits until it times out.

// holdFinalizer keeps a Secret, and so its namespace, from going until the
// test lets it.
const holdFinalizer = "test.orgforge.io/hold"

func TestOrganizationAppliedAgainWhileItsNamespaceTerminatesBecomesReady(t *testing.T) {
	// A failed reconcile is retried only after an hour: within the test,
	// only the namespace's end can bring the Organization back.
	startOperatorOpts(t, operatorOptions{
		rateLimiter: workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](time.Hour, time.Hour),
	})
	ctx := context.Background()
	const name = "recreate"
	ns := naming.Namespace(name)
	applyReady(t, testutil.NewOrg(name))

	// A Secret of someone else's, with a finalizer, holds the namespace in
	// Terminating until the Organization has been seen to wait for it.
	hold := &corev1.Secret{}
	hold.Namespace, hold.Name, hold.Finalizers = ns, "hold", []string{holdFinalizer}
	if err := k8s.Create(ctx, hold); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { release(t, hold) })
	deleteAndWait(t, name)
	terminating(t, ns)

	apply(t, testutil.NewOrg(name))
	var waiting string
	testutil.Eventually(t, 30*time.Second, name+" to wait for its namespace", func() (bool, string) {
		o := &tenancyv1alpha1.Organization{}
		if err := k8s.Get(ctx, client.ObjectKey{Name: name}, o); err != nil {
			return false, err.Error()
		}
		waiting = testutil.ConditionOf(o, tenancyv1alpha1.ConditionDatabaseReady).Message
		return meta.IsStatusConditionFalse(o.Status.Conditions, tenancyv1alpha1.ConditionReady), waiting
	})
	terminating(t, ns)
	t.Logf("While %s terminates: %s", ns, waiting)

	release(t, hold)
	o := waitReady(t, name)
	got := &corev1.Namespace{}
	if err := k8s.Get(ctx, client.ObjectKey{Name: ns}, got); err != nil {
		t.Fatal(err)
	}
	if !got.DeletionTimestamp.IsZero() || got.Labels[controllers.LabelOrganization] != name {
		t.Errorf("namespace %s: deleting %v, labels %v; want a live one made for %s", ns, got.DeletionTimestamp, got.Labels, name)
	}
	dbSecret := secret(t, o, naming.DatabaseSecretName(name))
	if owners := dbSecret.OwnerReferences; len(owners) != 1 || owners[0].UID != o.UID {
		t.Errorf("database Secret owners %v, want the new Organization %s", owners, o.UID)
	}
	if err := login(ctx, string(dbSecret.Data["uri"])); err != nil {
		t.Errorf("the new Organization's login does not work: %v", err)
	}
}

func TestRetainDeletionKeepsTheDatabaseSecretThroughGarbageCollection(t *testing.T) {
	startOperator(t, nil)
	ctx := context.Background()
	const name = "retain-gc"
	o := applyReady(t, testutil.NewOrg(name, testutil.WithDeletionPolicy(tenancyv1alpha1.DeletionPolicyRetain)))
	dbSecret := secret(t, o, naming.DatabaseSecretName(name))
	stSecret := secret(t, o, naming.StorageSecretName(name))
	for _, s := range []*corev1.Secret{dbSecret, stSecret} {
		if owners := s.OwnerReferences; len(owners) != 1 || owners[0].UID != o.UID {
			t.Fatalf("Secret %s owners %v, want the Organization %s", s.Name, owners, o.UID)
		}
	}
	deleteAndWait(t, name)
	t.Cleanup(func() {
		ctx := context.Background()
		marker := aurora.Marker{Org: name, UID: string(o.UID)}
		_, _ = admin.DropDatabase(ctx, naming.DatabaseName(name), marker)
		_, _ = admin.DropRole(ctx, naming.RoleName(name), marker)
		_, _ = reg.Storage.DeletePrefix(ctx, "orgs/"+name+"/")
		// Retain keeps the namespace too; the controller-manager empties it.
		retained := &corev1.Namespace{}
		retained.Name = dbSecret.Namespace
		_ = k8s.Delete(ctx, retained)
	})

	// The storage Secret keeps its owner reference: its going proves that
	// garbage collection ran over the Organization's dependents.
	testutil.Eventually(t, 60*time.Second, "the storage Secret to be collected", func() (bool, string) {
		err := k8s.Get(ctx, client.ObjectKeyFromObject(stSecret), &corev1.Secret{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	kept := &corev1.Secret{}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(dbSecret), kept); err != nil {
		t.Fatalf("the retained role's Secret is gone: %v", err)
	}
	if len(kept.OwnerReferences) != 0 {
		t.Errorf("the retained Secret still has owners %v", kept.OwnerReferences)
	}
	if err := login(ctx, string(kept.Data["uri"])); err != nil {
		t.Errorf("the retained Secret no longer logs in to the retained database: %v", err)
	}
}

func TestDeleteLeavesNothingBehindInKubernetes(t *testing.T) {
	startOperator(t, nil)
	ctx := context.Background()
	const name = "delete-all"
	ns := naming.Namespace(name)
	o := applyReady(t, testutil.NewOrg(name))
	deleteAndWait(t, name)

	testutil.Eventually(t, 60*time.Second, "namespace "+ns+" to be gone", func() (bool, string) {
		got := &corev1.Namespace{}
		err := k8s.Get(ctx, client.ObjectKey{Name: ns}, got)
		return apierrors.IsNotFound(err), fmt.Sprintf("err %v, phase %s", err, got.Status.Phase)
	})
	var secrets corev1.SecretList
	if err := k8s.List(ctx, &secrets); err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		owned := false
		for _, ref := range s.OwnerReferences {
			owned = owned || ref.UID == o.UID
		}
		if s.Labels[controllers.LabelOrganization] == name || owned {
			t.Errorf("Secret %s/%s remains (labels %v, owners %v)", s.Namespace, s.Name, s.Labels, s.OwnerReferences)
		}
	}
	var orgs tenancyv1alpha1.OrganizationList
	if err := k8s.List(ctx, &orgs); err != nil {
		t.Fatal(err)
	}
	for _, other := range orgs.Items {
		if other.Name == name {
			t.Errorf("Organization %s remains", name)
		}
	}
}

// terminating fails the test unless the namespace exists and is being
// deleted.
func terminating(t *testing.T, name string) {
	t.Helper()
	ns := &corev1.Namespace{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Name: name}, ns); err != nil {
		t.Fatalf("namespace %s: %v", name, err)
	}
	if ns.DeletionTimestamp.IsZero() {
		t.Fatalf("namespace %s is not being deleted", name)
	}
}

// release removes the hold finalizer, letting the Secret and its namespace
// go.
func release(t *testing.T, s *corev1.Secret) {
	t.Helper()
	ctx := context.Background()
	got := &corev1.Secret{}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(s), got); apierrors.IsNotFound(err) {
		return
	} else if err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(got.DeepCopy())
	got.Finalizers = nil
	if err := k8s.Patch(ctx, got, patch); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
}
