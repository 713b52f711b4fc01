// Command dev runs orgforge on the real local stack for a person to use:
// kube-apiserver and etcd with kube-controller-manager's namespace and
// garbage-collector controllers, two PostgreSQL servers with an Aurora-like
// admin, versitygw, the operator itself, and the sample Organizations. The
// server of the operator's --database-* flags is the DatabaseCluster
// "default", which the operator makes; the second one, of another major, is
// the DatabaseCluster "second", applied here with its admin Secret. `make dev`
// runs it.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/devstack"
	"github.com/orgforge/orgforge/internal/testutil"
)

func main() {
	manager := flag.String("manager", "bin/manager", "Operator binary to run.")
	dir := flag.String("dir", ".dev", "Folder for the stack's data, logs and kubeconfig.")
	samples := flag.String("samples", "config/samples/tenancy_v1alpha1_organization.yaml", "Organizations to apply.")
	wait := flag.Duration("ready-timeout", 3*time.Minute, "How long to wait for the clusters and the samples to be Ready.")
	secondMajor := flag.Int("second-cluster-major", 15, "PostgreSQL major of the second DatabaseCluster's server; 0 is the default major's.")
	flag.Parse()
	if err := run(*manager, *dir, *samples, *secondMajor, *wait); err != nil {
		fmt.Fprintln(os.Stderr, "dev:", err)
		os.Exit(1)
	}
}

// The second DatabaseCluster: its name, labels, and where its admin Secret
// lives.
const (
	secondCluster   = "second"
	secretNamespace = "orgforge-system"
	secondSecret    = "second-cluster-admin"
)

var secondLabels = map[string]string{"tier": "standard"}

func run(managerBin, dir, samples string, secondMajor int, readyTimeout time.Duration) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	absDir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	// Each run starts from a clean stack.
	if err := os.RemoveAll(absDir); err != nil {
		return err
	}
	fmt.Println("Starting the local stack in", absDir, "(kube-apiserver, etcd, kube-controller-manager, two PostgreSQL servers, versitygw)")
	// The controller-manager finishes deleting namespaces and collects
	// what owner references tie to a deleted Organization, as a cluster
	// does.
	st, err := devstack.Start(ctx, devstack.Options{
		Dir: absDir, Kube: true, CRDPaths: []string{"config/crd/bases"}, ControllerManager: true, Postgres: true, S3: true,
		Clusters: []devstack.PostgresOptions{{Major: secondMajor}},
	})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Println("Stopping the local stack")
		if err := st.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "dev: stopping the stack:", err)
		}
	}()
	fmt.Println("Stack up, CRDs installed")

	manager, err := startManager(managerBin, st)
	if err != nil {
		return err
	}
	defer manager.Stop(15 * time.Second)

	scheme := runtime.NewScheme()
	if err := tenancyv1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	if err := corev1.AddToScheme(scheme); err != nil {
		return err
	}
	c, err := client.New(st.Kube.Config, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	if err := applySecondCluster(ctx, c, st.Clusters[0]); err != nil {
		return err
	}
	// Placement takes only Ready clusters: the samples go on once both
	// are, so that they spread over the two.
	clusters := []string{tenancyv1alpha1.DefaultClusterName, secondCluster}
	fmt.Printf("Applied DatabaseCluster %s; waiting up to %s for %s to be Ready\n", secondCluster, readyTimeout, strings.Join(clusters, " and "))
	if err := waitClustersReady(ctx, c, clusters, readyTimeout); err != nil {
		fmt.Fprintln(os.Stderr, "dev:", err)
	}
	names, err := apply(ctx, c, samples)
	if err != nil {
		return err
	}
	fmt.Printf("Applied %s; waiting up to %s for them to be Ready\n", strings.Join(names, ", "), readyTimeout)
	readyErr := waitReady(ctx, c, names, readyTimeout)
	printClusters(ctx, c, st.Kube.KubeconfigPath)
	printOrganizations(ctx, c, st.Kube.KubeconfigPath)
	if readyErr != nil {
		fmt.Fprintln(os.Stderr, "dev:", readyErr)
	}
	fmt.Printf("\nexport KUBECONFIG=%s\n\nThe stack stays up until Ctrl-C. Operator log: %s\n",
		st.Kube.KubeconfigPath, filepath.Join(absDir, "manager.log"))
	<-ctx.Done()
	fmt.Println()
	return nil
}

// startManager runs the operator binary against the stack, as the
// Aurora-like admin, with its log in the stack's folder.
func startManager(bin string, st *devstack.Stack) (*testutil.Process, error) {
	services, err := st.OperatorFlags(st.Dir)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, append([]string{
		"--kubeconfig", st.Kube.KubeconfigPath,
		"--leader-elect=false",
		"--metrics-bind-address", "127.0.0.1:0",
		"--health-probe-bind-address", "127.0.0.1:0",
		"--zap-devel",
		"--resync-period", "1m",
		// Usage moves while one watches: status.usage is read again
		// every minute, not hourly.
		"--usage-period", "1m",
	}, services...)...)
	p, err := testutil.StartProcess(cmd, filepath.Join(st.Dir, "manager.log"))
	if err != nil {
		return nil, fmt.Errorf("%w (run `make build` first)", err)
	}
	fmt.Println("Operator started:", bin)
	return p, nil
}

