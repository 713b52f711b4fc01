package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/aurora"
	"github.com/orgforge/orgforge/internal/placement"
)

// Intervals of the DatabaseCluster reconciler.
const (
	// DefaultHealthInterval is how often a DatabaseCluster's server is
	// checked when HealthInterval is unset.
	DefaultHealthInterval = 30 * time.Second
	// unreachableRetry caps the wait before an unreachable cluster is
	// checked again, so that it is back in the fleet soon after it is.
	unreachableRetry = 10 * time.Second
	// invalidSpecRetry is how soon a cluster whose Secrets are missing is
	// looked at again: Secrets are not watched.
	invalidSpecRetry = time.Minute
	// inUseRetry is how soon a deleting cluster held by organizations is
	// looked at again, besides when one of them goes.
	inUseRetry = 30 * time.Second
	// releaseRetry is how soon a deleting cluster is looked at again when
	// an organization that holds it is gone from the API server: its
	// reconciler releases it from the fleet just after its finalizer goes,
	// so the Organization's delete event can come first.
	releaseRetry = time.Second
)

// FlagsCluster is the cluster the operator's --database-* flags describe,
// for a DatabaseCluster with spec.admin.fromFlags.
type FlagsCluster struct {
	// AdminDSN is the admin connection string; a secret.
	AdminDSN string
	// Tenant is the --tenant-database-* settings, which default to the
	// admin endpoint's.
	Tenant TenantEndpoint
}

// DatabaseClusterReconciler connects to each DatabaseCluster's server,
// checks its health, and reports it, with what is placed on it, to the
// fleet's ledger and the DatabaseCluster's status. It builds each cluster's
// database service, which the Organization reconciler only uses, and
// holds a cluster that organizations are placed on from deletion.
type DatabaseClusterReconciler struct {
	client.Client
	// APIReader reads the admin Secrets, which the manager's cache does
	// not hold.
	APIReader client.Reader
	Recorder  EventRecorder
	Clusters  ClusterServices
	Ledger    *Ledger
	Flags     FlagsCluster
	// MaxConnections caps the operator's connections to each cluster:
	// aurora.Config.MaxConnections. 0 is the services' default.
	MaxConnections int32
	// HealthInterval is how often each cluster is checked; default
	// DefaultHealthInterval.
	HealthInterval time.Duration
	// HeartbeatInterval is how often lastHealthCheck is written when
	// nothing else in the status changed (the operator passes its resync
	// period), so that a fleet at rest writes next to nothing; never more
	// often than HealthInterval.
	HeartbeatInterval time.Duration
}

// +kubebuilder:rbac:groups=tenancy.orgforge.io,resources=databaseclusters,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups=tenancy.orgforge.io,resources=databaseclusters/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=tenancy.orgforge.io,resources=databaseclusters/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get

// Reconcile connects to one DatabaseCluster and reports on it.
func (r *DatabaseClusterReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	// The fleet must know every placement before it says what a cluster
	// holds, or lets a cluster go.
	if err := r.Ledger.Seed(ctx); err != nil {
		return ctrl.Result{}, err
	}
	dbc := &tenancyv1alpha1.DatabaseCluster{}
	if err := r.Get(ctx, req.NamespacedName, dbc); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(ctx, req.Name)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if !dbc.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, dbc)
	}
	// The finalizer goes on before the cluster can take an organization.
	if !controllerutil.ContainsFinalizer(dbc, tenancyv1alpha1.ClusterFinalizerName) {
		if err := r.patchFinalizer(ctx, dbc, controllerutil.AddFinalizer); err != nil {
			return ctrl.Result{}, err
		}
	}
	base := dbc.DeepCopy()
	rep, result, err := r.reconcileNormal(ctx, dbc)
	if err != nil {
		rep = kubernetesError(err, r.usage(dbc))
	}
	if perr := r.writeStatus(ctx, base, dbc, rep); perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	return result, nil
}

