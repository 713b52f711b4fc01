package chaos_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awscreds "github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/go-logr/logr"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/aurora"
	"github.com/orgforge/orgforge/internal/devstack"
	"github.com/orgforge/orgforge/internal/naming"
	"github.com/orgforge/orgforge/internal/storage"
	"github.com/orgforge/orgforge/internal/testutil"
)

// newOrg is testutil.NewOrg with a small pool: the suite holds many
// Organizations at once.
func newOrg(name string, opts ...testutil.OrgOption) *tenancyv1alpha1.Organization {
	return testutil.NewOrg(name, append([]testutil.OrgOption{testutil.WithPool(1, 5)}, opts...)...)
}

func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%03d", prefix, i)
	}
	return out
}

func create(t testing.TB, orgs ...*tenancyv1alpha1.Organization) {
	t.Helper()
	for _, o := range orgs {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := env.k8s.Create(ctx, o)
		cancel()
		if err != nil {
			t.Fatalf("creating %s: %v", o.Name, err)
		}
	}
}

// deleteOrgs asks for the deletion of the named Organizations.
func deleteOrgs(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		o := &tenancyv1alpha1.Organization{}
		o.Name = n
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := env.k8s.Delete(ctx, o)
		cancel()
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatalf("deleting %s: %v", n, err)
		}
	}
}

// cleanupOrgs deletes, when the test ends, those of the named
// Organizations a failure left behind, with an operator of its own (given
// the extra flags), so that one failed scenario does not spill into the
// next.
func cleanupOrgs(t testing.TB, names []string, extra ...string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		all, err := orgs(ctx)
		if err != nil {
			t.Logf("clean-up: %v", err)
			return
		}
		var left []string
		for _, n := range names {
			if _, ok := all[n]; ok {
				left = append(left, n)
			}
		}
		if len(left) == 0 {
			return
		}
		op := startOperator(t, "cleanup", extra...)
		defer op.stop()
		deleteOrgs(t, left...)
		for ctx.Err() == nil {
			if all, err := orgs(ctx); err == nil {
				remaining := 0
				for _, n := range left {
					if _, ok := all[n]; ok {
						remaining++
					}
				}
				if remaining == 0 {
					return
				}
			}
			time.Sleep(time.Second)
		}
		t.Logf("clean-up: %d organizations are still there", len(left))
	})
}

// orgs returns the Organizations by name.
func orgs(ctx context.Context) (map[string]*tenancyv1alpha1.Organization, error) {
	var list tenancyv1alpha1.OrganizationList
	if err := env.k8s.List(ctx, &list); err != nil {
		return nil, err
	}
	out := make(map[string]*tenancyv1alpha1.Organization, len(list.Items))
	for i := range list.Items {
		out[list.Items[i].Name] = &list.Items[i]
	}
	return out, nil
}

// countReady counts the named Organizations that are Ready.
func countReady(names []string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	all, err := orgs(ctx)
	if err != nil {
		return 0, err.Error()
	}
	n, example := 0, ""
	for _, name := range names {
		o, ok := all[name]
		switch {
		case ok && testutil.ReadyAtGeneration(o):
			n++
		case example == "" && ok:
			example = name + " " + testutil.DescribeCondition(o, tenancyv1alpha1.ConditionReady)
		case example == "":
			example = name + " missing"
		}
	}
	return n, example
}

// waitReady waits until every named Organization is Ready and returns how
// long that took.
func waitReady(t testing.TB, names []string, timeout time.Duration) time.Duration {
	t.Helper()
	return testutil.EventuallyEvery(t, poll, timeout, fmt.Sprintf("%d organizations Ready", len(names)), func() (bool, string) {
		n, example := countReady(names)
		return n == len(names), fmt.Sprintf("%d/%d Ready; e.g. %s", n, len(names), example)
	})
}

// waitGone waits until none of the named Organizations exists.
func waitGone(t testing.TB, names []string, timeout time.Duration) time.Duration {
	t.Helper()
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	return testutil.EventuallyEvery(t, poll, timeout, fmt.Sprintf("%d organizations deleted", len(names)), func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		all, err := orgs(ctx)
		if err != nil {
			return false, err.Error()
		}
		left, example := 0, ""
		for n, o := range all {
			if want[n] {
				left++
				if example == "" {
					example = fmt.Sprintf("%s finalizers %v %s", n, o.Finalizers, testutil.DescribeCondition(o, tenancyv1alpha1.ConditionReady))
				}
			}
		}
		return left == 0, fmt.Sprintf("%d left; e.g. %s", left, example)
	})
}

// pgObject is a database or role as the catalogs show it.
type pgObject struct {
	name, owner, comment string
}

// databases returns the databases of the default server whose name starts
// with prefix.
func databases(ctx context.Context, prefix string) (map[string]pgObject, error) {
	return databasesOn(ctx, env.su, prefix)
}

