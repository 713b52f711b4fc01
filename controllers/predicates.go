package controllers

import (
	"maps"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

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

// deletionPredicate lets through the update that marks an object for
// deletion, whatever else changed.
func deletionPredicate() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			return e.ObjectNew.GetDeletionTimestamp() != nil && e.ObjectOld.GetDeletionTimestamp() == nil
		},
		CreateFunc:  func(event.CreateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
}

// secretTampered lets through what someone else did to a Secret the
// operator owns: a delete, or a change of its data. The operator's own
// create would otherwise queue a second, no-op reconcile per Organization.
func secretTampered() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc: func(event.CreateEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			oldSecret, ok1 := e.ObjectOld.(*corev1.Secret)
			newSecret, ok2 := e.ObjectNew.(*corev1.Secret)
			return !ok1 || !ok2 || !secretDataEqual(oldSecret.Data, newSecret.Data)
		},
		DeleteFunc:  func(event.DeleteEvent) bool { return true },
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
}

// clusterChangedForPlacement lets through the changes of a DatabaseCluster
// that may let a waiting organization go on: its spec (capacity, cordon),
// its labels, its readiness, the budget given back or taken, its deletion.
// A health check that only moves lastHealthCheck does not requeue every
// waiting organization.
func clusterChangedForPlacement() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			was, ok1 := e.ObjectOld.(*tenancyv1alpha1.DatabaseCluster)
			now, ok2 := e.ObjectNew.(*tenancyv1alpha1.DatabaseCluster)
			if !ok1 || !ok2 {
				return true
			}
			ready := func(c *tenancyv1alpha1.DatabaseCluster) metav1.ConditionStatus {
				if cond := meta.FindStatusCondition(c.Status.Conditions, tenancyv1alpha1.ConditionReady); cond != nil {
					return cond.Status
				}
				return ""
			}
			return was.Generation != now.Generation || !maps.Equal(was.Labels, now.Labels) ||
				ready(was) != ready(now) || was.Status.Connections != now.Status.Connections ||
				was.Status.Organizations != now.Status.Organizations ||
				(was.DeletionTimestamp == nil) != (now.DeletionTimestamp == nil)
		},
	}
}
