package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/orgforge/orgforge/internal/config"
)

var update = flag.Bool("update", false, "Rewrite docs/configuration.md instead of checking it.")

const (
	configDoc  = "docs/configuration.md"
	beginFlags = "<!-- BEGIN GENERATED FLAGS: `make docs` writes this table from main.go's flags -->"
	endFlags   = "<!-- END GENERATED FLAGS -->"
)

// TestConfigurationDoc checks that docs/configuration.md lists every flag of
// the manager, with its environment variable and default, as bindFlags
// registers them; `make docs` rewrites the table.
func TestConfigurationDoc(t *testing.T) {
	// --leader-elect defaults to true in a cluster; the table shows the
	// default outside one and says so.
	if v, ok := os.LookupEnv("KUBERNETES_SERVICE_HOST"); ok {
		t.Setenv("KUBERNETES_SERVICE_HOST", v)
		_ = os.Unsetenv("KUBERNETES_SERVICE_HOST")
	}
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	bindFlags(fs)
	table := flagTable(fs)

	doc, err := os.ReadFile(configDoc)
	if err != nil {
		t.Fatal(err)
	}
	before, rest, ok1 := strings.Cut(string(doc), beginFlags)
	_, after, ok2 := strings.Cut(rest, endFlags)
	if !ok1 || !ok2 {
		t.Fatalf("%s lacks the markers %q and %q", configDoc, beginFlags, endFlags)
	}
	want := before + beginFlags + "\n" + table + endFlags + after
	if *update {
		if err := os.WriteFile(configDoc, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if diff := cmp.Diff(want, string(doc)); diff != "" {
		t.Errorf("%s is stale; run `make docs` (-want +got):\n%s", configDoc, diff)
	}
}

// flagGroups sorts flags into the sections of the table, by name prefix.
var flagGroups = []struct {
	title    string
	prefixes []string
}{
	{"Database (Aurora PostgreSQL)", []string{"database-", "tenant-database-", "fleet-"}},
	{"Storage (S3 and IAM)", []string{"s3-", "iam-", "tenant-s3-"}},
	{"Logging", []string{"zap-"}},
	{"Manager", []string{""}},
}

// defaultNotes replace an empty default where the flag's own value type
// knows better than its zero value.
var defaultNotes = map[string]string{
	"leader-elect":         "`false`; `true` in a cluster",
	"zap-encoder":          "`json`; `console` with `--zap-devel`",
	"zap-log-level":        "`info`; `debug` with `--zap-devel`",
	"zap-stacktrace-level": "`error`; `warn` with `--zap-devel`",
	"zap-time-encoding":    "`epoch`",
	"kubeconfig":           "`$KUBECONFIG`, else the in-cluster configuration, else `~/.kube/config`",
}

func flagTable(fs *flag.FlagSet) string {
	groups := make([][]*flag.Flag, len(flagGroups))
	fs.VisitAll(func(f *flag.Flag) {
		for i, g := range flagGroups {
			for _, p := range g.prefixes {
				if strings.HasPrefix(f.Name, p) {
					groups[i] = append(groups[i], f)
					return
				}
			}
		}
	})
	var b bytes.Buffer
	for i, g := range flagGroups {
		sort.Slice(groups[i], func(a, c int) bool { return groups[i][a].Name < groups[i][c].Name })
		fmt.Fprintf(&b, "\n### %s\n\n", g.title)
		b.WriteString("| Flag | Environment variable | Default | Description |\n|---|---|---|---|\n")
		for _, f := range groups[i] {
			env := "`" + config.EnvName(f.Name) + "`"
			if f.Name == "version" {
				env = "—"
			}
			def := defaultNotes[f.Name]
			if def == "" {
				def = "`" + f.DefValue + "`"
				if f.DefValue == "" {
					def = "empty"
				}
			}
			usage := strings.ReplaceAll(f.Usage, "|", "\\|")
			fmt.Fprintf(&b, "| `--%s` | %s | %s | %s |\n", f.Name, env, def, usage)
		}
	}
	b.WriteString("\n")
	return b.String()
}
