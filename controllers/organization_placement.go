// Copyright 2026 The orgforge Authors.
// SPDX-License-Identifier: Apache-2.0

package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/aurora"
	"github.com/orgforge/orgforge/internal/placement"
)

// Errors of placement that the conditions report.
var (
	// errFleetStarting means a DatabaseCluster the reconcile needs has
	// not had its first check since the operator started; the reconcile
	// waits for it, without a warning.
	errFleetStarting = errors.New("waiting for the first check of")
	// errClusterNotConnected means the organization's DatabaseCluster has
	// no service yet or failed its health check; the reconcile retries.
	errClusterNotConnected = errors.New("not connected")
	// errSearchIncomplete means an organization with no recorded placement
	// cannot be placed until every DatabaseCluster has been searched for
	// its database; the reconcile retries.
	errSearchIncomplete = errors.New("not placed yet")
	// errOverBudget means a raise of the pool's maxConnections does not
	// fit the cluster's budget; a person lowers it or adds capacity.
	errOverBudget = errors.New("over budget")
)

// fleetStartingRetry is how often an Organization looks again for its
// DatabaseCluster's first check after a start.
const fleetStartingRetry = 2 * time.Second

// fleetStarting reports whether the DatabaseClusters an Organization's
// reconcile depends on have not had their first check since the operator
// started: its own cluster, or, for one not yet placed, every cluster.
func (r *OrganizationReconciler) fleetStarting(ctx context.Context, org *tenancyv1alpha1.Organization) (bool, error) {
	if err := r.Ledger.Seed(ctx); err != nil {
		return false, err
	}
	clusters, err := r.searchSet(ctx)
	if err != nil {
		return false, err
	}
	if p, ok := RecordedPlacement(org); ok {
		// A cluster with no DatabaseCluster will never be checked; the
		// reconcile says so rather than waiting for it.
		return slices.Contains(clusters, p.Cluster) && !r.Ledger.Checked(p.Cluster), nil
	}
	return len(r.Ledger.Unchecked(clusters)) > 0, nil
}

