package chaos_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/credentials"
	"github.com/orgforge/orgforge/internal/naming"
	"github.com/orgforge/orgforge/internal/storage"
	"github.com/orgforge/orgforge/internal/testutil"
)

// unstructuredOrg is an Organization as a hostile client may write it,
// with fields of any type, and deletion policy Delete unless spec says.
func unstructuredOrg(name string, spec map[string]any) *unstructured.Unstructured {
	if spec == nil {
		spec = map[string]any{}
	}
	if _, ok := spec["deletionPolicy"]; !ok {
		spec["deletionPolicy"] = "Delete"
	}
	return testutil.UnstructuredOrg(name, spec)
}

// TestHostileInputIsRefusedAndTouchesNothing feeds the API server and the
// operator Organizations built to break them. Each is refused at admission
// with a message that says why, or, where only the servers can tell, set to
// InvalidSpec or Conflict; nothing is created for them, and nothing that
// orgforge did not create is altered or removed, whatever the
// deletionPolicy. Names that would be dangerous unprefixed provision
// harmlessly as org_<name>.
func TestHostileInputIsRefusedAndTouchesNothing(t *testing.T) {
	ctx := t.Context()
	op := startOperator(t, "hostile")
	op.waitStarted(t)
	before := worldSnapshot(t)

	t.Run("admission", func(t *testing.T) {
		cases := map[string]testutil.Refusal{
			"name with a quote and SQL":             {Obj: unstructuredOrg("acme'; DROP DATABASE postgres; --", nil), Message: "RFC 1123"},
			"name with a double quote":              {Obj: unstructuredOrg(`acme"; DROP ROLE orgforge_admin; --`, nil), Message: "RFC 1123"},
			"name with a semicolon":                 {Obj: unstructuredOrg("acme;drop", nil), Message: "RFC 1123"},
			"name of 51 characters":                 {Obj: unstructuredOrg(strings.Repeat("a", 51), nil), Message: "at most 50 characters"},
			"name of 64 characters":                 {Obj: unstructuredOrg(strings.Repeat("b", 64), nil), Message: "at most 50 characters"},
			"name of 254 characters":                {Obj: unstructuredOrg(strings.Repeat("c", 254), nil), Message: "must be no more than 253 characters"},
			"name with a Cyrillic lookalike":        {Obj: unstructuredOrg("\u0440ostgres", nil), Message: "RFC 1123"},
			"name in fullwidth letters":             {Obj: unstructuredOrg("\uff50\uff4f\uff53\uff54\uff47\uff52\uff45\uff53", nil), Message: "RFC 1123"},
			"name with a zero-width space":          {Obj: unstructuredOrg("acme\u200b", nil), Message: "RFC 1123"},
			"name with a dotless i":                 {Obj: unstructuredOrg("adm\u0131n", nil), Message: "RFC 1123"},
			"name rds_superuser with an underscore": {Obj: unstructuredOrg("rds_superuser", nil), Message: "RFC 1123"},
			"name in upper case":                    {Obj: unstructuredOrg("Postgres", nil), Message: "RFC 1123"},
			"name with a dot":                       {Obj: unstructuredOrg("pg.template1", nil), Message: "must be a DNS label"},
			"name traversing with ..":               {Obj: unstructuredOrg("..", nil), Message: "RFC 1123"},
			"name traversing with a slash":          {Obj: unstructuredOrg("../orgs", nil), Message: "RFC 1123"},
			"name with a percent-encoded slash":     {Obj: unstructuredOrg("a%2f..%2fb", nil), Message: "RFC 1123"},
			"deletion policy carrying SQL":          {Obj: unstructuredOrg("bad-policy", map[string]any{"deletionPolicy": "Delete'; DROP DATABASE x; --"}), Message: `supported values: "Retain", "Delete"`},
			"storage access carrying a quote":       {Obj: unstructuredOrg("bad-access", map[string]any{"storage": map[string]any{"access": `AccessKey"`}}), Message: `supported values: "None", "AccessKey"`},
			"namespace carrying SQL":                {Obj: unstructuredOrg("bad-ns", map[string]any{"namespace": "org-a'; DROP TABLE x"}), Message: "should match"},
			"namespace traversing":                  {Obj: unstructuredOrg("path-ns", map[string]any{"namespace": "../kube-system"}), Message: "should match"},
			"namespace in upper case":               {Obj: unstructuredOrg("upper-ns", map[string]any{"namespace": "Kube-System"}), Message: "should match"},
			"namespace of 64 characters":            {Obj: unstructuredOrg("long-ns", map[string]any{"namespace": strings.Repeat("n", 64)}), Message: "may not be more than 63"},
			"display name of 257 characters":        {Obj: unstructuredOrg("long-display", map[string]any{"displayName": strings.Repeat("'", 257)}), Message: "may not be more than 256"},
			"extension carrying SQL":                {Obj: unstructuredOrg("sql-ext", testutil.ExtensionsSpec("pgcrypto; DROP DATABASE x")), Message: "should match"},
			"extension with a quote":                {Obj: unstructuredOrg("quote-ext", testutil.ExtensionsSpec(`pgcrypto"`)), Message: "should match"},
			"extension dropping the admin":          {Obj: unstructuredOrg("drop-ext", testutil.ExtensionsSpec("'; DROP ROLE orgforge_admin; --")), Message: "should match"},
			"extension with a schema":               {Obj: unstructuredOrg("schema-ext", testutil.ExtensionsSpec("pg_catalog.pgcrypto")), Message: "should match"},
			"extension of 64 characters":            {Obj: unstructuredOrg("long-ext", testutil.ExtensionsSpec(strings.Repeat("e", 64))), Message: "may not be more than 63"},
			"33 extensions":                         {Obj: unstructuredOrg("many-ext", testutil.ExtensionsSpec(testutil.NumberedExtensions(33)...)), Message: "must have at most 32 items"},
			"empty extension":                       {Obj: unstructuredOrg("empty-ext", testutil.ExtensionsSpec("")), Message: "should be at least 1 chars long"},
			"min connections above max":             {Obj: unstructuredOrg("min-max", testutil.PoolSpec(20, 10)), Message: "minConnections must not be greater than database.pool.maxConnections"},
			"negative min connections":              {Obj: unstructuredOrg("neg-min", testutil.PoolSpec(-1, 10)), Message: "should be greater than or equal to 0"},
			"negative max connections":              {Obj: unstructuredOrg("neg-max", testutil.PoolSpec(0, -5)), Message: "should be greater than or equal to 1"},
			"zero max connections":                  {Obj: unstructuredOrg("zero-max", testutil.PoolSpec(0, 0)), Message: "should be greater than or equal to 1"},
			"max connections of 2^31-1":             {Obj: unstructuredOrg("huge-max", testutil.PoolSpec(2, 2147483647)), Message: "should be less than or equal to 1000"},
			"min connections of 10^12":              {Obj: unstructuredOrg("huge-min", testutil.PoolSpec(int64(1e12), 10)), Message: "should be less than or equal to 1000"},
			"fractional connections":                {Obj: unstructuredOrg("frac-pool", testutil.PoolSpec(2, 2.5)), Message: "must be of type integer"},
			"connections carrying SQL":              {Obj: unstructuredOrg("text-pool", testutil.PoolSpec(2, "10; DROP DATABASE x")), Message: "must be of type integer"},
		}
		for name, tc := range cases {
			t.Run(name, func(t *testing.T) {
				testutil.CheckRefused(t, env.k8s, tc)
				badInput("admission", true)
			})
		}
	})

	t.Run("invalid spec", func(t *testing.T) {
		cases := map[string]struct {
			org     *tenancyv1alpha1.Organization
			message string
		}{
			"namespace kube-system":     {newOrg("hostile-kube-system", testutil.InNamespace("kube-system")), "--allow-system-namespaces"},
			"namespace kube-public":     {newOrg("hostile-kube-public", testutil.InNamespace("kube-public")), "--allow-system-namespaces"},
			"namespace kube-node-lease": {newOrg("hostile-kube-node-lease", testutil.InNamespace("kube-node-lease")), "--allow-system-namespaces"},
			"namespace default":         {newOrg("hostile-default", testutil.InNamespace("default")), "--allow-system-namespaces"},
			"extension the server lacks": {newOrg("hostile-no-ext", testutil.WithExtensions("no_such_extension")),
				`extension "no_such_extension" is not available`},
			"one good and one missing extension": {newOrg("hostile-half-ext", testutil.WithExtensions("pgcrypto", "pgcrypto-2")),
				`extension "pgcrypto-2" is not available`},
			"extension reading server files": {newOrg("hostile-file-fdw", testutil.WithExtensions("file_fdw")),
				`extension "file_fdw" can only be created by a superuser`},
			"extension reaching other databases": {newOrg("hostile-dblink", testutil.WithExtensions("dblink")),
				`extension "dblink" can only be created by a superuser`},
		}
		var created []*tenancyv1alpha1.Organization
		for _, tc := range cases {
			created = append(created, tc.org)
		}
		all := createCleaned(t, created...)
		for name, tc := range cases {
			t.Run(name, func(t *testing.T) {
				o := waitReason(t, tc.org.Name, tenancyv1alpha1.ConditionReady, tenancyv1alpha1.ReasonInvalidSpec)
				for _, ct := range []string{tenancyv1alpha1.ConditionDatabaseReady, tenancyv1alpha1.ConditionStorageReady} {
					if c := testutil.DescribeCondition(o, ct); !strings.Contains(c, tc.message) {
						t.Errorf("%s is %q; want a message saying %q", ct, c, tc.message)
					}
				}
				assertNothingCreated(t, o)
				badInput("InvalidSpec", true)
			})
		}
		deleteOrgs(t, all...)
		waitGone(t, all, env.scale.converge)
	})

	parent := t
	t.Run("system namespace allowed by the flag", func(t *testing.T) {
		op.stop()
		allowed := startOperator(t, "hostile-allow-system", "--allow-system-namespaces")
		allowed.waitStarted(t)
		defer func() {
			allowed.stop()
			op = startOperator(parent, "hostile-after")
			op.waitStarted(t)
		}()
		o := newOrg("hostile-allowed", testutil.InNamespace("kube-public"))
		provision(t, []*tenancyv1alpha1.Organization{o}, eachOwn([]string{o.Name})...)
		deleteOrgs(t, o.Name)
		waitGone(t, []string{o.Name}, env.scale.converge)
		ns := &corev1.Namespace{}
		if err := env.k8s.Get(ctx, client.ObjectKey{Name: "kube-public"}, ns); err != nil || !ns.DeletionTimestamp.IsZero() {
			t.Errorf("kube-public was deleted with the Organization that used it (%v)", err)
		}
		sum.orgs(0, 1)
	})

	t.Run("dangerous names provision harmlessly", func(t *testing.T) {
		cases := []*tenancyv1alpha1.Organization{
			newOrg("postgres"), newOrg("template0"), newOrg("template1"), newOrg("rds-superuser"),
			newOrg("orgforge-admin"), newOrg("rdsadmin"), newOrg("public"), newOrg("pg-signal-backend"),
			newOrg("hostile-display-sql", testutil.WithDisplayName("'); DROP DATABASE postgres; --")),
			newOrg("hostile-display-quote", testutil.WithDisplayName(`"; DROP ROLE orgforge_admin; -- \' $$`)),
			newOrg("hostile-display-unicode", testutil.WithDisplayName("\uff21\uff23\uff2d\uff25 \u0440ostgres \u200b\u202e")),
			newOrg("hostile-display-traversal", testutil.WithDisplayName("../../orgs/postgres/")),
		}
		var all []string
		for _, o := range cases {
			all = append(all, o.Name)
		}
		guarded := guardRealObjects(t)
		provision(t, cases, eachOwn(all)...)
		for range cases {
			badInput("harmless", false)
		}
		deleteAndVerifyGone(t, nil, eachOwn(all)...)
		guarded.check(t)
	})

	t.Run("names taken by others are a Conflict and are never touched", func(t *testing.T) {
		for _, policy := range []tenancyv1alpha1.DeletionPolicy{tenancyv1alpha1.DeletionPolicyDelete, tenancyv1alpha1.DeletionPolicyRetain} {
			t.Run(string(policy), func(t *testing.T) { conflicts(t, strings.ToLower(string(policy))) })
		}
	})

	assertAlive(t, op)
	after := worldSnapshot(t)
	if d := before.diff(after); d != "" {
		t.Errorf("the world changed across the hostile inputs:\n%s", d)
	}
}

