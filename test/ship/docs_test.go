package ship

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/orgforge/orgforge/internal/config"
	"github.com/orgforge/orgforge/internal/storage"
	"github.com/orgforge/orgforge/internal/testutil"
)

// TestAPIDocIsCurrent regenerates docs/api.md from the Go types with the
// pinned crd-ref-docs and compares.
func TestAPIDocIsCurrent(t *testing.T) {
	crdRefDocs := tool(t, "ORGFORGE_CRD_REF_DOCS", "crd-ref-docs")
	out := filepath.Join(t.TempDir(), "api.md")
	command(t, crdRefDocs, "--source-path", "./api", "--config", "hack/api-docs/config.yaml", "--renderer", "markdown", "--output-path", out)
	want, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(repoPath("docs", "api.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want, got) {
		t.Errorf("docs/api.md is stale: run `make api-docs` (-want +got):\n%s", cmp.Diff(string(want), string(got)))
	}
}

// constants returns the string constants of a Go file whose names start
// with prefix.
func constants(t *testing.T, path, prefix string) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		spec, ok := n.(*ast.ValueSpec)
		if !ok {
			return true
		}
		for i, name := range spec.Names {
			if !strings.HasPrefix(name.Name, prefix) || i >= len(spec.Values) {
				continue
			}
			if lit, ok := spec.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				v, _ := strconv.Unquote(lit.Value)
				out = append(out, v)
			}
		}
		return true
	})
	return out
}

