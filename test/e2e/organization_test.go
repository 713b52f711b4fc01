package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/controllers"
	"github.com/orgforge/orgforge/internal/aurora"
	"github.com/orgforge/orgforge/internal/storage"
	"github.com/orgforge/orgforge/internal/testutil"
)

func storageClient(t *testing.T, o *tenancyv1alpha1.Organization) *s3.Client {
	s := secret(t, o, o.Name+"-storage")
	return stack.S3.Client(string(s.Data["access-key-id"]), string(s.Data["secret-access-key"]))
}

// waitKeyWorks retries call, a request signed with a tenant's key, as a
// tenant would, until it succeeds: a key the operator has just issued may be
// refused while IAM propagates it, on AWS as in the stack's delay mode.
func waitKeyWorks(t *testing.T, call func() error) {
	t.Helper()
	testutil.Eventually(t, iamDelay+20*time.Second, "the tenant's new key to work", func() (bool, string) {
		err := call()
		return err == nil, fmt.Sprint(err)
	})
}

func TestOrganizationBecomesReadyWithWorkingDatabaseAndScopedStorage(t *testing.T) {
	startOperator(t, nil)
	ctx := context.Background()
	apply(t, testutil.NewOrg("alpha"))
	apply(t, testutil.NewOrg("bravo"))
	alpha := waitReady(t, "alpha")
	bravo := waitReady(t, "bravo")

	if alpha.Status.Database.Name != "org_alpha" || alpha.Status.Storage.URL != "s3://"+stack.S3.Bucket+"/orgs/alpha/" {
		t.Errorf("status blocks = %+v %+v", alpha.Status.Database, alpha.Status.Storage)
	}

	dbSecret := secret(t, alpha, "alpha-database")
	pool, err := pgxpool.New(ctx, string(dbSecret.Data["uri"]))
	if err != nil {
		t.Fatalf("the Secret's uri does not open a pool: %v", err)
	}
	defer pool.Close()
	if got := pool.Config().MaxConns; got != 10 {
		t.Errorf("pool from uri has MaxConns %d, want 10", got)
	}
	var user, db string
	if err := pool.QueryRow(ctx, "SELECT current_user, current_database()").Scan(&user, &db); err != nil {
		t.Fatalf("query through the Secret's uri: %v", err)
	}
	if user != "org_alpha" || db != "org_alpha" {
		t.Errorf("connected as %s to %s, want org_alpha to org_alpha", user, db)
	}
	su := testutil.Superuser(t, stack.Postgres, "postgres")
	if n := count(t, su, "SELECT rolconnlimit FROM pg_roles WHERE rolname = 'org_alpha'"); n != 10 {
		t.Errorf("role connection limit = %d, want 10", n)
	}

	own := storageClient(t, alpha)
	waitKeyWorks(t, func() error { return testutil.PutObject(ctx, own, stack.S3.Bucket, "orgs/alpha/report.txt", "hello") })
	if body, err := testutil.GetObject(ctx, own, stack.S3.Bucket, "orgs/alpha/report.txt"); err != nil || body != "hello" {
		t.Fatalf("alpha's key reads %q, %v", body, err)
	}
	if err := testutil.PutObject(ctx, stack.S3.RootClient(), stack.S3.Bucket, "orgs/bravo/secret.txt", "b"); err != nil {
		t.Fatal(err)
	}
	if _, err := testutil.GetObject(ctx, own, stack.S3.Bucket, "orgs/bravo/secret.txt"); !testutil.IsAccessDenied(err) {
		t.Errorf("alpha's key reading bravo's object: err = %v, want AccessDenied", err)
	}
	if err := testutil.PutObject(ctx, own, stack.S3.Bucket, "orgs/bravo/planted.txt", "x"); !testutil.IsAccessDenied(err) {
		t.Errorf("alpha's key writing under bravo's prefix: err = %v, want AccessDenied", err)
	}

	t.Run("tenant logins cannot reach each other's database", func(t *testing.T) {
		bravoSecret := secret(t, bravo, "bravo-database")
		u, _ := url.Parse(string(bravoSecret.Data["uri"]))
		u.Path = "/org_alpha"
		conn, err := pgx.Connect(ctx, u.String())
		if err == nil {
			_ = conn.Close(ctx)
			t.Fatal("bravo's login connected to alpha's database")
		}
		if !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("err = %v, want permission denied", err)
		}
	})
}

