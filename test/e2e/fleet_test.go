// Copyright 2026 The orgforge Authors.
// SPDX-License-Identifier: Apache-2.0

package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/devstack"
	"github.com/orgforge/orgforge/internal/naming"
	"github.com/orgforge/orgforge/internal/placement"
	"github.com/orgforge/orgforge/internal/testutil"
)

// The fleet tests run DatabaseClusters on the suite's fleet servers,
// stack.Clusters: PostgreSQL 13, 15 and 17, in that order. Each test makes
// its own DatabaseClusters, labelled for it, and its organizations select
// them by label, so that the default cluster and other tests' clusters take
// no part; its clusters are deleted when it ends, after its organizations.

// adminSecretNamespace holds the fleet's admin Secrets.
const adminSecretNamespace = "orgforge-system"

// fleetServer returns the suite's fleet server of a PostgreSQL major.
func fleetServer(t *testing.T, major int) *devstack.Postgres {
	t.Helper()
	for i, m := range fleetMajors {
		if m == major {
			return stack.Clusters[i]
		}
	}
	t.Fatalf("no fleet server runs PostgreSQL %d", major)
	return nil
}

// clusterOption changes a DatabaseCluster that newCluster makes.
type clusterOption func(*tenancyv1alpha1.DatabaseCluster)

func withCapacity(maxConnections int32) clusterOption {
	return func(c *tenancyv1alpha1.DatabaseCluster) { c.Spec.Capacity.MaxConnections = ptr.To(maxConnections) }
}

// withCredentials gives the admin as host, port and a Secret of username
// and password, instead of a DSN Secret.
func withCredentials() clusterOption {
	return func(c *tenancyv1alpha1.DatabaseCluster) {
		c.Annotations = map[string]string{"test/credentials": "parts"}
	}
}

// newCluster makes a DatabaseCluster of pg, labelled, with its admin Secret,
// and deletes both when the test ends. It is made before the test's
// organizations, so that its clean-up runs after theirs.
func newCluster(t *testing.T, name string, pg *devstack.Postgres, labels map[string]string, opts ...clusterOption) *tenancyv1alpha1.DatabaseCluster {
	t.Helper()
	ctx := context.Background()
	dbc := &tenancyv1alpha1.DatabaseCluster{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	for _, o := range opts {
		o(dbc)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: adminSecretNamespace, Name: name + "-admin"}}
	ref := &tenancyv1alpha1.SecretReference{Namespace: secret.Namespace, Name: secret.Name}
	if dbc.Annotations["test/credentials"] == "parts" {
		secret.StringData = map[string]string{"username": devstack.AdminUser, "password": pg.AdminPassword}
		dbc.Spec.Admin = tenancyv1alpha1.AdminSpec{Host: pg.Host, Port: int32(pg.Port), Database: "postgres", SSLMode: "disable", CredentialsSecretRef: ref}
	} else {
		secret.StringData = map[string]string{"dsn": pg.AdminDSN()}
		dbc.Spec.Admin = tenancyv1alpha1.AdminSpec{DSNSecretRef: ref}
	}
	dbc.Spec.Tenant.SSLMode = "disable"
	if err := k8s.Create(ctx, secret); err != nil {
		t.Fatalf("creating the admin Secret of %s: %v", name, err)
	}
	if err := k8s.Create(ctx, dbc); err != nil {
		t.Fatalf("creating DatabaseCluster %s: %v", name, err)
	}
	t.Cleanup(func() {
		// Its finalizer needs an operator; a test that restarted its
		// operators may have stopped the last one already.
		if running.Load() == 0 {
			op := launchOperator(t, operatorOptions{})
			defer op.stop()
		}
		_ = k8s.Delete(ctx, dbc)
		testutil.Eventually(t, 60*time.Second, "DatabaseCluster "+name+" to be deleted", func() (bool, string) {
			err := k8s.Get(ctx, client.ObjectKey{Name: name}, &tenancyv1alpha1.DatabaseCluster{})
			return client.IgnoreNotFound(err) == nil && err != nil, fmt.Sprint(err)
		})
		_ = k8s.Delete(ctx, secret)
	})
	return dbc
}

