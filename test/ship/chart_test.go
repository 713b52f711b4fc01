package ship

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// chartCase is one set of values the chart is rendered with.
type chartCase struct {
	release, namespace string
	values             string
	// adminSecret is the Secret the admin credentials must come from.
	adminSecret string
	// leaderElect is the --leader-elect the manager must get.
	leaderElect bool
	// flags, when set, are every flag value the manager must get.
	flags map[string]string
	// serviceAccount and annotations are the manager's ServiceAccount and
	// the annotations it must have, when the chart creates it.
	serviceAccount string
	annotations    map[string]string
}

var chartCases = map[string]chartCase{
	"defaults": {
		release: "orgforge", namespace: "orgforge-system",
		adminSecret: "orgforge-database-admin", leaderElect: true, serviceAccount: "orgforge",
	},
	"every value": {
		release: "tenants", namespace: "tenancy",
		values: `
replicaCount: 3
image: {repository: registry.example.com/platform/orgforge, digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
imagePullSecrets: [{name: registry}]
serviceAccount:
  irsaRoleArn: arn:aws:iam::111122223333:role/orgforge-operator
  annotations: {example.com/team: platform}
leaderElection: {enabled: true, namespace: tenancy-leases}
operator: {resyncPeriod: 5m, usagePeriod: 30m, maxConcurrentReconciles: 8, allowSystemNamespaces: true, clusterID: k8s-rebuilt}
database:
  adminSecret: {name: aurora-admin, dsnKey: "", passwordKey: pw}
  host: 127.0.0.1
  port: 1
  user: orgforge_admin
  name: orgforge
  sslmode: verify-ca
  caBundle: {configMapName: rds-ca, key: us-east-1-bundle.pem}
  maxConnections: 8
  fleetMaxConnections: 24
  snapshotMaxAge: 20s
  tenantHost: 127.0.0.2
  tenantPort: 6432
  tenantSSLMode: require
storage:
  bucket: acme-tenants
  region: eu-west-1
  endpoint: https://127.0.0.1:1
  iamEndpoint: https://127.0.0.1:2
  pathStyle: true
  prefixTemplate: "tenants/{name}/"
  iamPath: /tenants/
  iamPermissionsBoundary: arn:aws:iam::111122223333:policy/tenants-boundary
  checkPasses: 3
  userListMaxAge: 15s
  tenantEndpoint: https://127.0.0.1:3
  credentialsSecret: {name: aws-keys, accessKeyIdKey: id, secretAccessKeyKey: key}
logging: {development: true, encoder: console, level: debug, stacktraceLevel: error, timeEncoding: iso8601}
metrics:
  port: 9090
  serviceMonitor: {enabled: true, interval: 15s, scrapeTimeout: 10s, labels: {release: prometheus}}
health: {port: 9091}
pprof: {bindAddress: "127.0.0.1:6060"}
networkPolicy: {enabled: true, metricsNamespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}}
podAnnotations: {example.com/scrape: "false"}
podLabels: {example.com/tier: platform}
resources: {requests: {cpu: 100m, memory: 128Mi}, limits: {cpu: "2", memory: 512Mi}}
priorityClassName: system-cluster-critical
nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: dedicated, operator: Equal, value: platform, effect: NoSchedule}]
topologySpreadConstraints: [{maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app.kubernetes.io/name: orgforge}}}]
`,
		adminSecret: "aurora-admin", leaderElect: true, serviceAccount: "tenants-orgforge",
		annotations: map[string]string{"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/orgforge-operator", "example.com/team": "platform"},
		flags: map[string]string{
			"leader-elect": "true", "leader-election-namespace": "tenancy-leases",
			"resync-period": "5m", "usage-period": "30m", "max-concurrent-reconciles": "8", "allow-system-namespaces": "true", "cluster-id": "k8s-rebuilt",
			"metrics-bind-address": ":9090", "health-probe-bind-address": ":9091", "pprof-bind-address": "127.0.0.1:6060",
			"database-password-file": "/etc/orgforge/database/pw",
			"database-host":          "127.0.0.1", "database-port": "1", "database-user": "orgforge_admin", "database-name": "orgforge",
			"database-sslmode": "verify-ca", "database-sslrootcert": "/etc/orgforge/rds-ca/us-east-1-bundle.pem",
			"database-max-connections": "8", "fleet-max-connections": "24", "database-snapshot-max-age": "20s", "tenant-database-host": "127.0.0.2", "tenant-database-port": "6432", "tenant-database-sslmode": "require",
			"s3-bucket": "acme-tenants", "s3-region": "eu-west-1", "s3-endpoint": "https://127.0.0.1:1", "iam-endpoint": "https://127.0.0.1:2",
			"s3-path-style": "true", "s3-prefix-template": "tenants/{name}/", "iam-path": "/tenants/", "tenant-s3-endpoint": "https://127.0.0.1:3",
			"s3-access-key-id-file": "/etc/orgforge/storage/id", "s3-secret-access-key-file": "/etc/orgforge/storage/key",
			"iam-permissions-boundary": "arn:aws:iam::111122223333:policy/tenants-boundary", "storage-check-passes": "3", "iam-user-list-max-age": "15s", "zap-devel": "true",
			"zap-encoder": "console", "zap-log-level": "debug", "zap-stacktrace-level": "error", "zap-time-encoding": "iso8601",
		},
	},
	"no metrics nor leader election nor user roles": {
		release: "orgforge", namespace: "platform",
		values: `
leaderElection: {enabled: false}
rbac: {userRoles: false}
serviceAccount: {create: false, name: existing}
metrics: {enabled: false}
storage: {bucket: acme-tenants}
`,
		adminSecret: "orgforge-database-admin", leaderElect: false,
	},
}

