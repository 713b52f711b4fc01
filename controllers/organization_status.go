package controllers

import (
	"errors"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/aurora"
	"github.com/orgforge/orgforge/internal/retry"
	"github.com/orgforge/orgforge/internal/storage"
)

// result is what one half of the reconcile (database or storage) came to.
type result struct {
	done    bool
	reason  string
	message string
}

// outcome collects both halves; the zero value means nothing ran yet.
type outcome struct {
	database result
	storage  result
}

func (o outcome) succeeded() bool { return o.database.done && o.storage.done }

var provisioned = result{done: true, reason: tenancyv1alpha1.ReasonProvisioned}

// databaseResult maps an error of the database steps to a condition reason.
func databaseResult(err error, endpoint string) result {
	switch {
	case err == nil:
		r := provisioned
		r.message = "Database, role and Secret are provisioned"
		return r
	case errors.Is(err, aurora.ErrConflict), errors.Is(err, storage.ErrConflict):
		return result{reason: tenancyv1alpha1.ReasonConflict, message: conditionMessage(err)}
	case errors.Is(err, aurora.ErrInvalid), errors.Is(err, errInvalidSpec):
		return result{reason: tenancyv1alpha1.ReasonInvalidSpec, message: conditionMessage(err)}
	case errors.Is(err, errInvalidSecret):
		return result{reason: tenancyv1alpha1.ReasonInvalidSecret, message: conditionMessage(err)}
	case isKubernetesError(err):
		return result{reason: tenancyv1alpha1.ReasonKubernetesError, message: conditionMessage(err)}
	}
	class := aurora.Classify(err)
	externalErrors.WithLabelValues("aurora", string(class)).Inc()
	if class.Transient() {
		return result{reason: tenancyv1alpha1.ReasonDatabaseUnavailable,
			message: fmt.Sprintf("PostgreSQL at %s is unavailable (%s); retrying with backoff", endpoint, class)}
	}
	return result{reason: tenancyv1alpha1.ReasonDatabaseUnavailable, message: conditionMessage(err)}
}

// storageResult maps an error of the storage steps to a condition reason.
func storageResult(err error) result {
	switch {
	case err == nil:
		r := provisioned
		r.message = "Prefix, access and Secret are provisioned"
		return r
	case errors.Is(err, storage.ErrConflict), errors.Is(err, aurora.ErrConflict):
		return result{reason: tenancyv1alpha1.ReasonConflict, message: conditionMessage(err)}
	case errors.Is(err, storage.ErrInvalid), errors.Is(err, errInvalidSpec):
		return result{reason: tenancyv1alpha1.ReasonInvalidSpec, message: conditionMessage(err)}
	case isKubernetesError(err):
		return result{reason: tenancyv1alpha1.ReasonKubernetesError, message: conditionMessage(err)}
	}
	class := storage.Classify(err)
	externalErrors.WithLabelValues("storage", string(class)).Inc()
	if class.Transient() {
		return result{reason: tenancyv1alpha1.ReasonStorageUnavailable,
			message: fmt.Sprintf("S3 or IAM is unavailable (%s); retrying with backoff", class)}
	}
	return result{reason: tenancyv1alpha1.ReasonStorageUnavailable, message: conditionMessage(err)}
}

// isKubernetesError reports an error the Kubernetes API server returned,
// such as a 409 on a Secret: neither an outage of PostgreSQL or S3 nor one
// of their external errors.
func isKubernetesError(err error) bool {
	var status apierrors.APIStatus
	return errors.As(err, &status)
}

// conditionMessage makes an error fit a condition: one line, bounded. The
// errors it gets carry names and causes, never credentials.
func conditionMessage(err error) string {
	if err == nil {
		return ""
	}
	msg := strings.Join(strings.Fields(err.Error()), " ")
	if class := retry.NetworkClass(err); class == retry.ClassCanceled {
		msg = "interrupted; retrying"
	}
	const max = 512
	if len(msg) > max {
		msg = msg[:max] + "..."
	}
	return msg
}

