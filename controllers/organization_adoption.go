package controllers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/aurora"
	"github.com/orgforge/orgforge/internal/storage"
)

// AnnotationAdoption, on a database Secret that an Organization took over,
// says from which Organization UID and whether its password was kept.
const AnnotationAdoption = "tenancy.orgforge.io/adoption"

// AnnotationRetainedFrom, on a database Secret that deletionPolicy Retain
// kept, is the UID of the Organization that was deleted.
const AnnotationRetainedFrom = "tenancy.orgforge.io/retained-from"

// adoption collects what a reconcile took over from earlier Organizations
// of the same name. The database and storage parts add to it at once.
type adoption struct {
	mu sync.Mutex
	// from is the UID each resource was marked for, by resource.
	from map[string]string
}

func (a *adoption) add(fromUID string, resources ...string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.from == nil {
		a.from = map[string]string{}
	}
	for _, r := range resources {
		a.from[r] = fromUID
	}
}

// byUID returns the resources taken over, sorted, by the UID they were
// marked for.
func (a *adoption) byUID() map[string][]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string][]string{}
	for r, uid := range a.from {
		out[uid] = append(out[uid], r)
	}
	for _, rs := range out {
		slices.Sort(rs)
	}
	return out
}

// adopts reports whether the Organization takes over what an earlier one
// of its name left, and part of it is not Ready: a Ready part holds nothing
// of another UID, so a settled Organization pays nothing for adoption.
func adopts(s *scope, condition string) bool {
	return s.org.Spec.Adoption == tenancyv1alpha1.AdoptionSameName &&
		!meta.IsStatusConditionTrue(s.org.Status.Conditions, condition)
}

func adoptsDatabase(s *scope) bool { return adopts(s, tenancyv1alpha1.ConditionDatabaseReady) }

func adoptsStorage(s *scope) bool { return adopts(s, tenancyv1alpha1.ConditionStorageReady) }

// mayAdopt reports whether a resource marked for this Organization's name
// with another UID may be taken over: it was marked in this Kubernetes
// cluster (or before markers recorded the cluster), and no Organization of
// that UID exists here. Otherwise it stays as it is, and the step that
// finds it reports the Conflict.
func (r *OrganizationReconciler) mayAdopt(ctx context.Context, s *scope, org, uid, cluster string) (bool, error) {
	if org != s.org.Name || uid == "" || uid == string(s.org.UID) {
		return false, nil
	}
	if cluster != "" && cluster != s.clusterID {
		return false, nil
	}
	exists, err := r.organizationExists(ctx, uid)
	return !exists, err
}

// organizationExists reports whether an Organization of that UID exists in
// this cluster, asking the API server past the cache.
func (r *OrganizationReconciler) organizationExists(ctx context.Context, uid string) (bool, error) {
	var list tenancyv1alpha1.OrganizationList
	var reader client.Reader = r.Client
	if r.APIReader != nil {
		reader = r.APIReader
	}
	if err := reader.List(ctx, &list); err != nil {
		return false, fmt.Errorf("listing Organizations before adopting: %w", err)
	}
	return slices.ContainsFunc(list.Items, func(o tenancyv1alpha1.Organization) bool { return string(o.UID) == uid }), nil
}

// adoptDatabase takes over the roles and databases marked for this
// Organization's name by earlier UIDs, re-marking them all in one
// transaction, when every one of them may be adopted; then the retained
// database Secret. A crash
// halfway leaves either every object re-marked or none, and a Secret not
// yet owned, which the next reconcile takes over.
func (r *OrganizationReconciler) adoptDatabase(ctx context.Context, s *scope) error {
	marked, err := s.dbs.MarkedFor(ctx, s.org.Name)
	if err != nil {
		return err
	}
	var take, held []aurora.Marked
	for _, m := range marked {
		if !s.namedForAdoption(m) {
			continue
		}
		// Those marked with this UID too: a reconcile that re-marked
		// them may have stopped before it revoked them.
		s.db.markedLogins = s.db.markedLogins || (m.Kind == "role" && m.Name != s.role)
		if m.Marker.UID == string(s.org.UID) {
			continue
		}
		ok, err := r.mayAdopt(ctx, s, m.Marker.Org, m.Marker.UID, m.Marker.Cluster)
		if err != nil {
			return err
		}
		if ok {
			take = append(take, m)
		} else {
			held = append(held, m)
		}
	}
	if len(held) > 0 {
		// All or nothing: a role of this cluster's and a database of
		// another's must not end up split between two owners.
		h := held[0]
		return fmt.Errorf("%w: adoption SameName takes none of the roles and databases of Organization %s: %s %q %s",
			aurora.ErrConflict, s.org.Name, h.Kind, h.Name, aurora.Holder(h.Marker.String(), s.dbMarker()))
	}
	if len(take) > 0 {
		if err := s.dbs.Remark(ctx, take, s.dbMarker()); err != nil {
			return fmt.Errorf("adopting the roles and databases of Organization %s: %w", s.org.Name, err)
		}
		for _, m := range take {
			s.adopted.add(m.Marker.UID, m.String())
		}
		ctrl.LoggerFrom(ctx).Info("Adopted roles and databases", "objects", len(take))
	}
	if s.db.secret == nil && len(take) > 0 {
		// Lost with its Kubernetes cluster, or deleted: rolePassword
		// makes a new password, which the new Secret will hold.
		s.db.adoption = fmt.Sprintf("adopted from Organization uid %s; set a new password: no retained Secret held the role's", fromUID(take))
		s.dbNotes.add("set a new password on role %s: no retained Secret holds its password", s.role)
		return nil
	}
	return r.adoptDatabaseSecret(ctx, s, fromUID(take))
}