// roles returns the roles of the default server whose name starts with
// prefix.
func roles(ctx context.Context, prefix string) (map[string]pgObject, error) {
	return rolesOn(ctx, env.su, prefix)
}

// databasesOn returns the databases whose name starts with prefix on the
// server su is a pool of.
func databasesOn(ctx context.Context, su *pgxpool.Pool, prefix string) (map[string]pgObject, error) {
	return pgObjects(ctx, su, `SELECT datname, pg_get_userbyid(datdba), COALESCE(shobj_description(oid, 'pg_database'), '')
		FROM pg_database WHERE starts_with(datname, $1)`, prefix)
}

// rolesOn returns the roles whose name starts with prefix on the server su
// is a pool of.
func rolesOn(ctx context.Context, su *pgxpool.Pool, prefix string) (map[string]pgObject, error) {
	return pgObjects(ctx, su, `SELECT rolname, '', COALESCE(shobj_description(oid, 'pg_authid'), '')
		FROM pg_roles WHERE starts_with(rolname, $1)`, prefix)
}

// pgObjects runs a query of name, owner and comment, by name.
func pgObjects(ctx context.Context, su *pgxpool.Pool, sql, prefix string) (map[string]pgObject, error) {
	rows, err := su.Query(ctx, sql, prefix)
	if err != nil {
		return nil, err
	}
	out := map[string]pgObject{}
	var o pgObject
	_, err = pgx.ForEachRow(rows, []any{&o.name, &o.owner, &o.comment}, func() error {
		out[o.name] = o
		return nil
	})
	return out, err
}

// objectStore is an S3 and IAM server that operators are pointed at, with
// clients that inspect it as its root account.
type objectStore struct {
	s3      *devstack.S3
	storage *storage.Service
	iam     *iam.Client
}

func newObjectStore(ctx context.Context, s3 *devstack.S3) (objectStore, error) {
	st, err := storage.New(ctx, storage.Config{
		Bucket: s3.Bucket, Region: s3.Region, Endpoint: s3.Endpoint, IAMEndpoint: s3.IAMEndpoint, UsePathStyle: true,
		AccessKeyID: s3.AccessKey, SecretAccessKey: s3.SecretKey,
	}, logr.Discard())
	if err != nil {
		return objectStore{}, err
	}
	return objectStore{s3: s3, storage: st, iam: iam.New(iam.Options{
		Region: s3.Region, BaseEndpoint: aws.String(s3.IAMEndpoint),
		Credentials: awscreds.NewStaticCredentialsProvider(s3.AccessKey, s3.SecretKey, ""),
	})}, nil
}

// users returns the IAM users whose name starts with prefix, by name,
// with their paths.
func (st objectStore) users(ctx context.Context, prefix string) (map[string]string, error) {
	out := map[string]string{}
	pages := iam.NewListUsersPaginator(st.iam, &iam.ListUsersInput{})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, u := range page.Users {
			if name := aws.ToString(u.UserName); strings.HasPrefix(name, prefix) {
				out[name] = aws.ToString(u.Path)
			}
		}
	}
	return out, nil
}