// reconcileNormal resolves the cluster's admin and tenant endpoints,
// connects and checks the server, and enters the cluster in the fleet. An
// error is Kubernetes'; what the cluster itself came to is the report.
func (r *DatabaseClusterReconciler) reconcileNormal(ctx context.Context, dbc *tenancyv1alpha1.DatabaseCluster) (clusterReport, ctrl.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	access, err := r.resolveAdmin(ctx, dbc)
	if errors.Is(err, errClusterSpec) {
		defer r.Ledger.MarkChecked(dbc.Name)
		// The service built from the last good spec, if any, stays: the
		// organizations on the cluster keep being served.
		usage, ferr := r.setUnchecked(dbc)
		if ferr != nil {
			return clusterReport{}, ctrl.Result{}, ferr
		}
		return invalidClusterSpec(err, usage), ctrl.Result{RequeueAfter: invalidSpecRetry}, nil
	}
	if err != nil {
		return clusterReport{}, ctrl.Result{}, err
	}
	r.Ledger.SetTenant(dbc.Name, access.tenant)

	check, err := r.check(ctx, dbc.Name, access.dsn)
	// Reachable or not, the cluster is now known: organizations on it stop
	// waiting for its first check and see how it is.
	defer r.Ledger.MarkChecked(dbc.Name)
	if err != nil {
		log.Info("DatabaseCluster is unreachable", "error", conditionMessage(err))
		usage, ferr := r.setUnchecked(dbc)
		if ferr != nil {
			return clusterReport{}, ctrl.Result{}, ferr
		}
		return unreachable(err, usage), ctrl.Result{RequeueAfter: min(r.healthInterval(), unreachableRetry)}, nil
	}
	err = r.Ledger.Fleet.SetCluster(placement.Cluster{
		Name:        dbc.Name,
		Labels:      dbc.Labels,
		Ready:       true,
		Schedulable: takesNew(dbc),
		Capacity: placement.Capacity{
			MaxDatabases:   int(dbc.Spec.Capacity.MaxDatabases),
			MaxConnections: clusterCapacity(dbc.Spec.Capacity, check.facts, r.MaxConnections),
		},
	})
	if err != nil {
		return clusterReport{}, ctrl.Result{}, err
	}
	r.Ledger.SetInventory(dbc.Name, check.inventory.Organizations)
	return connected(check, r.usage(dbc)), ctrl.Result{RequeueAfter: r.healthInterval()}, nil
}

// clusterServer is what a health check asks of a cluster's service.
type clusterServer interface {
	Endpoint() string
	HealthCheck(ctx context.Context) error
	ServerFacts(ctx context.Context) (aurora.ServerFacts, error)
	Inventory(ctx context.Context) (aurora.Inventory, error)
}

// check builds, or reuses, the cluster's service and checks its server.
func (r *DatabaseClusterReconciler) check(ctx context.Context, name, dsn string) (serverCheck, error) {
	svc, err := r.Clusters.Ensure(ctx, name, aurora.Config{AdminDSN: dsn, MaxConnections: r.MaxConnections})
	if err != nil {
		return serverCheck{}, err
	}
	return checkServer(ctx, svc)
}

// checkServer pings the server and reads what the status reports of it.
func checkServer(ctx context.Context, srv clusterServer) (serverCheck, error) {
	check := serverCheck{endpoint: srv.Endpoint()}
	if err := srv.HealthCheck(ctx); err != nil {
		return serverCheck{}, err
	}
	var err error
	if check.facts, err = srv.ServerFacts(ctx); err != nil {
		return serverCheck{}, err
	}
	if check.inventory, err = srv.Inventory(ctx); err != nil {
		return serverCheck{}, err
	}
	return check, nil
}

// setUnchecked enters the cluster in the fleet as not Ready, with the
// capacity its spec or last status gives: its placements still count, and
// nothing new goes on it.
func (r *DatabaseClusterReconciler) setUnchecked(dbc *tenancyv1alpha1.DatabaseCluster) (placement.ClusterUsage, error) {
	if err := r.Ledger.Fleet.SetCluster(unchecked(dbc)); err != nil {
		return placement.ClusterUsage{}, err
	}
	return r.usage(dbc), nil
}

// usage is the cluster as the fleet has it, or as its spec and last status
// say when the fleet does not know it, with nothing placed.
func (r *DatabaseClusterReconciler) usage(dbc *tenancyv1alpha1.DatabaseCluster) placement.ClusterUsage {
	for _, cu := range r.Ledger.Fleet.Clusters() {
		if cu.Cluster.Name == dbc.Name {
			return cu
		}
	}
	return placement.ClusterUsage{Cluster: unchecked(dbc)}
}