// applySecondCluster creates the admin Secret of pg, the second server, and
// the DatabaseCluster that points the operator at it, as a person adding an
// Aurora cluster to the fleet would.
func applySecondCluster(ctx context.Context, c client.Client, pg *devstack.Postgres) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: secretNamespace}}
	if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", secretNamespace, err)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: secretNamespace, Name: secondSecret},
		StringData: map[string]string{"dsn": pg.AdminDSN()},
	}
	if err := c.Create(ctx, secret); err != nil {
		return fmt.Errorf("creating Secret %s/%s: %w", secretNamespace, secondSecret, err)
	}
	dbc := &tenancyv1alpha1.DatabaseCluster{
		ObjectMeta: metav1.ObjectMeta{Name: secondCluster, Labels: secondLabels},
		Spec: tenancyv1alpha1.DatabaseClusterSpec{
			Admin: tenancyv1alpha1.AdminSpec{
				DSNSecretRef: &tenancyv1alpha1.SecretReference{Namespace: secretNamespace, Name: secondSecret},
			},
		},
	}
	if err := c.Create(ctx, dbc); err != nil {
		return fmt.Errorf("applying DatabaseCluster %s: %w", secondCluster, err)
	}
	return nil
}

// waitClustersReady waits until every named DatabaseCluster is Ready.
func waitClustersReady(ctx context.Context, c client.Client, names []string, timeout time.Duration) error {
	_, notReady, err := testutil.Poll(ctx, 250*time.Millisecond, timeout, func() (bool, string) {
		var notReady []string
		for _, n := range names {
			var dbc tenancyv1alpha1.DatabaseCluster
			if err := c.Get(ctx, client.ObjectKey{Name: n}, &dbc); err != nil ||
				!meta.IsStatusConditionTrue(dbc.Status.Conditions, tenancyv1alpha1.ConditionReady) {
				notReady = append(notReady, n)
			}
		}
		return len(notReady) == 0, strings.Join(notReady, ", ")
	})
	if err != nil {
		return fmt.Errorf("DatabaseClusters not Ready after %s: %s", timeout, notReady)
	}
	return nil
}

func apply(ctx context.Context, c client.Client, path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	var names []string
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(u.Object) == 0 {
			continue
		}
		if err := c.Create(ctx, u); err != nil {
			return nil, fmt.Errorf("applying %s %s: %w", u.GetKind(), u.GetName(), err)
		}
		names = append(names, u.GetName())
	}
	return names, nil
}

// waitReady waits until every named Organization is Ready at its current
// generation.
func waitReady(ctx context.Context, c client.Client, names []string, timeout time.Duration) error {
	_, notReady, err := testutil.Poll(ctx, 250*time.Millisecond, timeout, func() (bool, string) {
		var notReady []string
		for _, n := range names {
			var o tenancyv1alpha1.Organization
			if err := c.Get(ctx, client.ObjectKey{Name: n}, &o); err != nil || !testutil.ReadyAtGeneration(&o) {
				notReady = append(notReady, n)
			}
		}
		return len(notReady) == 0, strings.Join(notReady, ", ")
	})
	if err != nil {
		return fmt.Errorf("not Ready after %s: %s", timeout, notReady)
	}
	return nil
}

// kubectlGet runs `kubectl get <resource> -o wide` against the stack and
// tells whether it could; without kubectl the caller prints the same
// columns itself.
func kubectlGet(ctx context.Context, kubeconfig, resource string) bool {
	fmt.Printf("\n$ kubectl get %s -o wide\n", resource)
	path, err := exec.LookPath("kubectl")
	if err != nil {
		return false
	}
	cmd := exec.CommandContext(ctx, path, "--kubeconfig", kubeconfig, "get", resource, "-o", "wide")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd.Run() == nil
}

// printClusters shows `kubectl get dbc -o wide`: the fleet at a glance.
func printClusters(ctx context.Context, c client.Client, kubeconfig string) {
	if kubectlGet(ctx, kubeconfig, "dbc") {
		return
	}
	var list tenancyv1alpha1.DatabaseClusterList
	if err := c.List(ctx, &list); err != nil {
		fmt.Fprintln(os.Stderr, "dev: listing DatabaseClusters:", err)
		return
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 8, 3, ' ', 0)
	fmt.Fprintln(w, "NAME\tREADY\tVERSION\tORGS\tCONNECTIONS\tSCHEDULABLE\tREASON\tAGE")
	for _, d := range list.Items {
		ready, reason := readyOf(d.Status.Conditions)
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%t\t%s\t%s\n", d.Name, ready, d.Status.ServerVersion, d.Status.Organizations,
			d.Status.ConnectionBudget, d.Spec.IsSchedulable(), reason, time.Since(d.CreationTimestamp.Time).Round(time.Second))
	}
	_ = w.Flush()
}

// printOrganizations shows `kubectl get organizations -o wide`, with kubectl
// when it is installed and as the same columns otherwise.
func printOrganizations(ctx context.Context, c client.Client, kubeconfig string) {
	if kubectlGet(ctx, kubeconfig, "organizations") {
		return
	}
	var list tenancyv1alpha1.OrganizationList
	if err := c.List(ctx, &list); err != nil {
		fmt.Fprintln(os.Stderr, "dev: listing organizations:", err)
		return
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 8, 3, ' ', 0)
	fmt.Fprintln(w, "NAME\tREADY\tCLUSTER\tDATABASE\tPREFIX\tREASON\tAGE")
	for _, o := range list.Items {
		ready, reason := readyOf(o.Status.Conditions)
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", o.Name, ready, o.Status.Database.Cluster, o.Status.Database.Name,
			o.Status.Storage.URL, reason, time.Since(o.CreationTimestamp.Time).Round(time.Second))
	}
	_ = w.Flush()
}

// readyOf returns the Ready condition's status and reason, empty when unset.
func readyOf(conditions []metav1.Condition) (status, reason string) {
	if cond := meta.FindStatusCondition(conditions, tenancyv1alpha1.ConditionReady); cond != nil {
		return string(cond.Status), cond.Reason
	}
	return "", ""
}