func TestSpecChangesReachTheRoleTheSecretAndTheExtensions(t *testing.T) {
	startOperator(t, nil)
	ctx := context.Background()
	o := applyReady(t, testutil.NewOrg("charlie"))
	o.Spec.Database.Pool.MaxConnections = 25
	if err := k8s.Update(ctx, o); err != nil {
		t.Fatal(err)
	}
	su := testutil.Superuser(t, stack.Postgres, "postgres")
	testutil.Eventually(t, 30*time.Second, "role limit 25", func() (bool, string) {
		n := count(t, su, "SELECT rolconnlimit FROM pg_roles WHERE rolname = 'org_charlie'")
		return n == 25, fmt.Sprint(n)
	})
	testutil.Eventually(t, 30*time.Second, "Secret with pool max 25", func() (bool, string) {
		s := secret(t, o, "charlie-database")
		uri := string(s.Data["uri"])
		return string(s.Data["pool-max-size"]) == "25" && strings.Contains(uri, "pool_max_conns=25"), uri
	})
	o = waitReady(t, "charlie")
	if o.Status.ObservedGeneration != o.Generation {
		t.Errorf("observedGeneration %d, generation %d", o.Status.ObservedGeneration, o.Generation)
	}

	o.Spec.Database.Extensions = []tenancyv1alpha1.ExtensionName{"pgcrypto"}
	if err := k8s.Update(ctx, o); err != nil {
		t.Fatal(err)
	}
	inDB := testutil.Superuser(t, stack.Postgres, "org_charlie")
	testutil.Eventually(t, 30*time.Second, "pgcrypto in org_charlie", func() (bool, string) {
		n := count(t, inDB, "SELECT count(*) FROM pg_extension WHERE extname = 'pgcrypto'")
		return n == 1, fmt.Sprint(n)
	})
	// The tenant can use what the extension brings.
	pool, err := pgxpool.New(ctx, string(secret(t, o, "charlie-database").Data["uri"]))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var digest string
	if err := pool.QueryRow(ctx, "SELECT encode(digest('x', 'sha256'), 'hex')").Scan(&digest); err != nil || len(digest) != 64 {
		t.Errorf("tenant using pgcrypto: %q, %v", digest, err)
	}
}

func TestDeletedSecretIsRegeneratedWithANewPassword(t *testing.T) {
	startOperator(t, nil)
	ctx := context.Background()
	o := applyReady(t, testutil.NewOrg("delta"))
	old := secret(t, o, "delta-database")
	oldURI := string(old.Data["uri"])
	fresh := deleteAndWaitReplaced(t, old, "a new database Secret")
	if string(fresh.Data["password"]) == string(old.Data["password"]) {
		t.Fatal("the regenerated Secret kept the old password")
	}
	if err := login(ctx, string(fresh.Data["uri"])); err != nil {
		t.Fatalf("the new credentials do not log in: %v", err)
	}
	if err := login(ctx, oldURI); err == nil {
		t.Error("the old password still logs in")
	}
}