// namedForAdoption reports whether a marked object has one of the
// Organization's names: its database, its owner role, or one of the two
// login roles its credentials rotate through. A database's owner may write
// its comment, so a tenant could mark its own database for another
// Organization; it is not taken over under another name.
func (s *scope) namedForAdoption(m aurora.Marked) bool {
	if m.Kind == "database" {
		return m.Name == s.database
	}
	return s.isLogin(m.Name)
}

// fromUID is the UID the adopted objects were marked for, or "" when none
// was adopted here (an earlier reconcile adopted them before a crash).
func fromUID(take []aurora.Marked) string {
	if len(take) == 0 {
		return ""
	}
	return take[0].Marker.UID
}

// retained reports whether a database Secret is one that deletionPolicy
// Retain left: labelled for this Organization, owned by nothing.
func retained(secret *corev1.Secret) bool {
	return secret != nil && len(secret.OwnerReferences) == 0
}

// adoptDatabaseSecret takes over a retained database Secret. Its password is
// kept if it still logs in as the role; otherwise the role gets a new one,
// which the Secret will hold. Either way the Secret is annotated with what
// happened, and becomes the Organization's by its owner reference when it
// is written.
func (r *OrganizationReconciler) adoptDatabaseSecret(ctx context.Context, s *scope, from string) error {
	secret := s.db.secret
	if !retained(secret) {
		return nil
	}
	if from == "" {
		// The objects were re-marked by a reconcile that did not get
		// to record it.
		from = secret.Annotations[AnnotationRetainedFrom]
	}
	if from == "" {
		from = adoptedFrom(s.org)
	}
	works := false
	if s.db.password != "" && string(secret.Data["username"]) == s.db.current {
		var err error
		if works, err = s.dbs.PasswordWorks(ctx, s.database, s.db.current, s.db.password); err != nil {
			return fmt.Errorf("trying the retained Secret %s/%s's password: %w", s.namespace, secret.Name, err)
		}
	}
	what := "kept the retained password, which still logs in"
	if works {
		s.db.edited = false
	} else {
		// rolePassword makes a new one, given to the role before the
		// Secret is written.
		s.db.password, s.db.edited = "", false
		what = "set a new password: the retained one no longer logs in"
		s.dbNotes.add("set a new password on role %s: the password of the retained Secret %s/%s no longer logs in", s.db.current, s.namespace, secret.Name)
	}
	s.db.adoption = fmt.Sprintf("adopted from Organization uid %s; %s", from, what)
	if from == "" {
		s.db.adoption = "adopted; " + what
	}
	s.adopted.add(from, "Secret "+s.namespace+"/"+secret.Name)
	return nil
}

// adoptedFrom is the UID an earlier reconcile recorded adopting from, if
// any.
func adoptedFrom(org *tenancyv1alpha1.Organization) string {
	if org.Status.Adoption == nil {
		return ""
	}
	return org.Status.Adoption.FromUID
}

