package ship

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
)

// gitopsSnippets are the YAML blocks of docs/gitops.md, decoded.
func gitopsSnippets(t *testing.T) []map[string]any {
	t.Helper()
	doc, err := os.ReadFile(repoPath("docs", "gitops.md"))
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, m := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(doc, -1) {
		for _, o := range decode(t, m[1]) {
			out = append(out, o.Object)
		}
	}
	return out
}

// healthCases are the states an Organization can be in. The first four are
// live objects from the API server: as created, before the operator wrote
// anything, and as the operator left them. The others are derived from the
// live Ready one by changing what the operator changes in that state, since
// the test cannot hold an Organization in them; test/e2e/kstatus_test.go
// holds live ones in progress and in an outage.
func healthCases(t *testing.T, live liveOrgs) map[string]*unstructured.Unstructured {
	t.Helper()
	ready := live[tenancyv1alpha1.ReasonProvisioned]
	created := live[liveCreated]
	if ready == nil || created == nil || live[tenancyv1alpha1.ReasonInvalidSpec] == nil || live[tenancyv1alpha1.ReasonConflict] == nil {
		t.Fatalf("missing live Organizations: %v", live)
	}
	if conds, _, _ := unstructured.NestedSlice(created.Object, "status", "conditions"); len(conds) != 0 {
		t.Fatalf("the Organization as created has conditions: %v", conds)
	}

	changed := ready.DeepCopy()
	changed.SetGeneration(ready.GetGeneration() + 1)

	unavailable := ready.DeepCopy()
	const down = "PostgreSQL at db.example.com:5432/orgforge_admin is unavailable (connection refused); retrying with backoff"
	setCondition(t, unavailable, tenancyv1alpha1.ConditionDatabaseReady, "False", tenancyv1alpha1.ReasonDatabaseUnavailable, down)
	setCondition(t, unavailable, tenancyv1alpha1.ConditionReady, "False", tenancyv1alpha1.ReasonDatabaseUnavailable, "DatabaseReady: DatabaseUnavailable")
	setCondition(t, unavailable, tenancyv1alpha1.ConditionReconciling, "True", tenancyv1alpha1.ReasonDatabaseUnavailable, "DatabaseReady DatabaseUnavailable: "+down)

	deleting := ready.DeepCopy()
	_ = unstructured.SetNestedField(deleting.Object, "2026-01-01T00:00:00Z", "metadata", "deletionTimestamp")
	setCondition(t, deleting, tenancyv1alpha1.ConditionReady, "False", tenancyv1alpha1.ReasonDeleting, "Deleting: dropping database")
	setCondition(t, deleting, tenancyv1alpha1.ConditionReconciling, "True", tenancyv1alpha1.ReasonDeleting, "Deleting: dropping database")

	return map[string]*unstructured.Unstructured{
		"Ready":                            ready,
		"InvalidSpec":                      live[tenancyv1alpha1.ReasonInvalidSpec],
		"Conflict":                         live[tenancyv1alpha1.ReasonConflict],
		"just created, not yet reconciled": created,
		"spec changed, not yet seen":       changed,
		"database unavailable":             unavailable,
		"being deleted":                    deleting,
	}
}

// setCondition sets a condition of u, adding it when u has none of its type.
func setCondition(t *testing.T, u *unstructured.Unstructured, typ, st, reason, message string) {
	t.Helper()
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	found := false
	for i, c := range conds {
		cm := c.(map[string]any)
		if cm["type"] == typ {
			cm["status"], cm["reason"], cm["message"] = st, reason, message
			conds[i] = cm
			found = true
		}
	}
	if !found {
		conds = append(conds, map[string]any{
			"type": typ, "status": st, "reason": reason, "message": message,
			"observedGeneration": u.GetGeneration(), "lastTransitionTime": "2026-01-01T00:00:00Z",
		})
	}
	if err := unstructured.SetNestedSlice(u.Object, conds, "status", "conditions"); err != nil {
		t.Fatal(err)
	}
}