// waitCluster waits until the DatabaseCluster's Ready condition has the
// status and reason given, and returns it.
func waitCluster(t *testing.T, name, status, reason string) *tenancyv1alpha1.DatabaseCluster {
	t.Helper()
	dbc := &tenancyv1alpha1.DatabaseCluster{}
	testutil.Eventually(t, 60*time.Second, fmt.Sprintf("DatabaseCluster %s Ready=%s (%s)", name, status, reason), func() (bool, string) {
		if err := k8s.Get(context.Background(), client.ObjectKey{Name: name}, dbc); err != nil {
			return false, err.Error()
		}
		c := meta.FindStatusCondition(dbc.Status.Conditions, tenancyv1alpha1.ConditionReady)
		if c == nil {
			return false, "no Ready condition"
		}
		// A deletion bumps the generation; what the operator saw of it
		// is the condition.
		current := dbc.Status.ObservedGeneration == dbc.Generation || !dbc.DeletionTimestamp.IsZero()
		return string(c.Status) == status && (reason == "" || c.Reason == reason) && current,
			fmt.Sprintf("%s/%s: %s", c.Status, c.Reason, c.Message)
	})
	return dbc
}

// patchCluster changes a DatabaseCluster's spec with edit and waits until
// the operator has acted on the change.
func patchCluster(t *testing.T, name string, edit func(*tenancyv1alpha1.DatabaseCluster)) {
	t.Helper()
	ctx := context.Background()
	dbc := &tenancyv1alpha1.DatabaseCluster{}
	if err := k8s.Get(ctx, client.ObjectKey{Name: name}, dbc); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(dbc.DeepCopy())
	edit(dbc)
	if err := k8s.Patch(ctx, dbc, patch); err != nil {
		t.Fatalf("patching DatabaseCluster %s: %v", name, err)
	}
}

// databasesOn counts the databases named datname on pg.
func databasesOn(t *testing.T, pg *devstack.Postgres, datname string) int {
	t.Helper()
	su := testutil.Superuser(t, pg, "postgres")
	return count(t, su, "SELECT count(*) FROM pg_database WHERE datname = $1", datname)
}

// placedOn returns the cluster an Organization's status and annotation
// both name, failing the test when they disagree.
func placedOn(t *testing.T, o *tenancyv1alpha1.Organization) string {
	t.Helper()
	if a := o.Annotations[tenancyv1alpha1.AnnotationCluster]; a != o.Status.Database.Cluster {
		t.Fatalf("%s: annotation says cluster %q, status says %q", o.Name, a, o.Status.Database.Cluster)
	}
	return o.Status.Database.Cluster
}