// reconcileDelete lets a cluster go once nothing is placed on it: it is
// cordoned in the fleet first, so that nothing new is placed on it while
// the organizations on it go.
func (r *DatabaseClusterReconciler) reconcileDelete(ctx context.Context, dbc *tenancyv1alpha1.DatabaseCluster) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(dbc, tenancyv1alpha1.ClusterFinalizerName) {
		return ctrl.Result{}, nil
	}
	cordoned, known := r.fleetCluster(dbc.Name)
	if !known {
		cordoned = unchecked(dbc)
	}
	cordoned.Schedulable = false
	if err := r.Ledger.Fleet.SetCluster(cordoned); err != nil {
		return ctrl.Result{}, err
	}
	if orgs := r.Ledger.Fleet.Organizations(dbc.Name); len(orgs) > 0 {
		// The organizations on it are still served, and their databases
		// dropped on their own deletion: it stays connected and checked,
		// cordoned, after a restart too.
		if _, _, err := r.reconcileNormal(ctx, dbc); err != nil {
			return ctrl.Result{}, err
		}
		base := dbc.DeepCopy()
		if err := r.writeStatus(ctx, base, dbc, inUse(orgs, r.usage(dbc))); err != nil {
			return ctrl.Result{}, err
		}
		releasing, err := r.anyGone(ctx, orgs)
		if err != nil {
			return ctrl.Result{}, err
		}
		if releasing {
			return ctrl.Result{RequeueAfter: releaseRetry}, nil
		}
		return ctrl.Result{RequeueAfter: inUseRetry}, nil
	}
	// RemoveCluster refuses if an organization was recorded since.
	if err := r.Ledger.Fleet.RemoveCluster(dbc.Name); err != nil {
		return ctrl.Result{}, err
	}
	r.Clusters.Remove(dbc.Name)
	r.Ledger.ForgetCluster(dbc.Name)
	ctrl.LoggerFrom(ctx).Info("Released DatabaseCluster; nothing is placed on it")
	return ctrl.Result{}, r.patchFinalizer(ctx, dbc, controllerutil.RemoveFinalizer)
}

