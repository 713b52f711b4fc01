package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/controllers"
	"github.com/orgforge/orgforge/internal/aurora"
	"github.com/orgforge/orgforge/internal/devstack"
	"github.com/orgforge/orgforge/internal/naming"
	"github.com/orgforge/orgforge/internal/registry"
	"github.com/orgforge/orgforge/internal/storage"
	"github.com/orgforge/orgforge/internal/testutil"
)

// suiteClusterID is the suite's Kubernetes cluster identity, as the
// operator reads it: the kube-system namespace's UID.
func suiteClusterID(t *testing.T, c client.Client) string {
	t.Helper()
	ns := &corev1.Namespace{}
	if err := c.Get(context.Background(), client.ObjectKey{Name: metav1.NamespaceSystem}, ns); err != nil {
		t.Fatal(err)
	}
	return string(ns.UID)
}

// comment reads the COMMENT of a role or database on pg.
func comment(t *testing.T, pg *devstack.Postgres, kind, name string) string {
	t.Helper()
	query := `SELECT COALESCE(shobj_description(oid, 'pg_authid'), '') FROM pg_roles WHERE rolname = $1`
	if kind == "database" {
		query = `SELECT COALESCE(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = $1`
	}
	var c string
	if err := testutil.Superuser(t, pg, "postgres").QueryRow(context.Background(), query, name).Scan(&c); err != nil {
		t.Fatalf("comment of %s %s: %v", kind, name, err)
	}
	return c
}

// retainedOrg is what an Organization deleted with Retain left: its UID,
// its database Secret's password, and a row and an object written through
// its credentials.
type retainedOrg struct {
	org      *tenancyv1alpha1.Organization
	password string
	prefix   string
}

// retainOne applies an Organization with deletionPolicy Retain, writes a
// row and an object as its tenant, and deletes it. What Retain kept is
// dropped when the test ends, unless something adopted it.
func retainOne(t *testing.T, o *tenancyv1alpha1.Organization) retainedOrg {
	t.Helper()
	ctx := context.Background()
	o.Spec.DeletionPolicy = tenancyv1alpha1.DeletionPolicyRetain
	o = applyReady(t, o)
	r := retainedOrg{org: o, prefix: "orgs/" + o.Name + "/"}
	dbSecret := secret(t, o, naming.DatabaseSecretName(o.Name))
	r.password = string(dbSecret.Data["password"])
	if _, err := connect(t, string(dbSecret.Data["uri"])).Exec(ctx, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')"); err != nil {
		t.Fatal(err)
	}
	if o.Spec.Storage.Access != tenancyv1alpha1.StorageAccessNone {
		own := storageClient(t, o)
		waitKeyWorks(t, func() error { return testutil.PutObject(ctx, own, stack.S3.Bucket, r.prefix+"keep.txt", "keep") })
	}
	deleteAndWait(t, o.Name)
	dropRetained(t, o, r.prefix)
	return r
}

// readWith waits until the storage key of o, which adopted r's prefix,
// reads back the object retainOne wrote.
func (r retainedOrg) readWith(t *testing.T, o *tenancyv1alpha1.Organization) {
	t.Helper()
	own := storageClient(t, o)
	waitKeyWorks(t, func() error {
		body, err := testutil.GetObject(context.Background(), own, stack.S3.Bucket, r.prefix+"keep.txt")
		if err == nil && body != "keep" {
			return fmt.Errorf("object reads %q", body)
		}
		return err
	})
}

// kept reads back the row retainOne wrote, with a database Secret's uri.
func kept(t *testing.T, uri string) string {
	t.Helper()
	var v string
	if err := connect(t, uri).QueryRow(context.Background(), "SELECT v FROM kept").Scan(&v); err != nil {
		t.Fatalf("reading the retained row: %v", err)
	}
	return v
}