func TestFleetClustersReportTheirServersAndTheDefaultClusterIsShown(t *testing.T) {
	startOperator(t, nil)
	labels := map[string]string{"fleet-test": "report"}
	newCluster(t, "report-13", fleetServer(t, 13), labels, withCapacity(40))
	newCluster(t, "report-15", fleetServer(t, 15), labels, withCredentials())
	missing := &tenancyv1alpha1.DatabaseCluster{ObjectMeta: metav1.ObjectMeta{Name: "report-missing"}}
	missing.Spec.Admin.DSNSecretRef = &tenancyv1alpha1.SecretReference{Namespace: adminSecretNamespace, Name: "no-such-secret"}
	if err := k8s.Create(context.Background(), missing); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), missing) })

	c13 := waitCluster(t, "report-13", "True", tenancyv1alpha1.ReasonConnected)
	if !strings.HasPrefix(c13.Status.ServerVersion, "13.") {
		t.Errorf("report-13 reports server version %q, want 13.x", c13.Status.ServerVersion)
	}
	if c13.Status.Connections.Capacity != 40 || c13.Status.ConnectionBudget != "0/40" {
		t.Errorf("report-13's budget is %+v %q, want the spec's 40, none used", c13.Status.Connections, c13.Status.ConnectionBudget)
	}

	// Without capacity.maxConnections the budget is the server's
	// max_connections less what tenants can never use.
	c15 := waitCluster(t, "report-15", "True", tenancyv1alpha1.ReasonConnected)
	su := testutil.Superuser(t, fleetServer(t, 15), "postgres")
	maxConns := count(t, su, "SELECT current_setting('max_connections')::int")
	reserved := count(t, su, "SELECT current_setting('superuser_reserved_connections')::int")
	want := placement.DefaultMaxConnections(maxConns, reserved, 0, int(cfg.Database.MaxConnections))
	if !strings.HasPrefix(c15.Status.ServerVersion, "15.") || int(c15.Status.Connections.Capacity) != want {
		t.Errorf("report-15 reports version %q and capacity %d; want 15.x and %d", c15.Status.ServerVersion, c15.Status.Connections.Capacity, want)
	}
	if c15.Status.LastHealthCheck == nil {
		t.Error("report-15 has no lastHealthCheck")
	}

	def := waitCluster(t, tenancyv1alpha1.DefaultClusterName, "True", tenancyv1alpha1.ReasonConnected)
	if !def.Spec.Admin.FromFlags {
		t.Errorf("the default DatabaseCluster's admin is %+v, want the operator's flags", def.Spec.Admin)
	}

	bad := waitCluster(t, "report-missing", "False", tenancyv1alpha1.ReasonInvalidSpec)
	if !meta.IsStatusConditionTrue(bad.Status.Conditions, tenancyv1alpha1.ConditionStalled) {
		t.Errorf("a DatabaseCluster whose Secret is missing is not Stalled: %+v", bad.Status.Conditions)
	}
	if msg := meta.FindStatusCondition(bad.Status.Conditions, tenancyv1alpha1.ConditionReady).Message; !strings.Contains(msg, "no-such-secret") {
		t.Errorf("the message %q does not name the missing Secret", msg)
	}
	// A cluster never connected holds no database: it does not hold up the
	// placement of a new organization, which must otherwise search every
	// cluster first.
	apply(t, testutil.NewOrg("report-org", testutil.OnClustersLabelled(labels), testutil.WithStorageAccess(tenancyv1alpha1.StorageAccessNone)))
	if got := placedOn(t, waitReady(t, "report-org")); got != "report-15" {
		t.Errorf("report-org went to %s; report-15, with its server's default budget of %d, has the most left", got, want)
	}
}

func TestFleetSpreadsOrganizationsByConnectionBudgetLeft(t *testing.T) {
	startOperator(t, nil)
	labels := map[string]string{"fleet-test": "spread"}
	servers := map[string]*devstack.Postgres{
		"spread-a": fleetServer(t, 13), "spread-b": fleetServer(t, 15), "spread-c": fleetServer(t, 17),
	}
	newCluster(t, "spread-a", servers["spread-a"], labels, withCapacity(30))
	newCluster(t, "spread-b", servers["spread-b"], labels, withCapacity(20))
	newCluster(t, "spread-c", servers["spread-c"], labels, withCapacity(10))
	for name := range servers {
		waitCluster(t, name, "True", tenancyv1alpha1.ReasonConnected)
	}
	// Each takes 5 of the cluster with the most left after it; a tie goes
	// to the first by name. Budgets left: a 30, b 20, c 10.
	want := []string{"spread-a", "spread-a", "spread-a", "spread-b", "spread-a", "spread-b"}
	for i, cluster := range want {
		name := fmt.Sprintf("spread-%d", i)
		apply(t, testutil.NewOrg(name, testutil.WithPool(1, 5), testutil.OnClustersLabelled(labels),
			testutil.WithStorageAccess(tenancyv1alpha1.StorageAccessNone)))
		o := waitReady(t, name)
		if got := placedOn(t, o); got != cluster {
			t.Fatalf("organization %d went to %s, want %s", i, got, cluster)
		}
		pg := servers[cluster]
		if o.Status.Database.Port != int32(pg.Port) {
			t.Errorf("%s's status says port %d, its cluster's server is on %d", name, o.Status.Database.Port, pg.Port)
		}
		if err := login(context.Background(), string(secret(t, o, name+"-database").Data["uri"])); err != nil {
			t.Errorf("%s's Secret does not log in to its cluster: %v", name, err)
		}
		for other, opg := range servers {
			if n := databasesOn(t, opg, o.Status.Database.Name); (other == cluster) != (n == 1) {
				t.Errorf("%s's database is %d times on %s", name, n, other)
			}
		}
	}
	// What is left is now even: 10 on each.
	for name, budget := range map[string]string{"spread-a": "20/30", "spread-b": "10/20", "spread-c": "0/10"} {
		testutil.Eventually(t, 30*time.Second, name+" budget "+budget, func() (bool, string) {
			dbc := &tenancyv1alpha1.DatabaseCluster{}
			if err := k8s.Get(context.Background(), client.ObjectKey{Name: name}, dbc); err != nil {
				return false, err.Error()
			}
			return dbc.Status.ConnectionBudget == budget, dbc.Status.ConnectionBudget
		})
	}
}