// setConditions writes DatabaseReady, StorageReady, the Ready summary and
// the kstatus conditions, and stamps status.observedGeneration when the
// operator is done with the generation: Ready, or stalled on a person.
func setConditions(org *tenancyv1alpha1.Organization, s *scope, reconcileErr error) {
	gen := org.Generation
	set := func(t string, r result) {
		if r.reason == "" {
			r = result{reason: tenancyv1alpha1.ReasonProvisioning, message: "Waiting for an earlier step"}
			if reconcileErr != nil {
				r.message = conditionMessage(reconcileErr)
			}
		}
		status := metav1.ConditionFalse
		if r.done {
			status = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&org.Status.Conditions, metav1.Condition{
			Type: t, Status: status, Reason: r.reason, Message: r.message, ObservedGeneration: gen,
		})
	}
	set(tenancyv1alpha1.ConditionDatabaseReady, s.outcome.database)
	set(tenancyv1alpha1.ConditionStorageReady, s.outcome.storage)
	org.Status.Namespace = s.namespace

	ready := metav1.Condition{Type: tenancyv1alpha1.ConditionReady, ObservedGeneration: gen}
	switch {
	case s.outcome.succeeded():
		ready.Status, ready.Reason, ready.Message = metav1.ConditionTrue, tenancyv1alpha1.ReasonProvisioned, "Organization is provisioned"
	default:
		ready.Status, ready.Reason = metav1.ConditionFalse, tenancyv1alpha1.ReasonNotReady
		var parts []string
		if !s.outcome.database.done {
			parts = append(parts, "DatabaseReady: "+orDefault(s.outcome.database.reason, tenancyv1alpha1.ReasonProvisioning))
		}
		if !s.outcome.storage.done {
			parts = append(parts, "StorageReady: "+orDefault(s.outcome.storage.reason, tenancyv1alpha1.ReasonProvisioning))
		}
		ready.Message = strings.Join(parts, "; ")
		// A single cause is the summary's reason, so kubectl shows it.
		if s.outcome.database.reason == s.outcome.storage.reason && s.outcome.database.reason != "" {
			ready.Reason = s.outcome.database.reason
		} else if s.outcome.database.done && s.outcome.storage.reason != "" {
			ready.Reason = s.outcome.storage.reason
		} else if s.outcome.storage.done && s.outcome.database.reason != "" {
			ready.Reason = s.outcome.database.reason
		}
	}
	meta.SetStatusCondition(&org.Status.Conditions, ready)
	stalled := setProgressConditions(org)
	if (reconcileErr == nil && s.outcome.succeeded()) || stalled {
		org.Status.ObservedGeneration = gen
	}
}

// needsPerson reports whether a condition reason stops progress until a
// person acts: nothing the operator retries can change it.
func needsPerson(reason string) bool {
	return reason == tenancyv1alpha1.ReasonInvalidSpec || reason == tenancyv1alpha1.ReasonConflict ||
		reason == tenancyv1alpha1.ReasonInvalidSecret
}