// conflicts takes, before the Organizations exist, each name they will
// need, the way someone else might, and checks that the operator reports a
// Conflict, alters none of it and leaves all of it when the Organizations
// are deleted with the given policy.
func conflicts(t *testing.T, policy string) {
	ctx := t.Context()
	p := func(s string) string { return "taken-" + policy + "-" + s }
	withPolicy := func(o *tenancyv1alpha1.Organization) {
		o.Spec.DeletionPolicy = tenancyv1alpha1.DeletionPolicy(strings.ToUpper(policy[:1]) + policy[1:])
	}

	// A database with data, a login role, IAM users outside and inside
	// orgforge's path, a Secret and a prefix marker, none of them
	// orgforge's.
	dbOrg, roleOrg, outsideOrg, taggedOrg, secretOrg, prefixOrg := p("db"), p("role"), p("iam-path"), p("iam-tag"), p("secret"), p("prefix")
	db := naming.DatabaseName(dbOrg)
	superSQL(t, "CREATE DATABASE "+db)
	t.Cleanup(func() { superSQL(t, "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)") })
	superSQLIn(t, db, "CREATE TABLE precious (v int); INSERT INTO precious SELECT generate_series(1, 100)")
	superSQL(t, "COMMENT ON DATABASE "+db+" IS 'belongs to payroll'")

	role := naming.RoleName(roleOrg)
	verifier, err := credentials.SCRAMVerifier("Payroll-Pa55")
	if err != nil {
		t.Fatal(err)
	}
	superSQL(t, "CREATE ROLE "+role+" LOGIN CONNECTION LIMIT 3 PASSWORD '"+verifier+"'")
	t.Cleanup(func() { superSQL(t, "DROP ROLE IF EXISTS "+role) })
	superSQL(t, "COMMENT ON ROLE "+role+" IS 'orgforge:org="+roleOrg+";uid=not-this-one'")

	outside := foreignIAMUser(t, storage.UserName(outsideOrg), "/payroll/", nil)
	tagged := foreignIAMUser(t, storage.UserName(taggedOrg), "/orgforge/", map[string]string{storage.TagUID: "another-uid", storage.TagOrg: taggedOrg})

	ns := &corev1.Namespace{}
	ns.Name = p("shared-ns")
	if err := env.k8s.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	foreignSecret := &corev1.Secret{StringData: map[string]string{"password": "not-orgforges"}}
	foreignSecret.Namespace, foreignSecret.Name = ns.Name, naming.DatabaseSecretName(secretOrg)
	if err := env.k8s.Create(ctx, foreignSecret); err != nil {
		t.Fatal(err)
	}

	markerKey := "orgs/" + prefixOrg + "/" + storage.MarkerName
	root := env.stack.S3.RootClient()
	for key, body := range map[string]string{markerKey: "payroll's own marker", "orgs/" + prefixOrg + "/ledger.csv": "1,2,3"} {
		if err := testutil.PutObject(ctx, root, env.stack.S3.Bucket, key, body); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _, _ = env.store.storage.DeletePrefix(context.Background(), "orgs/"+prefixOrg+"/") })

	state := func() string {
		var b strings.Builder
		row := env.su.QueryRow(ctx, `SELECT d.datname, pg_get_userbyid(d.datdba), shobj_description(d.oid, 'pg_database'),
			(SELECT rolpassword FROM pg_authid WHERE rolname = $2), (SELECT rolconnlimit FROM pg_roles WHERE rolname = $2),
			(SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $2)
			FROM pg_database d WHERE d.datname = $1`, db, role)
		var name, owner, comment, password, roleComment string
		var limit int
		if err := row.Scan(&name, &owner, &comment, &password, &limit, &roleComment); err != nil {
			return "catalog: " + err.Error()
		}
		var rows int
		_ = superQueryIn(t, db, "SELECT count(*) FROM precious", &rows)
		fmt.Fprintf(&b, "database %s owner %s comment %q rows %d; role password %s limit %d comment %q\n",
			name, owner, comment, rows, password, limit, roleComment)
		for _, u := range []string{outside, tagged} {
			fmt.Fprintf(&b, "IAM user %s: %s\n", u, describeIAMUser(ctx, u))
		}
		s := &corev1.Secret{}
		if err := env.k8s.Get(ctx, client.ObjectKeyFromObject(foreignSecret), s); err != nil {
			fmt.Fprintf(&b, "Secret: %v\n", err)
		} else {
			fmt.Fprintf(&b, "Secret labels %v data %q owners %v\n", s.Labels, s.Data, s.OwnerReferences)
		}
		for _, key := range []string{markerKey, "orgs/" + prefixOrg + "/ledger.csv"} {
			body, err := testutil.GetObject(ctx, root, env.stack.S3.Bucket, key)
			fmt.Fprintf(&b, "object %s: %q %v\n", key, body, err)
		}
		return b.String()
	}
	was := state()

	cases := []struct {
		org       *tenancyv1alpha1.Organization
		condition string
		names     string
	}{
		{newOrg(dbOrg, withPolicy), tenancyv1alpha1.ConditionDatabaseReady, `database "` + db + `"`},
		{newOrg(roleOrg, withPolicy), tenancyv1alpha1.ConditionDatabaseReady, `role "` + role + `"`},
		{newOrg(outsideOrg, withPolicy), tenancyv1alpha1.ConditionStorageReady, `IAM user "` + outside + `" exists outside orgforge's path`},
		{newOrg(taggedOrg, withPolicy), tenancyv1alpha1.ConditionStorageReady, `IAM user "` + tagged + `" belongs to the organization with uid "another-uid"`},
		{newOrg(secretOrg, withPolicy, testutil.InNamespace(ns.Name)), tenancyv1alpha1.ConditionDatabaseReady, "Secret " + ns.Name + "/" + foreignSecret.Name},
		{newOrg(prefixOrg, withPolicy), tenancyv1alpha1.ConditionStorageReady, `prefix "orgs/` + prefixOrg + `/" holds a .orgforge that orgforge did not write`},
	}
	var created []*tenancyv1alpha1.Organization
	for _, tc := range cases {
		created = append(created, tc.org)
	}
	all := createCleaned(t, created...)
	for _, tc := range cases {
		o := waitReason(t, tc.org.Name, tc.condition, tenancyv1alpha1.ReasonConflict)
		if c := testutil.DescribeCondition(o, tc.condition); !strings.Contains(c, tc.names) {
			t.Errorf("%s: %s is %q; want it to name %s", tc.org.Name, tc.condition, c, tc.names)
		}
		badInput("Conflict", true)
	}
	if now := state(); now != was {
		t.Errorf("objects orgforge does not own changed while it reconciled:\nbefore: %s\nafter:  %s", was, now)
	}
	deleteOrgs(t, all...)
	waitGone(t, all, env.scale.converge)
	if now := state(); now != was {
		t.Errorf("objects orgforge does not own changed when the Organizations were deleted (%s):\nbefore: %s\nafter:  %s", policy, was, now)
	}
	// What the operator did create for them went with them, or stays
	// by the Retain policy.
	if policy == "delete" {
		for _, tc := range cases {
			verifyGoneExcept(t, tc.org.Name, db, role)
		}
	} else {
		for _, tc := range cases {
			cleanupRetained(t, tc.org.Name, db, role)
		}
	}
}