func TestFleetPinSelectorAndCordonChooseTheCluster(t *testing.T) {
	startOperator(t, nil)
	newCluster(t, "pin-gold", fleetServer(t, 13), map[string]string{"fleet-test": "pin", "tier": "gold"}, withCapacity(50))
	newCluster(t, "pin-silver", fleetServer(t, 15), map[string]string{"fleet-test": "pin", "tier": "silver"}, withCapacity(100))
	waitCluster(t, "pin-gold", "True", "")
	waitCluster(t, "pin-silver", "True", "")
	noS3 := testutil.WithStorageAccess(tenancyv1alpha1.StorageAccessNone)

	// The pin wins over budget: pin-silver has more left.
	apply(t, testutil.NewOrg("pin-ref", testutil.OnCluster("pin-gold"), noS3))
	apply(t, testutil.NewOrg("pin-sel", testutil.OnClustersLabelled(map[string]string{"tier": "silver"}), noS3))
	if got := placedOn(t, waitReady(t, "pin-ref")); got != "pin-gold" {
		t.Errorf("pinned organization went to %s", got)
	}
	if got := placedOn(t, waitReady(t, "pin-sel")); got != "pin-silver" {
		t.Errorf("selected organization went to %s", got)
	}

	patchCluster(t, "pin-gold", func(c *tenancyv1alpha1.DatabaseCluster) { c.Spec.Schedulable = ptr.To(false) })
	waitCluster(t, "pin-gold", "True", "")
	apply(t, testutil.NewOrg("pin-cordoned", testutil.OnClustersLabelled(map[string]string{"tier": "gold"}), noS3))
	o := waitCondition(t, "pin-cordoned", tenancyv1alpha1.ConditionDatabaseReady, "False", tenancyv1alpha1.ReasonNoCapacity, 30*time.Second)
	if msg := testutil.ConditionOf(o, tenancyv1alpha1.ConditionDatabaseReady).Message; !strings.Contains(msg, "pin-gold: cordoned") {
		t.Errorf("NoCapacity message %q does not say pin-gold is cordoned", msg)
	}
	// A cordoned cluster still serves the organizations on it.
	ref := waitReady(t, "pin-ref")
	ref.Spec.Database.Pool.MinConnections = 1
	if err := k8s.Update(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
	waitReady(t, "pin-ref")

	apply(t, testutil.NewOrg("pin-nowhere", testutil.OnCluster("no-such-cluster"), noS3))
	o = waitCondition(t, "pin-nowhere", tenancyv1alpha1.ConditionDatabaseReady, "False", tenancyv1alpha1.ReasonNoCapacity, 30*time.Second)
	if msg := testutil.ConditionOf(o, tenancyv1alpha1.ConditionDatabaseReady).Message; !strings.Contains(msg, `clusterRef "no-such-cluster": no such DatabaseCluster`) {
		t.Errorf("NoCapacity message %q does not say the pinned cluster does not exist", msg)
	}

	// Uncordoning places the waiting organization at once.
	patchCluster(t, "pin-gold", func(c *tenancyv1alpha1.DatabaseCluster) { c.Spec.Schedulable = nil })
	if got := placedOn(t, waitReady(t, "pin-cordoned")); got != "pin-gold" {
		t.Errorf("after the uncordon the organization went to %s", got)
	}
}

func TestFleetNoCapacityUntilCapacityIsAddedAndARaiseIsCheckedAgainstTheBudget(t *testing.T) {
	startOperator(t, nil)
	labels := map[string]string{"fleet-test": "capacity"}
	newCluster(t, "capacity-a", fleetServer(t, 17), labels, withCapacity(10))
	waitCluster(t, "capacity-a", "True", "")
	noS3 := testutil.WithStorageAccess(tenancyv1alpha1.StorageAccessNone)
	sel := testutil.OnClustersLabelled(labels)

	apply(t, testutil.NewOrg("capacity-first", testutil.WithPool(2, 10), sel, noS3))
	waitReady(t, "capacity-first")
	apply(t, testutil.NewOrg("capacity-second", testutil.WithPool(1, 5), sel, noS3))
	o := waitCondition(t, "capacity-second", tenancyv1alpha1.ConditionDatabaseReady, "False", tenancyv1alpha1.ReasonNoCapacity, 30*time.Second)
	if msg := testutil.ConditionOf(o, tenancyv1alpha1.ConditionDatabaseReady).Message; !strings.Contains(msg, "capacity-a: connections would use 10+5 of 10") {
		t.Errorf("NoCapacity message %q does not say why capacity-a was skipped", msg)
	}
	if n := databasesOn(t, fleetServer(t, 17), naming.DatabaseName("capacity-second")); n != 0 {
		t.Fatalf("an organization with no capacity has a database")
	}
	patchCluster(t, "capacity-a", func(c *tenancyv1alpha1.DatabaseCluster) { c.Spec.Capacity.MaxConnections = ptr.To[int32](20) })
	waitReady(t, "capacity-second")

	// A raise past the budget is refused; the old limit stays in force.
	first := waitReady(t, "capacity-first")
	first.Spec.Database.Pool.MaxConnections = 20
	if err := k8s.Update(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, "capacity-first", tenancyv1alpha1.ConditionDatabaseReady, "False", tenancyv1alpha1.ReasonOverBudget, 30*time.Second)
	su := testutil.Superuser(t, fleetServer(t, 17), "postgres")
	if n := count(t, su, "SELECT rolconnlimit FROM pg_roles WHERE rolname = $1", naming.RoleName("capacity-first")); n != 10 {
		t.Errorf("the refused raise changed the role's connection limit to %d", n)
	}
	if got := string(secret(t, first, "capacity-first-database").Data["pool-max-size"]); got != "10" {
		t.Errorf("the refused raise changed the Secret's pool-max-size to %s", got)
	}
	patchCluster(t, "capacity-a", func(c *tenancyv1alpha1.DatabaseCluster) { c.Spec.Capacity.MaxConnections = ptr.To[int32](30) })
	first = waitReady(t, "capacity-first")
	if n := count(t, su, "SELECT rolconnlimit FROM pg_roles WHERE rolname = $1", naming.RoleName("capacity-first")); n != 20 {
		t.Errorf("after capacity was added the role's connection limit is %d, want 20", n)
	}
	if got := first.Annotations[tenancyv1alpha1.AnnotationBudgetedConnections]; got != "20" {
		t.Errorf("budgeted-connections annotation is %q, want 20", got)
	}
}

func TestFleetAClusterWithOrganizationsCannotBeDeleted(t *testing.T) {
	startOperator(t, nil)
	labels := map[string]string{"fleet-test": "held"}
	newCluster(t, "held", fleetServer(t, 13), labels, withCapacity(50))
	waitCluster(t, "held", "True", "")
	apply(t, testutil.NewOrg("held-org", testutil.OnClustersLabelled(labels), testutil.WithStorageAccess(tenancyv1alpha1.StorageAccessNone)))
	waitReady(t, "held-org")

	if err := k8s.Delete(context.Background(), &tenancyv1alpha1.DatabaseCluster{ObjectMeta: metav1.ObjectMeta{Name: "held"}}); err != nil {
		t.Fatal(err)
	}
	dbc := waitCluster(t, "held", "False", tenancyv1alpha1.ReasonInUse)
	if msg := meta.FindStatusCondition(dbc.Status.Conditions, tenancyv1alpha1.ConditionReady).Message; !strings.Contains(msg, "held-org") {
		t.Errorf("InUse message %q does not name the organization that holds it", msg)
	}
	// The organization is still served while its cluster waits.
	waitReady(t, "held-org")
	deleteAndWait(t, "held-org")
	testutil.Eventually(t, 30*time.Second, "DatabaseCluster held to go once empty", func() (bool, string) {
		err := k8s.Get(context.Background(), client.ObjectKey{Name: "held"}, &tenancyv1alpha1.DatabaseCluster{})
		return client.IgnoreNotFound(err) == nil && err != nil, fmt.Sprint(err)
	})
}

func TestFleetACrashBetweenPlacementAndCreateDatabaseNeverPlacesTwice(t *testing.T) {
	labels := map[string]string{"fleet-test": "crash"}
	servers := map[string]*devstack.Postgres{"crash-a": fleetServer(t, 13), "crash-b": fleetServer(t, 15)}
	newCluster(t, "crash-a", servers["crash-a"], labels, withCapacity(40))
	newCluster(t, "crash-b", servers["crash-b"], labels, withCapacity(40))
	d := &crash{hit: make(chan struct{})}
	first := startOperator(t, interrupt(d))
	d.stop = first.stop
	apply(t, testutil.NewOrg("crash-org", testutil.OnClustersLabelled(labels), testutil.WithStorageAccess(tenancyv1alpha1.StorageAccessNone)))
	select {
	case <-d.hit:
	case <-time.After(60 * time.Second):
		t.Fatal("the first manager never reached CREATE DATABASE")
	}
	<-first.done

	o := &tenancyv1alpha1.Organization{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Name: "crash-org"}, o); err != nil {
		t.Fatal(err)
	}
	chosen := placedOn(t, o)
	if servers[chosen] == nil {
		t.Fatalf("the placement recorded before the crash is %q", chosen)
	}
	for name, pg := range servers {
		if n := databasesOn(t, pg, naming.DatabaseName("crash-org")); n != 0 {
			t.Fatalf("a database exists on %s before the restart", name)
		}
	}
	// Cordoned, the chosen cluster would never be chosen again: the
	// restarted operator must follow the record, not choose anew.
	patchCluster(t, chosen, func(c *tenancyv1alpha1.DatabaseCluster) { c.Spec.Schedulable = ptr.To(false) })
	startOperator(t, nil)
	t.Cleanup(func() { deleteAndWait(t, "crash-org") })
	if got := placedOn(t, waitReady(t, "crash-org")); got != chosen {
		t.Fatalf("after the restart the organization is on %s, it was placed on %s", got, chosen)
	}
	for name, pg := range servers {
		if n, want := databasesOn(t, pg, naming.DatabaseName("crash-org")), map[bool]int{true: 1, false: 0}[name == chosen]; n != want {
			t.Errorf("%d databases on %s, want %d", n, name, want)
		}
	}
}