// TestOperationsDocIsComplete checks that docs/operations.md covers every
// condition, every reason of an Organization and of a DatabaseCluster, the
// annotations that record a placement, and every metric the operator has,
// so that a new one cannot ship without its runbook entry.
func TestOperationsDocIsComplete(t *testing.T) {
	doc, err := os.ReadFile(repoPath("docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	types := repoPath("api", "v1alpha1", "organization_types.go")
	conditions := constants(t, types, "Condition")
	reasons := constants(t, types, "Reason")
	if len(conditions) < 3 || len(reasons) < 5 {
		t.Fatalf("found conditions %v and reasons %v in %s: the parse is broken", conditions, reasons, types)
	}
	clusterTypes := repoPath("api", "v1alpha1", "databasecluster_types.go")
	clusterReasons := constants(t, clusterTypes, "Reason")
	annotations := constants(t, clusterTypes, "Annotation")
	if len(clusterReasons) < 3 || len(annotations) < 2 {
		t.Fatalf("found reasons %v and annotations %v in %s: the parse is broken", clusterReasons, annotations, clusterTypes)
	}
	reasons = append(reasons, clusterReasons...)
	for _, a := range annotations {
		if !bytes.Contains(doc, []byte("`"+a+"`")) {
			t.Errorf("docs/operations.md does not name the placement annotation %s", a)
		}
	}
	// A reason's runbook entry is a heading naming it.
	for _, r := range reasons {
		if !regexp.MustCompile("(?m)^#{2,4} .*`" + r + "`").Match(doc) {
			t.Errorf("docs/operations.md has no heading for reason %s", r)
		}
	}
	for _, c := range conditions {
		if !bytes.Contains(doc, []byte("`"+c+"`")) {
			t.Errorf("docs/operations.md does not mention condition %s", c)
		}
	}

	// Every step the reconciler times is a documented value of the step
	// label.
	steps := 0
	for _, m := range sourceMatches(t, `step: "([A-Za-z]+)"`, "controllers") {
		steps++
		if !bytes.Contains(doc, []byte("`"+m+"`")) {
			t.Errorf("docs/operations.md does not name the step %s of orgforge_reconcile_step_duration_seconds", m)
		}
	}
	if steps < 10 {
		t.Fatalf("found %d timed steps in controllers/: the parse is broken", steps)
	}

	var metrics [][][]byte
	for _, src := range []string{"metrics.go", "fleet_metrics.go", "usage_metrics.go"} {
		b, err := os.ReadFile(repoPath("controllers", src))
		if err != nil {
			t.Fatal(err)
		}
		metrics = append(metrics, regexp.MustCompile(`"(orgforge_[a-z_]+)"`).FindAllSubmatch(b, -1)...)
	}
	if len(metrics) < 11 {
		t.Fatalf("found %d metrics in controllers/metrics.go, fleet_metrics.go and usage_metrics.go: the parse is broken", len(metrics))
	}
	for _, m := range metrics {
		if !bytes.Contains(doc, m[1]) {
			t.Errorf("docs/operations.md does not document metric %s", m[1])
		}
	}
}

// sourceMatches returns the first group of every match of re in the Go
// files, tests left out, of the repository folder dir.
func sourceMatches(t *testing.T, re string, dir ...string) []string {
	t.Helper()
	srcs, err := filepath.Glob(repoPath(append(dir, "*.go")...))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, path := range srcs {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(re).FindAllSubmatch(src, -1) {
			out = append(out, string(m[1]))
		}
	}
	return out
}

// codeBlocks returns the fenced blocks of a doc in one language.
func codeBlocks(t *testing.T, doc, lang string) []string {
	t.Helper()
	b, err := os.ReadFile(repoPath("docs", doc))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range regexp.MustCompile("(?s)```"+lang+"\n(.*?)```").FindAllSubmatch(b, -1) {
		out = append(out, string(m[1]))
	}
	return out
}

// blockWith returns the one block that contains marker.
func blockWith(t *testing.T, blocks []string, marker string) string {
	t.Helper()
	var found []string
	for _, b := range blocks {
		if strings.Contains(b, marker) {
			found = append(found, b)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one block with %q, found %d", marker, len(found))
	}
	return found[0]
}

// storageCalls maps each S3 and IAM operation internal/storage makes to the
// actions a policy must allow for it, and the resource those act on.
var storageCalls = map[string]struct {
	actions  []string
	resource string
}{
	"HeadBucket":                 {[]string{"s3:ListBucket"}, "bucket"},
	"ListObjectsV2":              {[]string{"s3:ListBucket"}, "bucket"},
	"GetObject":                  {[]string{"s3:GetObject"}, "objects"},
	"PutObject":                  {[]string{"s3:PutObject"}, "objects"},
	"DeleteObject":               {[]string{"s3:DeleteObject"}, "objects"},
	"DeleteObjects":              {[]string{"s3:DeleteObject"}, "objects"},
	"CreateUser":                 {[]string{"iam:CreateUser", "iam:TagUser"}, "users"},
	"GetUser":                    {[]string{"iam:GetUser"}, "users"},
	"DeleteUser":                 {[]string{"iam:DeleteUser"}, "users"},
	"PutUserPolicy":              {[]string{"iam:PutUserPolicy"}, "users"},
	"PutUserPermissionsBoundary": {[]string{"iam:PutUserPermissionsBoundary"}, "users"},
	"GetUserPolicy":              {[]string{"iam:GetUserPolicy"}, "users"},
	"DeleteUserPolicy":           {[]string{"iam:DeleteUserPolicy"}, "users"},
	"ListUserPolicies":           {[]string{"iam:ListUserPolicies"}, "users"},
	"CreateAccessKey":            {[]string{"iam:CreateAccessKey"}, "users"},
	"DeleteAccessKey":            {[]string{"iam:DeleteAccessKey"}, "users"},
	"ListAccessKeys":             {[]string{"iam:ListAccessKeys"}, "users"},
	"ListUsers":                  {[]string{"iam:ListUsers"}, "any"},
	"TagUser":                    {[]string{"iam:TagUser"}, "users"},
}

// boundaryActions are the IAM actions that give a user permissions. IAM can
// require a permissions boundary on each (the iam:PermissionsBoundary
// condition key), and the operator's policy must: allowed without it, any one
// of them could mint an administrator. The other user actions have no such
// key, so a condition on it would deny them; they give no permissions.
var boundaryActions = map[string]bool{
	"iam:CreateUser":                 true,
	"iam:PutUserPolicy":              true,
	"iam:PutUserPermissionsBoundary": true,
	"iam:AttachUserPolicy":           true,
}

// guideBoundary is the ARN of the permissions boundary of
// docs/install-aws.md, in its example account.
const guideBoundary = "arn:aws:iam::111122223333:policy/orgforge-tenant-boundary"

// iamPolicy is an IAM policy document as docs/install-aws.md writes them:
// one resource per statement and single condition values. Decoding it
// strictly refuses anything else (NotAction, Principal...), which the checks
// below would not understand.
type iamPolicy struct {
	Version   string
	Statement []struct {
		Sid       string
		Effect    string
		Action    []string
		Resource  string
		Condition map[string]map[string]string `json:",omitempty"`
	}
}

func parsePolicy(t *testing.T, what, block string) iamPolicy {
	t.Helper()
	var p iamPolicy
	dec := json.NewDecoder(strings.NewReader(block))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("%s in docs/install-aws.md is not a policy document of the expected shape: %v", what, err)
	}
	if p.Version != "2012-10-17" || len(p.Statement) == 0 {
		t.Fatalf("%s in docs/install-aws.md: version %q, %d statements", what, p.Version, len(p.Statement))
	}
	return p
}

// TestInstallAWSPolicy checks the IAM policy of docs/install-aws.md against
// the code: every S3 and IAM call of internal/storage is allowed on the
// resource it acts on, the actions that give users permissions only with the
// guide's permissions boundary, nothing the code does not call is allowed,
// and the boundary can be neither removed from a user nor changed.
func TestInstallAWSPolicy(t *testing.T) {
	policy := parsePolicy(t, "the operator's policy", blockWith(t, codeBlocks(t, "install-aws.md", "json"), "iam:CreateUser"))
	// The boundary the policy requires is the one the guide creates.
	create := regexp.MustCompile(`aws iam create-policy --policy-name (\S+) --policy-document file://orgforge-tenant-boundary\.json`).
		FindStringSubmatch(blockWith(t, codeBlocks(t, "install-aws.md", "sh"), "file://orgforge-tenant-boundary.json"))
	if create == nil || "arn:aws:iam::111122223333:policy/"+create[1] != guideBoundary {
		t.Fatalf("docs/install-aws.md does not create the boundary %s with aws iam create-policy: %q", guideBoundary, create)
	}
	// The guide's policy follows the defaults of --iam-path and
	// --s3-prefix-template.
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	config.Bind(fs)
	defaultIAMPath := fs.Lookup("iam-path").DefValue
	prefixTemplate := fs.Lookup("s3-prefix-template").DefValue
	resources := map[string]string{
		"bucket":  "arn:aws:s3:::acme-tenants",
		"objects": "arn:aws:s3:::acme-tenants/" + strings.TrimSuffix(prefixTemplate, "{name}/") + "*",
		"users":   "arn:aws:iam::111122223333:user" + defaultIAMPath + "*",
		"any":     "*",
	}
	// allowed holds action, resource and the boundary the allow requires
	// ("" for none); denied holds action and resource.
	allowed := map[[3]string]bool{}
	var denied [][2]string
	for _, st := range policy.Statement {
		required := ""
		for op, keys := range st.Condition {
			for k, v := range keys {
				if op == "StringEquals" && k == "iam:PermissionsBoundary" {
					required = v
					continue
				}
				t.Errorf("statement %s: unexpected condition %s %s", st.Sid, op, k)
			}
		}
		for _, a := range st.Action {
			if strings.ContainsAny(a, "*?") {
				t.Errorf("statement %s: action %s has a wildcard", st.Sid, a)
			}
			switch st.Effect {
			case "Allow":
				allowed[[3]string{a, st.Resource, required}] = true
				if boundaryActions[a] && required != guideBoundary {
					t.Errorf("statement %s allows %s without requiring the permissions boundary %s", st.Sid, a, guideBoundary)
				}
			case "Deny":
				if required != "" {
					t.Errorf("statement %s: a deny only under a condition can be sidestepped", st.Sid)
				}
				denied = append(denied, [2]string{a, st.Resource})
			default:
				t.Errorf("statement %s: unexpected effect %s", st.Sid, st.Effect)
			}
		}
	}

	used := map[[3]string]bool{}
	for _, name := range sourceMatches(t, `(?:s\.do\(ctx|s\.remove\(ctx|call\(ctx, s|paginate\(ctx, s), "([A-Za-z0-9]+)"`, "internal", "storage") {
		call, ok := storageCalls[name]
		if !ok {
			t.Errorf("internal/storage calls %s: add what it needs to the policy in docs/install-aws.md and to storageCalls", name)
			continue
		}
		for _, a := range call.actions {
			required := ""
			if boundaryActions[a] {
				required = guideBoundary
			}
			key := [3]string{a, resources[call.resource], required}
			used[key] = true
			if !allowed[key] {
				t.Errorf("%s needs %s on %s (requiring the boundary %q); the policy does not allow it", name, a, key[1], required)
			}
		}
	}
	if len(used) < 10 {
		t.Fatalf("found %d permissions used by internal/storage: the scan is broken", len(used))
	}
	for k := range allowed {
		if !used[k] {
			t.Errorf("the policy allows %s on %s (requiring the boundary %q), which internal/storage never needs", k[0], k[1], k[2])
		}
	}

	// Nothing removes a user's boundary or changes the boundary policy,
	// whatever else the role is given.
	wantDenied := [][2]string{
		{"iam:CreatePolicyVersion", guideBoundary},
		{"iam:DeletePolicy", guideBoundary},
		{"iam:DeletePolicyVersion", guideBoundary},
		{"iam:DeleteUserPermissionsBoundary", "*"},
		{"iam:SetDefaultPolicyVersion", guideBoundary},
	}
	slices.SortFunc(denied, func(a, b [2]string) int { return strings.Compare(a[0]+" "+a[1], b[0]+" "+b[1]) })
	if diff := cmp.Diff(wantDenied, denied); diff != "" {
		t.Errorf("the policy's denies (-want +got):\n%s", diff)
	}
}

// iamGlob reports whether an IAM resource pattern, where * is any run of
// characters and ? any one, matches s.
func iamGlob(pattern, s string) bool {
	re := regexp.QuoteMeta(pattern)
	re = strings.ReplaceAll(re, `\*`, ".*")
	re = strings.ReplaceAll(re, `\?`, ".")
	return regexp.MustCompile("^" + re + "$").MatchString(s)
}

// TestInstallAWSBoundary checks the permissions boundary of
// docs/install-aws.md against the code: it allows S3 on the tenants bucket
// only, everything an organization's own policy (storage.PolicyDocument)
// gives fits under it, and it allows nothing that no organization is given.
func TestInstallAWSBoundary(t *testing.T) {
	boundary := parsePolicy(t, "the boundary", blockWith(t, codeBlocks(t, "install-aws.md", "json"), `"BoundaryTenantsBucket"`))
	const bucketARN = "arn:aws:s3:::acme-tenants"
	type grant struct{ action, resource string }
	var grants []grant
	for _, st := range boundary.Statement {
		if st.Effect != "Allow" || len(st.Condition) > 0 {
			t.Errorf("boundary statement %s: %s with conditions %v; a boundary only needs unconditional allows", st.Sid, st.Effect, st.Condition)
		}
		if st.Resource != bucketARN && !strings.HasPrefix(st.Resource, bucketARN+"/") {
			t.Errorf("boundary statement %s allows %s, outside the tenants bucket", st.Sid, st.Resource)
		}
		for _, a := range st.Action {
			if !strings.HasPrefix(a, "s3:") || strings.ContainsAny(a, "*?") {
				t.Errorf("boundary statement %s allows %s; want named S3 actions only", st.Sid, a)
			}
			grants = append(grants, grant{a, st.Resource})
		}
	}

	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	config.Bind(fs)
	prefix := strings.ReplaceAll(fs.Lookup("s3-prefix-template").DefValue, "{name}", "acme")
	doc, err := storage.PolicyDocument("acme-tenants", prefix)
	if err != nil {
		t.Fatal(err)
	}
	var tenant struct {
		Statement []struct {
			Effect           string
			Action, Resource []string
		}
	}
	if err := json.Unmarshal([]byte(doc), &tenant); err != nil {
		t.Fatalf("the tenant's policy: %v\n%s", err, doc)
	}
	covered := map[grant]bool{}
	tenantGrants := 0
	for _, st := range tenant.Statement {
		if st.Effect != "Allow" {
			continue
		}
		for _, a := range st.Action {
			for _, r := range st.Resource {
				tenantGrants++
				found := false
				for _, g := range grants {
					if g.action == a && iamGlob(g.resource, r) {
						covered[g], found = true, true
					}
				}
				if !found {
					t.Errorf("an organization's policy allows %s on %s, which the boundary does not: organizations would lose it", a, r)
				}
			}
		}
	}
	if tenantGrants < 3 {
		t.Fatalf("found %d grants in the tenant's policy: the parse is broken\n%s", tenantGrants, doc)
	}
	for _, g := range grants {
		if !covered[g] {
			t.Errorf("the boundary allows %s on %s, which no organization's policy gives", g.action, g.resource)
		}
	}
}

// TestInstallAWSOverlayAndValues applies the kustomize overlay and the Helm
// values of docs/install-aws.md to the API server (dry run) and checks they
// set what the guide says.
func TestInstallAWSOverlayAndValues(t *testing.T) {
	const role = "arn:aws:iam::111122223333:role/orgforge-operator"
	const image = "111122223333.dkr.ecr.eu-west-1.amazonaws.com/orgforge:v0.1.0"
	yamls := codeBlocks(t, "install-aws.md", "yaml")

	t.Run("kustomize overlay", func(t *testing.T) {
		kustomize := tool(t, "ORGFORGE_KUSTOMIZE", "kustomize")
		overlay := blockWith(t, yamls, "configMapGenerator")
		dir, err := os.MkdirTemp(repoPath("dist"), ".installer.")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		overlay = strings.ReplaceAll(overlay, "../orgforge/config/", "../../config/")
		if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(overlay), 0o644); err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, dir)
		objs := decode(t, command(t, kustomize, rel))
		installCRDs(t, objs)
		ensureNamespaces(t, objs)
		applyAll(t, objs, true)
		s := readManagerSettings(t, objs)
		checkManagerPod(t, s, adminSecretName, true)
		checkAWSSettings(t, objs, s, role, image)
	})

	t.Run("helm values", func(t *testing.T) {
		helm := tool(t, "ORGFORGE_HELM", "helm")
		values := filepath.Join(t.TempDir(), "values.yaml")
		if err := os.WriteFile(values, []byte(blockWith(t, yamls, "irsaRoleArn")), 0o644); err != nil {
			t.Fatal(err)
		}
		objs := decode(t, command(t, helm, "template", "orgforge", "dist/chart", "--namespace", installNamespace, "-f", values))
		installServiceMonitorCRD(t)
		ensureNamespaces(t, objs)
		applyAll(t, objs, true)
		s := readManagerSettings(t, objs)
		checkManagerPod(t, s, adminSecretName, true)
		checkAWSSettings(t, objs, s, role, image)
		if got := s.values["database-sslrootcert"]; got != "/etc/orgforge/rds-ca/global-bundle.pem" {
			t.Errorf("--database-sslrootcert = %q, want the mounted RDS bundle", got)
		}
	})
}