// adoptSecret makes the Organization the controller of a retained Secret,
// so that it goes with the Organization as the Secrets it wrote do, and
// writes its data and annotations, in one write: a Secret owned but still
// holding a password the role no longer has would never be repaired.
func (r *OrganizationReconciler) adoptSecret(ctx context.Context, s *scope, secret *corev1.Secret, data map[string][]byte, annotations map[string]string) error {
	// The patch is the difference from the Secret as it is, every key
	// included: the cache keeps some as a digest only (TransformSecret).
	secret, err := r.freshSecret(ctx, secret)
	if err != nil {
		return err
	}
	owned := secret.DeepCopy()
	if err := controllerutil.SetControllerReference(s.org, owned, r.Scheme); err != nil {
		return err
	}
	owned.Data = data
	setAnnotations(&owned.ObjectMeta, annotations)
	if err := r.Patch(ctx, owned, client.MergeFromWithOptions(secret, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("taking over Secret %s/%s: %w", s.namespace, secret.Name, err)
	}
	s.dbNotes.add("took over Secret %s/%s", s.namespace, secret.Name)
	return nil
}

// adoptStorage takes over the prefix and the IAM user that an earlier
// Organization of this name left: the prefix's marker and the user's tags
// are rewritten with this Organization's UID, both or neither. Retain
// deleted the user, so there is usually none; EnsureAccess then creates it
// with a new key.
func (r *OrganizationReconciler) adoptStorage(ctx context.Context, s *scope) error {
	mine := s.storageMarker()
	prefixOwner, prefixFound, err := r.Storage.PrefixOwner(ctx, s.prefix)
	if err != nil {
		return fmt.Errorf("reading prefix marker %s: %w", s.prefix, err)
	}
	userOwner, userFound, err := r.Storage.PrefixUserOwner(ctx, s.org.Name)
	if errors.Is(err, storage.ErrConflict) {
		// A user outside orgforge's path: the access step's Conflict.
		return nil
	}
	if err != nil {
		return err
	}
	takePrefix, err := r.storageAdoptable(ctx, s, prefixFound, prefixOwner)
	if err != nil {
		return err
	}
	takeUser, err := r.storageAdoptable(ctx, s, userFound, userOwner)
	if err != nil {
		return err
	}
	prefixURL := fmt.Sprintf("s3://%s/%s", r.Storage.Bucket(), s.prefix)
	switch {
	case takePrefix == held:
		return fmt.Errorf("%w: adoption SameName takes neither prefix %s nor IAM user %s: the prefix belongs to %s",
			storage.ErrConflict, prefixURL, r.Storage.UserName(s.org.Name), describeStorageOwner(prefixOwner, mine))
	case takeUser == held:
		return fmt.Errorf("%w: adoption SameName takes neither prefix %s nor IAM user %s: the user belongs to %s",
			storage.ErrConflict, prefixURL, r.Storage.UserName(s.org.Name), describeStorageOwner(userOwner, mine))
	}
	if takePrefix == take {
		if err := r.Storage.RemarkPrefix(ctx, s.prefix, prefixOwner, mine); err != nil {
			return fmt.Errorf("adopting prefix %s: %w", s.prefix, err)
		}
		s.adopted.add(prefixOwner.UID, "prefix "+prefixURL)
	}
	if takeUser == take {
		if err := r.Storage.RetagPrefixUser(ctx, userOwner, mine); err != nil {
			return fmt.Errorf("adopting IAM user %s: %w", r.Storage.UserName(s.org.Name), err)
		}
		s.adopted.add(userOwner.UID, "IAM user "+r.Storage.UserName(s.org.Name))
	}
	return nil
}

// verdict is what adoption makes of one resource.
type verdict int

const (
	// none: there is nothing to adopt, or it is already this
	// Organization's.
	none verdict = iota
	// take: it may be adopted.
	take
	// held: another owner holds it.
	held
)

// storageAdoptable judges the prefix or IAM user whose marker is owner, if
// found.
func (r *OrganizationReconciler) storageAdoptable(ctx context.Context, s *scope, found bool, owner storage.Marker) (verdict, error) {
	if !found || owner.UID == string(s.org.UID) {
		return none, nil
	}
	ok, err := r.mayAdopt(ctx, s, owner.Org, owner.UID, owner.Cluster)
	switch {
	case err != nil:
		return none, err
	case ok:
		return take, nil
	}
	return held, nil
}

// describeStorageOwner names the owner of a prefix or IAM user for a
// Conflict message.
func describeStorageOwner(owner, mine storage.Marker) string {
	if owner.UID == "" {
		return "no organization orgforge knows"
	}
	return mine.Holder(owner)
}

// recordAdoption writes what this reconcile adopted on the status, adding
// to what an earlier reconcile recorded from the same UID, and reports it
// in one Adopted event. Resources of more than one earlier UID, which only
// markers edited by hand give, are all in the event; the status keeps the
// last UID in order.
func (r *OrganizationReconciler) recordAdoption(s *scope) {
	org := s.org
	byUID := s.adopted.byUID()
	var notes []string
	for _, uid := range slices.Sorted(maps.Keys(byUID)) {
		resources := byUID[uid]
		rec := org.Status.Adoption
		if rec == nil || (uid != "" && rec.FromUID != uid) {
			rec = &tenancyv1alpha1.AdoptionStatus{FromUID: uid, Time: metav1.Now()}
		}
		all := slices.Clone(rec.Resources)
		for _, res := range resources {
			if !slices.Contains(all, res) {
				all = append(all, res)
			}
		}
		rec.Resources = all
		org.Status.Adoption = rec
		from := "an earlier Organization " + org.Name
		if uid != "" {
			from = fmt.Sprintf("Organization %s (uid %s)", org.Name, uid)
		}
		notes = append(notes, fmt.Sprintf("adopted %s from %s", strings.Join(resources, ", "), from))
	}
	if len(notes) > 0 {
		r.Recorder.Eventf(org, nil, corev1.EventTypeNormal, tenancyv1alpha1.EventReasonAdopted, "Adopt", "%s", eventNote(notes))
	}
}