func TestExistingUnmarkedDatabaseIsAConflictAndLeftUntouched(t *testing.T) {
	op := startOperator(t, nil)
	ctx := context.Background()
	su := testutil.Superuser(t, stack.Postgres, "postgres")
	if _, err := su.Exec(ctx, "CREATE DATABASE org_echo"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = su.Exec(context.Background(), "DROP DATABASE IF EXISTS org_echo WITH (FORCE)") })
	data := testutil.Superuser(t, stack.Postgres, "org_echo")
	if _, err := data.Exec(ctx, "CREATE TABLE precious (v int); INSERT INTO precious SELECT generate_series(1, 100)"); err != nil {
		t.Fatal(err)
	}
	apply(t, testutil.NewOrg("echo"))
	o := waitCondition(t, "echo", tenancyv1alpha1.ConditionDatabaseReady, "False", tenancyv1alpha1.ReasonConflict, 30*time.Second)
	c := testutil.ConditionOf(o, tenancyv1alpha1.ConditionDatabaseReady)
	if !strings.Contains(c.Message, "org_echo") {
		t.Errorf("Conflict message does not name the database: %q", c.Message)
	}
	if !hasEvent(op, "Conflict: DatabaseReady:") {
		t.Errorf("no Conflict warning event; events: %v", op.eventsSnapshot())
	}
	deleteAndWait(t, "echo")
	if n := count(t, data, "SELECT count(*) FROM precious"); n != 100 {
		t.Errorf("rows in the foreign database = %d, want 100", n)
	}
	if n := count(t, su, "SELECT count(*) FROM pg_database WHERE datname = 'org_echo'"); n != 1 {
		t.Error("the foreign database was dropped")
	}
}

func TestDeletePolicyRemovesEverythingTheOperatorCreated(t *testing.T) {
	startOperator(t, nil)
	ctx := context.Background()
	o := applyReady(t, testutil.NewOrg("foxtrot"))
	user := reg.Storage.UserName("foxtrot")
	own := storageClient(t, o)
	waitKeyWorks(t, func() error { return testutil.PutObject(ctx, own, stack.S3.Bucket, "orgs/foxtrot/a.txt", "a") })
	deleteAndWait(t, "foxtrot")

	su := testutil.Superuser(t, stack.Postgres, "postgres")
	if n := count(t, su, "SELECT count(*) FROM pg_database WHERE datname = 'org_foxtrot'"); n != 0 {
		t.Error("database remains")
	}
	if n := count(t, su, "SELECT count(*) FROM pg_roles WHERE rolname = 'org_foxtrot'"); n != 0 {
		t.Error("role remains")
	}
	list, err := stack.S3.RootClient().ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(stack.S3.Bucket), Prefix: aws.String("orgs/foxtrot/")})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Contents) != 0 {
		t.Errorf("%d objects remain under the prefix", len(list.Contents))
	}
	if keys, err := reg.Storage.ListAccessKeys(ctx, user); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("IAM user %s remains (keys %v, err %v)", user, keys, err)
	}
	ns := &corev1.Namespace{}
	err = k8s.Get(ctx, client.ObjectKey{Name: "org-foxtrot"}, ns)
	if err == nil && ns.DeletionTimestamp.IsZero() {
		t.Error("the namespace the operator created was not deleted")
	}
}

func TestRetainPolicyKeepsDataAndRevokesTheKey(t *testing.T) {
	startOperator(t, nil)
	ctx := context.Background()
	o := applyReady(t, testutil.NewOrg("golf", testutil.WithDeletionPolicy(tenancyv1alpha1.DeletionPolicyRetain)))
	own := storageClient(t, o)
	waitKeyWorks(t, func() error { return testutil.PutObject(ctx, own, stack.S3.Bucket, "orgs/golf/keep.txt", "keep") })
	dbSecret := secret(t, o, "golf-database")
	deleteAndWait(t, "golf")
	t.Cleanup(func() {
		_, _ = admin.DropDatabase(context.Background(), "org_golf", aurora.Marker{Org: "golf", UID: string(o.UID)})
		_, _ = admin.DropRole(context.Background(), "org_golf", aurora.Marker{Org: "golf", UID: string(o.UID)})
		_, _ = reg.Storage.DeletePrefix(context.Background(), "orgs/golf/")
	})

	if err := login(ctx, string(dbSecret.Data["uri"])); err != nil {
		t.Fatalf("retained database does not accept the retained login: %v", err)
	}
	if body, err := testutil.GetObject(ctx, stack.S3.RootClient(), stack.S3.Bucket, "orgs/golf/keep.txt"); err != nil || body != "keep" {
		t.Errorf("retained object: %q, %v", body, err)
	}
	testutil.Eventually(t, 20*time.Second, "the key to stop working", func() (bool, string) {
		_, err := testutil.GetObject(ctx, own, stack.S3.Bucket, "orgs/golf/keep.txt")
		return err != nil, fmt.Sprint(err)
	})
	kept := &corev1.Secret{}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(dbSecret), kept); err != nil {
		t.Errorf("the retained role's Secret was removed: %v", err)
	}
}