func TestAdoptionSameNameTakesOverWhatRetainKept(t *testing.T) {
	op := startOperator(t, nil)
	ctx := context.Background()
	const name = "adopt-same"
	old := retainOne(t, testutil.NewOrg(name))
	role, db := naming.RoleName(name), naming.DatabaseName(name)

	o := applyReady(t, testutil.NewOrg(name, testutil.WithAdoption(tenancyv1alpha1.AdoptionSameName)))
	if o.UID == old.org.UID {
		t.Fatal("the Organization applied again has its old UID")
	}
	if a := o.Status.Adoption; a == nil || a.FromUID != string(old.org.UID) {
		t.Fatalf("status.adoption = %+v, want fromUID %s", a, old.org.UID)
	}
	for _, want := range []string{"role " + role, "database " + db, "prefix s3://" + stack.S3.Bucket + "/" + old.prefix,
		"Secret " + o.Status.Namespace + "/" + naming.DatabaseSecretName(name)} {
		if !strings.Contains(strings.Join(o.Status.Adoption.Resources, "; "), want) {
			t.Errorf("status.adoption.resources %q lack %q", o.Status.Adoption.Resources, want)
		}
	}
	if !hasEvent(op, "Adopted: Adopted ") || !strings.Contains(strings.Join(op.eventsSnapshot(), "\n"), "(uid "+string(old.org.UID)+")") {
		t.Errorf("no Adopted event naming uid %s; events: %v", old.org.UID, op.eventsSnapshot())
	}

	// The database and its data, through the retained Secret, whose
	// password is the same and still logs in.
	dbSecret := secret(t, o, naming.DatabaseSecretName(name))
	if got := string(dbSecret.Data["password"]); got != old.password {
		t.Error("the retained Secret's password was changed, though it still logged in")
	}
	if v := kept(t, string(dbSecret.Data["uri"])); v != "still here" {
		t.Errorf("retained row = %q", v)
	}
	if ref := metav1.GetControllerOf(dbSecret); ref == nil || ref.UID != o.UID {
		t.Errorf("the adopted Secret's controller is %v, want the new Organization %s", ref, o.UID)
	}
	if a := dbSecret.Annotations[controllers.AnnotationAdoption]; !strings.Contains(a, string(old.org.UID)) || !strings.Contains(a, "kept") {
		t.Errorf("the adopted Secret's %s annotation = %q", controllers.AnnotationAdoption, a)
	}

	// Every marker now carries the new UID and this cluster.
	want := aurora.Marker{Org: name, UID: string(o.UID), Cluster: suiteClusterID(t, k8s)}.String()
	for _, kind := range []string{"role", "database"} {
		if got := comment(t, stack.Postgres, kind, map[string]string{"role": role, "database": db}[kind]); got != want {
			t.Errorf("%s marker = %q, want %q", kind, got, want)
		}
	}
	owner, _, err := reg.Storage.PrefixOwner(ctx, old.prefix)
	if err != nil || owner != (storage.Marker{Org: name, UID: string(o.UID), Cluster: suiteClusterID(t, k8s)}) {
		t.Errorf("prefix marker = %+v, %v; want the new UID and this cluster", owner, err)
	}

	// A new key, of a user Retain had deleted, reads the old prefix.
	old.readWith(t, o)
}

func TestAdoptionNeverReportsConflictAndChangesNothing(t *testing.T) {
	startOperator(t, nil)
	ctx := context.Background()
	const name = "adopt-never"
	old := retainOne(t, testutil.NewOrg(name))
	oldMarker := aurora.Marker{Org: name, UID: string(old.org.UID), Cluster: suiteClusterID(t, k8s)}.String()

	apply(t, testutil.NewOrg(name))
	o := waitCondition(t, name, tenancyv1alpha1.ConditionDatabaseReady, "False", tenancyv1alpha1.ReasonConflict, 30*time.Second)
	waitCondition(t, name, tenancyv1alpha1.ConditionStorageReady, "False", tenancyv1alpha1.ReasonConflict, 30*time.Second)
	if !strings.Contains(testutil.ConditionOf(o, tenancyv1alpha1.ConditionDatabaseReady).Message, string(old.org.UID)) {
		t.Errorf("the Conflict does not name the old UID: %s", testutil.DescribeCondition(o, tenancyv1alpha1.ConditionDatabaseReady))
	}
	if o.Status.Adoption != nil {
		t.Errorf("status.adoption = %+v with adoption Never", o.Status.Adoption)
	}
	for kind, n := range map[string]string{"role": naming.RoleName(name), "database": naming.DatabaseName(name)} {
		if got := comment(t, stack.Postgres, kind, n); got != oldMarker {
			t.Errorf("%s marker = %q, want the old one %q", kind, got, oldMarker)
		}
	}
	if owner, _, err := reg.Storage.PrefixOwner(ctx, old.prefix); err != nil || owner.UID != string(old.org.UID) {
		t.Errorf("prefix marker = %+v, %v; want the old UID", owner, err)
	}
	s := &corev1.Secret{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: naming.Namespace(name), Name: naming.DatabaseSecretName(name)}, s); err != nil {
		t.Fatal(err)
	}
	if len(s.OwnerReferences) != 0 || string(s.Data["password"]) != old.password {
		t.Errorf("the retained Secret changed: owners %v, same password %v", s.OwnerReferences, string(s.Data["password"]) == old.password)
	}
	if v := kept(t, string(s.Data["uri"])); v != "still here" {
		t.Errorf("retained row = %q", v)
	}
}