// TestChart lints and renders dist/chart with each case's values, applies
// the output with a server-side dry run, and checks that the values reach
// the manager's flags, its pod and its RBAC.
func TestChart(t *testing.T) {
	helm := tool(t, "ORGFORGE_HELM", "helm")
	flags := managerFlags(t)
	seen := map[string]bool{}
	installServiceMonitorCRD(t)

	for name, c := range chartCases {
		t.Run(name, func(t *testing.T) {
			valuesFile := filepath.Join(t.TempDir(), "values.yaml")
			if err := os.WriteFile(valuesFile, []byte(c.values), 0o644); err != nil {
				t.Fatal(err)
			}
			command(t, helm, "lint", "--strict", "dist/chart", "--namespace", c.namespace, "-f", valuesFile)
			out := command(t, helm, "template", c.release, "dist/chart", "--namespace", c.namespace, "--include-crds", "-f", valuesFile)
			objs := decode(t, out)
			for _, o := range objs {
				if o.GetNamespace() == "" && o.GetKind() != "CustomResourceDefinition" && !strings.HasPrefix(o.GetKind(), "Cluster") {
					// helm template leaves the namespace to the client for
					// objects whose template has none: ours all have one.
					t.Errorf("%s has no namespace", describe(o))
				}
			}
			installCRDs(t, objs)
			ensureNamespaces(t, objs)
			applyAll(t, objs, true)

			s := readManagerSettings(t, objs)
			checkManagerPod(t, s, c.adminSecret, c.leaderElect)
			for f := range s.values {
				seen[f] = true
			}
			if c.flags != nil {
				if diff := cmp.Diff(c.flags, s.values); diff != "" {
					t.Errorf("the manager's flags (-want +got):\n%s", diff)
				}
			}
			checkChartRBAC(t, objs, c)
			checkManagerAccepts(t, s)
		})
	}

	// Every flag has a value in the chart, except the two that make no
	// sense in a pod.
	for f := range flags {
		if !seen[f] && f != "kubeconfig" && f != "version" {
			t.Errorf("no value of the chart sets --%s", f)
		}
	}
}