func checkAWSSettings(t *testing.T, objs []*unstructured.Unstructured, s managerSettings, role, image string) {
	t.Helper()
	if got := s.values["s3-bucket"]; got != "acme-tenants" {
		t.Errorf("--s3-bucket = %q, want acme-tenants", got)
	}
	if got := s.values["s3-region"]; got != "eu-west-1" {
		t.Errorf("--s3-region = %q, want eu-west-1", got)
	}
	if got := s.values["iam-permissions-boundary"]; got != guideBoundary {
		t.Errorf("--iam-permissions-boundary = %q, want %s, the boundary the operator's policy requires", got, guideBoundary)
	}
	if got := one(t, objs, "ServiceAccount").GetAnnotations()["eks.amazonaws.com/role-arn"]; got != role {
		t.Errorf("IRSA annotation = %q, want %s", got, role)
	}
	if got, _, _ := unstructured.NestedString(s.container, "image"); got != image {
		t.Errorf("image = %q, want %s", got, image)
	}
	// The RDS CA bundle's ConfigMap is mounted where the guide's DSN says.
	mounted := false
	volumes, _, _ := unstructured.NestedSlice(s.deployment.Object, "spec", "template", "spec", "volumes")
	for _, v := range volumes {
		if name, _, _ := unstructured.NestedString(v.(map[string]any), "configMap", "name"); name == "orgforge-rds-ca" {
			mounted = true
		}
	}
	if !mounted {
		t.Error("the ConfigMap orgforge-rds-ca is not mounted")
	}
}