func TestAdoptionSameNameLeavesForeignDatabasesInConflict(t *testing.T) {
	startOperator(t, nil)
	ctx := context.Background()
	su := testutil.Superuser(t, stack.Postgres, "postgres")
	// An unmarked database, and one marked by another Kubernetes cluster's
	// operator for an Organization of the same name.
	const unmarked, foreign = "adopt-unmarked", "adopt-foreign"
	for _, stmt := range []string{
		"CREATE DATABASE " + naming.DatabaseName(unmarked),
		"CREATE DATABASE " + naming.DatabaseName(foreign),
		fmt.Sprintf("COMMENT ON DATABASE %s IS 'orgforge:org=%s;uid=0000-other;cluster=k8s-elsewhere'", naming.DatabaseName(foreign), foreign),
	} {
		if _, err := su.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, n := range []string{unmarked, foreign} {
			_, _ = su.Exec(context.Background(), "DROP DATABASE IF EXISTS "+naming.DatabaseName(n)+" WITH (FORCE)")
		}
	})
	for _, n := range []string{unmarked, foreign} {
		apply(t, testutil.NewOrg(n, testutil.WithAdoption(tenancyv1alpha1.AdoptionSameName), testutil.WithStorageAccess(tenancyv1alpha1.StorageAccessNone)))
	}
	for n, want := range map[string]string{unmarked: "has no orgforge ownership marker", foreign: "of another Kubernetes cluster, whose orgforge cluster identity is k8s-elsewhere"} {
		o := waitCondition(t, n, tenancyv1alpha1.ConditionDatabaseReady, "False", tenancyv1alpha1.ReasonConflict, 30*time.Second)
		if msg := testutil.ConditionOf(o, tenancyv1alpha1.ConditionDatabaseReady).Message; !strings.Contains(msg, want) {
			t.Errorf("%s: Conflict message %q lacks %q", n, msg, want)
		}
		if o.Status.Adoption != nil {
			t.Errorf("%s: status.adoption = %+v", n, o.Status.Adoption)
		}
	}
	if got := comment(t, stack.Postgres, "database", naming.DatabaseName(unmarked)); got != "" {
		t.Errorf("the unmarked database was marked: %q", got)
	}
	if got := comment(t, stack.Postgres, "database", naming.DatabaseName(foreign)); !strings.Contains(got, "uid=0000-other;cluster=k8s-elsewhere") {
		t.Errorf("the foreign database was re-marked: %q", got)
	}
}

// crashAfterRemark stops the manager the first time a retained Secret's
// password is tried, after the roles and database were re-marked and before
// the Secret is taken over, as a crash there would.
type crashAfterRemark struct {
	controllers.Database
	*crash
}

func (d *crashAfterRemark) PasswordWorks(ctx context.Context, database, role, password string) (bool, error) {
	d.once.Do(func() {
		close(d.hit)
		go d.stop()
	})
	return false, context.Canceled
}