// guarded is what the dangerous names must never reach: the real
// databases and roles whose names they spell.
type guarded struct{ before string }

func guardRealObjects(t *testing.T) guarded {
	return guarded{before: realObjects(t)}
}

func realObjects(t *testing.T) string {
	var out string
	err := env.su.QueryRow(t.Context(), `SELECT string_agg(x, E'\n' ORDER BY x) FROM (
		SELECT format('database %s owner %s comment %s acl %s', datname, pg_get_userbyid(datdba), shobj_description(oid, 'pg_database'), datacl) AS x
			FROM pg_database WHERE datname IN ('postgres', 'template0', 'template1')
		UNION ALL
		SELECT format('role %s super %s createdb %s createrole %s login %s password %s comment %s members %s', rolname, rolsuper, rolcreatedb, rolcreaterole, rolcanlogin,
			rolpassword, shobj_description(oid, 'pg_authid'),
			(SELECT string_agg(pg_get_userbyid(member), ',' ORDER BY 1) FROM pg_auth_members WHERE roleid = a.oid))
			FROM pg_authid a WHERE rolname IN ('postgres', 'rds_superuser', 'rds_iam', 'orgforge_admin', 'pg_signal_backend', 'public', 'rdsadmin')) s`).Scan(&out)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (g guarded) check(t *testing.T) {
	if now := realObjects(t); now != g.before {
		t.Errorf("real databases or roles changed:\nbefore:\n%s\nafter:\n%s", g.before, now)
	}
}

func badInput(kind string, refused bool) {
	sum.mu.Lock()
	defer sum.mu.Unlock()
	b := &sum.badInputs
	switch kind {
	case "admission":
		b.admission++
	case "InvalidSpec":
		b.invalidSpec++
	case "Conflict":
		b.conflict++
	case "harmless":
		b.harmless++
		return
	}
	b.total++
	if refused {
		b.refused++
	}
}

// waitReason waits until condition condType of the Organization is False
// with reason.
func waitReason(t *testing.T, name, condType, reason string) *tenancyv1alpha1.Organization {
	t.Helper()
	o := &tenancyv1alpha1.Organization{}
	testutil.EventuallyEvery(t, poll, env.scale.converge, fmt.Sprintf("%s %s=False/%s", name, condType, reason), func() (bool, string) {
		if err := env.k8s.Get(context.Background(), client.ObjectKey{Name: name}, o); err != nil {
			return false, err.Error()
		}
		c := testutil.DescribeCondition(o, condType)
		return strings.HasPrefix(c, "False/"+reason+":"), c
	})
	return o
}

// assertNothingCreated checks that no database, role, IAM user, object,
// namespace or Secret exists for the Organization.
func assertNothingCreated(t *testing.T, o *tenancyv1alpha1.Organization) {
	t.Helper()
	ctx := t.Context()
	db := naming.DatabaseName(o.Name)
	if dbs, err := databases(ctx, db); err != nil || len(dbs) > 0 {
		t.Errorf("databases %v (%v)", keysOf(dbs), err)
	}
	if rls, err := roles(ctx, db); err != nil || len(rls) > 0 {
		t.Errorf("roles %v (%v)", keysOf(rls), err)
	}
	if users, err := env.store.users(ctx, storage.UserName(o.Name)); err != nil || len(users) > 0 {
		t.Errorf("IAM users %v (%v)", users, err)
	}
	if keys, err := env.store.objects(ctx, "orgs/"+o.Name+"/"); err != nil || len(keys) > 0 {
		t.Errorf("objects %v (%v)", keys, err)
	}
	ns := o.Spec.Namespace
	if ns == "" {
		ns = naming.Namespace(o.Name)
		if err := env.k8s.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{}); !apierrors.IsNotFound(err) {
			t.Errorf("namespace %s was created (%v)", ns, err)
		}
	}
	for _, s := range []string{naming.DatabaseSecretName(o.Name), naming.StorageSecretName(o.Name)} {
		if err := env.k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: s}, &corev1.Secret{}); !apierrors.IsNotFound(err) {
			t.Errorf("Secret %s/%s was written (%v)", ns, s, err)
		}
	}
}