// TestInstallAWSAdminSQL runs the admin login SQL of docs/install-aws.md on
// PostgreSQL as Aurora's master user would, and checks the login it makes.
func TestInstallAWSAdminSQL(t *testing.T) {
	sql := blockWith(t, codeBlocks(t, "install-aws.md", "sql"), "CREATE ROLE orgforge_admin")
	// The local stack already has an orgforge_admin.
	sql = strings.ReplaceAll(sql, "orgforge_admin", "orgforge_admin_doc")
	ctx := context.Background()
	conn := testutil.Superuser(t, stack.Postgres, "postgres")
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("the admin SQL fails: %v", err)
	}
	defer func() { _, _ = conn.Exec(ctx, "DROP ROLE orgforge_admin_doc") }()
	var login, createdb, createrole, super, member bool
	err := conn.QueryRow(ctx, `SELECT rolcanlogin, rolcreatedb, rolcreaterole, rolsuper, pg_has_role('orgforge_admin_doc', 'rds_superuser', 'MEMBER')
		FROM pg_roles WHERE rolname = 'orgforge_admin_doc'`).Scan(&login, &createdb, &createrole, &super, &member)
	if err != nil {
		t.Fatal(err)
	}
	if !login || !createdb || !createrole || super || !member {
		t.Errorf("the admin login: LOGIN %v CREATEDB %v CREATEROLE %v SUPERUSER %v rds_superuser %v; want LOGIN CREATEDB CREATEROLE NOSUPERUSER, member of rds_superuser",
			login, createdb, createrole, super, member)
	}
}