func TestSystemNamespaceIsRefusedAndNothingIsCreated(t *testing.T) {
	startOperator(t, nil)
	apply(t, testutil.NewOrg("hotel", testutil.InNamespace("kube-system")))
	o := waitCondition(t, "hotel", tenancyv1alpha1.ConditionReady, "False", tenancyv1alpha1.ReasonInvalidSpec, 30*time.Second)
	if c := testutil.ConditionOf(o, tenancyv1alpha1.ConditionDatabaseReady); !strings.Contains(c.Message, "--allow-system-namespaces") {
		t.Errorf("message %q does not say how to allow it", c.Message)
	}
	su := testutil.Superuser(t, stack.Postgres, "postgres")
	if n := count(t, su, "SELECT count(*) FROM pg_roles WHERE rolname = 'org_hotel'"); n != 0 {
		t.Error("a role was created for an invalid spec")
	}
}

func TestPostgresOutageIsReportedAndRecoveredFromWithoutHelp(t *testing.T) {
	op := startOperator(t, nil)
	restartPostgres := stopPostgres(t)
	apply(t, testutil.NewOrg("india"))
	waitCondition(t, "india", tenancyv1alpha1.ConditionDatabaseReady, "False", tenancyv1alpha1.ReasonDatabaseUnavailable, 30*time.Second)
	// Storage does not wait for the database.
	waitCondition(t, "india", tenancyv1alpha1.ConditionStorageReady, "True", tenancyv1alpha1.ReasonProvisioned, 30*time.Second)
	restartPostgres()
	waitReady(t, "india")
	if !hasEvent(op, "DatabaseUnavailable: DatabaseReady: ") {
		t.Errorf("no DatabaseUnavailable warning event; events: %v", op.eventsSnapshot())
	}
}

func hasEvent(op *operator, prefix string) bool {
	for _, e := range op.eventsSnapshot() {
		if strings.HasPrefix(e, prefix) {
			return true
		}
	}
	return false
}

// interrupting lets the role step finish and then stops the manager before
// the database is created, as a crash between the two would.
type interrupting struct {
	controllers.Database
	*crash
}

// crash is the stop that interrupting calls once, the first time the
// database step runs, and hit, closed then.
type crash struct {
	stop func()
	hit  chan struct{}
	once sync.Once
}

func (d *interrupting) EnsureDatabase(ctx context.Context, name, owner string, m aurora.Marker) (aurora.Change, error) {
	d.once.Do(func() {
		close(d.hit)
		go d.stop()
	})
	return aurora.Unchanged, context.Canceled
}

// interrupt wraps every cluster's service so that its database step
// crashes d.
func interrupt(d *crash) wrapDB {
	return func(_ string, db controllers.Database) controllers.Database {
		return &interrupting{Database: db, crash: d}
	}
}

