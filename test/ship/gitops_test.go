package ship

import (
	"fmt"
	"os"
	"regexp"
	"testing"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/ext"
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

// healthCases are the states an Organization can be in. The first three are
// the live objects the operator wrote; the others are derived from the live
// Ready one by changing what the state changes, since the test cannot hold
// an Organization in them.
func healthCases(t *testing.T, live liveOrgs) map[string]*unstructured.Unstructured {
	t.Helper()
	ready := live[tenancyv1alpha1.ReasonProvisioned]
	if ready == nil || live[tenancyv1alpha1.ReasonInvalidSpec] == nil || live[tenancyv1alpha1.ReasonConflict] == nil {
		t.Fatalf("missing live Organizations: %v", live)
	}
	created := ready.DeepCopy()
	delete(created.Object, "status")

	changed := ready.DeepCopy()
	changed.SetGeneration(ready.GetGeneration() + 1)

	unavailable := ready.DeepCopy()
	setCondition(t, unavailable, tenancyv1alpha1.ConditionDatabaseReady, "False", tenancyv1alpha1.ReasonDatabaseUnavailable,
		"PostgreSQL at db.example.com:5432/orgforge_admin is unavailable (connection refused); retrying with backoff")
	setCondition(t, unavailable, tenancyv1alpha1.ConditionReady, "False", tenancyv1alpha1.ReasonDatabaseUnavailable, "DatabaseReady: DatabaseUnavailable")

	deleting := ready.DeepCopy()
	_ = unstructured.SetNestedField(deleting.Object, "2026-01-01T00:00:00Z", "metadata", "deletionTimestamp")
	setCondition(t, deleting, tenancyv1alpha1.ConditionReady, "False", tenancyv1alpha1.ReasonDeleting, "Deleting: dropping database")

	return map[string]*unstructured.Unstructured{
		"Ready":                       ready,
		"InvalidSpec":                 live[tenancyv1alpha1.ReasonInvalidSpec],
		"Conflict":                    live[tenancyv1alpha1.ReasonConflict],
		"just created, no status yet": created,
		"spec changed, not yet seen":  changed,
		"database unavailable":        unavailable,
		"being deleted":               deleting,
	}
}

func setCondition(t *testing.T, u *unstructured.Unstructured, typ, st, reason, message string) {
	t.Helper()
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for i, c := range conds {
		cm := c.(map[string]any)
		if cm["type"] == typ {
			cm["status"], cm["reason"], cm["message"] = st, reason, message
			conds[i] = cm
		}
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
		"Ready":                       "Healthy",
		"InvalidSpec":                 "Degraded",
		"Conflict":                    "Degraded",
		"just created, no status yet": "Progressing",
		"spec changed, not yet seen":  "Progressing",
		"database unavailable":        "Degraded",
		"being deleted":               "Progressing",
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
// which Flux runs on every object it applies, makes of each state, and the
// healthCheckExprs it recommends, evaluated with CEL as Flux declares them
// (the object's top-level fields as variables).
func testFluxHealth(t *testing.T, live liveOrgs) {
	cases := healthCases(t, live)
	t.Run("kstatus", func(t *testing.T) {
		want := map[string]status.Status{
			"Ready":                       status.CurrentStatus,
			"InvalidSpec":                 status.InProgressStatus,
			"Conflict":                    status.InProgressStatus,
			"just created, no status yet": status.CurrentStatus,
			"spec changed, not yet seen":  status.InProgressStatus,
			"database unavailable":        status.InProgressStatus,
			"being deleted":               status.TerminatingStatus,
		}
		for name, obj := range cases {
			res, err := status.Compute(obj)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if res.Status != want[name] {
				t.Errorf("%s: kstatus %s (%s), want %s", name, res.Status, res.Message, want[name])
			}
		}
	})

	t.Run("healthCheckExprs", func(t *testing.T) {
		var exprs map[string]any
		for _, s := range gitopsSnippets(t) {
			if s["kind"] != "Kustomization" {
				continue
			}
			list, _, _ := unstructured.NestedSlice(s, "spec", "healthCheckExprs")
			for _, e := range list {
				if em := e.(map[string]any); em["kind"] == "Organization" {
					exprs = em
				}
			}
		}
		if exprs == nil {
			t.Fatal("docs/gitops.md has no Flux Kustomization with healthCheckExprs for Organization")
		}
		env, err := cel.NewEnv(cel.Variable("metadata", cel.DynType), cel.Variable("spec", cel.DynType),
			cel.Variable("status", cel.DynType), cel.OptionalTypes(), ext.Strings())
		if err != nil {
			t.Fatal(err)
		}
		eval := func(expr string, obj map[string]any) (bool, error) {
			ast, iss := env.Compile(expr)
			if iss.Err() != nil {
				t.Fatalf("compiling %q: %v", expr, iss.Err())
			}
			prg, err := env.Program(ast)
			if err != nil {
				t.Fatal(err)
			}
			vars := map[string]any{}
			for _, k := range []string{"metadata", "spec", "status"} {
				if v, ok := obj[k]; ok {
					vars[k] = v
				}
			}
			out, _, err := prg.Eval(vars)
			if err != nil {
				return false, err
			}
			b, ok := out.Value().(bool)
			return b && ok, nil
		}
		// Flux: the first of inProgress, failed, current that is true
		// decides; none true means in progress.
		result := func(obj map[string]any) string {
			for _, k := range []string{"inProgress", "failed", "current"} {
				expr, _ := exprs[k].(string)
				if expr == "" {
					continue
				}
				ok, err := eval(expr, obj)
				if err != nil {
					return "error"
				}
				if ok {
					return k
				}
			}
			return "inProgress"
		}
		want := map[string]string{
			"Ready":       "current",
			"InvalidSpec": "failed",
			"Conflict":    "failed",
			// Flux waits while an expression cannot be evaluated.
			"just created, no status yet": "error",
			"spec changed, not yet seen":  "inProgress",
			"database unavailable":        "inProgress",
		}
		for name, w := range want {
			if got := result(cases[name].Object); got != w {
				t.Errorf("%s: %s, want %s", name, got, w)
			}
		}
	})
}