// verifyGoneExcept is verifyGone for one organization, leaving out the
// foreign database and role that took its names.
func verifyGoneExcept(t *testing.T, org, foreignDB, foreignRole string) {
	t.Helper()
	ctx := t.Context()
	db := naming.DatabaseName(org)
	if dbs, err := databases(ctx, db); err != nil || (len(dbs) > 0 && db != foreignDB) {
		t.Errorf("%s: databases left %v (%v)", org, keysOf(dbs), err)
	}
	if rls, err := roles(ctx, db); err != nil || (len(rls) > 0 && db != foreignRole) {
		t.Errorf("%s: roles left %v (%v)", org, keysOf(rls), err)
	}
	if keys, err := env.store.objects(ctx, "orgs/"+org+"/"); err != nil || (len(keys) > 0 && !strings.HasSuffix(org, "-prefix")) {
		t.Errorf("%s: objects left %v (%v)", org, keys, err)
	}
}

// cleanupRetained removes what the Retain policy kept for an organization
// that orgforge provisioned in part.
func cleanupRetained(t *testing.T, org, foreignDB, foreignRole string) {
	db := naming.DatabaseName(org)
	if db != foreignDB {
		superSQL(t, "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)")
	}
	if db != foreignRole {
		superSQL(t, "DROP ROLE IF EXISTS "+db)
	}
	if !strings.HasSuffix(org, "-prefix") {
		if _, err := env.store.storage.DeletePrefix(t.Context(), "orgs/"+org+"/"); err != nil {
			t.Error(err)
		}
	}
}

