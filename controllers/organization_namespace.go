package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
)

// organizationsForNamespace maps a namespace that is gone to the
// Organizations whose Secrets belong in it. One applied again under the
// name of one just deleted finds the old namespace terminating and fails;
// it is retried the moment that namespace is gone, not whenever the
// backoff, by then up to a minute, next allows.
func (r *OrganizationReconciler) organizationsForNamespace(ctx context.Context, ns client.Object) []reconcile.Request {
	return r.organizationsWhere(ctx, "a deleted namespace", func(o *tenancyv1alpha1.Organization) bool {
		return newScope(o).namespace == ns.GetName()
	})
}

// organizationsWhere lists the Organizations, not being deleted, that
// match, from the cache; why names the event in the log of a failure.
func (r *OrganizationReconciler) organizationsWhere(ctx context.Context, why string, match func(*tenancyv1alpha1.Organization) bool) []reconcile.Request {
	var orgs tenancyv1alpha1.OrganizationList
	if err := r.List(ctx, &orgs); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing Organizations for "+why)
		return nil
	}
	var reqs []reconcile.Request
	for i := range orgs.Items {
		o := &orgs.Items[i]
		if o.DeletionTimestamp.IsZero() && match(o) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(o)})
		}
	}
	return reqs
}

// ensureNamespace creates the Secrets' namespace when missing and labels it
// as ours; a namespace someone else made is used as it is.
func (r *OrganizationReconciler) ensureNamespace(ctx context.Context, s *scope) error {
	ns, err := r.getNamespace(ctx, s.namespace)
	switch {
	case err != nil:
		return err
	case ns != nil && !ns.DeletionTimestamp.IsZero():
		return fmt.Errorf("namespace %s is being deleted", s.namespace)
	case ns != nil:
		return nil
	}
	err = r.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: s.namespace, Labels: s.labels()}})
	switch {
	case apierrors.IsAlreadyExists(err):
		return nil
	case err != nil:
		return fmt.Errorf("creating namespace %s: %w", s.namespace, err)
	}
	s.freshNamespace = true
	s.nsNotes.add("created namespace %s", s.namespace)
	return nil
}

// getNamespace returns the namespace's metadata, or nil when there is
// none. The reconciler reads only its labels and deletion timestamp, so the
// cache keeps namespaces as metadata (SetupWithManager watches them so);
// reading a whole Namespace here would add a second, full cache of them.
func (r *OrganizationReconciler) getNamespace(ctx context.Context, name string) (*metav1.PartialObjectMetadata, error) {
	ns := &metav1.PartialObjectMetadata{}
	ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	err := r.Get(ctx, types.NamespacedName{Name: name}, ns)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading namespace %s: %w", name, err)
	}
	return ns, nil
}

// ownsNamespace reports whether the operator created the namespace for this
// organization, and so may delete it.
func ownsNamespace(ns metav1.Object, org string) bool {
	return ns.GetLabels()[LabelManagedBy] == ManagedByValue && ns.GetLabels()[LabelOrganization] == org
}
