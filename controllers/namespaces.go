package controllers

import (
	"context"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
)

// namespaceDeleted lets through only the end of a namespace: the moment it
// is gone from the API server, not the moment it starts terminating.
func namespaceDeleted() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		UpdateFunc:  func(event.UpdateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return true },
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
}

// organizationsForNamespace maps a namespace that is gone to the
// Organizations whose Secrets belong in it. One applied again under the
// name of one just deleted finds the old namespace terminating and fails;
// it is retried the moment that namespace is gone, not whenever the
// backoff, by then up to a minute, next allows.
func (r *OrganizationReconciler) organizationsForNamespace(ctx context.Context, ns client.Object) []reconcile.Request {
	var orgs tenancyv1alpha1.OrganizationList
	if err := r.List(ctx, &orgs); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing Organizations for a deleted namespace", "namespace", ns.GetName())
		return nil
	}
	var reqs []reconcile.Request
	for i := range orgs.Items {
		o := &orgs.Items[i]
		if o.DeletionTimestamp.IsZero() && newScope(o, r.Settings).namespace == ns.GetName() {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(o)})
		}
	}
	return reqs
}
