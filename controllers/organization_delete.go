package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/aurora"
	"github.com/orgforge/orgforge/internal/naming"
	"github.com/orgforge/orgforge/internal/storage"
)

// reconcileDelete cleans up as the deletion policy says, each phase
// idempotent, and removes the finalizer only when all of them succeeded.
// One Event reports the clean-up: what was done, and what it waits on.
func (r *OrganizationReconciler) reconcileDelete(ctx context.Context, org *tenancyv1alpha1.Organization) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(org, tenancyv1alpha1.FinalizerName) {
		return ctrl.Result{}, nil
	}
	s := newScope(org)
	s.clusterID = r.Settings.ClusterID
	if err := r.deleteExternal(ctx, s); err != nil {
		r.deleteWaits(ctx, s, err)
		return ctrl.Result{}, err
	}
	if done := s.deletionNotes(); len(done) > 0 {
		reason := tenancyv1alpha1.EventReasonDeleted
		if org.Spec.DeletionPolicy != tenancyv1alpha1.DeletionPolicyDelete {
			reason = tenancyv1alpha1.EventReasonRetained
		}
		r.Recorder.Eventf(org, nil, corev1.EventTypeNormal, reason, "Delete", "%s", eventNote(done))
	}
	err := runPhases(ctx, s, "delete", []phase{{step: "removeFinalizer", run: r.removeFinalizer}})
	if err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}
	// Its database is gone or retained; either way it no longer counts
	// against its cluster's budget.
	r.Ledger.Fleet.Release(org.Name)
	return ctrl.Result{}, nil
}

// deletionNotes is what the clean-up did, storage first, as it goes first.
func (s *scope) deletionNotes() notes { return slices.Concat(s.stNotes, s.dbNotes, s.nsNotes) }

// deleteWaits reports a clean-up that failed, on the status and in a
// Warning that says what was done so far.
func (r *OrganizationReconciler) deleteWaits(ctx context.Context, s *scope, err error) {
	org := s.org
	base := org.DeepCopy()
	setDeletingCondition(org, err)
	if perr := r.Status().Patch(ctx, org, client.MergeFrom(base)); perr != nil && !apierrors.IsNotFound(perr) {
		ctrl.LoggerFrom(ctx).Error(perr, "Patching status while deleting")
	}
	msg := "Clean-up is waiting: " + conditionMessage(err)
	if done := s.deletionNotes(); len(done) > 0 {
		msg += ". Done so far: " + strings.Join(done, "; ")
	}
	r.Recorder.Eventf(org, nil, corev1.EventTypeWarning, tenancyv1alpha1.EventReasonDeleteFailed, "Delete", "%s", eventNote([]string{msg}))
}