// searchSet is every cluster an organization's database may be on: each
// DatabaseCluster, whether or not the fleet has entered it yet, and the
// --database-* flags' cluster, which holds the organizations provisioned
// before the fleet even before its DatabaseCluster is made. A cluster that
// only placements name, its DatabaseCluster gone, cannot be searched ever
// and is not in it.
func (r *OrganizationReconciler) searchSet(ctx context.Context) ([]string, error) {
	var list tenancyv1alpha1.DatabaseClusterList
	if err := r.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("listing DatabaseClusters: %w", err)
	}
	names := []string{tenancyv1alpha1.DefaultClusterName}
	for i := range list.Items {
		if name := list.Items[i].Name; name != tenancyv1alpha1.DefaultClusterName {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names, nil
}

// DatabaseLookup returns the database service of a DatabaseCluster, once
// the DatabaseCluster reconciler has connected to it.
type DatabaseLookup func(cluster string) (Database, bool)

// placeOrganization finds where the organization lives, or places it, and
// gives the scope that cluster's service, tenant endpoint and the pool
// limit in force. A new placement is written to the Organization's
// annotations before anything is created on the cluster, and a placement
// found only by the database's marker is written back too, so that the
// three records agree.
func (r *OrganizationReconciler) placeOrganization(ctx context.Context, s *scope) error {
	if err := r.Ledger.Seed(ctx); err != nil {
		return err
	}
	p, placed, err := r.findPlacement(ctx, s)
	if err != nil {
		return err
	}
	fresh := false
	if !placed {
		if p, err = r.Ledger.Fleet.Place(r.placementRequest(s)); err != nil {
			return onlyDown(err)
		}
		fresh = true
		if err := r.checkExtensionsOn(ctx, s, p.Cluster); err != nil {
			// Not recorded anywhere yet: the organization is free to go
			// elsewhere once its spec is fixed.
			r.Ledger.Fleet.Release(p.Organization)
			return err
		}
		ctrl.LoggerFrom(ctx).Info("Placed organization", "cluster", p.Cluster, "maxConnections", p.MaxConnections)
	} else if _, err := r.recordInLedger(p); err != nil {
		return err
	}
	if err := r.annotatePlacement(ctx, s, p); err != nil {
		if fresh && !r.annotationLanded(ctx, s.org.Name, p.Cluster) {
			// Nothing records it: its budget is free again.
			r.Ledger.Fleet.Release(p.Organization)
		}
		return err
	}
	if err := r.placementStatus(ctx, s, p); err != nil {
		return err
	}
	if fresh {
		s.dbNotes.add("placed on DatabaseCluster %s", p.Cluster)
	}
	if fresh {
		s.budgetLogins, s.placedNow = 1, true
	}
	// During a grace period the budget covers two logins.
	s.cluster, s.maxConnections = p.Cluster, int32(p.MaxConnections/s.budgetLogins)
	return r.connectCluster(s)
}

// findPlacement returns the organization's recorded placement, or else the
// cluster whose server holds its role or database by the ownership marker:
// an Organization restored or re-applied without its status and
// annotations finds its database again. While any cluster cannot be
// searched, an organization with no record is not placed, since its
// database may be on that cluster.
func (r *OrganizationReconciler) findPlacement(ctx context.Context, s *scope) (placement.Placement, bool, error) {
	annotated, recorded := s.org.Annotations[tenancyv1alpha1.AnnotationCluster], s.org.Status.Database.Cluster
	if annotated != "" && recorded != "" && annotated != recorded {
		// Someone edited the annotation: the operator never moves an
		// organization, nor follows a record it cannot trust.
		return placement.Placement{}, false, fmt.Errorf("%w: annotation %s says DatabaseCluster %s, status.database.cluster says %s; set the annotation back to %s",
			aurora.ErrConflict, tenancyv1alpha1.AnnotationCluster, annotated, recorded, recorded)
	}
	if p, ok := RecordedPlacement(s.org); ok {
		return p, true, nil
	}
	clusters, err := r.searchSet(ctx)
	if err != nil {
		return placement.Placement{}, false, err
	}
	if starting := r.Ledger.Unchecked(clusters); len(starting) > 0 {
		return placement.Placement{}, false, fmt.Errorf("%w DatabaseCluster %s, before the organization is placed",
			errFleetStarting, strings.Join(starting, ", "))
	}
	var found, unsearched []string
	for _, name := range clusters {
		there, known := r.searchCluster(ctx, s, name)
		switch {
		case !known:
			unsearched = append(unsearched, name)
		case there:
			found = append(found, name)
		}
	}
	switch {
	case len(found) > 1:
		return placement.Placement{}, false, fmt.Errorf("%w: the organization's database or role is on DatabaseClusters %s; delete the one that is not in use",
			aurora.ErrConflict, strings.Join(found, " and "))
	case len(found) == 1:
		ctrl.LoggerFrom(ctx).Info("Found the organization's database by its marker", "cluster", found[0])
		return placement.Placement{Organization: s.org.Name, Cluster: found[0],
			MaxConnections: int(s.org.Spec.Database.Pool.MaxConnections)}, true, nil
	case len(unsearched) > 0:
		return placement.Placement{}, false, fmt.Errorf("%w: DatabaseCluster %s cannot be searched for the organization's database, "+
			"which a restored organization may have there, and has not answered since the operator started; "+
			"it is placed once every DatabaseCluster has answered",
			errSearchIncomplete, strings.Join(unsearched, ", "))
	}
	return placement.Placement{}, false, nil
}

// searchCluster reports whether the organization's role or database is on
// a cluster by its marker, and whether that is known: asked of the server,
// or else read in the cluster's last inventory in this process. A cluster
// with neither is known to hold nothing only if it never could.
func (r *OrganizationReconciler) searchCluster(ctx context.Context, s *scope, cluster string) (there, known bool) {
	if db, ok := r.Databases(cluster); ok {
		found, err := db.FindOrganization(ctx, s.org.Name, s.database, s.role)
		if err == nil {
			return found, true
		}
		ctrl.LoggerFrom(ctx).Info("Cannot search DatabaseCluster for the organization's database", "cluster", cluster, "error", err.Error())
	}
	if inv, ok := r.Ledger.Inventory(cluster); ok {
		return inv[s.org.Name], true
	}
	return false, !r.mayHoldDatabases(ctx, cluster)
}

// mayHoldDatabases reports whether a cluster that cannot be searched may
// hold an organization's database. One that has never been connected (no
// server version on its status) and has nothing placed on it cannot: the
// operator creates databases only on a cluster it has connected to. So a
// new DatabaseCluster with a typo in its Secret does not hold up every new
// organization of the fleet.
func (r *OrganizationReconciler) mayHoldDatabases(ctx context.Context, cluster string) bool {
	// The flags' cluster may hold organizations from before the fleet,
	// whatever its status says.
	if cluster == tenancyv1alpha1.DefaultClusterName || len(r.Ledger.Fleet.Organizations(cluster)) > 0 {
		return true
	}
	dbc := &tenancyv1alpha1.DatabaseCluster{}
	if err := r.Get(ctx, client.ObjectKey{Name: cluster}, dbc); err != nil {
		return !apierrors.IsNotFound(err)
	}
	return dbc.Status.ServerVersion != ""
}

// checkExtensionsOn refuses, before a new placement is recorded, an
// organization whose extensions the chosen cluster's server does not offer:
// placement never moves it afterwards.
func (r *OrganizationReconciler) checkExtensionsOn(ctx context.Context, s *scope, cluster string) error {
	if !hasExtensions(s) {
		return nil
	}
	db, ok := r.Databases(cluster)
	if !ok {
		return fmt.Errorf("DatabaseCluster %s is %w; see its status", cluster, errClusterNotConnected)
	}
	return db.CheckExtensions(ctx, s.extensions())
}

// annotationLanded reads the Organization past the cache after a failed
// annotation write, whose outcome a timeout leaves unknown: one that landed
// keeps its budget.
func (r *OrganizationReconciler) annotationLanded(ctx context.Context, name, cluster string) bool {
	org := &tenancyv1alpha1.Organization{}
	if err := r.APIReader.Get(ctx, client.ObjectKey{Name: name}, org); err != nil {
		// Unknown still: keeping the budget can only leave it unused until
		// the next reconcile records or frees it.
		return !apierrors.IsNotFound(err)
	}
	return org.Annotations[tenancyv1alpha1.AnnotationCluster] == cluster
}

// onlyDown turns a NoCapacity whose every candidate cluster is skipped
// only because it is not Ready into an outage: it needs no person, and
// the organization is placed when one of them is back.
func onlyDown(err error) error {
	var nc *placement.NoCapacityError
	if !errors.As(err, &nc) || nc.MissingRef != "" {
		return err
	}
	var down []string
	for _, skip := range nc.Skipped {
		switch skip.Reason {
		case placement.SkipNotReady:
			down = append(down, skip.Cluster)
		case placement.SkipNotSelected:
		default:
			return err
		}
	}
	if len(down) == 0 {
		return err
	}
	return fmt.Errorf("%w: every DatabaseCluster that could take the organization is down: DatabaseCluster %s; it is placed when one is back",
		errClusterNotConnected, strings.Join(down, ", "))
}

// recordInLedger enters a placement that already exists. One on a cluster
// the ledger does not know, whose DatabaseCluster is gone, still counts.
func (r *OrganizationReconciler) recordInLedger(p placement.Placement) (placement.ClusterUsage, error) {
	cu, err := r.Ledger.Fleet.Record(p)
	if errors.Is(err, placement.ErrUnknownCluster) {
		if err := r.Ledger.Fleet.SetCluster(placement.Cluster{Name: p.Cluster}); err != nil {
			return cu, err
		}
		// Not Ready until its DatabaseCluster, if it exists, is checked;
		// it must not hold other organizations' placement meanwhile.
		r.Ledger.MarkChecked(p.Cluster)
		cu, err = r.Ledger.Fleet.Record(p)
	}
	if errors.Is(err, placement.ErrPlacedElsewhere) {
		return cu, fmt.Errorf("%w: %v", aurora.ErrConflict, err)
	}
	return cu, err
}

func (r *OrganizationReconciler) placementRequest(s *scope) placement.Request {
	req := placement.Request{
		Organization:    s.org.Name,
		MaxConnections:  int(s.org.Spec.Database.Pool.MaxConnections),
		ClusterSelector: s.org.Spec.Database.ClusterSelector,
	}
	if ref := s.org.Spec.Database.ClusterRef; ref != nil {
		req.ClusterRef = ref.Name
	}
	return req
}

// annotatePlacement writes the placement's annotations when they differ.
// The merge patch touches only these keys.
func (r *OrganizationReconciler) annotatePlacement(ctx context.Context, s *scope, p placement.Placement) error {
	budget := strconv.Itoa(p.MaxConnections)
	logins := ""
	if s.budgetLogins > 1 {
		logins = strconv.Itoa(s.budgetLogins)
	}
	a := s.org.Annotations
	if a[tenancyv1alpha1.AnnotationCluster] == p.Cluster && a[tenancyv1alpha1.AnnotationBudgetedConnections] == budget &&
		a[AnnotationBudgetedLogins] == logins {
		return nil
	}
	// A copy of the metadata only is patched: a resize or a rotation's
	// budget runs beside the storage part, which writes s.org's status (so
	// even copying it would race), and the patch's answer would be written
	// into it. The patch holds the annotations only.
	org := &tenancyv1alpha1.Organization{TypeMeta: s.org.TypeMeta, ObjectMeta: *s.org.ObjectMeta.DeepCopy()}
	patch := client.MergeFrom(org.DeepCopy())
	if org.Annotations == nil {
		org.Annotations = map[string]string{}
	}
	org.Annotations[tenancyv1alpha1.AnnotationCluster] = p.Cluster
	org.Annotations[tenancyv1alpha1.AnnotationBudgetedConnections] = budget
	if logins != "" {
		org.Annotations[AnnotationBudgetedLogins] = logins
	} else {
		delete(org.Annotations, AnnotationBudgetedLogins)
	}
	if err := r.Patch(ctx, org, patch); err != nil {
		return fmt.Errorf("recording the placement on DatabaseCluster %s: %w", p.Cluster, err)
	}
	return nil
}

// placementStatus writes status.database.cluster when it differs.
func (r *OrganizationReconciler) placementStatus(ctx context.Context, s *scope, p placement.Placement) error {
	if s.org.Status.Database.Cluster == p.Cluster {
		return nil
	}
	// The status says it too before anything is created; the reconcile's
	// own status patch at its end would come after.
	statusPatch := client.MergeFrom(s.org.DeepCopy())
	s.org.Status.Database.Cluster = p.Cluster
	if err := r.Status().Patch(ctx, s.org, statusPatch); err != nil {
		return fmt.Errorf("recording the placement on DatabaseCluster %s: %w", p.Cluster, err)
	}
	return nil
}

// resizeBudget checks a changed pool maxConnections against the cluster's
// budget. A raise that does not fit is refused and the limit in force
// stays, on the role and in the Secret; a cut always fits.
func (r *OrganizationReconciler) resizeBudget(ctx context.Context, s *scope) error {
	want := s.org.Spec.Database.Pool.MaxConnections
	if want == s.maxConnections {
		return nil
	}
	p, err := r.Ledger.Fleet.Resize(s.org.Name, int(want)*s.budgetLogins)
	if errors.Is(err, placement.ErrOverBudget) {
		return fmt.Errorf("%w: database.pool.maxConnections %d does not fit the connection budget of DatabaseCluster %s; the role keeps its limit of %d: %v",
			errOverBudget, want, s.cluster, s.maxConnections, err)
	}
	if err != nil {
		return err
	}
	if err := r.annotatePlacement(ctx, s, p); err != nil {
		// The ledger keeps the new budget, which is the spec's; the
		// annotation is written on the next reconcile.
		return err
	}
	s.maxConnections = want
	return nil
}

// connectCluster gives the scope its cluster's database service and tenant
// endpoint.
func (r *OrganizationReconciler) connectCluster(s *scope) error {
	if !r.Ledger.Checked(s.cluster) {
		return fmt.Errorf("%w DatabaseCluster %s", errFleetStarting, s.cluster)
	}
	db, ok := r.Databases(s.cluster)
	tenant, known := r.Ledger.Tenant(s.cluster)
	if !ok || !known {
		return fmt.Errorf("DatabaseCluster %s is %w; see its status", s.cluster, errClusterNotConnected)
	}
	s.dbs, s.tenant = db, tenant
	return nil
}

// organizationsForCluster maps a change of a DatabaseCluster, such as new
// capacity, an uncordon, a first health check or budget given back, to the
// Organizations that may now go on: those whose database part is not Ready
// and that are placed on it or not placed at all. An organization waiting
// for capacity is placed the moment there is some, not at a resync.
func (r *OrganizationReconciler) organizationsForCluster(ctx context.Context, dbc client.Object) []reconcile.Request {
	return r.organizationsWhere(ctx, "a changed DatabaseCluster", func(o *tenancyv1alpha1.Organization) bool {
		if meta.IsStatusConditionTrue(o.Status.Conditions, tenancyv1alpha1.ConditionDatabaseReady) {
			return false
		}
		p, placed := RecordedPlacement(o)
		return !placed || p.Cluster == dbc.GetName()
	})
}