func superSQL(t *testing.T, sql string) {
	t.Helper()
	if _, err := env.su.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func superSQLIn(t *testing.T, db, sql string) {
	t.Helper()
	if err := superQueryIn(t, db, sql); err != nil {
		t.Fatal(err)
	}
}

func superQueryIn(t *testing.T, db, sql string, dest ...any) error {
	t.Helper()
	ctx := context.Background()
	conn, err := testutil.SuperuserConn(ctx, env.stack.Postgres, db)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(ctx) }()
	if len(dest) == 0 {
		_, err = conn.Exec(ctx, sql)
		return err
	}
	return conn.QueryRow(ctx, sql).Scan(dest...)
}

// foreignIAMUser creates an IAM user the way another team would, with an
// access key, and removes it when the test ends.
func foreignIAMUser(t *testing.T, name, path string, tags map[string]string) string {
	t.Helper()
	ctx := t.Context()
	in := &iam.CreateUserInput{UserName: aws.String(name), Path: aws.String(path)}
	for k, v := range tags {
		in.Tags = append(in.Tags, iamtypes.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	if _, err := env.store.iam.CreateUser(ctx, in); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteIAMUser(name) })
	if _, err := env.store.iam.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(name)}); err != nil {
		t.Fatal(err)
	}
	return name
}

