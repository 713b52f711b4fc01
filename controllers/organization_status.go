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
	"github.com/orgforge/orgforge/internal/placement"
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

// both gives both halves one result: a cause that stops the whole reconcile
// before either half starts.
func (o *outcome) both(r result) { o.database, o.storage = r, r }

var provisioned = result{done: true, reason: tenancyv1alpha1.ReasonProvisioned}

// invalidSpec is the result of a spec that passed admission but cannot be
// provisioned.
func invalidSpec(err error) result {
	return result{reason: tenancyv1alpha1.ReasonInvalidSpec, message: conditionMessage(err)}
}

// waitingForNamespace is the result of a namespace that could not be made
// ready, usually one still terminating.
func waitingForNamespace(namespace string, err error) result {
	return result{reason: tenancyv1alpha1.ReasonProvisioning, message: fmt.Sprintf("Waiting for namespace %s: %v", namespace, err)}
}

// errorReasons maps the errors of both halves to the reasons of their
// conditions, first match first. A permanent error is one only a change of
// spec or a person can fix: it is reported on the conditions, not retried
// with backoff, and the Organization is Stalled on it. An error that matches
// none is an error of the half's own service (see part).
var errorReasons = []struct {
	match     func(error) bool
	reason    string
	permanent bool
}{
	{isAny(aurora.ErrConflict, storage.ErrConflict), tenancyv1alpha1.ReasonConflict, true},
	{isAny(aurora.ErrInvalid, storage.ErrInvalid), tenancyv1alpha1.ReasonInvalidSpec, true},
	{isAny(errInvalidSecret), tenancyv1alpha1.ReasonInvalidSecret, true},
	{isAny(placement.ErrNoCapacity), tenancyv1alpha1.ReasonNoCapacity, true},
	{isAny(errOverBudget), tenancyv1alpha1.ReasonOverBudget, true},
	{isAny(placement.ErrInvalid), tenancyv1alpha1.ReasonInvalidSpec, true},
	{isAny(errClusterNotConnected, errSearchIncomplete), tenancyv1alpha1.ReasonDatabaseUnavailable, false},
	{isAny(errFleetStarting), tenancyv1alpha1.ReasonProvisioning, false},
	{isKubernetesError, tenancyv1alpha1.ReasonKubernetesError, false},
}

func isAny(targets ...error) func(error) bool {
	return func(err error) bool {
		for _, t := range targets {
			if errors.Is(err, t) {
				return true
			}
		}
		return false
	}
}

// errorReason returns the reason errorReasons gives err, and whether err is
// permanent; "" when err is nil or matches none.
func errorReason(err error) (reason string, permanent bool) {
	if err == nil {
		return "", false
	}
	for _, e := range errorReasons {
		if e.match(err) {
			return e.reason, e.permanent
		}
	}
	return "", false
}

// retryable drops the permanent errors, which the conditions report.
func retryable(err error) error {
	if _, permanent := errorReason(err); permanent {
		return nil
	}
	return err
}

// needsPerson reports whether a condition reason stops progress until a
// person acts: nothing the operator retries can change it.
func needsPerson(reason string) bool {
	for _, e := range errorReasons {
		if e.permanent && e.reason == reason {
			return true
		}
	}
	return false
}

// part is what tells one half's results apart: its success message, and
// the service whose errors it reports when errorReasons has no reason.
type part struct {
	provisioned string
	// service labels orgforge_external_errors_total.
	service     string
	unavailable string
	classify    func(error) retry.Class
}

var (
	databasePart = part{
		provisioned: "Database, role and Secret are provisioned",
		service:     "aurora", unavailable: tenancyv1alpha1.ReasonDatabaseUnavailable, classify: aurora.Classify,
	}
	storagePart = part{
		provisioned: "Prefix, access and Secret are provisioned",
		service:     "storage", unavailable: tenancyv1alpha1.ReasonStorageUnavailable, classify: storage.Classify,
	}
)

// result maps the error of the half's phases to its condition's reason and
// message. what names the service in a message about an outage.
func (p part) result(err error, what string) result {
	if err == nil {
		r := provisioned
		r.message = p.provisioned
		return r
	}
	if reason, _ := errorReason(err); reason != "" {
		return result{reason: reason, message: conditionMessage(err)}
	}
	class := p.classify(err)
	externalErrors.WithLabelValues(p.service, string(class)).Inc()
	if class.Transient() {
		return result{reason: p.unavailable, message: fmt.Sprintf("%s is unavailable (%s); retrying with backoff", what, class)}
	}
	return result{reason: p.unavailable, message: conditionMessage(err)}
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
	setPartCondition(org, tenancyv1alpha1.ConditionDatabaseReady, s.outcome.database, reconcileErr)
	setPartCondition(org, tenancyv1alpha1.ConditionStorageReady, s.outcome.storage, reconcileErr)
	org.Status.Namespace = s.namespace
	meta.SetStatusCondition(&org.Status.Conditions, readyCondition(s.outcome, org.Generation))
	stalled := setProgressConditions(org)
	if (reconcileErr == nil && s.outcome.succeeded()) || stalled {
		org.Status.ObservedGeneration = org.Generation
	}
}

// setPartCondition sets one half's condition. A half that did not run waits
// for an earlier step, whose error, if any, is its message.
func setPartCondition(org *tenancyv1alpha1.Organization, conditionType string, r result, reconcileErr error) {
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
		Type: conditionType, Status: status, Reason: r.reason, Message: r.message, ObservedGeneration: org.Generation,
	})
}

// readyCondition summarises both halves: True when both are done, else
// False with each waiting half named.
func readyCondition(o outcome, gen int64) metav1.Condition {
	ready := metav1.Condition{Type: tenancyv1alpha1.ConditionReady, ObservedGeneration: gen}
	if o.succeeded() {
		ready.Status, ready.Reason, ready.Message = metav1.ConditionTrue, tenancyv1alpha1.ReasonProvisioned, "Organization is provisioned"
		return ready
	}
	var parts []string
	if !o.database.done {
		parts = append(parts, "DatabaseReady: "+orDefault(o.database.reason, tenancyv1alpha1.ReasonProvisioning))
	}
	if !o.storage.done {
		parts = append(parts, "StorageReady: "+orDefault(o.storage.reason, tenancyv1alpha1.ReasonProvisioning))
	}
	ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, notReadyReason(o), strings.Join(parts, "; ")
	return ready
}

// notReadyReason is the one cause of a False Ready, so kubectl shows it, or
// NotReady when the halves wait for different things.
func notReadyReason(o outcome) string {
	switch {
	case o.database.reason == o.storage.reason && o.database.reason != "":
		return o.database.reason
	case o.database.done && o.storage.reason != "":
		return o.storage.reason
	case o.storage.done && o.database.reason != "":
		return o.database.reason
	}
	return tenancyv1alpha1.ReasonNotReady
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
	pending, stalled, stalledReason := progressDetails(*conds)
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

// progressDetails describes each half that is not True, as pending, and
// those that need a person also as stalled, with the first one's reason.
func progressDetails(conds []metav1.Condition) (pending, stalled []string, stalledReason string) {
	db := meta.FindStatusCondition(conds, tenancyv1alpha1.ConditionDatabaseReady)
	for _, c := range []*metav1.Condition{db, meta.FindStatusCondition(conds, tenancyv1alpha1.ConditionStorageReady)} {
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
	return pending, stalled, stalledReason
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