// checkChartRBAC checks the rendered RBAC: the manager's ClusterRole has
// exactly the generated rules, is bound to its ServiceAccount, and the
// ServiceAccount carries the IRSA annotation.
func checkChartRBAC(t *testing.T, objs []*unstructured.Unstructured, c chartCase) {
	t.Helper()
	generated := one(t, decodeFile(t, repoPath("config", "rbac", "role.yaml")), "ClusterRole")
	found := false
	for _, role := range byKind(objs, "ClusterRole") {
		if strings.HasSuffix(role.GetName(), "-manager") {
			found = true
			if diff := cmp.Diff(generated.Object["rules"], role.Object["rules"]); diff != "" {
				t.Errorf("the chart's manager ClusterRole differs from config/rbac/role.yaml; run `make manifests` (-want +got):\n%s", diff)
			}
		}
	}
	if !found {
		t.Error("the chart renders no manager ClusterRole")
	}
	roles := byKind(objs, "Role")
	if c.leaderElect && len(roles) != 1 {
		t.Errorf("want one leader election Role, got %d", len(roles))
	}
	if !c.leaderElect && len(roles) != 0 {
		t.Errorf("leader election is off, yet the chart renders %d Roles", len(roles))
	}
	if c.serviceAccount == "" {
		if sas := byKind(objs, "ServiceAccount"); len(sas) != 0 {
			t.Errorf("serviceAccount.create is false, yet the chart renders %s", describe(sas[0]))
		}
		return
	}
	sa := one(t, objs, "ServiceAccount")
	if sa.GetName() != c.serviceAccount {
		t.Errorf("ServiceAccount is %s, want %s", sa.GetName(), c.serviceAccount)
	}
	if diff := cmp.Diff(c.annotations, sa.GetAnnotations()); diff != "" {
		t.Errorf("ServiceAccount annotations (-want +got):\n%s", diff)
	}
}

// checkManagerAccepts runs the manager with the rendered settings, the
// mounted files stood in for by temporary ones, and checks that it accepts
// its configuration.
func checkManagerAccepts(t *testing.T, s managerSettings) {
	t.Helper()
	dir := t.TempDir()
	var args, env []string
	for f, v := range s.values {
		if strings.HasSuffix(f, "-file") {
			path := filepath.Join(dir, filepath.FromSlash(v))
			content := "placeholder"
			if f == "database-admin-dsn-file" {
				content = "postgres://orgforge_admin:pw@127.0.0.1:1/postgres?sslmode=disable"
			}
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			args = append(args, "--"+f+"="+path)
			continue
		}
		env = append(env, "ORGFORGE_"+strings.ToUpper(strings.ReplaceAll(f, "-", "_"))+"="+v)
	}
	if s.values["s3-bucket"] == "" {
		// The default values leave the bucket to the user.
		args = append(args, "--s3-bucket=placeholder")
	}
	line := managerFirstLine(t, args, env)
	if !bytes.Contains([]byte(line), []byte("Starting orgforge")) {
		t.Errorf("the manager did not start with the chart's settings: %s", line)
	}
	// Logging comes from the ConfigMap too: ORGFORGE_ZAP_* must take
	// effect before the first line.
	devel := s.values["zap-devel"] == "true"
	if json.Valid([]byte(line)) == devel {
		want := map[bool]string{false: "JSON", true: "a console line"}[devel]
		t.Errorf("with zap-devel %v the first log line should be %s, got:\n%s", devel, want, line)
	}
}

// TestChartCopiesAreCurrent checks the chart's copies of generated files.
func TestChartCopiesAreCurrent(t *testing.T) {
	for copy, src := range map[string]string{
		"dist/chart/crds/tenancy.orgforge.io_organizations.yaml":    "config/crd/bases/tenancy.orgforge.io_organizations.yaml",
		"dist/chart/crds/tenancy.orgforge.io_databaseclusters.yaml": "config/crd/bases/tenancy.orgforge.io_databaseclusters.yaml",
		"dist/chart/files/manager-role.yaml":                        "config/rbac/role.yaml",
	} {
		a, err := os.ReadFile(repoPath(src))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(repoPath(copy))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs from %s: run `make manifests`", copy, src)
		}
	}
}