func TestFleetAnOrganizationThatLostItsRecordsFindsItsDatabaseAgain(t *testing.T) {
	labels := map[string]string{"fleet-test": "lost"}
	servers := map[string]*devstack.Postgres{"lost-a": fleetServer(t, 15), "lost-b": fleetServer(t, 17)}
	newCluster(t, "lost-a", servers["lost-a"], labels, withCapacity(40))
	newCluster(t, "lost-b", servers["lost-b"], labels, withCapacity(40))
	op := startOperator(t, nil)
	apply(t, testutil.NewOrg("lost-org", testutil.OnClustersLabelled(labels), testutil.WithStorageAccess(tenancyv1alpha1.StorageAccessNone)))
	o := waitReady(t, "lost-org")
	home := placedOn(t, o)
	ctx := context.Background()
	uri := string(secret(t, o, "lost-org-database").Data["uri"])
	tenant := connect(t, uri)
	if _, err := tenant.Exec(ctx, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')"); err != nil {
		t.Fatal(err)
	}
	op.stop()

	// A restore without status and without the operator's annotations.
	patch := client.MergeFrom(o.DeepCopy())
	delete(o.Annotations, tenancyv1alpha1.AnnotationCluster)
	delete(o.Annotations, tenancyv1alpha1.AnnotationBudgetedConnections)
	if err := k8s.Patch(ctx, o, patch); err != nil {
		t.Fatal(err)
	}
	if err := mergePatchStatus(ctx, "lost-org", map[string]any{"status": map[string]any{
		"database": nil, "conditions": nil, "observedGeneration": 0}}); err != nil {
		t.Fatal(err)
	}
	patchCluster(t, home, func(c *tenancyv1alpha1.DatabaseCluster) { c.Spec.Schedulable = ptr.To(false) })

	startOperator(t, nil)
	// Cleanups run last-in first-out: delete while this manager still runs.
	t.Cleanup(func() { deleteAndWait(t, "lost-org") })
	o = waitReady(t, "lost-org")
	if got := placedOn(t, o); got != home {
		t.Fatalf("the organization was found on %s; its database is on %s", got, home)
	}
	var v string
	if err := connect(t, string(secret(t, o, "lost-org-database").Data["uri"])).QueryRow(ctx, "SELECT v FROM kept").Scan(&v); err != nil || v != "still here" {
		t.Fatalf("the organization's data after it was found again: %q, %v", v, err)
	}
	for name, pg := range servers {
		if n, want := databasesOn(t, pg, naming.DatabaseName("lost-org")), map[bool]int{true: 1, false: 0}[name == home]; n != want {
			t.Errorf("%d databases on %s, want %d", n, name, want)
		}
	}
}

