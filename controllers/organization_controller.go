// Package controllers holds the Organization reconciler.
package controllers

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/config"
)

// EventRecorder is the part of the events API the reconciler uses.
type EventRecorder interface {
	Eventf(regarding runtime.Object, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// Settings are the operator-wide choices the reconciler applies to every
// Organization.
type Settings struct {
	// PrefixTemplate places an organization's objects; {name} is its name.
	PrefixTemplate string
	// TenantS3Endpoint is written to storage Secrets.
	TenantS3Endpoint string
	// ResyncPeriod is how often a Ready Organization is checked for drift.
	ResyncPeriod time.Duration
	// UsagePeriod is how often a Ready Organization's usage is read into
	// its status; 0 reads none.
	UsagePeriod time.Duration
	// AllowSystemNamespaces permits kube-system and friends as spec.namespace.
	AllowSystemNamespaces bool
	// ClusterID is this Kubernetes cluster's identity in ownership
	// markers: --cluster-id, or the kube-system namespace's UID.
	ClusterID string
	// SnapshotMaxAge is how old a cluster's catalog snapshot may be for a
	// settled Organization's resync to trust it and send no SQL of its
	// own (see aurora.Service.AtRest); 0 checks every Organization live.
	SnapshotMaxAge time.Duration
}

// OrganizationReconciler provisions an Organization's database, login,
// storage prefix and scoped access, and reports them on its status.
type OrganizationReconciler struct {
	client.Client
	// APIReader reads past the cache; it confirms a Secret is really gone
	// before the operator makes a new password for it.
	APIReader client.Reader
	Scheme    *runtime.Scheme
	Recorder  EventRecorder
	// Databases gives each DatabaseCluster's service; Ledger is where
	// organizations are placed.
	Databases DatabaseLookup
	Ledger    *Ledger
	Storage   Storage
	Creds     Credentials
	Settings  Settings

	// warned holds, by Organization UID and condition type, the reason and
	// message of the last failure Warning this process emitted, until the
	// condition is no longer False. A reconcile that reads the
	// Organization from a cache that has not yet seen the status written
	// with that failure would otherwise warn again.
	warned sync.Map
	// usageRead holds, by Organization UID, when this process last read
	// its usage into the status, until the cache has seen that status
	// (see refreshUsage).
	usageRead sync.Map
	// passwords remembers the database Secret passwords found to match
	// their verifiers (see passwordChecks).
	passwords passwordChecks
}

// +kubebuilder:rbac:groups=tenancy.orgforge.io,resources=organizations,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=tenancy.orgforge.io,resources=organizations/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=tenancy.orgforge.io,resources=organizations/finalizers,verbs=update
// +kubebuilder:rbac:groups=tenancy.orgforge.io,resources=databaseclusters,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// Reconcile brings one Organization to its desired state.
func (r *OrganizationReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	org := &tenancyv1alpha1.Organization{}
	if err := r.Get(ctx, req.NamespacedName, org); err != nil {
		if apierrors.IsNotFound(err) {
			// Gone without the clean-up, its finalizer removed by hand:
			// its budget is given back all the same.
			r.Ledger.Fleet.Release(req.Name)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !org.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, org)
	}
	// The finalizer goes on before anything exists outside Kubernetes, so a
	// delete can never skip the clean-up.
	if !controllerutil.ContainsFinalizer(org, tenancyv1alpha1.FinalizerName) {
		// A merge patch replaces the whole list; the resourceVersion it
		// carries makes it fail, not drop a finalizer added meanwhile.
		patch := client.MergeFromWithOptions(org.DeepCopy(), client.MergeFromWithOptimisticLock{})
		controllerutil.AddFinalizer(org, tenancyv1alpha1.FinalizerName)
		if err := r.Patch(ctx, org, patch); err != nil {
			return ctrl.Result{}, err
		}
	}

	if starting, err := r.fleetStarting(ctx, org); err != nil || starting {
		// Nothing is known of its cluster yet in this process: a status
		// written now would only say so, and be written back a moment
		// later. Every Organization would make two writes per restart.
		if err != nil {
			return ctrl.Result{}, err
		}
		return ctrl.Result{RequeueAfter: fleetStartingRetry}, nil
	}
	base := org.DeepCopy()
	s := newScope(org)
	s.clusterID = r.Settings.ClusterID
	defer func() {
		if err := r.patchStatus(ctx, base, s, retErr); err != nil && retErr == nil {
			retErr = err
		}
	}()
	return r.reconcileNormal(ctx, s)
}

// patchStatus writes the status once, and only when it changed, so a no-op
// resync makes no API write.
func (r *OrganizationReconciler) patchStatus(ctx context.Context, base *tenancyv1alpha1.Organization, s *scope, reconcileErr error) error {
	org := s.org
	r.recordAdoption(s)
	setConditions(org, s, reconcileErr)
	observeReadiness(base, org)
	r.failureEvents(base, org)
	r.changeEvent(base, org, s)
	if equality.Semantic.DeepEqual(base.Status, org.Status) {
		return nil
	}
	return r.Status().Patch(ctx, org, client.MergeFrom(base))
}

// DefaultRateLimiter retries a failing Organization from 100ms up to one
// minute apart, so an outage of a dependency is recovered from within a
// minute of its end.
func DefaultRateLimiter() workqueue.TypedRateLimiter[reconcile.Request] {
	return workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](100*time.Millisecond, time.Minute)
}

// failureEvents emits one Warning when a condition turns False for a new
// reason, not one per retry; conditions that fail for the same reason with
// the same message, as both do for an invalid spec, share one Warning.
func (r *OrganizationReconciler) failureEvents(before, after *tenancyv1alpha1.Organization) {
	type failure struct {
		reason, message string
		types           []string
	}
	var failures []*failure
	for _, t := range []string{tenancyv1alpha1.ConditionDatabaseReady, tenancyv1alpha1.ConditionStorageReady} {
		now := meta.FindStatusCondition(after.Status.Conditions, t)
		key := string(after.UID) + "/" + t
		if now == nil || now.Status != metav1.ConditionFalse || now.Reason == tenancyv1alpha1.ReasonProvisioning {
			r.warned.Delete(key)
			continue
		}
		if was := meta.FindStatusCondition(before.Status.Conditions, t); was != nil && was.Status == now.Status && was.Reason == now.Reason {
			continue
		}
		if last, ok := r.warned.Load(key); ok && last == now.Reason+"\x00"+now.Message {
			continue
		}
		r.warned.Store(key, now.Reason+"\x00"+now.Message)
		i := slices.IndexFunc(failures, func(f *failure) bool { return f.reason == now.Reason && f.message == now.Message })
		if i < 0 {
			failures = append(failures, &failure{reason: now.Reason, message: now.Message})
			i = len(failures) - 1
		}
		failures[i].types = append(failures[i].types, t)
	}
	for _, f := range failures {
		r.Recorder.Eventf(after, nil, corev1.EventTypeWarning, f.reason, "Reconcile", "%s: %s", strings.Join(f.types, ", "), f.message)
	}
}

// changeEvent reports in one Event everything this reconcile changed: one
// write per reconcile that did something, none for a no-op. Its reason is
// Provisioned when the Organization just became Ready, Changed otherwise.
func (r *OrganizationReconciler) changeEvent(before, after *tenancyv1alpha1.Organization, s *scope) {
	all := slices.Concat(s.nsNotes, s.dbNotes, s.stNotes)
	if len(all) == 0 {
		return
	}
	reason := tenancyv1alpha1.EventReasonChanged
	if !meta.IsStatusConditionTrue(before.Status.Conditions, tenancyv1alpha1.ConditionReady) &&
		meta.IsStatusConditionTrue(after.Status.Conditions, tenancyv1alpha1.ConditionReady) {
		reason = tenancyv1alpha1.ReasonProvisioned
	}
	r.Recorder.Eventf(after, nil, corev1.EventTypeNormal, reason, "Reconcile", "%s", eventNote(all))
}

// eventNoteLimit is under the 1 kB an Event's note may hold.
const eventNoteLimit = 1000

// eventNote joins notes into one sentence that fits an Event.
func eventNote(all []string) string {
	msg := strings.Join(all, "; ")
	if msg != "" {
		msg = strings.ToUpper(msg[:1]) + msg[1:]
	}
	if len(msg) > eventNoteLimit {
		msg = msg[:eventNoteLimit-3] + "..."
	}
	return msg
}

// SetupWithManager registers the reconciler. Secrets it owns are watched,
// so a Secret deleted by hand is written again at once; so are namespaces,
// so an Organization waiting for its old namespace to finish terminating
// goes on once it has (their metadata only: see getNamespace); and
// DatabaseClusters, so one waiting for capacity or for its cluster goes on
// once there is some.
func (r *OrganizationReconciler) SetupWithManager(mgr ctrl.Manager, opts controller.Options) error {
	if opts.RateLimiter == nil {
		opts.RateLimiter = DefaultRateLimiter()
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&tenancyv1alpha1.Organization{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{},
			predicate.AnnotationChangedPredicate{},
			deletionPredicate(),
		))).
		Owns(&corev1.Secret{}, builder.WithPredicates(secretTampered())).
		WatchesMetadata(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.organizationsForNamespace),
			builder.WithPredicates(namespaceDeleted())).
		Watches(&tenancyv1alpha1.DatabaseCluster{}, handler.EnqueueRequestsFromMapFunc(r.organizationsForCluster),
			builder.WithPredicates(clusterChangedForPlacement())).
		WithOptions(opts).
		Named("organization").
		Complete(r)
}

// SettingsFrom takes the reconciler's settings from the operator's
// configuration.
func SettingsFrom(cfg *config.Config) Settings {
	return Settings{
		PrefixTemplate:        cfg.Storage.PrefixTemplate,
		TenantS3Endpoint:      cfg.Storage.TenantEndpoint,
		ResyncPeriod:          cfg.ResyncPeriod,
		UsagePeriod:           cfg.UsagePeriod,
		AllowSystemNamespaces: cfg.AllowSystemNamespaces,
		SnapshotMaxAge:        snapshotMaxAge(cfg),
	}
}

// Drift made by hand is repaired up to the snapshot's age later than at
// the resync that follows it: at most a quarter of the resync period, and
// at most defaultSnapshotMaxAge, which costs a cluster one catalog query
// every 30 seconds while it has settled organizations to check.
const defaultSnapshotMaxAge = 30 * time.Second

// snapshotMaxAge is --database-snapshot-max-age, its default worked out.
func snapshotMaxAge(cfg *config.Config) time.Duration {
	switch age := cfg.Database.SnapshotMaxAge; {
	case age < 0:
		return 0
	case age > 0:
		return age
	}
	return min(defaultSnapshotMaxAge, cfg.ResyncPeriod/4)
}
