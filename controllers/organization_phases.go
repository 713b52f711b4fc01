package controllers

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
)

// reconcileNormal runs the ordered steps. The database and the storage are
// independent: one failing does not hold the other back.
func (r *OrganizationReconciler) reconcileNormal(ctx context.Context, s *scope) (ctrl.Result, error) {
	if err := r.validate(s); err != nil {
		s.outcome.database = result{reason: tenancyv1alpha1.ReasonInvalidSpec, message: err.Error()}
		s.outcome.storage = s.outcome.database
		// Nothing changes until the spec does; no retry. The Warning is
		// failureEvents', one for both conditions.
		return ctrl.Result{}, nil
	}
	if err := r.checkExtensions(ctx, s); err != nil {
		s.outcome.database = result{reason: tenancyv1alpha1.ReasonInvalidSpec, message: conditionMessage(err)}
		s.outcome.storage = s.outcome.database
		return ctrl.Result{}, nil
	}
	if err := r.timed("namespace", func() error { return r.ensureNamespace(ctx, s) }); err != nil {
		msg := fmt.Sprintf("Waiting for namespace %s: %v", s.namespace, err)
		s.outcome.database = result{reason: tenancyv1alpha1.ReasonProvisioning, message: msg}
		s.outcome.storage = s.outcome.database
		if errors.Is(err, errInvalidSpec) {
			s.outcome.database.reason = tenancyv1alpha1.ReasonInvalidSpec
			s.outcome.storage.reason = tenancyv1alpha1.ReasonInvalidSpec
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	// The two parts touch different services and different fields of s,
	// so they run at once: a reconcile takes as long as the slower one.
	dbErr, stErr := concurrently(
		func() error { return r.reconcileDatabase(ctx, s) },
		func() error { return r.reconcileStorage(ctx, s) })
	if err := errors.Join(retryable(dbErr), retryable(stErr)); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: r.Settings.ResyncPeriod}, nil
}

// concurrently runs a in a new goroutine and b in this one, and returns
// both their errors once both have returned; b's panic, too, waits for a. A
// panic in a becomes its error, as controller-runtime makes one of a panic
// in the reconcile's own goroutine.
func concurrently(a, b func() error) (errA, errB error) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if p := recover(); p != nil {
				errA = fmt.Errorf("panic: %v", p)
			}
		}()
		errA = a()
	}()
	defer func() { <-done }()
	errB = b()
	return errA, errB
}

// recoverStep, deferred by a part of the reconcile after the deferred call
// that reports its outcome, turns a panic into the part's error, logged
// with its stack: the part's condition then reports a failure, not the
// last error it happened to hold.
func recoverStep(ctx context.Context, part string, err *error) {
	if p := recover(); p != nil {
		ctrl.LoggerFrom(ctx).Error(fmt.Errorf("%v", p), "Panic in the "+part+" steps", "stack", string(debug.Stack()))
		*err = fmt.Errorf("internal error in the %s steps: %v", part, p)
	}
}

// timed runs one step and records its duration.
func (r *OrganizationReconciler) timed(step string, fn func() error) error {
	start := time.Now()
	err := fn()
	stepDuration.WithLabelValues(step).Observe(time.Since(start).Seconds())
	return err
}
