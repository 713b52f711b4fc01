package controllers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/placement"
)

// Annotations on the database and storage Secrets that record their
// rotation. The Secret, not the status, is the record: it is written in
// the same update as the credentials it describes, so a crash can never
// leave the two apart. The status mirrors it.
const (
	// AnnotationRotatedAt is when the Secret last switched to a new
	// credential; without it, the Secret's creation.
	AnnotationRotatedAt = "tenancy.orgforge.io/rotated-at"
	// AnnotationRotationToken is the spec.credentials.rotationToken the
	// Secret's credential answers: set when the Secret is first written and
	// at each rotation.
	AnnotationRotationToken = "tenancy.orgforge.io/rotation-token"
	// AnnotationPreviousValidUntil is when the previous credential, under
	// the Secret's previous-* keys, stops working; absent outside a grace
	// period.
	AnnotationPreviousValidUntil = "tenancy.orgforge.io/previous-valid-until"
	// AnnotationBudgetedLogins, on an Organization, is how many logins
	// AnnotationBudgetedConnections covers: 2 during a database grace
	// period, when the old and the new login may each hold the pool's
	// maxConnections; absent, 1.
	AnnotationBudgetedLogins = "tenancy.orgforge.io/budgeted-logins"
)

// pendingRotation is how soon a rotation that waits for a grace period to
// end, or for budget, is looked at again.
const pendingRotation = time.Second

// rotation is what a Secret records of its rotation.
type rotation struct {
	// issuedAt is when its credential was issued: AnnotationRotatedAt, or
	// the Secret's creation.
	issuedAt time.Time
	// switched is set once the Secret has rotated: issuedAt is then
	// AnnotationRotatedAt.
	switched bool
	token    string
	// validUntil ends the grace period of the previous credential; zero
	// when there is none.
	validUntil time.Time
}

// readRotation reads a Secret's rotation annotations; a Secret the operator
// is about to create is issued now, for the spec's token.
func readRotation(secret *corev1.Secret, spec tenancyv1alpha1.CredentialsSpec, now time.Time) rotation {
	if secret == nil {
		return rotation{issuedAt: now, token: spec.RotationToken}
	}
	rot := rotation{issuedAt: secret.CreationTimestamp.Time, token: secret.Annotations[AnnotationRotationToken]}
	if t, err := time.Parse(time.RFC3339, secret.Annotations[AnnotationRotatedAt]); err == nil {
		rot.issuedAt, rot.switched = t, true
	}
	if t, err := time.Parse(time.RFC3339, secret.Annotations[AnnotationPreviousValidUntil]); err == nil {
		rot.validUntil = t
	}
	return rot
}

// annotations are the rotation's Secret annotations; an empty value
// removes one.
func (rot rotation) annotations() map[string]string {
	a := map[string]string{
		AnnotationRotatedAt:          "",
		AnnotationRotationToken:      rot.token,
		AnnotationPreviousValidUntil: "",
	}
	if rot.switched {
		a[AnnotationRotatedAt] = rot.issuedAt.UTC().Format(time.RFC3339)
	}
	if !rot.validUntil.IsZero() {
		a[AnnotationPreviousValidUntil] = rot.validUntil.UTC().Format(time.RFC3339)
	}
	return a
}

// inGrace reports whether the previous credential still works at now.
func (rot rotation) inGrace(now time.Time) bool {
	return !rot.validUntil.IsZero() && now.Before(rot.validUntil)
}

// next is when spec's rotateEvery next rotates; zero when it never does.
func (rot rotation) next(spec tenancyv1alpha1.CredentialsSpec) time.Time {
	if spec.RotateEvery == nil || spec.RotateEvery.Duration <= 0 {
		return time.Time{}
	}
	return rot.issuedAt.Add(spec.RotateEvery.Duration)
}

// due reports why a rotation is due at now, or "". Removing the token
// asks for nothing.
func (rot rotation) due(spec tenancyv1alpha1.CredentialsSpec, now time.Time) string {
	switch next := rot.next(spec); {
	case spec.RotationToken != "" && spec.RotationToken != rot.token:
		return fmt.Sprintf("rotationToken %q", spec.RotationToken)
	case !next.IsZero() && !now.Before(next):
		return "rotateEvery " + spec.RotateEvery.Duration.String()
	}
	return ""
}

// rotated is the rotation of a switch at now.
func rotated(spec tenancyv1alpha1.CredentialsSpec, now time.Time) rotation {
	// The annotations keep whole seconds: the grace period is rounded up.
	until := now.Add(spec.Grace() + time.Second - 1).Truncate(time.Second)
	return rotation{issuedAt: now.Truncate(time.Second), switched: true, token: spec.RotationToken, validUntil: until}
}

// wake is when a part of the reconcile wants to run again: the end of a
// grace period or the next rotation. Zero is never.
type wake time.Time