func describeIAMUser(ctx context.Context, name string) string {
	u, err := env.store.iam.GetUser(ctx, &iam.GetUserInput{UserName: aws.String(name)})
	if err != nil {
		return err.Error()
	}
	keys, err := env.store.iam.ListAccessKeys(ctx, &iam.ListAccessKeysInput{UserName: aws.String(name)})
	if err != nil {
		return err.Error()
	}
	var ids []string
	for _, k := range keys.AccessKeyMetadata {
		ids = append(ids, aws.ToString(k.AccessKeyId))
	}
	pols, err := env.store.iam.ListUserPolicies(ctx, &iam.ListUserPoliciesInput{UserName: aws.String(name)})
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("path %s keys %v policies %v", aws.ToString(u.User.Path), ids, pols.PolicyNames)
}

// deleteIAMUser removes a user whatever its path, as its owner would.
func deleteIAMUser(name string) {
	ctx := context.Background()
	if keys, err := env.store.iam.ListAccessKeys(ctx, &iam.ListAccessKeysInput{UserName: aws.String(name)}); err == nil {
		for _, k := range keys.AccessKeyMetadata {
			_, _ = env.store.iam.DeleteAccessKey(ctx, &iam.DeleteAccessKeyInput{UserName: aws.String(name), AccessKeyId: k.AccessKeyId})
		}
	}
	if pols, err := env.store.iam.ListUserPolicies(ctx, &iam.ListUserPoliciesInput{UserName: aws.String(name)}); err == nil {
		for _, p := range pols.PolicyNames {
			_, _ = env.store.iam.DeleteUserPolicy(ctx, &iam.DeleteUserPolicyInput{UserName: aws.String(name), PolicyName: aws.String(p)})
		}
	}
	_, _ = env.store.iam.DeleteUser(ctx, &iam.DeleteUserInput{UserName: aws.String(name)})
}

// snapshot is everything orgforge could create, by name.
type snapshot map[string]bool

func worldSnapshot(t *testing.T) snapshot {
	t.Helper()
	ctx := t.Context()
	s := snapshot{}
	add := func(kind string, names []string, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			s[kind+" "+n] = true
		}
	}
	dbs, err := databases(ctx, "")
	add("database", keysOf(dbs), err)
	rls, err := roles(ctx, "")
	add("role", keysOf(rls), err)
	users, err := env.store.users(ctx, "")
	add("IAM user", keysOf(users), err)
	keys, err := env.store.objects(ctx, "")
	add("object", keys, err)
	return s
}

func (s snapshot) diff(o snapshot) string {
	var out []string
	for k := range s {
		if !o[k] {
			out = append(out, "- "+k)
		}
	}
	for k := range o {
		if !s[k] {
			out = append(out, "+ "+k)
		}
	}
	return strings.Join(out, "\n")
}
