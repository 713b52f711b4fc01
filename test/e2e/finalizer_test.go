package e2e_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/testutil"
)

const otherFinalizer = "test.orgforge.io/other"

// finalizerRace plays another controller working on the same Organization
// between the operator's read and its finalizer patch: it adds its own
// finalizer while the operator adds one, and removes it, its own clean-up
// done, while the operator removes its own.
type finalizerRace struct{ client.Client }

func (c finalizerRace) Patch(ctx context.Context, obj client.Object, p client.Patch, opts ...client.PatchOption) error {
	if org, ok := obj.(*tenancyv1alpha1.Organization); ok {
		live := &tenancyv1alpha1.Organization{}
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(org), live); err != nil {
			return err
		}
		changed := false
		if org.DeletionTimestamp.IsZero() {
			changed = controllerutil.AddFinalizer(live, otherFinalizer)
		} else {
			changed = controllerutil.RemoveFinalizer(live, otherFinalizer)
		}
		if changed {
			if err := k8s.Update(ctx, live); err != nil {
				return err
			}
		}
	}
	return c.Client.Patch(ctx, obj, p, opts...)
}

func TestAnotherControllersFinalizerSurvivesTheOperatorsFinalizerPatches(t *testing.T) {
	startOperatorWith(t, nil, func(c client.Client) client.Client { return finalizerRace{c} })
	ctx := context.Background()
	o := applyReady(t, testutil.NewOrg("xray"))
	if !slices.Contains(o.Finalizers, otherFinalizer) || !slices.Contains(o.Finalizers, tenancyv1alpha1.FinalizerName) {
		t.Errorf("finalizers after the add = %v, want both %s and %s", o.Finalizers, otherFinalizer, tenancyv1alpha1.FinalizerName)
	}

	// The other controller's finalizer goes while the operator removes its
	// own: the operator's patch must not put it back.
	if err := k8s.Delete(ctx, o); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, "xray to be gone", func() (bool, string) {
		err := k8s.Get(ctx, client.ObjectKey{Name: "xray"}, o)
		return client.IgnoreNotFound(err) == nil && err != nil, fmt.Sprintf("finalizers %v, err %v", o.Finalizers, err)
	})
}