func TestAdoptionInterruptedHalfwayIsFinishedByTheNextReconcile(t *testing.T) {
	ctx := context.Background()
	const name = "adopt-crash"
	first := startOperator(t, nil)
	old := retainOne(t, testutil.NewOrg(name, testutil.WithStorageAccess(tenancyv1alpha1.StorageAccessNone)))
	first.stop()

	c := &crash{hit: make(chan struct{})}
	crashing := launchOperator(t, operatorOptions{db: func(_ string, db controllers.Database) controllers.Database {
		return &crashAfterRemark{Database: db, crash: c}
	}})
	c.stop = crashing.stop
	apply(t, testutil.NewOrg(name, testutil.WithAdoption(tenancyv1alpha1.AdoptionSameName), testutil.WithStorageAccess(tenancyv1alpha1.StorageAccessNone)))
	// Cleanups run last-in first-out: this one, before apply's, deletes
	// the Organization with a manager running, whatever stopped the others.
	t.Cleanup(func() {
		if running.Load() == 0 {
			op := launchOperator(t, operatorOptions{})
			defer op.stop()
		}
		deleteAndWait(t, name)
	})
	select {
	case <-c.hit:
	case <-time.After(60 * time.Second):
		crashing.stop()
		t.Fatal("the adoption never reached the retained Secret")
	}
	<-crashing.done
	o := &tenancyv1alpha1.Organization{}
	if err := k8s.Get(ctx, client.ObjectKey{Name: name}, o); err != nil {
		t.Fatal(err)
	}
	// Halfway: the role is the new Organization's, the Secret no one's.
	if got := comment(t, stack.Postgres, "role", naming.RoleName(name)); !strings.Contains(got, "uid="+string(o.UID)) {
		t.Fatalf("after the crash the role is marked %q, want the new UID", got)
	}
	s := &corev1.Secret{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: naming.Namespace(name), Name: naming.DatabaseSecretName(name)}, s); err != nil || len(s.OwnerReferences) != 0 {
		t.Fatalf("after the crash the Secret is %v owned by %v, want retained", err, s.OwnerReferences)
	}

	restarted := launchOperator(t, operatorOptions{})
	defer restarted.stop()
	o = waitReady(t, name)
	s = secret(t, o, naming.DatabaseSecretName(name))
	if ref := metav1.GetControllerOf(s); ref == nil || ref.UID != o.UID || string(s.Data["password"]) != old.password {
		t.Errorf("the Secret after the restart: controller %v, same password %v", ref, string(s.Data["password"]) == old.password)
	}
	if v := kept(t, string(s.Data["uri"])); v != "still here" {
		t.Errorf("retained row = %q", v)
	}
	if got := comment(t, stack.Postgres, "database", naming.DatabaseName(name)); !strings.Contains(got, "uid="+string(o.UID)) {
		t.Errorf("database marker %q, want the new UID", got)
	}
	if a := o.Status.Adoption; a == nil || a.FromUID != string(old.org.UID) || !strings.Contains(strings.Join(a.Resources, ","), "Secret ") {
		t.Errorf("status.adoption = %+v, want the Secret taken over from uid %s after the restart", a, old.org.UID)
	}
}

func TestFleetAdoptionFindsTheRetainedDatabaseOnItsCluster(t *testing.T) {
	labels := map[string]string{"fleet-test": "adopt"}
	servers := map[string]*devstack.Postgres{"adopt-a": fleetServer(t, 13), "adopt-b": fleetServer(t, 17)}
	for n, pg := range servers {
		newCluster(t, n, pg, labels, withCapacity(40))
	}
	startOperator(t, nil)
	const name = "adopt-fleet"
	opts := []testutil.OrgOption{testutil.OnClustersLabelled(labels), testutil.WithStorageAccess(tenancyv1alpha1.StorageAccessNone)}
	old := retainOne(t, testutil.NewOrg(name, opts...))
	home := placedOn(t, old.org)
	// Cleanups run last-in first-out: the retained database is dropped on
	// its own server before its DatabaseCluster goes.
	t.Cleanup(func() {
		_ = testutil.SuperuserExec(context.Background(), servers[home], "postgres", "DROP DATABASE IF EXISTS "+naming.DatabaseName(name)+" WITH (FORCE)")
		_ = testutil.SuperuserExec(context.Background(), servers[home], "postgres", "DROP ROLE IF EXISTS "+naming.RoleName(name))
	})
	// A new placement would not choose the retained database's cluster.
	patchCluster(t, home, func(c *tenancyv1alpha1.DatabaseCluster) { c.Spec.Schedulable = ptr.To(false) })

	o := applyReady(t, testutil.NewOrg(name, append(opts, testutil.WithAdoption(tenancyv1alpha1.AdoptionSameName))...))
	if got := placedOn(t, o); got != home {
		t.Fatalf("the organization was placed on %s; its retained database is on %s", got, home)
	}
	if a := o.Status.Adoption; a == nil || a.FromUID != string(old.org.UID) {
		t.Errorf("status.adoption = %+v, want fromUID %s", a, old.org.UID)
	}
	if v := kept(t, string(secret(t, o, naming.DatabaseSecretName(name)).Data["uri"])); v != "still here" {
		t.Errorf("retained row = %q", v)
	}
	if got := comment(t, servers[home], "database", naming.DatabaseName(name)); !strings.Contains(got, "uid="+string(o.UID)) {
		t.Errorf("database marker %q, want the new UID", got)
	}
	for n, pg := range servers {
		if got, want := databasesOn(t, pg, naming.DatabaseName(name)), map[bool]int{true: 1, false: 0}[n == home]; got != want {
			t.Errorf("%d databases on %s, want %d", got, n, want)
		}
	}
}