// testArgoCDHealth runs the Lua health check of docs/gitops.md as Argo CD
// does (gopher-lua, with only the libraries Argo CD opens, obj set to the
// resource) against each state.
func testArgoCDHealth(t *testing.T, live liveOrgs) {
	const key = "resource.customizations.health.tenancy.orgforge.io_Organization"
	script := ""
	for _, s := range gitopsSnippets(t) {
		if data, ok := s["data"].(map[string]any); ok && s["kind"] == "ConfigMap" {
			if v, ok := data[key].(string); ok {
				script = v
			}
		}
	}
	if script == "" {
		t.Fatalf("docs/gitops.md has no argocd-cm ConfigMap with %s", key)
	}
	want := map[string]string{
		"Ready":                            "Healthy",
		"InvalidSpec":                      "Degraded",
		"Conflict":                         "Degraded",
		"just created, not yet reconciled": "Progressing",
		"spec changed, not yet seen":       "Progressing",
		"database unavailable":             "Degraded",
		"being deleted":                    "Progressing",
	}
	for name, obj := range healthCases(t, live) {
		t.Run(name, func(t *testing.T) {
			got, message := runHealthLua(t, script, obj.Object)
			if got != want[name] {
				t.Errorf("health = %s (%q), want %s", got, message, want[name])
			}
			if message == "" {
				t.Error("the health check gives no message")
			}
		})
	}
}

func runHealthLua(t *testing.T, script string, obj map[string]any) (string, string) {
	t.Helper()
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	// Argo CD's sandbox: base, table, string, math; no os or io.
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}, {lua.StringLibName, lua.OpenString}, {lua.MathLibName, lua.OpenMath}} {
		L.Push(L.NewFunction(lib.open))
		L.Push(lua.LString(lib.name))
		L.Call(1, 0)
	}
	L.SetGlobal("obj", toLua(L, obj))
	if err := L.DoString(script); err != nil {
		t.Fatalf("the health check fails: %v", err)
	}
	hs, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		t.Fatalf("the health check returned %v, want a table", L.Get(-1))
	}
	return hs.RawGetString("status").String(), lua.LVAsString(hs.RawGetString("message"))
}

// toLua converts decoded JSON into Lua values as Argo CD does: objects and
// arrays become tables, arrays indexed from 1.
func toLua(L *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case map[string]any:
		tbl := L.NewTable()
		for k, e := range v {
			tbl.RawSetString(k, toLua(L, e))
		}
		return tbl
	case []any:
		tbl := L.NewTable()
		for _, e := range v {
			tbl.Append(toLua(L, e))
		}
		return tbl
	case string:
		return lua.LString(v)
	case bool:
		return lua.LBool(v)
	case int64:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	case nil:
		return lua.LNil
	}
	// Decoded JSON holds nothing else.
	panic(fmt.Sprintf("unexpected %T in a decoded object", v))
}

// testFluxHealth checks what docs/gitops.md says of Flux: what kstatus,
// which Flux runs on every object it applies, makes of each state, with no
// health check expressions.
func testFluxHealth(t *testing.T, live liveOrgs) {
	want := map[string]status.Status{
		"Ready":                            status.CurrentStatus,
		"InvalidSpec":                      status.FailedStatus,
		"Conflict":                         status.FailedStatus,
		"just created, not yet reconciled": status.InProgressStatus,
		"spec changed, not yet seen":       status.InProgressStatus,
		"database unavailable":             status.InProgressStatus,
		"being deleted":                    status.TerminatingStatus,
	}
	for name, obj := range healthCases(t, live) {
		res, err := status.Compute(obj)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if res.Status != want[name] {
			t.Errorf("%s: kstatus %s (%s), want %s", name, res.Status, res.Message, want[name])
		}
		// Flux shows kstatus's message: a failure must say what to fix.
		if res.Status == status.FailedStatus && !strings.Contains(res.Message, name+":") {
			t.Errorf("%s: kstatus message %q does not give the reason", name, res.Message)
		}
	}
	if snippets := fmt.Sprint(gitopsSnippets(t)); strings.Contains(snippets, "healthCheckExprs") {
		t.Error("docs/gitops.md still recommends healthCheckExprs, which kstatus no longer needs")
	}
}
