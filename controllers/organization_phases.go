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

// phase is one step of a part of the reconcile. It reads what earlier
// phases found from the scope and leaves there what later ones need.
type phase struct {
	// step names the phase in orgforge_reconcile_step_duration_seconds.
	// A phase without one, which only reads or records, is not timed.
	step string
	run  func(ctx context.Context, s *scope) error
	// when, if set, decides whether the phase runs at all; a skipped
	// phase is not timed either.
	when func(s *scope) bool
}

// runPhases runs phases in order and stops at the first error, which it
// returns. A panic in a phase becomes that phase's error, logged with its
// stack, so the part's condition reports a failure and the other part of
// the reconcile goes on.
func runPhases(ctx context.Context, s *scope, part string, phases []phase) error {
	for _, p := range phases {
		if p.when != nil && !p.when(s) {
			continue
		}
		if err := p.exec(ctx, s, part); err != nil {
			return err
		}
	}
	return nil
}

// exec runs one phase. A phase that panics records no duration, as none
// did before the runner recovered panics.
func (p phase) exec(ctx context.Context, s *scope, part string) (err error) {
	defer recoverPhase(ctx, part, &err)
	start := time.Now()
	err = p.run(ctx, s)
	if p.step != "" {
		stepDuration.WithLabelValues(p.step).Observe(time.Since(start).Seconds())
	}
	return err
}

// recoverPhase turns a panic into the part's error.
func recoverPhase(ctx context.Context, part string, err *error) {
	if p := recover(); p != nil {
		ctrl.LoggerFrom(ctx).Error(fmt.Errorf("%v", p), "Panic in the "+part+" steps", "stack", string(debug.Stack()))
		*err = fmt.Errorf("internal error in the %s steps: %v", part, p)
	}
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

// reconcileNormal checks the spec, places the organization on a
// DatabaseCluster, makes the namespace, then provisions the database and
// the storage. Those two are independent: one failing, or the
// organization's cluster being down, does not hold the other back.
func (r *OrganizationReconciler) reconcileNormal(ctx context.Context, s *scope) (ctrl.Result, error) {
	if err := r.validate(s); err != nil {
		// Nothing changes until the spec does; no retry. The Warning is
		// failureEvents', one for both conditions.
		s.outcome.both(invalidSpec(err))
		return ctrl.Result{}, nil
	}
	placeErr := runPhases(ctx, s, "placement", []phase{
		{step: "placement", run: r.placeOrganization},
		{run: r.checkExtensions},
	})
	if reason, _ := errorReason(placeErr); reason == tenancyv1alpha1.ReasonInvalidSpec {
		s.outcome.both(invalidSpec(placeErr))
		return ctrl.Result{}, nil
	}
	if err := runPhases(ctx, s, "namespace", []phase{{step: "namespace", run: r.ensureNamespace}}); err != nil {
		s.outcome.both(waitingForNamespace(s.namespace, err))
		return ctrl.Result{}, err
	}
	// The two parts touch different services and different fields of s,
	// so they run at once: a reconcile takes as long as the slower one.
	dbErr, stErr := concurrently(
		func() error { return r.reconcileDatabase(ctx, s, placeErr) },
		func() error { return r.reconcileStorage(ctx, s) })
	s.org.Status.Credentials = credentialsStatus(s)
	if err := errors.Join(retryable(dbErr), retryable(stErr)); err != nil {
		return ctrl.Result{}, err
	}
	// A grace period that ends, or a rotation that falls due, before the
	// next resync or usage reading is acted on when it does.
	return ctrl.Result{RequeueAfter: requeueAfter(r.refreshUsage(ctx, s), time.Now(), s.db.wake, s.st.wake)}, nil
}
