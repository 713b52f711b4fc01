package ship

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	authorizationv1 "k8s.io/api/authorization/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
)

const (
	installNamespace = "orgforge-system"
	installSA        = "orgforge-controller-manager"
	adminSecretName  = "orgforge-database-admin"
)

// installer reads dist/install.yaml, which `make test` builds first.
func installer(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	path := repoPath("dist", "install.yaml")
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%v: run `make build-installer` (make test does)", err)
	}
	return decodeFile(t, path)
}

// TestInstaller applies dist/install.yaml to the API server: the CRD and
// the samples for real, everything with a server-side dry run, and checks
// the manager's Deployment is what the issue asks for.
func TestInstaller(t *testing.T) {
	objs := installer(t)
	want := []string{"ClusterRole", "ClusterRole", "ClusterRole", "ClusterRoleBinding", "ConfigMap",
		"CustomResourceDefinition", "CustomResourceDefinition", "Deployment", "Namespace", "Role", "RoleBinding", "Service", "ServiceAccount"}
	if diff := cmp.Diff(want, kinds(objs)); diff != "" {
		t.Errorf("kinds in dist/install.yaml (-want +got):\n%s", diff)
	}
	for _, o := range objs {
		if ns := o.GetNamespace(); ns != "" && ns != installNamespace {
			t.Errorf("%s is not in %s", describe(o), installNamespace)
		}
	}

	installCRDs(t, objs)
	ensureNamespaces(t, objs)
	applyAll(t, objs, true)

	s := readManagerSettings(t, objs)
	checkManagerPod(t, s, adminSecretName, true)
	if sa, _, _ := unstructured.NestedString(s.deployment.Object, "spec", "template", "spec", "serviceAccountName"); sa != installSA {
		t.Errorf("the manager runs as %q, want %s", sa, installSA)
	}

	// The samples, for real: admission, CEL validation and defaulting.
	samples := decodeFile(t, repoPath("config", "samples", "tenancy_v1alpha1_organization.yaml"))
	if len(samples) == 0 {
		t.Fatal("no samples")
	}
	applyAll(t, samples, false)
	ctx := context.Background()
	for _, o := range samples {
		org := &tenancyv1alpha1.Organization{}
		if err := k8s.Get(ctx, client.ObjectKey{Name: o.GetName()}, org); err != nil {
			t.Fatalf("sample %s: %v", o.GetName(), err)
		}
		if org.Spec.DeletionPolicy == "" || org.Spec.Storage.Access == "" || org.Spec.Database.Pool.MaxConnections == 0 {
			t.Errorf("sample %s was not defaulted by the CRD: %+v", o.GetName(), org.Spec)
		}
	}
	t.Cleanup(func() {
		for _, o := range samples {
			_ = k8s.Delete(ctx, o)
		}
	})

	// The DatabaseCluster sample, for real as well: its admin is one of
	// the three forms the CEL rules allow, and the CRD fills the rest.
	clusters := decodeFile(t, repoPath("config", "samples", "tenancy_v1alpha1_databasecluster.yaml"))
	if len(clusters) == 0 {
		t.Fatal("no DatabaseCluster sample")
	}
	applyAll(t, clusters, false)
	t.Cleanup(func() {
		for _, o := range clusters {
			_ = k8s.Delete(ctx, o)
		}
	})
	for _, o := range clusters {
		dbc := &tenancyv1alpha1.DatabaseCluster{}
		if err := k8s.Get(ctx, client.ObjectKey{Name: o.GetName()}, dbc); err != nil {
			t.Fatalf("sample %s: %v", o.GetName(), err)
		}
		a := dbc.Spec.Admin
		if a.Port != 5432 || a.Database != "postgres" || a.SSLMode != "require" || dbc.Spec.Schedulable == nil || !*dbc.Spec.Schedulable {
			t.Errorf("sample DatabaseCluster %s was not defaulted by the CRD: %+v", o.GetName(), dbc.Spec)
		}
		if len(dbc.Labels) == 0 || a.Host == "" || a.CredentialsSecretRef == nil || dbc.Spec.Tenant.Host == "" || dbc.Spec.Capacity.MaxConnections == nil {
			t.Errorf("sample DatabaseCluster %s does not show labels, admin.host with credentialsSecretRef, tenant.host and capacity: %+v", o.GetName(), dbc)
		}
	}

	// config/samples/kustomization.yaml lists every sample.
	kustomization := decodeFile(t, repoPath("config", "samples", "kustomization.yaml"))
	files, err := filepath.Glob(repoPath("config", "samples", "tenancy_*.yaml"))
	if err != nil || len(kustomization) != 1 {
		t.Fatalf("config/samples: %d kustomizations, %v", len(kustomization), err)
	}
	listed, _, _ := unstructured.NestedStringSlice(kustomization[0].Object, "resources")
	var all []string
	for _, f := range files {
		all = append(all, filepath.Base(f))
	}
	if diff := cmp.Diff(all, listed, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("config/samples/kustomization.yaml resources (-files +listed):\n%s", diff)
	}
}