// objects returns the keys under prefix.
func (st objectStore) objects(ctx context.Context, prefix string) ([]string, error) {
	var keys []string
	pages := s3.NewListObjectsV2Paginator(st.s3.RootClient(), &s3.ListObjectsV2Input{
		Bucket: aws.String(st.s3.Bucket), Prefix: aws.String(prefix),
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys, nil
}

func getSecret(ctx context.Context, o *tenancyv1alpha1.Organization, name string) (*corev1.Secret, error) {
	ns := o.Status.Namespace
	if ns == "" {
		ns = naming.Namespace(o.Name)
	}
	s := &corev1.Secret{}
	err := env.k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s)
	return s, err
}

// checkProvisioned verifies one Ready Organization against the world:
// exactly one database and role carrying its marker, one IAM user with one
// access key, the one its Secret holds, and Secrets whose credentials work.
func checkProvisioned(ctx context.Context, o *tenancyv1alpha1.Organization, dbs, rls map[string]pgObject, users map[string]string) error {
	db := naming.DatabaseName(o.Name)
	marker := aurora.Marker{Org: o.Name, UID: string(o.UID), Cluster: env.clusterID}.String()
	if d, ok := dbs[db]; !ok || d.comment != marker || d.owner != db {
		return fmt.Errorf("database %s: %+v, want owner %s and marker %s", db, d, db, marker)
	}
	if r, ok := rls[db]; !ok || r.comment != marker {
		return fmt.Errorf("role %s: %+v, want marker %s", db, r, marker)
	}
	user := storage.UserName(o.Name)
	if path, ok := users[user]; !ok || path != "/orgforge/" {
		return fmt.Errorf("IAM user %s: present %v path %q", user, ok, path)
	}
	keys, err := env.store.storage.ListAccessKeys(ctx, user)
	if err != nil {
		return fmt.Errorf("access keys of %s: %w", user, err)
	}
	st, err := getSecret(ctx, o, o.Name+"-storage")
	if err != nil {
		return err
	}
	if len(keys) != 1 || keys[0] != string(st.Data["access-key-id"]) {
		return fmt.Errorf("IAM user %s has keys %v; want exactly the Secret's %s", user, keys, st.Data["access-key-id"])
	}
	return checkCredentials(ctx, o)
}

// checkCredentials uses the Secrets as an application would: the database
// uri opens a pgxpool as the org's role in its database, and the key writes
// and reads back an object in the org's prefix.
func checkCredentials(ctx context.Context, o *tenancyv1alpha1.Organization) error {
	ds, err := getSecret(ctx, o, o.Name+"-database")
	if err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, string(ds.Data["uri"]))
	if err != nil {
		return fmt.Errorf("%s: the uri does not open a pool: %w", o.Name, err)
	}
	defer pool.Close()
	var user, db string
	if err := pool.QueryRow(ctx, "SELECT current_user, current_database()").Scan(&user, &db); err != nil {
		return fmt.Errorf("%s: login with the database Secret: %w", o.Name, err)
	}
	if want := naming.DatabaseName(o.Name); user != want || db != want {
		return fmt.Errorf("%s: logged in as %s to %s, want %s", o.Name, user, db, want)
	}

	st, err := getSecret(ctx, o, o.Name+"-storage")
	if err != nil {
		return err
	}
	c := env.stack.S3.Client(string(st.Data["access-key-id"]), string(st.Data["secret-access-key"]))
	key := string(st.Data["prefix"]) + "probe.txt"
	body := "written by " + o.Name
	// A new key may take a moment to be honoured everywhere.
	var last error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if last = testutil.PutObject(ctx, c, env.stack.S3.Bucket, key, body); last != nil {
			continue
		}
		got, err := testutil.GetObject(ctx, c, env.stack.S3.Bucket, key)
		if err == nil && got == body {
			return nil
		}
		last = fmt.Errorf("read back %q, %v", got, err)
	}
	return fmt.Errorf("%s: the storage Secret's key does not write and read %s: %w", o.Name, key, last)
}

// verifyProvisioned checks every named Organization with checkProvisioned,
// and that nothing else carries the scenario's prefix.
func verifyProvisioned(t testing.TB, prefix string, want []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	all, err := orgs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dbPrefix := naming.DatabaseName(prefix)
	dbs, err := databases(ctx, dbPrefix)
	if err != nil {
		t.Fatal(err)
	}
	rls, err := roles(ctx, dbPrefix)
	if err != nil {
		t.Fatal(err)
	}
	users, err := env.store.users(ctx, storage.UserName(prefix))
	if err != nil {
		t.Fatal(err)
	}
	if len(dbs) != len(want) || len(rls) != len(want) || len(users) != len(want) {
		t.Errorf("%d organizations, but %d databases, %d roles and %d IAM users named after them", len(want), len(dbs), len(rls), len(users))
	}
	errs := testutil.Parallel(want, 4, func(name string) error {
		o, ok := all[name]
		if !ok {
			return fmt.Errorf("%s is missing", name)
		}
		return checkProvisioned(ctx, o, dbs, rls, users)
	})
	for _, err := range errs {
		t.Error(err)
	}
}

// group is Organizations of a scenario whose databases, roles, IAM users
// and objects are all named after prefix.
type group struct {
	prefix string
	names  []string
}

// eachOwn is a group per Organization, named after itself.
func eachOwn(names []string) []group {
	out := make([]group, len(names))
	for i, n := range names {
		out[i] = group{prefix: n, names: []string{n}}
	}
	return out
}

func namesOf(bs []group) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.names...)
	}
	return out
}

// createCleaned creates organizations, deleted when the test ends should it fail
// before, and returns their names.
func createCleaned(t testing.TB, organizations ...*tenancyv1alpha1.Organization) []string {
	t.Helper()
	var all []string
	for _, o := range organizations {
		all = append(all, o.Name)
	}
	cleanupOrgs(t, all)
	create(t, organizations...)
	return all
}

// provision creates organizations, deleted when the test ends should it fail
// before, waits until all are Ready and checks each group of them against
// the world with verifyProvisioned.
func provision(t testing.TB, organizations []*tenancyv1alpha1.Organization, bs ...group) {
	t.Helper()
	all := createCleaned(t, organizations...)
	waitReady(t, all, env.scale.converge)
	for _, b := range bs {
		verifyProvisioned(t, b.prefix, b.names)
	}
	sum.orgs(len(all), 0)
}