func TestRestartBetweenRoleAndDatabaseConvergesToOneOfEach(t *testing.T) {
	d := &crash{hit: make(chan struct{})}
	first := startOperator(t, interrupt(d))
	d.stop = first.stop
	apply(t, testutil.NewOrg("juliet"))
	select {
	case <-d.hit:
	case <-time.After(30 * time.Second):
		t.Fatal("the first manager never reached the database step")
	}
	<-first.done
	su := testutil.Superuser(t, stack.Postgres, "postgres")
	if n := count(t, su, "SELECT count(*) FROM pg_roles WHERE rolname = 'org_juliet'"); n != 1 {
		t.Fatalf("role count after the crash = %d, want 1", n)
	}
	if n := count(t, su, "SELECT count(*) FROM pg_database WHERE datname = 'org_juliet'"); n != 0 {
		t.Fatalf("database exists before the restart")
	}
	startOperator(t, nil)
	// Cleanups run last-in first-out: delete while this manager still runs.
	t.Cleanup(func() { deleteAndWait(t, "juliet") })
	o := waitReady(t, "juliet")
	if n := count(t, su, "SELECT count(*) FROM pg_roles WHERE rolname = 'org_juliet'"); n != 1 {
		t.Errorf("roles = %d, want 1", n)
	}
	if n := count(t, su, "SELECT count(*) FROM pg_database WHERE datname = 'org_juliet'"); n != 1 {
		t.Errorf("databases = %d, want 1", n)
	}
	if err := login(context.Background(), string(secret(t, o, "juliet-database").Data["uri"])); err != nil {
		t.Fatalf("credentials after the restart do not work: %v", err)
	}
}

// login opens the Secret's uri as an application would, with pgxpool, and
// runs a query.
func login(ctx context.Context, uri string) error {
	pool, err := pgxpool.New(ctx, uri)
	if err != nil {
		return err
	}
	defer pool.Close()
	var one int
	return pool.QueryRow(ctx, "SELECT 1").Scan(&one)
}

func TestResyncOfReadyOrganizationsWritesNothing(t *testing.T) {
	op := startOperator(t, nil)
	for _, n := range []string{"kilo", "lima", "mike"} {
		apply(t, testutil.NewOrg(n))
	}
	for _, n := range []string{"kilo", "lima", "mike"} {
		waitReady(t, n)
	}
	// Let the reconciles that Ready itself triggered settle.
	time.Sleep(resync / 2)
	svc, ok := reg.Clusters.Get(tenancyv1alpha1.DefaultClusterName)
	if !ok {
		t.Fatal("the default DatabaseCluster has no service")
	}
	writes, ddl := op.writes.Load(), svc.DDLCount()
	// Provisioning three Organizations wrote (finalizers, namespaces,
	// Secrets, status): a counter that saw none would prove nothing below.
	if writes == 0 {
		t.Fatal("no Kubernetes write was counted while provisioning; the write counter is broken")
	}
	events := len(op.eventsSnapshot())
	time.Sleep(2*resync + time.Second)
	if got := op.writes.Load() - writes; got != 0 {
		t.Errorf("%d Kubernetes writes during resync, want 0; events: %v", got, op.eventsSnapshot()[events:])
	}
	if got := svc.DDLCount() - ddl; got != 0 {
		t.Errorf("%d DDL statements during resync, want 0", got)
	}
}

// laggingCache answers every Secret read with NotFound, as an informer cache
// does for a Secret created a moment ago.
type laggingCache struct{ client.Client }

func (c laggingCache) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if _, ok := obj.(*corev1.Secret); ok {
		return apierrors.NewNotFound(corev1.Resource("secrets"), key.Name)
	}
	return c.Client.Get(ctx, key, obj, opts...)
}

func TestASecretMissingFromTheCacheKeepsItsPassword(t *testing.T) {
	startOperatorWith(t, nil, func(c client.Client) client.Client { return laggingCache{c} })
	ctx := context.Background()
	o := applyReady(t, testutil.NewOrg("november"))
	before := secret(t, o, "november-database")
	// Two resyncs, each reading the Secret through the lagging cache.
	time.Sleep(2*resync + time.Second)
	after := secret(t, o, "november-database")
	if string(after.Data["password"]) != string(before.Data["password"]) {
		t.Error("the password changed although the Secret was there all along")
	}
	if err := login(ctx, string(after.Data["uri"])); err != nil {
		t.Fatalf("the Secret's login no longer works: %v", err)
	}
	waitReady(t, "november")
}

// orgEvents lists the Events the API server holds about Organization name,
// as reason: note.
func orgEvents(t *testing.T, name string) []string {
	t.Helper()
	list := &eventsv1.EventList{}
	if err := k8s.List(context.Background(), list); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range list.Items {
		if e.Regarding.Kind == "Organization" && e.Regarding.Name == name {
			out = append(out, e.Reason+": "+e.Note)
		}
	}
	return out
}