func TestFleetOneClusterDownLeavesTheOthersServed(t *testing.T) {
	startOperator(t, nil)
	labels := map[string]string{"fleet-test": "outage"}
	down, up := fleetServer(t, 13), fleetServer(t, 15)
	newCluster(t, "outage-down", down, labels, withCapacity(40))
	newCluster(t, "outage-up", up, labels, withCapacity(40))
	waitCluster(t, "outage-down", "True", "")
	waitCluster(t, "outage-up", "True", "")
	apply(t, testutil.NewOrg("outage-x", testutil.OnCluster("outage-down")))
	apply(t, testutil.NewOrg("outage-y", testutil.OnCluster("outage-up")))
	waitReady(t, "outage-x")
	waitReady(t, "outage-y")

	if err := down.Stop(); err != nil {
		t.Fatal(err)
	}
	restarted := false
	restart := func() {
		if !restarted {
			restarted = true
			if err := down.Start(context.Background()); err != nil {
				t.Fatalf("restarting the stopped server: %v", err)
			}
		}
	}
	t.Cleanup(restart)
	waitCluster(t, "outage-down", "False", tenancyv1alpha1.ReasonUnreachable)
	x := waitCondition(t, "outage-x", tenancyv1alpha1.ConditionDatabaseReady, "False", tenancyv1alpha1.ReasonDatabaseUnavailable, 60*time.Second)
	if !meta.IsStatusConditionTrue(x.Status.Conditions, tenancyv1alpha1.ConditionStorageReady) {
		t.Errorf("the outage of outage-x's cluster stopped its storage too: %s", testutil.DescribeCondition(x, tenancyv1alpha1.ConditionStorageReady))
	}
	// The other cluster is served: a change to its organization goes through.
	y := waitReady(t, "outage-y")
	y.Spec.Database.Pool.MaxConnections = 8
	if err := k8s.Update(context.Background(), y); err != nil {
		t.Fatal(err)
	}
	y = waitReady(t, "outage-y")
	if got := string(secret(t, y, "outage-y-database").Data["pool-max-size"]); got != "8" {
		t.Errorf("outage-y's change did not reach its Secret during the other cluster's outage: pool-max-size %s", got)
	}
	waitCluster(t, "outage-up", "True", tenancyv1alpha1.ReasonConnected)
	// A new organization is placed on the cluster that is up: the one that
	// is down was inventoried before it went, and held no database of it.
	apply(t, testutil.NewOrg("outage-new", testutil.OnClustersLabelled(labels), testutil.WithStorageAccess(tenancyv1alpha1.StorageAccessNone)))
	if got := placedOn(t, waitReady(t, "outage-new")); got != "outage-up" {
		t.Errorf("the organization applied during the outage went to %s", got)
	}

	restart()
	waitCluster(t, "outage-down", "True", tenancyv1alpha1.ReasonConnected)
	waitReady(t, "outage-x")
}