// TestInstallerOptionalParts builds config/default with its optional
// ServiceMonitor and NetworkPolicy uncommented, as a user would, and applies
// it with a dry run. The ServiceMonitor needs the Prometheus Operator's CRD;
// the test installs a minimal one.
func TestInstallerOptionalParts(t *testing.T) {
	kustomize := tool(t, "ORGFORGE_KUSTOMIZE", "kustomize")
	src, err := os.ReadFile(repoPath("config", "default", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	uncommented := 0
	for _, l := range strings.Split(string(src), "\n") {
		if strings.HasPrefix(l, "  # - ../") {
			l = strings.Replace(l, "# ", "", 1)
			uncommented++
		}
		lines = append(lines, strings.Replace(l, "- ../", "- ../../config/", 1))
	}
	if uncommented != 2 {
		t.Fatalf("config/default/kustomization.yaml has %d optional parts to uncomment, want 2 (prometheus, network-policy)", uncommented)
	}
	// kustomize only loads bases by relative path; the overlay lives, like
	// build-installer's, in a throw-away folder of dist/.
	dir, err := os.MkdirTemp(repoPath("dist"), ".installer.")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	rel, _ := filepath.Rel(root, dir)
	objs := decode(t, command(t, kustomize, rel))

	installServiceMonitorCRD(t)
	installCRDs(t, objs)
	ensureNamespaces(t, objs)
	applyAll(t, objs, true)

	// The ServiceMonitor and the NetworkPolicy must find what they select.
	deployment := one(t, objs, "Deployment")
	podLabels := deployment.Object["spec"].(map[string]any)["template"].(map[string]any)["metadata"].(map[string]any)["labels"].(map[string]any)
	service := one(t, objs, "Service")
	serviceLabels := service.GetLabels()
	selects := func(selector map[string]any, labels map[string]string) bool {
		for k, v := range selector {
			if labels[k] != v {
				return false
			}
		}
		return len(selector) > 0
	}
	asStrings := func(m map[string]any) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[k] = toString(v)
		}
		return out
	}
	monitor := one(t, objs, "ServiceMonitor")
	if monitor.GetNamespace() != installNamespace {
		t.Errorf("ServiceMonitor is in %q, want %s", monitor.GetNamespace(), installNamespace)
	}
	sel, _, _ := unstructured.NestedMap(monitor.Object, "spec", "selector", "matchLabels")
	if !selects(sel, serviceLabels) {
		t.Errorf("ServiceMonitor selects %v; the metrics Service has labels %v", sel, serviceLabels)
	}
	policy := one(t, objs, "NetworkPolicy")
	sel, _, _ = unstructured.NestedMap(policy.Object, "spec", "podSelector", "matchLabels")
	if !selects(sel, asStrings(podLabels)) {
		t.Errorf("NetworkPolicy selects pods %v; the manager's pods have labels %v", sel, podLabels)
	}
}