// removeFinalizer uses optimistic locking, as when the finalizer is added:
// another controller's finalizer added since the read must survive.
func (r *OrganizationReconciler) removeFinalizer(ctx context.Context, s *scope) error {
	patch := client.MergeFromWithOptions(s.org.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(s.org, tenancyv1alpha1.FinalizerName)
	for _, t := range []string{tenancyv1alpha1.ConditionDatabaseReady, tenancyv1alpha1.ConditionStorageReady} {
		r.warned.Delete(string(s.org.UID) + "/" + t)
	}
	r.passwords.forget(s.org.UID)
	return r.Patch(ctx, s.org, patch)
}

// deletionScope fills s with what the Organization recorded, not with what
// today's spec and settings would make: a spec or an operator setting that
// no longer validates (a system namespace after a restart without
// --allow-system-namespaces) must not skip the clean-up of what was made
// under the old ones. Every name is still checked against its ownership
// marker before anything is deleted.
func (r *OrganizationReconciler) deletionScope(s *scope) {
	st := s.org.Status
	if st.Namespace != "" {
		s.namespace = st.Namespace
	}
	if st.Database.Name != "" {
		s.database = st.Database.Name
	}
	if st.Database.Role != "" {
		s.role = st.Database.Role
	}
	s.prefix = st.Storage.Prefix
}

// prefixesToDelete lists the prefixes the clean-up looks at: the one the
// status recorded and the one today's template gives, which a reconcile may
// have claimed before it could record it. deletePrefix purges only those
// whose marker carries this Organization's UID.
func (r *OrganizationReconciler) prefixesToDelete(s *scope) []string {
	var out []string
	if s.prefix != "" {
		out = append(out, s.prefix)
	}
	if p, err := naming.Prefix(r.Settings.PrefixTemplate, s.org.Name); err == nil && p != s.prefix {
		out = append(out, p)
	}
	return out
}

// deleteExternal notes on s each thing it deleted or kept. The storage and
// the database are cleaned up at once; the namespace goes last.
func (r *OrganizationReconciler) deleteExternal(ctx context.Context, s *scope) error {
	if err := naming.ValidateOrgName(s.org.Name); err != nil {
		// Names are immutable and every reconcile checks this one first:
		// nothing was ever provisioned under a name that does not validate.
		return nil
	}
	r.deletionScope(s)
	if s.org.Spec.DeletionPolicy != tenancyv1alpha1.DeletionPolicyDelete {
		return runPhases(ctx, s, "delete", []phase{
			{run: r.deleteUser},
			{run: r.keepDatabaseSecret},
			{run: r.noteRetained},
		})
	}
	dbErr, stErr := concurrently(
		func() error {
			return runPhases(ctx, s, "database deletion", []phase{
				{run: r.deletionCluster},
				{step: "dropDatabase", run: r.dropDatabase, when: isPlaced},
			})
		},
		func() error {
			// The key goes first, so that the tenant loses access before
			// its data goes.
			return runPhases(ctx, s, "storage deletion", []phase{
				{step: "deleteUser", run: r.deleteUser},
				{step: "deletePrefix", run: r.deletePrefixes},
			})
		})
	if err := errors.Join(stErr, dbErr); err != nil {
		return err
	}
	return runPhases(ctx, s, "namespace deletion", []phase{{step: "deleteNamespace", run: r.deleteNamespace}})
}

// noteRetained says what deletionPolicy Retain kept.
func (r *OrganizationReconciler) noteRetained(_ context.Context, s *scope) error {
	kept := "no prefix"
	if p := r.prefixesToDelete(s); len(p) > 0 {
		kept = fmt.Sprintf("prefix s3://%s/%s", r.Storage.Bucket(), p[0])
	}
	role := "role " + s.role
	if login := s.org.Status.Credentials.DatabaseLogin; login != "" && login != s.role {
		role = fmt.Sprintf("owner role %s with login %s", s.role, login)
	}
	s.dbNotes.add("retained database %s, %s, %s and Secret %s/%s (deletionPolicy Retain)",
		s.database, role, kept, s.namespace, naming.DatabaseSecretName(s.org.Name))
	return nil
}

// deleteNamespace deletes the organization's namespace, if orgforge made it
// for this Organization.
func (r *OrganizationReconciler) deleteNamespace(ctx context.Context, s *scope) error {
	ns, err := r.getNamespace(ctx, s.namespace)
	if err != nil || ns == nil || !ownsNamespace(ns, s.org.Name) || !ns.DeletionTimestamp.IsZero() {
		return err
	}
	other, err := r.namespaceUser(ctx, s)
	if err != nil {
		return err
	}
	if other != "" {
		s.nsNotes.add("kept namespace %s: Organization %s uses it", s.namespace, other)
		return nil
	}
	if err := r.Delete(ctx, ns); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting namespace %s: %w", s.namespace, err)
	}
	s.nsNotes.add("deleted namespace %s", s.namespace)
	return nil
}

// namespaceUser names another Organization whose Secrets go to s's
// namespace, or returns "". Two Organizations may share a namespace
// (spec.namespace); the one that created it must not take the other's
// Secrets with it when it goes.
func (r *OrganizationReconciler) namespaceUser(ctx context.Context, s *scope) (string, error) {
	var list tenancyv1alpha1.OrganizationList
	if err := r.List(ctx, &list); err != nil {
		return "", fmt.Errorf("listing Organizations that may use namespace %s: %w", s.namespace, err)
	}
	for i := range list.Items {
		o := &list.Items[i]
		// One being deleted with Delete keeps nothing there; counting it
		// would leave the namespace to nobody when both go at once.
		if o.UID == s.org.UID || (!o.DeletionTimestamp.IsZero() && o.Spec.DeletionPolicy == tenancyv1alpha1.DeletionPolicyDelete) {
			continue
		}
		if o.Status.Namespace == s.namespace || newScope(o).namespace == s.namespace {
			return o.Name, nil
		}
	}
	return "", nil
}

// deleteUser deletes the organization's IAM user and its keys, unless
// someone else's user has its name.
func (r *OrganizationReconciler) deleteUser(ctx context.Context, s *scope) error {
	user := r.Storage.UserName(s.org.Name)
	deleted, err := r.Storage.DeleteOwnedPrefixUser(ctx, user, s.storageMarker())
	switch {
	case errors.Is(err, storage.ErrConflict):
		r.Recorder.Eventf(s.org, nil, corev1.EventTypeWarning, "IAMUserNotOwned", "Delete", "Left IAM user %s alone: orgforge did not create it for this Organization", user)
	case err != nil:
		return fmt.Errorf("deleting IAM user %s: %w", user, err)
	case deleted:
		s.stNotes.add("deleted IAM user %s and its access keys", user)
	}
	return nil
}