// at keeps the earliest of w and t, t zero meaning never.
func (w *wake) at(t time.Time) {
	if t.IsZero() {
		return
	}
	if cur := time.Time(*w); cur.IsZero() || t.Before(cur) {
		*w = wake(t)
	}
}

// schedule wakes for rot's grace end and next rotation, those still to
// come. One already past is being acted on, or waits for something else (a
// grace period, budget), which sets its own wake or waits for the resync:
// waking for it would only spin.
func (w *wake) schedule(rot rotation, spec tenancyv1alpha1.CredentialsSpec, now time.Time) {
	for _, t := range []time.Time{rot.validUntil, rot.next(spec)} {
		if t.After(now) {
			w.at(t)
		}
	}
}

// requeueAfter shortens resync to the earliest wake of either part.
func requeueAfter(resync time.Duration, now time.Time, wakes ...wake) time.Duration {
	after := resync
	for _, w := range wakes {
		t := time.Time(w)
		if t.IsZero() {
			continue
		}
		// A moment past the instant, so that the reconcile sees it gone.
		if d := max(t.Sub(now), 0) + 100*time.Millisecond; d < after {
			after = d
		}
	}
	return after
}

// rotates reports whether the organization's credentials may rotate: its
// spec asks for it, or a rotation's Secret must be read past the cache.
func rotates(org *tenancyv1alpha1.Organization) bool {
	c := org.Spec.Credentials
	return c.RotationToken != "" || c.RotateEvery != nil
}

// freshSecret reads the Secret past the cache. A rotation decides from the
// Secret which login is current: a cache that has not yet seen the
// rotation's own switch would have the new login revoked, or rotated again.
func (r *OrganizationReconciler) freshSecret(ctx context.Context, secret *corev1.Secret) (*corev1.Secret, error) {
	if r.APIReader == nil {
		return secret, nil
	}
	fresh := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: secret.Namespace, Name: secret.Name}, fresh); err != nil {
		return nil, fmt.Errorf("reading Secret %s/%s: %w", secret.Namespace, secret.Name, err)
	}
	return fresh, nil
}

// budgetedLogins reads AnnotationBudgetedLogins.
func budgetedLogins(org *tenancyv1alpha1.Organization) int {
	if n, err := strconv.Atoi(org.Annotations[AnnotationBudgetedLogins]); err == nil && n >= 1 {
		return n
	}
	return 1
}

// budgetLogins makes the organization's budget cover n logins of
// maxConnections each, and reports whether it fits its cluster. A budget
// that does not fit changes nothing.
func (r *OrganizationReconciler) budgetLogins(ctx context.Context, s *scope, n int) (bool, error) {
	if s.budgetLogins == n {
		return true, nil
	}
	p, err := r.Ledger.Fleet.Resize(s.org.Name, n*int(s.maxConnections))
	if errors.Is(err, placement.ErrOverBudget) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	was := s.budgetLogins
	s.budgetLogins = n
	if err := r.annotatePlacement(ctx, s, p); err != nil {
		s.budgetLogins = was
		return false, err
	}
	return true, nil
}

// credentialsStatus mirrors the Secrets' rotation on the status.
func credentialsStatus(s *scope) tenancyv1alpha1.CredentialsStatus {
	st := s.org.Status.Credentials
	spec := s.org.Spec.Credentials
	var rots []rotation
	if s.db.rot != nil {
		st.DatabaseLogin = s.db.current
		rots = append(rots, *s.db.rot)
	}
	if s.st.rot != nil {
		// A storage part that failed before its key was known keeps the
		// status's; with access None there is no key.
		if id, ok := s.st.data["access-key-id"]; ok || s.org.Spec.Storage.Access == tenancyv1alpha1.StorageAccessNone {
			st.AccessKeyID = string(id)
		}
		rots = append(rots, *s.st.rot)
	}
	if len(rots) < 2 {
		// One part did not get to its Secret: the times stay as they were.
		return st
	}
	var last, next, until time.Time
	token := rots[0].token
	for i, rot := range rots {
		// With access None the storage Secret holds no key to rotate.
		keyless := i == 1 && s.org.Spec.Storage.Access == tenancyv1alpha1.StorageAccessNone
		if rot.switched {
			last = later(last, rot.issuedAt)
		}
		if n := rot.next(spec); !n.IsZero() && (next.IsZero() || n.Before(next)) && !keyless {
			next = n
		}
		until = later(until, rot.validUntil)
		// The token both parts acted on: one that lags names the older.
		if rot.token != spec.RotationToken {
			token = rot.token
		}
	}
	st.LastRotation, st.NextRotation, st.PreviousValidUntil = metaTime(last), metaTime(next), metaTime(until)
	st.RotationToken = token
	return st
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func metaTime(t time.Time) *metav1.Time {
	if t.IsZero() {
		return nil
	}
	mt := metav1.NewTime(t.UTC().Truncate(time.Second))
	return &mt
}