func TestProvisioningAndDeletionAreEachReportedInOneEvent(t *testing.T) {
	startOperator(t, nil)
	applyReady(t, testutil.NewOrg("oscar"))
	var provisioned string
	testutil.Eventually(t, 10*time.Second, "one Provisioned event", func() (bool, string) {
		evs := orgEvents(t, "oscar")
		if len(evs) != 1 || !strings.HasPrefix(evs[0], "Provisioned: ") {
			return false, fmt.Sprint(evs)
		}
		provisioned = evs[0]
		return true, ""
	})
	for _, want := range []string{"namespace org-oscar", "role org_oscar", "database org_oscar", "prefix s3://", "IAM user orgforge-oscar", "access key", "Secret org-oscar/"} {
		if !strings.Contains(provisioned, want) {
			t.Errorf("Provisioned event does not mention %q: %s", want, provisioned)
		}
	}

	deleteAndWait(t, "oscar")
	testutil.Eventually(t, 10*time.Second, "one Deleted event", func() (bool, string) {
		evs := orgEvents(t, "oscar")
		if len(evs) != 2 || !strings.HasPrefix(evs[1], "Deleted: ") && !strings.HasPrefix(evs[0], "Deleted: ") {
			return false, fmt.Sprint(evs)
		}
		return true, ""
	})
	for _, e := range orgEvents(t, "oscar") {
		if strings.HasPrefix(e, "Deleted: ") {
			for _, want := range []string{"IAM user orgforge-oscar", "dropped database org_oscar", "dropped role org_oscar", "namespace org-oscar"} {
				if !strings.Contains(e, want) {
					t.Errorf("Deleted event does not mention %q: %s", want, e)
				}
			}
		}
	}
}

func TestDeletedStorageSecretIsReissuedWithTheUsersOnlyKeyAndTheOldKeyStopsWorking(t *testing.T) {
	startOperator(t, nil)
	ctx := context.Background()
	o := applyReady(t, testutil.NewOrg("papa"))
	old := secret(t, o, "papa-storage")
	oldClient := stack.S3.Client(string(old.Data["access-key-id"]), string(old.Data["secret-access-key"]))
	waitKeyWorks(t, func() error { return testutil.PutObject(ctx, oldClient, stack.S3.Bucket, "orgs/papa/before.txt", "x") })
	fresh := deleteAndWaitReplaced(t, old, "a new storage Secret")
	id := string(fresh.Data["access-key-id"])
	if id == string(old.Data["access-key-id"]) {
		t.Fatal("the reissued Secret kept the old key")
	}
	keys, err := reg.Storage.ListAccessKeys(ctx, reg.Storage.UserName("papa"))
	if err != nil || len(keys) != 1 || keys[0] != id {
		t.Errorf("IAM user's keys = %v, %v; want only the new Secret's %s", keys, err, id)
	}
	testutil.Eventually(t, 30*time.Second, "the new key to work", func() (bool, string) {
		err := testutil.PutObject(ctx, stack.S3.Client(id, string(fresh.Data["secret-access-key"])), stack.S3.Bucket, "orgs/papa/after.txt", "y")
		return err == nil, fmt.Sprint(err)
	})
	if err := testutil.PutObject(ctx, oldClient, stack.S3.Bucket, "orgs/papa/late.txt", "z"); err == nil {
		t.Error("the old key still writes")
	}
}