// deletePrefixes deletes the objects under each of prefixesToDelete that
// is this Organization's.
func (r *OrganizationReconciler) deletePrefixes(ctx context.Context, s *scope) error {
	for _, p := range r.prefixesToDelete(s) {
		if err := r.deletePrefix(ctx, s, p); err != nil {
			return err
		}
	}
	return nil
}

// deletePrefix deletes the objects under prefix only when its marker
// carries this Organization's UID. A prefix with no marker was never
// claimed by this Organization (EnsurePrefix writes the marker before
// anything else uses the prefix), so its objects are someone else's.
func (r *OrganizationReconciler) deletePrefix(ctx context.Context, s *scope, prefix string) error {
	owner, found, err := r.Storage.PrefixOwner(ctx, prefix)
	if err != nil {
		return fmt.Errorf("reading prefix marker %s: %w", prefix, err)
	}
	switch {
	case !found:
		return nil
	case owner.UID != string(s.org.UID):
		r.Recorder.Eventf(s.org, nil, corev1.EventTypeWarning, "PrefixNotOwned", "Delete", "Left prefix %s alone: it belongs to another Organization", prefix)
		return nil
	}
	n, err := r.Storage.DeletePrefix(ctx, prefix)
	if err != nil {
		return fmt.Errorf("deleting prefix %s: %w", prefix, err)
	}
	if n > 0 {
		s.stNotes.add("deleted %d objects under %s", n, prefix)
	}
	return nil
}

// deletionCluster finds the cluster the organization's database is on, as
// placement does: by its record, or else by its marker on every cluster.
// An organization found on none was never placed, and has no database.
func (r *OrganizationReconciler) deletionCluster(ctx context.Context, s *scope) error {
	if err := r.Ledger.Seed(ctx); err != nil {
		return err
	}
	p, placed, err := r.findPlacement(ctx, s)
	if err != nil || !placed {
		return err
	}
	s.cluster = p.Cluster
	db, ok := r.Databases(s.cluster)
	if !ok {
		return fmt.Errorf("DatabaseCluster %s is %w; the database is dropped once it is", s.cluster, errClusterNotConnected)
	}
	s.dbs = db
	return nil
}

func isPlaced(s *scope) bool { return s.dbs != nil }

// dropDatabase drops the database, then the logins of a rotation, then the
// owner role, each only if ours.
func (r *OrganizationReconciler) dropDatabase(ctx context.Context, s *scope) error {
	dropped, err := s.dbs.DropDatabase(ctx, s.database, s.dbMarker())
	if err := r.dropped(s, "database", s.database, "DatabaseNotOwned", dropped, err); err != nil {
		return err
	}
	for _, login := range naming.LoginNames(s.org.Name) {
		dropped, err = s.dbs.DropRole(ctx, login, s.dbMarker())
		if err := r.dropped(s, "login", login, "RoleNotOwned", dropped, err); err != nil {
			return err
		}
	}
	dropped, err = s.dbs.DropRole(ctx, s.role, s.dbMarker())
	return r.dropped(s, "role", s.role, "RoleNotOwned", dropped, err)
}

// dropped notes what a drop did. One that is not this Organization's is
// left alone, with a Warning of reason notOwned.
func (r *OrganizationReconciler) dropped(s *scope, kind, name, notOwned string, dropped bool, err error) error {
	switch {
	case errors.Is(err, aurora.ErrConflict):
		r.Recorder.Eventf(s.org, nil, corev1.EventTypeWarning, notOwned, "Delete", "Left %s %s alone: orgforge did not create it for this Organization", kind, name)
	case err != nil:
		return fmt.Errorf("dropping %s %s: %w", kind, name, err)
	case dropped:
		s.dbNotes.add("dropped %s %s", kind, name)
	}
	return nil
}

// keepDatabaseSecret drops the database Secret's owner reference, so that
// garbage collection does not take the only copy of a retained role's
// password with the Organization.
func (r *OrganizationReconciler) keepDatabaseSecret(ctx context.Context, s *scope) error {
	secret := &corev1.Secret{}
	err := r.Get(ctx, types.NamespacedName{Namespace: s.namespace, Name: naming.DatabaseSecretName(s.org.Name)}, secret)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(secret.OwnerReferences) == 0 {
		return nil
	}
	patch := client.MergeFrom(secret.DeepCopy())
	secret.OwnerReferences = nil
	// An Organization that adopts the Secret later says from which one.
	metav1.SetMetaDataAnnotation(&secret.ObjectMeta, AnnotationRetainedFrom, string(s.org.UID))
	if err := r.Patch(ctx, secret, patch); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("keeping Secret %s/%s: %w", s.namespace, secret.Name, err)
	}
	return nil
}
