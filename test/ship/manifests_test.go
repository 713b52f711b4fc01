package ship

import (
	"fmt"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/orgforge/orgforge/internal/config"
)

// managerFlags are the names of every flag of the manager, from its --help.
func managerFlags(t *testing.T) map[string]bool {
	t.Helper()
	// --help exits non-zero by design (flag.ErrHelp); only its output counts.
	out, _ := exec.Command(managerBinary(t), "--help").CombinedOutput()
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z0-9-]+)`).FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	if !flags["s3-bucket"] || !flags["zap-devel"] || !flags["kubeconfig"] {
		t.Fatalf("could not read the manager's flags from --help:\n%s", out)
	}
	return flags
}

// flagOfEnv maps ORGFORGE_* variables to their flags.
func flagOfEnv(flags map[string]bool) map[string]string {
	m := map[string]string{}
	for f := range flags {
		m[config.EnvName(f)] = f
	}
	return m
}

// managerSettings are the flags a manifest sets for the manager container:
// its args, and the ConfigMap it takes ORGFORGE_* variables from, by flag
// name. Unknown variables and flags fail the test: the manager would ignore
// the one and refuse the other.
type managerSettings struct {
	deployment *unstructured.Unstructured
	container  map[string]any
	values     map[string]string
}

// readManagerSettings reads the manager's Deployment and ConfigMap from objs.
func readManagerSettings(t *testing.T, objs []*unstructured.Unstructured) managerSettings {
	t.Helper()
	flags := managerFlags(t)
	envFlags := flagOfEnv(flags)
	s := managerSettings{deployment: one(t, objs, "Deployment"), values: map[string]string{}}
	containers, _, _ := unstructured.NestedSlice(s.deployment.Object, "spec", "template", "spec", "containers")
	for _, c := range containers {
		if c.(map[string]any)["name"] == "manager" {
			s.container = c.(map[string]any)
		}
	}
	if s.container == nil {
		t.Fatal("the Deployment has no container named manager")
	}

	configMaps := map[string]*unstructured.Unstructured{}
	for _, cm := range byKind(objs, "ConfigMap") {
		configMaps[cm.GetName()] = cm
	}
	envFrom, _, _ := unstructured.NestedSlice(s.container, "envFrom")
	for _, e := range envFrom {
		name, _, _ := unstructured.NestedString(e.(map[string]any), "configMapRef", "name")
		cm := configMaps[name]
		if cm == nil {
			t.Fatalf("the manager takes its environment from ConfigMap %q, which is not in the manifests", name)
		}
		data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
		for k, v := range data {
			f, ok := envFlags[k]
			if !ok {
				t.Errorf("ConfigMap %s sets %s, which is no flag's variable", name, k)
				continue
			}
			s.values[f] = v
		}
	}
	if env, ok := s.container["env"]; ok {
		t.Errorf("the manager container has env %v: settings belong in the ConfigMap, secrets in mounted files", env)
	}
	// Arguments come after the environment: they win.
	args, _, _ := unstructured.NestedStringSlice(s.container, "args")
	for _, a := range args {
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !flags[name] {
			t.Errorf("the manager is given %s, which is not one of its flags", a)
			continue
		}
		if !hasValue {
			value = "true"
		}
		s.values[name] = value
	}
	return s
}

// checkManagerPod checks what the issue asks of the manager's pod: non-root,
// read-only root, no capabilities, seccomp, probes on healthz and readyz,
// leader election as wanted, requests and limits, and the admin credentials
// from a Secret mounted as a file.
func checkManagerPod(t *testing.T, s managerSettings, adminSecret string, leaderElect bool) {
	t.Helper()
	pod, _, _ := unstructured.NestedMap(s.deployment.Object, "spec", "template", "spec")
	expect := func(obj map[string]any, want any, path ...string) {
		t.Helper()
		got, _, _ := unstructured.NestedFieldNoCopy(obj, path...)
		if got != want {
			t.Errorf("%s = %v, want %v", strings.Join(path, "."), got, want)
		}
	}
	expect(pod, true, "securityContext", "runAsNonRoot")
	expect(pod, "RuntimeDefault", "securityContext", "seccompProfile", "type")
	expect(s.container, true, "securityContext", "readOnlyRootFilesystem")
	expect(s.container, false, "securityContext", "allowPrivilegeEscalation")
	drop, _, _ := unstructured.NestedStringSlice(s.container, "securityContext", "capabilities", "drop")
	if len(drop) != 1 || drop[0] != "ALL" {
		t.Errorf("capabilities.drop = %v, want [ALL]", drop)
	}

	ports := map[string]string{}
	containerPorts, _, _ := unstructured.NestedSlice(s.container, "ports")
	for _, p := range containerPorts {
		pm := p.(map[string]any)
		ports[pm["name"].(string)] = toString(pm["containerPort"])
	}
	probeAddr := s.values["health-probe-bind-address"]
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		expect(s.container, path, probe, "httpGet", "path")
		port, _, _ := unstructured.NestedFieldNoCopy(s.container, probe, "httpGet", "port")
		number := toString(port)
		if named, ok := ports[number]; ok {
			number = named
		}
		if !strings.HasSuffix(probeAddr, ":"+number) {
			t.Errorf("%s probes port %v (%s), but the manager serves probes on %q", probe, port, number, probeAddr)
		}
	}

	if got := s.values["leader-elect"]; got != fmt.Sprint(leaderElect) {
		t.Errorf("--leader-elect is %q, want %v", got, leaderElect)
	}
	for _, kind := range []string{"requests", "limits"} {
		for _, res := range []string{"cpu", "memory"} {
			if v, _, _ := unstructured.NestedString(s.container, "resources", kind, res); v == "" {
				t.Errorf("resources.%s.%s is not set", kind, res)
			}
		}
	}

	// The admin credentials: a flag naming a file in a mounted Secret.
	file := s.values["database-admin-dsn-file"]
	if file == "" {
		file = s.values["database-password-file"]
	}
	if file == "" {
		t.Fatal("the manager gets neither --database-admin-dsn-file nor --database-password-file")
	}
	volumes, _, _ := unstructured.NestedSlice(pod, "volumes")
	secretOf := map[string]string{}
	for _, v := range volumes {
		vm := v.(map[string]any)
		if name, ok, _ := unstructured.NestedString(vm, "secret", "secretName"); ok {
			secretOf[vm["name"].(string)] = name
		}
	}
	mounted := ""
	mounts, _, _ := unstructured.NestedSlice(s.container, "volumeMounts")
	for _, m := range mounts {
		mm := m.(map[string]any)
		if strings.HasPrefix(file, strings.TrimSuffix(mm["mountPath"].(string), "/")+"/") {
			mounted = secretOf[mm["name"].(string)]
		}
	}
	if mounted != adminSecret {
		t.Errorf("the admin credentials file %s is in Secret %q, want Secret %q mounted there", file, mounted, adminSecret)
	}
}

// toString prints a scalar of decoded YAML: JSON numbers decode as float64.
func toString(v any) string { return fmt.Sprint(v) }

// kinds lists the kinds of objs, sorted, for messages.
func kinds(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind())
	}
	sort.Strings(out)
	return out
}