// deleteAndVerifyGone deletes the groups' Organizations and checks with
// awaitGone that they go.
func deleteAndVerifyGone(t testing.TB, alive []*operator, bs ...group) time.Duration {
	t.Helper()
	deleteOrgs(t, namesOf(bs)...)
	return awaitGone(t, alive, bs...)
}

// awaitGone waits until the groups' Organizations are gone, with the
// alive operators still running, checks with verifyGone that nothing of
// theirs is left and counts them deleted. It returns how long they took to
// go.
func awaitGone(t testing.TB, alive []*operator, bs ...group) time.Duration {
	t.Helper()
	all := namesOf(bs)
	settle := waitGone(t, all, env.scale.converge)
	assertAlive(t, alive...)
	for _, b := range bs {
		verifyGone(t, env.store, b.prefix, b.names)
	}
	sum.orgs(0, len(all))
	return settle
}

// verifyGone checks that nothing of the named Organizations is left:
// database or role on any server, objects or IAM user in store, or the
// Organization itself.
func verifyGone(t testing.TB, store objectStore, prefix string, names []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dbPrefix := naming.DatabaseName(prefix)
	for _, srv := range env.servers {
		if dbs, err := databasesOn(ctx, srv.su, dbPrefix); err != nil || len(dbs) > 0 {
			t.Errorf("databases left on %s: %v (%v)", srv.name, keysOf(dbs), err)
		}
		if rls, err := rolesOn(ctx, srv.su, dbPrefix); err != nil || len(rls) > 0 {
			t.Errorf("roles left on %s: %v (%v)", srv.name, keysOf(rls), err)
		}
	}
	if users, err := store.users(ctx, storage.UserName(prefix)); err != nil || len(users) > 0 {
		t.Errorf("IAM users left: %v (%v)", users, err)
	}
	for _, n := range names {
		if _, err := store.storage.ListAccessKeys(ctx, storage.UserName(n)); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("ListAccessKeys(%s) = %v, want ErrNotFound", storage.UserName(n), err)
		}
	}
	if keys, err := store.objects(ctx, "orgs/"+prefix); err != nil || len(keys) > 0 {
		t.Errorf("objects left: %d, e.g. %v (%v)", len(keys), first(keys, 5), err)
	}
	all, err := orgs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if o, ok := all[n]; ok {
			t.Errorf("Organization %s is still there with finalizers %v", n, o.Finalizers)
		}
	}
}

// globalOrphans lists, after every scenario, whatever orgforge could have
// left behind anywhere: databases and roles on every server, objects, IAM
// users, Organizations and DatabaseClusters other than the default one.
func globalOrphans(h *harness) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out []string
	for _, srv := range h.servers {
		if dbs, err := databasesOn(ctx, srv.su, "org_"); err != nil {
			out = append(out, fmt.Sprintf("listing databases of %s: %v", srv.name, err))
		} else {
			for n := range dbs {
				out = append(out, fmt.Sprintf("database %s on %s", n, srv.name))
			}
		}
		if rls, err := rolesOn(ctx, srv.su, "org_"); err != nil {
			out = append(out, fmt.Sprintf("listing roles of %s: %v", srv.name, err))
		} else {
			for n := range rls {
				out = append(out, fmt.Sprintf("role %s on %s", n, srv.name))
			}
		}
	}
	var clusters tenancyv1alpha1.DatabaseClusterList
	if err := h.k8s.List(ctx, &clusters); err != nil {
		out = append(out, "listing DatabaseClusters: "+err.Error())
	} else {
		for _, c := range clusters.Items {
			if c.Name != tenancyv1alpha1.DefaultClusterName {
				out = append(out, fmt.Sprintf("DatabaseCluster %s (finalizers %v)", c.Name, c.Finalizers))
			}
		}
	}
	if keys, err := h.store.objects(ctx, "orgs/"); err != nil {
		out = append(out, "listing objects: "+err.Error())
	} else {
		for _, k := range keys {
			out = append(out, "object "+k)
		}
	}
	if users, err := h.store.users(ctx, ""); err != nil {
		out = append(out, "listing IAM users: "+err.Error())
	} else {
		for n, path := range users {
			out = append(out, "IAM user "+path+n)
		}
	}
	if all, err := orgs(ctx); err != nil {
		out = append(out, "listing Organizations: "+err.Error())
	} else {
		for n, o := range all {
			out = append(out, fmt.Sprintf("Organization %s (finalizers %v)", n, o.Finalizers))
		}
	}
	sort.Strings(out)
	return out
}

func keysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func first(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// assertAlive fails the test if an operator exited without being told to.
func assertAlive(t testing.TB, ops ...*operator) {
	t.Helper()
	for _, op := range ops {
		if crashed, why := op.crashed(); crashed {
			t.Fatal(why)
		}
	}
}