// setProgressConditions derives the kstatus conditions from Ready,
// DatabaseReady and StorageReady: none when Ready is True; Stalled when a
// part needs a person; Reconciling otherwise. At most one of the two is
// present, because kstatus acts on the first True one it finds. A condition
// that does not apply is removed rather than set False: kstatus reads both
// as abnormal-true, and a False one would carry a reason that means
// nothing. It reports whether the Organization is stalled.
func setProgressConditions(org *tenancyv1alpha1.Organization) bool {
	conds := &org.Status.Conditions
	ready := meta.FindStatusCondition(*conds, tenancyv1alpha1.ConditionReady)
	if ready == nil || ready.Status == metav1.ConditionTrue {
		meta.RemoveStatusCondition(conds, tenancyv1alpha1.ConditionReconciling)
		meta.RemoveStatusCondition(conds, tenancyv1alpha1.ConditionStalled)
		return false
	}
	var stalled, pending []string
	stalledReason := ""
	db := meta.FindStatusCondition(*conds, tenancyv1alpha1.ConditionDatabaseReady)
	for _, c := range []*metav1.Condition{db, meta.FindStatusCondition(*conds, tenancyv1alpha1.ConditionStorageReady)} {
		if c == nil || c.Status == metav1.ConditionTrue {
			continue
		}
		detail := c.Type + " " + c.Reason + ": " + c.Message
		// One cause of both halves, as an invalid spec is, is said once.
		if c != db && db != nil && db.Status != metav1.ConditionTrue && db.Reason == c.Reason && db.Message == c.Message {
			pending[0] = db.Type + " and " + detail
			if len(stalled) > 0 {
				stalled[0] = pending[0]
			}
			continue
		}
		pending = append(pending, detail)
		if needsPerson(c.Reason) {
			stalled = append(stalled, detail)
			if stalledReason == "" {
				stalledReason = c.Reason
			}
		}
	}
	if len(stalled) > 0 {
		meta.RemoveStatusCondition(conds, tenancyv1alpha1.ConditionReconciling)
		meta.SetStatusCondition(conds, metav1.Condition{
			Type: tenancyv1alpha1.ConditionStalled, Status: metav1.ConditionTrue, Reason: stalledReason,
			Message: strings.Join(stalled, "; "), ObservedGeneration: org.Generation,
		})
		return true
	}
	msg := strings.Join(pending, "; ")
	if msg == "" {
		msg = ready.Message
	}
	meta.RemoveStatusCondition(conds, tenancyv1alpha1.ConditionStalled)
	meta.SetStatusCondition(conds, metav1.Condition{
		Type: tenancyv1alpha1.ConditionReconciling, Status: metav1.ConditionTrue, Reason: ready.Reason,
		Message: msg, ObservedGeneration: org.Generation,
	})
	return false
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// setDeletingCondition reports a clean-up that is waiting on something. The
// operator retries the clean-up by itself, so the Organization is
// Reconciling and not Stalled, whatever its spec said.
func setDeletingCondition(org *tenancyv1alpha1.Organization, err error) {
	deleting := metav1.Condition{
		Type: tenancyv1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: tenancyv1alpha1.ReasonDeleting,
		Message: "Deleting: " + conditionMessage(err), ObservedGeneration: org.Generation,
	}
	meta.SetStatusCondition(&org.Status.Conditions, deleting)
	deleting.Type = tenancyv1alpha1.ConditionReconciling
	deleting.Status = metav1.ConditionTrue
	meta.SetStatusCondition(&org.Status.Conditions, deleting)
	meta.RemoveStatusCondition(&org.Status.Conditions, tenancyv1alpha1.ConditionStalled)
}

// observeReadiness records the time from creation to the first Ready.
func observeReadiness(before, after *tenancyv1alpha1.Organization) {
	if before.Status.ObservedGeneration != 0 || meta.IsStatusConditionTrue(before.Status.Conditions, tenancyv1alpha1.ConditionReady) {
		return
	}
	if meta.IsStatusConditionTrue(after.Status.Conditions, tenancyv1alpha1.ConditionReady) {
		timeToReady.Observe(metav1.Now().Sub(after.CreationTimestamp.Time).Seconds())
	}
}

// errInvalidSpec marks a spec that passed admission but cannot be provisioned.
var errInvalidSpec = errors.New("invalid spec")

// retryable drops errors that only a change of spec or a person can fix:
// those are reported on the conditions, not retried with backoff.
func retryable(err error) error {
	if err == nil || errors.Is(err, aurora.ErrConflict) || errors.Is(err, storage.ErrConflict) ||
		errors.Is(err, aurora.ErrInvalid) || errors.Is(err, storage.ErrInvalid) || errors.Is(err, errInvalidSpec) ||
		errors.Is(err, errInvalidSecret) {
		return nil
	}
	return err
}