// anyGone reports whether any of orgs is gone from the API server.
func (r *DatabaseClusterReconciler) anyGone(ctx context.Context, orgs []string) (bool, error) {
	for _, name := range orgs {
		err := r.Get(ctx, client.ObjectKey{Name: name}, &tenancyv1alpha1.Organization{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
	return false, nil
}

func (r *DatabaseClusterReconciler) fleetCluster(name string) (placement.Cluster, bool) {
	for _, cu := range r.Ledger.Fleet.Clusters() {
		if cu.Cluster.Name == name {
			return cu.Cluster, true
		}
	}
	return placement.Cluster{}, false
}

// forget lets go of a DatabaseCluster that is gone. One removed without
// its finalizer may still hold organizations: their service stays, so that
// they are served, and the cluster takes no new ones.
func (r *DatabaseClusterReconciler) forget(ctx context.Context, name string) {
	if orgs := r.Ledger.Fleet.Organizations(name); len(orgs) > 0 {
		if c, ok := r.fleetCluster(name); ok && c.Schedulable {
			c.Schedulable = false
			_ = r.Ledger.Fleet.SetCluster(c)
		}
		ctrl.LoggerFrom(ctx).Info("DatabaseCluster is gone while organizations are placed on it; keeping their service",
			"organizations", len(orgs))
		return
	}
	_ = r.Ledger.Fleet.RemoveCluster(name)
	r.Clusters.Remove(name)
	r.Ledger.ForgetCluster(name)
}

// patchFinalizer adds or removes the cluster's finalizer with optimistic
// locking: a merge patch replaces the whole list, and the resourceVersion
// makes it fail rather than drop a finalizer added meanwhile.
func (r *DatabaseClusterReconciler) patchFinalizer(ctx context.Context, dbc *tenancyv1alpha1.DatabaseCluster,
	change func(client.Object, string) bool) error {
	patch := client.MergeFromWithOptions(dbc.DeepCopy(), client.MergeFromWithOptimisticLock{})
	change(dbc, tenancyv1alpha1.ClusterFinalizerName)
	return r.Patch(ctx, dbc, patch)
}

// writeStatus sets the status from rep and writes it when statusWriteNeeded
// says so, with one Event when Ready changes its status or reason.
func (r *DatabaseClusterReconciler) writeStatus(ctx context.Context, base, dbc *tenancyv1alpha1.DatabaseCluster, rep clusterReport) error {
	now := metav1.Now()
	setClusterStatus(dbc, rep, now)
	r.readyEvent(base, dbc)
	if !statusWriteNeeded(&base.Status, &dbc.Status, now.Time, r.heartbeatInterval()) {
		return nil
	}
	// The whole status goes in the patch, not its difference from base: a
	// field the server never stored, such as connections.budgeted, reads
	// back as zero, and a difference would leave a required zero out.
	patch, err := json.Marshal(map[string]any{"status": dbc.Status})
	if err != nil {
		return err
	}
	return r.Status().Patch(ctx, dbc, client.RawPatch(types.MergePatchType, patch))
}

// readyEvent reports a change of Ready: a Warning when it turns False for
// a new reason, a Normal one when it turns True. A cluster that stays
// down, or held, makes no Event per retry.
func (r *DatabaseClusterReconciler) readyEvent(before, after *tenancyv1alpha1.DatabaseCluster) {
	now := meta.FindStatusCondition(after.Status.Conditions, tenancyv1alpha1.ConditionReady)
	if now == nil {
		return
	}
	if was := meta.FindStatusCondition(before.Status.Conditions, tenancyv1alpha1.ConditionReady); was != nil &&
		was.Status == now.Status && was.Reason == now.Reason {
		return
	}
	kind := corev1.EventTypeWarning
	if now.Status == metav1.ConditionTrue {
		kind = corev1.EventTypeNormal
	}
	r.Recorder.Eventf(after, nil, kind, now.Reason, "Reconcile", "%s", eventNote([]string{now.Message}))
}

func (r *DatabaseClusterReconciler) healthInterval() time.Duration {
	if r.HealthInterval <= 0 {
		return DefaultHealthInterval
	}
	return r.HealthInterval
}

// heartbeatInterval is the least age of the recorded lastHealthCheck at
// which a check that changed nothing else writes it again: HeartbeatInterval,
// but not less than the health interval.
func (r *DatabaseClusterReconciler) heartbeatInterval() time.Duration {
	return max(r.HeartbeatInterval, r.healthInterval())
}

// SetupWithManager registers the reconciler as "databasecluster". It
// watches Organizations too, each mapped to the cluster it is placed on,
// so that a cluster's counts follow its placements and a deleting cluster
// is let go as soon as its last organization is.
func (r *DatabaseClusterReconciler) SetupWithManager(mgr ctrl.Manager, opts controller.Options) error {
	if opts.RateLimiter == nil {
		opts.RateLimiter = DefaultRateLimiter()
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&tenancyv1alpha1.DatabaseCluster{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{},
			predicate.LabelChangedPredicate{},
			deletionPredicate(),
		))).
		Watches(&tenancyv1alpha1.Organization{}, handler.EnqueueRequestsFromMapFunc(clusterOfOrganization),
			builder.WithPredicates(placementChanged())).
		WithOptions(opts).
		Named("databasecluster").
		Complete(r)
}

// clusterOfOrganization maps an Organization to the cluster it is placed
// on, if any.
func clusterOfOrganization(_ context.Context, obj client.Object) []reconcile.Request {
	org, ok := obj.(*tenancyv1alpha1.Organization)
	if !ok {
		return nil
	}
	p, ok := RecordedPlacement(org)
	if !ok {
		return nil
	}
	return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: p.Cluster}}}
}

// placementChanged lets through the Organization events that change what
// a cluster holds: one placed (created with, or given, a recorded
// placement), its budget changed, or one gone. A status update that
// leaves the placement as it was queues nothing.
func placementChanged() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc: func(e event.CreateEvent) bool { return hasPlacement(e.Object) },
		UpdateFunc: func(e event.UpdateEvent) bool {
			oldOrg, ok1 := e.ObjectOld.(*tenancyv1alpha1.Organization)
			newOrg, ok2 := e.ObjectNew.(*tenancyv1alpha1.Organization)
			if !ok1 || !ok2 {
				return false
			}
			p1, ok1 := RecordedPlacement(oldOrg)
			p2, ok2 := RecordedPlacement(newOrg)
			return ok1 != ok2 || p1 != p2
		},
		DeleteFunc:  func(e event.DeleteEvent) bool { return hasPlacement(e.Object) },
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
}

func hasPlacement(obj client.Object) bool {
	org, ok := obj.(*tenancyv1alpha1.Organization)
	if !ok {
		return false
	}
	_, placed := RecordedPlacement(org)
	return placed
}