// countingMarkedFor counts the adoption searches of an operator: one per
// reconcile of an Organization that adopts and is not Ready.
type countingMarkedFor struct {
	controllers.Database
	n *atomic.Int32
}

func (d countingMarkedFor) MarkedFor(ctx context.Context, org string) ([]aurora.Marked, error) {
	d.n.Add(1)
	return d.Database.MarkedFor(ctx, org)
}

// otherKubernetes starts a second kube-apiserver, for the life of the
// test, and returns its client and the options of an operator there, of
// cluster identity id, on the suite's PostgreSQL and S3.
func otherKubernetes(t *testing.T, id string) (client.Client, operatorOptions) {
	t.Helper()
	ctx := context.Background()
	other, err := devstack.Start(ctx, devstack.Options{Kube: true, CRDPaths: []string{"../../config/crd/bases"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Close() })
	c, err := client.New(other.Kube.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	conf := *cfg
	conf.ClusterID = id
	services, err := registry.New(ctx, &conf, ctrl.Log.WithName("registry-"+id), registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(services.Close)
	return c, operatorOptions{kube: other.Kube.Config, registry: services, config: &conf}
}

// applyIn creates o through c, another Kubernetes cluster's client, and
// deletes it when the test ends, waiting until it is gone: the test starts
// that cluster's operator before it calls applyIn, so it still runs then.
func applyIn(t *testing.T, c client.Client, o *tenancyv1alpha1.Organization) *tenancyv1alpha1.Organization {
	t.Helper()
	if err := c.Create(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Delete(context.Background(), o)
		testutil.Eventually(t, 60*time.Second, o.Name+" to be deleted from the other cluster", func() (bool, string) {
			err := c.Get(context.Background(), client.ObjectKeyFromObject(o), &tenancyv1alpha1.Organization{})
			return client.IgnoreNotFound(err) == nil && err != nil, fmt.Sprint(err)
		})
	})
	return o
}

// TestAdoptionNeverTakesAnotherKubernetesClustersOrganization points the
// operators of two Kubernetes clusters (two kube-apiservers, two cluster
// identities) at the same PostgreSQL and S3, each with an Organization of
// the same name that adopts: the second reports Conflict naming the first
// cluster, and ownership never changes hands.
func TestAdoptionNeverTakesAnotherKubernetesClustersOrganization(t *testing.T) {
	ctx := context.Background()
	k8s2, two := otherKubernetes(t, "k8s-two")
	const name = "guard"
	startOperator(t, nil)
	first := applyReady(t, testutil.NewOrg(name, testutil.WithAdoption(tenancyv1alpha1.AdoptionSameName)))
	one := suiteClusterID(t, k8s)
	dbMarker := aurora.Marker{Org: name, UID: string(first.UID), Cluster: one}.String()
	stMarker := storage.Marker{Org: name, UID: string(first.UID), Cluster: one}

	var searches atomic.Int32
	two.db = func(_ string, db controllers.Database) controllers.Database { return countingMarkedFor{db, &searches} }
	startOperatorOpts(t, two)
	// Cleanups run last-in first-out: this one runs after the second
	// cluster's Organization, deleted with deletionPolicy Delete while its
	// operator runs, is gone; it must have dropped nothing of the first's.
	t.Cleanup(func() {
		if got := comment(t, stack.Postgres, "database", naming.DatabaseName(name)); got != dbMarker {
			t.Errorf("after the second cluster's Organization was deleted the database is marked %q, want %q", got, dbMarker)
		}
	})
	applyIn(t, k8s2, testutil.NewOrg(name, testutil.WithAdoption(tenancyv1alpha1.AdoptionSameName)))
	want := "of another Kubernetes cluster, whose orgforge cluster identity is " + one
	for _, cond := range []string{tenancyv1alpha1.ConditionDatabaseReady, tenancyv1alpha1.ConditionStorageReady} {
		testutil.Eventually(t, 30*time.Second, "the second cluster's "+cond+" to be a Conflict naming the first", func() (bool, string) {
			o := &tenancyv1alpha1.Organization{}
			if err := k8s2.Get(ctx, client.ObjectKey{Name: name}, o); err != nil {
				return false, err.Error()
			}
			c := testutil.ConditionOf(o, cond)
			return c.Reason == tenancyv1alpha1.ReasonConflict && strings.Contains(c.Message, want), testutil.DescribeCondition(o, cond)
		})
	}

	// Several adoption attempts of the second cluster, each one bringing
	// both Organizations back for a reconcile, change nothing of the
	// first's.
	for round := range 3 {
		start := searches.Load()
		for _, c := range []client.Client{k8s, k8s2} {
			o := &tenancyv1alpha1.Organization{}
			if err := c.Get(ctx, client.ObjectKey{Name: name}, o); err != nil {
				t.Fatal(err)
			}
			patch := client.MergeFrom(o.DeepCopy())
			metav1.SetMetaDataAnnotation(&o.ObjectMeta, "test.orgforge.io/round", fmt.Sprint(round))
			if err := c.Patch(ctx, o, patch); err != nil {
				t.Fatal(err)
			}
		}
		testutil.Eventually(t, 30*time.Second, "the second cluster to search again", func() (bool, string) {
			return searches.Load() > start, fmt.Sprintf("%d searches", searches.Load())
		})
		for kind, n := range map[string]string{"role": naming.RoleName(name), "database": naming.DatabaseName(name)} {
			if got := comment(t, stack.Postgres, kind, n); got != dbMarker {
				t.Fatalf("round %d: %s marker = %q, want the first cluster's %q", round, kind, got, dbMarker)
			}
		}
		if got, _, err := reg.Storage.PrefixOwner(ctx, "orgs/"+name+"/"); err != nil || got != stMarker {
			t.Fatalf("round %d: prefix marker = %+v, %v; want %+v", round, got, err, stMarker)
		}
		if got, _, err := reg.Storage.PrefixUserOwner(ctx, name); err != nil || got != stMarker {
			t.Fatalf("round %d: IAM user tags = %+v, %v; want %+v", round, got, err, stMarker)
		}
	}
	o := waitReady(t, name)
	if o.UID != first.UID {
		t.Fatalf("the first cluster's Organization was replaced")
	}
	if err := login(ctx, string(secret(t, o, naming.DatabaseSecretName(name)).Data["uri"])); err != nil {
		t.Errorf("the first cluster's login no longer works: %v", err)
	}
}

// TestAdoptionOfOldMarkersSetsANewPasswordWhenTheRetainedOneFails adopts
// what an operator of before the cluster identity left (markers without
// it), whose role's password was changed by hand since, and whose IAM user
// is still there: the role gets a new password, which the Secret and the
// event say, and the user is re-tagged.
func TestAdoptionOfOldMarkersSetsANewPasswordWhenTheRetainedOneFails(t *testing.T) {
	op := startOperator(t, nil)
	ctx := context.Background()
	const name = "adopt-old"
	old := retainOne(t, testutil.NewOrg(name))
	role, db := naming.RoleName(name), naming.DatabaseName(name)
	oldMarker := aurora.Marker{Org: name, UID: string(old.org.UID)}
	su := testutil.Superuser(t, stack.Postgres, "postgres")
	for _, stmt := range []string{
		fmt.Sprintf("COMMENT ON ROLE %s IS '%s'", role, oldMarker),
		fmt.Sprintf("COMMENT ON DATABASE %s IS '%s'", db, oldMarker),
		fmt.Sprintf("ALTER ROLE %s PASSWORD 'changed-by-hand-0123456789'", role),
	} {
		if _, err := su.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	// An IAM user the old Organization left, tagged as before the
	// cluster identity.
	if _, _, err := reg.Storage.EnsurePrefixUser(ctx, name, storage.Marker{Org: name, UID: string(old.org.UID)}, old.prefix); err != nil {
		t.Fatal(err)
	}

	o := applyReady(t, testutil.NewOrg(name, testutil.WithAdoption(tenancyv1alpha1.AdoptionSameName)))
	dbSecret := secret(t, o, naming.DatabaseSecretName(name))
	if string(dbSecret.Data["password"]) == old.password {
		t.Error("the Secret kept the retained password, which no longer logs in")
	}
	if a := dbSecret.Annotations[controllers.AnnotationAdoption]; !strings.Contains(a, "new password") {
		t.Errorf("the Secret's %s annotation = %q, want it to say the password is new", controllers.AnnotationAdoption, a)
	}
	if !strings.Contains(strings.Join(op.eventsSnapshot(), "\n"), "new password on login "+role) {
		t.Errorf("no event says the password is new; events: %v", op.eventsSnapshot())
	}
	if v := kept(t, string(dbSecret.Data["uri"])); v != "still here" {
		t.Errorf("retained row = %q", v)
	}
	mine := storage.Marker{Org: name, UID: string(o.UID), Cluster: suiteClusterID(t, k8s)}
	if got, _, err := reg.Storage.PrefixUserOwner(ctx, name); err != nil || got != mine {
		t.Errorf("IAM user tags = %+v, %v; want %+v", got, err, mine)
	}
	if a := o.Status.Adoption; a == nil || a.FromUID != string(old.org.UID) || !slices.Contains(a.Resources, "IAM user "+reg.Storage.UserName(name)) {
		t.Errorf("status.adoption = %+v, want the IAM user from uid %s", a, old.org.UID)
	}
	old.readWith(t, o)
}

// TestMarkersWithoutTheClusterAreCompletedByTheirOrganization: markers
// written before the cluster identity are this cluster's, and the
// Organization that owns them adds the cluster on its next reconcile.
func TestMarkersWithoutTheClusterAreCompletedByTheirOrganization(t *testing.T) {
	startOperator(t, nil)
	ctx := context.Background()
	const name = "old-markers"
	o := applyReady(t, testutil.NewOrg(name))
	role, db, prefix := naming.RoleName(name), naming.DatabaseName(name), "orgs/"+name+"/"
	before := storage.Marker{Org: name, UID: string(o.UID)}
	su := testutil.Superuser(t, stack.Postgres, "postgres")
	for _, stmt := range []string{
		fmt.Sprintf("COMMENT ON ROLE %s IS '%s'", role, aurora.Marker{Org: name, UID: string(o.UID)}),
		fmt.Sprintf("COMMENT ON DATABASE %s IS '%s'", db, aurora.Marker{Org: name, UID: string(o.UID)}),
	} {
		if _, err := su.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	body, _ := json.Marshal(before)
	if err := testutil.PutObject(ctx, stack.S3.RootClient(), stack.S3.Bucket, prefix+storage.MarkerName, string(body)); err != nil {
		t.Fatal(err)
	}
	if got, _, err := reg.Storage.PrefixOwner(ctx, prefix); err != nil || got != before {
		t.Fatalf("prefix marker = %+v, %v; want the old form", got, err)
	}

	patch := client.MergeFrom(o.DeepCopy())
	metav1.SetMetaDataAnnotation(&o.ObjectMeta, "test.orgforge.io/poke", "1")
	if err := k8s.Patch(ctx, o, patch); err != nil {
		t.Fatal(err)
	}
	one := suiteClusterID(t, k8s)
	want := aurora.Marker{Org: name, UID: string(o.UID), Cluster: one}.String()
	testutil.Eventually(t, 30*time.Second, "the markers to record the cluster", func() (bool, string) {
		r, d := comment(t, stack.Postgres, "role", role), comment(t, stack.Postgres, "database", db)
		p, _, err := reg.Storage.PrefixOwner(ctx, prefix)
		return r == want && d == want && p.Cluster == one, fmt.Sprintf("role %q, database %q, prefix %+v %v", r, d, p, err)
	})
	waitReady(t, name)
}

// TestAdoptionAfterAKubernetesClusterRebuild follows docs/operations.md: a
// new Kubernetes cluster whose operator has the old cluster's identity
// (--cluster-id) adopts the Organization applied again there; with no
// retained Secret, the role gets a new password.
func TestAdoptionAfterAKubernetesClusterRebuild(t *testing.T) {
	ctx := context.Background()
	const name = "rebuilt"
	old := startOperator(t, nil)
	first := applyReady(t, testutil.NewOrg(name, testutil.WithDeletionPolicy(tenancyv1alpha1.DeletionPolicyRetain)))
	// The old cluster's Organization is deleted at the end, with an
	// operator of its own: Retain, it leaves alone what the new cluster
	// took.
	t.Cleanup(func() {
		op := launchOperator(t, operatorOptions{})
		defer op.stop()
		deleteAndWait(t, name)
	})
	if _, err := connect(t, string(secret(t, first, naming.DatabaseSecretName(name)).Data["uri"])).Exec(ctx,
		"CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')"); err != nil {
		t.Fatal(err)
	}
	// The old cluster is lost: its operator stops, and nothing of its
	// API server is seen again.
	old.stop()

	k8s2, rebuilt := otherKubernetes(t, suiteClusterID(t, k8s))
	startOperatorOpts(t, rebuilt)
	o := applyIn(t, k8s2, testutil.NewOrg(name, testutil.WithAdoption(tenancyv1alpha1.AdoptionSameName)))
	testutil.Eventually(t, 60*time.Second, name+" Ready in the rebuilt cluster", func() (bool, string) {
		if err := k8s2.Get(ctx, client.ObjectKeyFromObject(o), o); err != nil {
			return false, err.Error()
		}
		return testutil.ReadyAtGeneration(o), testutil.DescribeCondition(o, tenancyv1alpha1.ConditionReady)
	})
	if a := o.Status.Adoption; a == nil || a.FromUID != string(first.UID) {
		t.Errorf("status.adoption = %+v, want fromUID %s", a, first.UID)
	}
	s := &corev1.Secret{}
	if err := k8s2.Get(ctx, client.ObjectKey{Namespace: o.Status.Namespace, Name: naming.DatabaseSecretName(name)}, s); err != nil {
		t.Fatal(err)
	}
	if a := s.Annotations[controllers.AnnotationAdoption]; !strings.Contains(a, "new password") || !strings.Contains(a, string(first.UID)) {
		t.Errorf("the new Secret's %s annotation = %q", controllers.AnnotationAdoption, a)
	}
	if v := kept(t, string(s.Data["uri"])); v != "still here" {
		t.Errorf("the row written in the old cluster = %q", v)
	}
	if got := comment(t, stack.Postgres, "database", naming.DatabaseName(name)); got != (aurora.Marker{Org: name, UID: string(o.UID), Cluster: suiteClusterID(t, k8s)}).String() {
		t.Errorf("database marker = %q, want the new UID and the kept identity", got)
	}
}

func TestAdoptionTakesTheRoleAndDatabaseTogetherOrNotAtAll(t *testing.T) {
	startOperator(t, nil)
	ctx := context.Background()
	const name = "adopt-split"
	old := retainOne(t, testutil.NewOrg(name, testutil.WithStorageAccess(tenancyv1alpha1.StorageAccessNone)))
	role, db := naming.RoleName(name), naming.DatabaseName(name)
	// The database says another Kubernetes cluster's operator has it.
	elsewhere := aurora.Marker{Org: name, UID: string(old.org.UID), Cluster: "k8s-elsewhere"}.String()
	if _, err := testutil.Superuser(t, stack.Postgres, "postgres").Exec(ctx, fmt.Sprintf("COMMENT ON DATABASE %s IS '%s'", db, elsewhere)); err != nil {
		t.Fatal(err)
	}
	roleBefore := comment(t, stack.Postgres, "role", role)

	apply(t, testutil.NewOrg(name, testutil.WithAdoption(tenancyv1alpha1.AdoptionSameName), testutil.WithStorageAccess(tenancyv1alpha1.StorageAccessNone)))
	o := waitCondition(t, name, tenancyv1alpha1.ConditionDatabaseReady, "False", tenancyv1alpha1.ReasonConflict, 30*time.Second)
	if msg := testutil.ConditionOf(o, tenancyv1alpha1.ConditionDatabaseReady).Message; !strings.Contains(msg, "k8s-elsewhere") {
		t.Errorf("Conflict message %q does not name the other cluster", msg)
	}
	if got := comment(t, stack.Postgres, "role", role); got != roleBefore {
		t.Errorf("the role was re-marked %q though its database is another cluster's; it was %q", got, roleBefore)
	}
	if got := comment(t, stack.Postgres, "database", db); got != elsewhere {
		t.Errorf("the other cluster's database was re-marked %q", got)
	}
}