// TestFleetConcurrentPlacementNeverOversubscribes applies more
// organizations at once than three clusters' budgets hold: exactly as many
// as fit are placed, and no cluster goes over.
func TestFleetConcurrentPlacementNeverOversubscribes(t *testing.T) {
	startOperator(t, nil)
	labels := map[string]string{"fleet-test": "exact"}
	caps := map[string]int32{"exact-a": 67, "exact-b": 67, "exact-c": 66}
	servers := map[string]*devstack.Postgres{"exact-a": fleetServer(t, 13), "exact-b": fleetServer(t, 15), "exact-c": fleetServer(t, 17)}
	for name, c := range caps {
		newCluster(t, name, servers[name], labels, withCapacity(c))
	}
	for name := range caps {
		waitCluster(t, name, "True", "")
	}
	const fits, extra = 200, 10
	names := make([]string, fits+extra)
	for i := range names {
		names[i] = fmt.Sprintf("exact-%03d", i)
	}
	ctx := context.Background()
	t.Cleanup(func() { deleteAll(t, names) })
	errs := testutil.Parallel(names, 16, func(name string) error {
		return k8s.Create(ctx, testutil.NewOrg(name, testutil.WithPool(1, 1), testutil.OnClustersLabelled(labels),
			testutil.WithStorageAccess(tenancyv1alpha1.StorageAccessNone)))
	})
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	placed := map[string]int{}
	testutil.EventuallyEvery(t, time.Second, 5*time.Minute, "every organization Ready or NoCapacity", func() (bool, string) {
		var list tenancyv1alpha1.OrganizationList
		if err := k8s.List(ctx, &list); err != nil {
			return false, err.Error()
		}
		clear(placed)
		settled, waiting := 0, 0
		for i := range list.Items {
			o := &list.Items[i]
			if !strings.HasPrefix(o.Name, "exact-") {
				continue
			}
			c := testutil.ConditionOf(o, tenancyv1alpha1.ConditionDatabaseReady)
			switch {
			case c.Status == metav1.ConditionTrue:
				settled++
				placed[o.Status.Database.Cluster]++
			case c.Reason == tenancyv1alpha1.ReasonNoCapacity:
				settled++
				waiting++
			}
		}
		return settled == len(names), fmt.Sprintf("%d of %d settled, %d waiting, placed %v", settled, len(names), waiting, placed)
	})
	total := 0
	for name, c := range caps {
		total += placed[name]
		if placed[name] != int(c) {
			t.Errorf("%s holds %d organizations of a budget of %d", name, placed[name], c)
		}
		su := testutil.Superuser(t, servers[name], "postgres")
		if n := count(t, su, "SELECT count(*) FROM pg_database WHERE datname LIKE 'org_exact_%'"); n != placed[name] {
			t.Errorf("%s's server has %d of the test's databases; %d organizations are placed on it", name, n, placed[name])
		}
	}
	if total != fits {
		t.Errorf("%d organizations placed, want exactly %d", total, fits)
	}
}