// installServiceMonitorCRD installs the part of the Prometheus Operator's
// ServiceMonitor CRD that the API server needs to accept one.
func installServiceMonitorCRD(t *testing.T) {
	t.Helper()
	preserve := true
	crd := &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "servicemonitors.monitoring.coreos.com"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: "monitoring.coreos.com",
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "servicemonitors", Singular: "servicemonitor", Kind: "ServiceMonitor", ListKind: "ServiceMonitorList"},
			Scope: apiextensionsv1.NamespaceScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object",
					Properties: map[string]apiextensionsv1.JSONSchemaProps{
						"spec": {Type: "object", XPreserveUnknownFields: &preserve},
					},
				}},
			}},
		},
	}
	u, err := runtimeToUnstructured(crd)
	if err != nil {
		t.Fatal(err)
	}
	u.SetAPIVersion("apiextensions.k8s.io/v1")
	u.SetKind("CustomResourceDefinition")
	installCRDs(t, []*unstructured.Unstructured{u})
}

// TestInstalledRBAC applies the installer's RBAC for real and asks the API
// server what the manager's service account may do: everything the
// reconciler and leader election need, and nothing around it.
func TestInstalledRBAC(t *testing.T) {
	objs := installer(t)
	installCRDs(t, objs)
	ensureNamespaces(t, objs)
	var rbac []*unstructured.Unstructured
	for _, o := range objs {
		switch o.GetKind() {
		case "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding":
			rbac = append(rbac, o)
		}
	}
	applyAll(t, rbac, false)

	user := "system:serviceaccount:" + installNamespace + ":" + installSA
	type attrs = authorizationv1.ResourceAttributes
	cases := map[string]struct {
		attrs attrs
		want  bool
	}{
		"watch Organizations":            {attrs{Group: "tenancy.orgforge.io", Resource: "organizations", Verb: "watch"}, true},
		"patch Organization status":      {attrs{Group: "tenancy.orgforge.io", Resource: "organizations", Subresource: "status", Verb: "patch"}, true},
		"update Organization finalizers": {attrs{Group: "tenancy.orgforge.io", Resource: "organizations", Subresource: "finalizers", Verb: "update"}, true},
		"create a tenant namespace":      {attrs{Resource: "namespaces", Verb: "create"}, true},
		"create Secrets in it":           {attrs{Namespace: "org-acme", Resource: "secrets", Verb: "create"}, true},
		"record events":                  {attrs{Namespace: "default", Group: "events.k8s.io", Resource: "events", Verb: "create"}, true},
		"take the leader lease":          {attrs{Namespace: installNamespace, Group: "coordination.k8s.io", Resource: "leases", Verb: "update"}, true},
		"no leases elsewhere":            {attrs{Namespace: "kube-system", Group: "coordination.k8s.io", Resource: "leases", Verb: "update"}, false},
		"no creating Organizations":      {attrs{Group: "tenancy.orgforge.io", Resource: "organizations", Verb: "create"}, false},
		"no deleting Organizations":      {attrs{Group: "tenancy.orgforge.io", Resource: "organizations", Verb: "delete"}, false},
		"no ConfigMaps":                  {attrs{Namespace: installNamespace, Resource: "configmaps", Verb: "get"}, false},
		"no pods":                        {attrs{Namespace: "org-acme", Resource: "pods", Verb: "list"}, false},
		"no CRDs":                        {attrs{Group: "apiextensions.k8s.io", Resource: "customresourcedefinitions", Verb: "update"}, false},
		"no RBAC":                        {attrs{Group: "rbac.authorization.k8s.io", Resource: "clusterrolebindings", Verb: "create"}, false},
		"no service account tokens":      {attrs{Namespace: installNamespace, Resource: "serviceaccounts", Subresource: "token", Verb: "create"}, false},
	}
	ctx := context.Background()
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			a := c.attrs
			review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User: user, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + installNamespace, "system:authenticated"},
				ResourceAttributes: &a,
			}}
			if err := k8s.Create(ctx, review); err != nil {
				t.Fatal(err)
			}
			if review.Status.Allowed != c.want {
				t.Errorf("%s may %s %s/%s in %q: %v, want %v (%s)", user, a.Verb, a.Resource, a.Subresource, a.Namespace,
					review.Status.Allowed, c.want, review.Status.Reason)
			}
		})
	}
}