// TestARotatedKeyIsKeptWhileIAMPropagatesIt reproduces the churn of issue
// 14: the Secret update that a rotation makes reconciles the Organization at
// once, when S3 does not honour the new key yet; taking it for broken
// rotated again, and again, for as long as propagation took.
func TestARotatedKeyIsKeptWhileIAMPropagatesIt(t *testing.T) {
	startOperator(t, nil)
	ctx := context.Background()
	o := applyReady(t, testutil.NewOrg("quebec"))
	user := reg.Storage.UserName("quebec")
	key := client.ObjectKey{Namespace: o.Status.Namespace, Name: "quebec-storage"}

	const invalid = "AKIAEDITEDBYHAND0000"
	edited := secret(t, o, "quebec-storage")
	first := string(edited.Data["access-key-id"])
	before := client.MergeFrom(edited.DeepCopy())
	edited.Data["access-key-id"] = []byte(invalid)
	if err := k8s.Patch(ctx, edited, before); err != nil {
		t.Fatal(err)
	}

	// Watch the Secret and the user's keys through the propagation delay and
	// the resyncs that follow it: every key issued in that time shows.
	issued := map[string]bool{}
	var current *corev1.Secret
	for end := time.Now().Add(iamDelay + 2*resync); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		s := &corev1.Secret{}
		if err := k8s.Get(ctx, key, s); err != nil {
			t.Fatal(err)
		}
		if id := string(s.Data["access-key-id"]); id != invalid {
			issued[id], current = true, s
		}
		keys, err := reg.Storage.ListAccessKeys(ctx, user)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range keys {
			issued[id] = true
		}
	}
	delete(issued, first)
	if current == nil || len(issued) != 1 {
		t.Fatalf("%d keys issued after the edit, want 1", len(issued))
	}
	id, secretKey := string(current.Data["access-key-id"]), string(current.Data["secret-access-key"])
	if !issued[id] {
		t.Fatalf("the Secret holds %s, not the key issued after the edit: %v", id, issued)
	}
	waitKeyWorks(t, func() error {
		return testutil.PutObject(ctx, stack.S3.Client(id, secretKey), stack.S3.Bucket, "orgs/quebec/after.txt", "q")
	})

	// Settled: further reconciles keep it.
	time.Sleep(2 * resync)
	if s := secret(t, o, "quebec-storage"); string(s.Data["access-key-id"]) != id {
		t.Errorf("the Secret's key changed from %s to %s after it worked", id, s.Data["access-key-id"])
	}
	keys, err := reg.Storage.ListAccessKeys(ctx, user)
	if err != nil || len(keys) != 1 || keys[0] != id {
		t.Errorf("IAM user's keys = %v, %v; want only the Secret's %s", keys, err, id)
	}
}

// A restart's first pass checks every Organization this process has not
// seen (its Secrets' passwords verified anew, its storage checked in full
// when due) and, when nothing drifted, writes nothing and sends no DDL.
func TestARestartOverReadyOrganizationsWritesNothing(t *testing.T) {
	names := []string{"restart-none", "restart-key"}
	first := startOperator(t, nil)
	apply(t, testutil.NewOrg(names[0], testutil.WithStorageAccess(tenancyv1alpha1.StorageAccessNone)))
	apply(t, testutil.NewOrg(names[1]))
	for _, n := range names {
		waitReady(t, n)
	}
	// Let the reconciles that Ready itself triggered settle.
	time.Sleep(resync / 2)
	first.stop()
	svc, ok := reg.Clusters.Get(tenancyv1alpha1.DefaultClusterName)
	if !ok {
		t.Fatal("the default DatabaseCluster has no service")
	}
	ddl, reconciles := svc.DDLCount(), organizationReconciles(t)
	op := startOperator(t, nil)
	// A restart's first reconcile of an Organization may only wait for
	// its cluster's first check; the second one checks it.
	testutil.Eventually(t, 30*time.Second, "the restarted operator's first pass", func() (bool, string) {
		got := organizationReconciles(t) - reconciles
		return got >= 2*len(names), fmt.Sprintf("%d reconciles", got)
	})
	time.Sleep(resync)
	if got := op.writes.Load(); got != 0 {
		t.Errorf("%d Kubernetes writes after a restart, want 0: %v", got, op.writtenSince(0))
	}
	if got := svc.DDLCount() - ddl; got != 0 {
		t.Errorf("%d DDL statements after a restart, want 0", got)
	}
	// Deleted while an operator runs: the clean-ups run after the
	// operator started last has stopped.
	for _, n := range names {
		deleteAndWait(t, n)
	}
}