// deleteAll deletes the Organizations at once and waits until all are gone.
func deleteAll(t *testing.T, names []string) {
	t.Helper()
	ctx := context.Background()
	testutil.Parallel(names, 16, func(name string) error {
		return client.IgnoreNotFound(k8s.Delete(ctx, &tenancyv1alpha1.Organization{ObjectMeta: metav1.ObjectMeta{Name: name}}))
	})
	testutil.EventuallyEvery(t, time.Second, 5*time.Minute, "the organizations to be deleted", func() (bool, string) {
		left := 0
		for _, name := range names {
			if err := k8s.Get(ctx, client.ObjectKey{Name: name}, &tenancyv1alpha1.Organization{}); client.IgnoreNotFound(err) != nil || err == nil {
				left++
			}
		}
		return left == 0, strconv.Itoa(left) + " left"
	})
}

// mergePatchStatus changes an Organization's status with a JSON merge patch,
// as a restore that lost it would leave it.
func mergePatchStatus(ctx context.Context, name string, patch map[string]any) error {
	body, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	o := &tenancyv1alpha1.Organization{ObjectMeta: metav1.ObjectMeta{Name: name}}
	return k8s.Status().Patch(ctx, o, client.RawPatch(types.MergePatchType, body))
}

// connect logs in with a Secret's uri, as an application would with
// pgxpool, for the test's own queries.
func connect(t *testing.T, uri string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), uri)
	if err != nil {
		t.Fatalf("logging in with the Secret's uri: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}
