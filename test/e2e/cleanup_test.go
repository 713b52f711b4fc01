package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/controllers"
	"github.com/orgforge/orgforge/internal/aurora"
	"github.com/orgforge/orgforge/internal/storage"
	"github.com/orgforge/orgforge/internal/testutil"
)

// objectKeys lists the keys under prefix, as the bucket's owner sees them.
func objectKeys(t *testing.T, prefix string) []string {
	t.Helper()
	out, err := stack.S3.RootClient().ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{
		Bucket: aws.String(stack.S3.Bucket), Prefix: aws.String(prefix)})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	return keys
}

// dropRetained removes what a Retain deletion left of org when the test ends.
func dropRetained(t *testing.T, org *tenancyv1alpha1.Organization, prefix string) {
	t.Cleanup(func() {
		ctx := context.Background()
		m := aurora.Marker{Org: org.Name, UID: string(org.UID)}
		_, _ = admin.DropDatabase(ctx, "org_"+org.Name, m)
		_, _ = admin.DropRole(ctx, "org_"+org.Name, m)
		_, _ = reg.Storage.DeletePrefix(ctx, prefix)
	})
}

func TestDeletingAnOrganizationWhoseSpecNoLongerValidatesStillRevokesItsAccess(t *testing.T) {
	ctx := context.Background()
	allow := func(s *controllers.Settings) { s.AllowSystemNamespaces = true }
	first := startOperatorSettings(t, nil, nil, allow)
	apply(t, testutil.NewOrg("sierra", func(o *tenancyv1alpha1.Organization) {
		o.Spec.Namespace = "kube-public"
		o.Spec.DeletionPolicy = tenancyv1alpha1.DeletionPolicyRetain
	}))
	o := waitReady(t, "sierra")
	dropRetained(t, o, "orgs/sierra/")
	t.Cleanup(func() {
		for _, n := range []string{"sierra-database", "sierra-storage"} {
			_ = k8s.Delete(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-public", Name: n}})
		}
	})
	own := storageClient(t, o)
	waitKeyWorks(t, func() error { return testutil.PutObject(ctx, own, stack.S3.Bucket, "orgs/sierra/kept.txt", "k") })

	// The operator restarts without --allow-system-namespaces: the spec no
	// longer validates, but what it provisioned must still be cleaned up.
	first.stop()
	startOperator(t, nil)
	deleteAndWait(t, "sierra")

	if keys, err := reg.Storage.ListAccessKeys(ctx, reg.Storage.UserName("sierra")); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("IAM user of the deleted Organization remains (keys %v, err %v)", keys, err)
	}
	testutil.Eventually(t, 20*time.Second, "the tenant's key to stop working", func() (bool, string) {
		_, err := testutil.GetObject(ctx, own, stack.S3.Bucket, "orgs/sierra/kept.txt")
		return err != nil, fmt.Sprint(err)
	})
	kept := &corev1.Secret{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: "kube-public", Name: "sierra-database"}, kept); err != nil {
		t.Errorf("the retained role's Secret is gone: %v", err)
	} else if len(kept.OwnerReferences) != 0 {
		t.Errorf("the retained role's Secret is still owned by the Organization: %v", kept.OwnerReferences)
	}
}

func TestDeletionPurgesTheRecordedPrefixAndNeverAnUnmarkedOne(t *testing.T) {
	ctx := context.Background()
	first := startOperator(t, nil)
	o := applyReady(t, testutil.NewOrg("tango"))
	if o.Status.Storage.Prefix != "orgs/tango/" {
		t.Fatalf("status.storage.prefix = %q", o.Status.Storage.Prefix)
	}
	own := storageClient(t, o)
	waitKeyWorks(t, func() error { return testutil.PutObject(ctx, own, stack.S3.Bucket, "orgs/tango/data.txt", "d") })
	// Someone else's objects, with no marker, where the new template points.
	if err := testutil.PutObject(ctx, stack.S3.RootClient(), stack.S3.Bucket, "tenants/tango/foreign.txt", "f"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = reg.Storage.DeletePrefix(context.Background(), "tenants/tango/") })

	// Deleted while the operator is down; it comes back with a new template.
	first.stop()
	if err := k8s.Delete(ctx, o); err != nil {
		t.Fatal(err)
	}
	startOperatorSettings(t, nil, nil, func(s *controllers.Settings) { s.PrefixTemplate = "tenants/{name}/" })
	deleteAndWait(t, "tango")

	if keys := objectKeys(t, "orgs/tango/"); len(keys) != 0 {
		t.Errorf("the recorded prefix was left behind: %v", keys)
	}
	if body, err := testutil.GetObject(ctx, stack.S3.RootClient(), stack.S3.Bucket, "tenants/tango/foreign.txt"); err != nil || body != "f" {
		t.Errorf("an unmarked prefix was purged: %q, %v", body, err)
	}
}

func TestDeletingTheOrganizationThatCreatedASharedNamespaceKeepsItForTheOther(t *testing.T) {
	startOperator(t, nil)
	ctx := context.Background()
	applyReady(t, testutil.NewOrg("uniform"))
	other := applyReady(t, testutil.NewOrg("whiskey", testutil.InNamespace("org-uniform")))
	t.Cleanup(func() {
		_ = k8s.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "org-uniform"}})
	})

	deleteAndWait(t, "uniform")
	ns := &corev1.Namespace{}
	if err := k8s.Get(ctx, client.ObjectKey{Name: "org-uniform"}, ns); err != nil || !ns.DeletionTimestamp.IsZero() {
		t.Fatalf("the namespace another Organization uses was deleted (err %v, deletionTimestamp %v)", err, ns.DeletionTimestamp)
	}
	if err := login(ctx, string(secret(t, other, "whiskey-database").Data["uri"])); err != nil {
		t.Errorf("the other Organization's login does not work: %v", err)
	}
	waitReady(t, "whiskey")
}

func TestTwoOrganizationsSharingANamespaceDeletedTogetherLeaveNoNamespace(t *testing.T) {
	startOperator(t, nil)
	ctx := context.Background()
	applyReady(t, testutil.NewOrg("xray"))
	applyReady(t, testutil.NewOrg("yankee", testutil.InNamespace("org-xray")))

	for _, name := range []string{"xray", "yankee"} {
		if err := k8s.Delete(ctx, &tenancyv1alpha1.Organization{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 60*time.Second, "both Organizations and their shared namespace to be gone", func() (bool, string) {
		var left []string
		for _, name := range []string{"xray", "yankee"} {
			if err := k8s.Get(ctx, client.ObjectKey{Name: name}, &tenancyv1alpha1.Organization{}); !apierrors.IsNotFound(err) {
				left = append(left, "Organization "+name)
			}
		}
		if err := k8s.Get(ctx, client.ObjectKey{Name: "org-xray"}, &corev1.Namespace{}); !apierrors.IsNotFound(err) {
			left = append(left, "namespace org-xray")
		}
		return len(left) == 0, fmt.Sprint(left)
	})
}
