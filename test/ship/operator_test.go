package ship

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/naming"
	"github.com/orgforge/orgforge/internal/testutil"
)

// liveOrgs are Organizations the operator reconciled in
// TestOperatorAsInstalled, by the reason their Ready condition shows, and
// one as created, for the health check tests.
type liveOrgs map[string]*unstructured.Unstructured

// liveCreated is the key of liveOrgs for an Organization as the API server
// returned it on create.
const liveCreated = "created"

// TestOperatorAsInstalled runs the manager, built as the image builds it,
// with dist/install.yaml's arguments and ConfigMap and as its service account,
// so that only the installed RBAC lets it act. It must bring an Organization
// to Ready, report an invalid spec and a conflict, hold its lease in its own
// namespace, and delete an Organization. The statuses it writes are then fed
// to the Argo CD and Flux health checks of docs/gitops.md.
func TestOperatorAsInstalled(t *testing.T) {
	objs := installer(t)
	installCRDs(t, objs)
	ensureNamespaces(t, objs)
	for _, o := range objs {
		switch o.GetKind() {
		case "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding":
			if err := apply(context.Background(), o, false); err != nil {
				t.Fatal(err)
			}
		}
	}
	s := readManagerSettings(t, objs)
	logPath := startInstalledManager(t, s)
	ctx := context.Background()

	// A database of the conflicting organization's name that orgforge did
	// not create.
	conflictName := "ship-conflict"
	if err := testutil.SuperuserExec(ctx, stack.Postgres, "postgres", "CREATE DATABASE "+pgx.Identifier{naming.DatabaseName(conflictName)}.Sanitize()); err != nil {
		t.Fatal(err)
	}

	// Specs as a user writes them, so the CRD's defaults apply.
	orgs := map[string]struct {
		spec   map[string]any
		status metav1.ConditionStatus
		reason string
	}{
		"ship-ready": {map[string]any{"deletionPolicy": "Delete"}, metav1.ConditionTrue, tenancyv1alpha1.ReasonProvisioned},
		"ship-invalid": {map[string]any{"deletionPolicy": "Delete", "database": map[string]any{"extensions": []any{"no_such_extension"}}},
			metav1.ConditionFalse, tenancyv1alpha1.ReasonInvalidSpec},
		conflictName: {map[string]any{"deletionPolicy": "Delete"}, metav1.ConditionFalse, tenancyv1alpha1.ReasonConflict},
	}
	live := liveOrgs{}
	for name, o := range orgs {
		org := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": tenancyv1alpha1.GroupVersion.String(), "kind": "Organization",
			"metadata": map[string]any{"name": name}, "spec": o.spec,
		}}
		if err := k8s.Create(ctx, org); err != nil {
			t.Fatal(err)
		}
		// The API server's answer to the create is the Organization before
		// the operator has written anything to it.
		live[liveCreated] = org
	}
	for name, o := range orgs {
		org := &tenancyv1alpha1.Organization{}
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
			if err := k8s.Get(ctx, client.ObjectKey{Name: name}, org); err != nil {
				return false, err
			}
			c := meta.FindStatusCondition(org.Status.Conditions, tenancyv1alpha1.ConditionReady)
			return c != nil && c.Status == o.status && c.Reason == o.reason && c.ObservedGeneration == org.Generation, nil
		})
		if err != nil {
			t.Fatalf("Organization %s: want Ready %s %s, have %+v: %v\n%s", name, o.status, o.reason, org.Status.Conditions, err, tail(logPath))
		}
		u, err := runtimeToUnstructured(org)
		if err != nil {
			t.Fatal(err)
		}
		live[o.reason] = u
	}

	lease := &coordinationv1.Lease{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: installNamespace, Name: "orgforge.tenancy.orgforge.io"}, lease); err != nil {
		t.Errorf("the leader election lease is not in %s: %v", installNamespace, err)
	}

	t.Run("ArgoCDHealthCheck", func(t *testing.T) { testArgoCDHealth(t, live) })
	t.Run("FluxHealthChecks", func(t *testing.T) { testFluxHealth(t, live) })

	// Deletion, under the same RBAC: the finalizer comes off.
	for name := range orgs {
		if err := k8s.Delete(ctx, &tenancyv1alpha1.Organization{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
			t.Fatal(err)
		}
	}
	for name := range orgs {
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
			err := k8s.Get(ctx, client.ObjectKey{Name: name}, &tenancyv1alpha1.Organization{})
			return client.IgnoreNotFound(err) == nil && err != nil, nil
		})
		if err != nil {
			t.Errorf("Organization %s was not deleted: %v\n%s", name, err, tail(logPath))
		}
	}
}

// startInstalledManager starts the manager with the installer's settings
// and stops it at the end of the test. It connects to the local stack: only
// the endpoints, the bucket and the paths of the mounted files are replaced,
// and the API server is reached as the manager's service account. It
// returns the path of the manager's log.
func startInstalledManager(t *testing.T, s managerSettings) string {
	t.Helper()
	dir := t.TempDir()
	services, err := stack.OperatorFlags(dir)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	writeServiceAccountKubeconfig(t, kubeconfig)

	var env []string
	for f, v := range s.values {
		env = append(env, "ORGFORGE_"+strings.ToUpper(strings.ReplaceAll(f, "-", "_"))+"="+v)
	}
	args := []string{
		"--kubeconfig=" + kubeconfig,
		// Out of a cluster there is no namespace of its own to default to.
		"--leader-election-namespace=" + installNamespace,
		"--metrics-bind-address=127.0.0.1:0",
		"--health-probe-bind-address=127.0.0.1:0",
	}
	args = append(args, services...)
	logPath := filepath.Join(dir, "manager.log")
	cmd := exec.Command(managerBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	p, err := testutil.StartProcess(cmd, logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(20 * time.Second) })
	return logPath
}

// writeServiceAccountKubeconfig writes a kubeconfig with the stack's admin
// credentials that impersonates the manager's service account, so the API
// server authorizes every request as that account.
func writeServiceAccountKubeconfig(t *testing.T, path string) {
	t.Helper()
	cfg := stack.Kube.Config
	kc := clientcmdapi.NewConfig()
	kc.Clusters["stack"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["manager"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken,
		Impersonate:       "system:serviceaccount:" + installNamespace + ":" + installSA,
		ImpersonateGroups: []string{"system:serviceaccounts", "system:serviceaccounts:" + installNamespace, "system:authenticated"},
	}
	kc.Contexts["manager"] = &clientcmdapi.Context{Cluster: "stack", AuthInfo: "manager"}
	kc.CurrentContext = "manager"
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
}

// tail is the end of the manager's log, for failure messages.
func tail(path string) string {
	return fmt.Sprintf("--- manager log ---\n%s", testutil.TailFile(path, 40))
}
