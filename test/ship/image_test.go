package ship

import (
	"bufio"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// testVersion is what the test injects where the Dockerfile injects
// ${VERSION}.
const testVersion = "v0.0.0-ship-test"

// dockerfile is the parsed Dockerfile: its stages and build command.
type dockerfile struct {
	// froms are the FROM lines' images, in order.
	froms []string
	// final holds the instructions of the last stage.
	final []string
	// args are the ARG defaults.
	args map[string]string
	// build is the RUN command holding `go build`, continuation lines
	// joined.
	build string
	// copies are the sources of COPY instructions without --from.
	copies []string
}

func parseDockerfile(t *testing.T) dockerfile {
	t.Helper()
	data, err := os.ReadFile(repoPath("Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	d := dockerfile{args: map[string]string{}}
	var lines []string
	var cur strings.Builder
	for _, l := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(l)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	for _, l := range lines {
		instr, rest, _ := strings.Cut(l, " ")
		switch strings.ToUpper(instr) {
		case "FROM":
			d.froms = append(d.froms, strings.Fields(rest)[0])
			d.final = nil
		case "ARG":
			name, def, _ := strings.Cut(rest, "=")
			d.args[name] = def
		case "RUN":
			if strings.Contains(rest, "go build") {
				d.build = rest
			}
		case "COPY":
			f := strings.Fields(rest)
			if !strings.HasPrefix(f[0], "--from") {
				d.copies = append(d.copies, f[:len(f)-1]...)
			}
		}
		d.final = append(d.final, l)
	}
	if d.build == "" {
		t.Fatal("the Dockerfile has no RUN with `go build`")
	}
	return d
}

// shellWords splits a command line as sh would for the simple forms the
// Dockerfile uses: words, "double" and 'single' quotes, ${VAR} and $VAR.
func shellWords(t *testing.T, line string, vars map[string]string) []string {
	t.Helper()
	expand := func(s string) string {
		return os.Expand(s, func(k string) string {
			v, ok := vars[k]
			if !ok {
				t.Fatalf("the Dockerfile's build uses $%s, which has no ARG", k)
			}
			return v
		})
	}
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case c == '"' || c == '\'':
			end := strings.IndexByte(line[i+1:], c)
			if end < 0 {
				t.Fatalf("unbalanced quote in %q", line)
			}
			s := line[i+1 : i+1+end]
			if c == '"' {
				s = expand(s)
			}
			w.WriteString(s)
			inWord = true
			i += end + 1
		default:
			j := i
			for j < len(line) && !strings.ContainsRune(" \t\"'", rune(line[j])) {
				j++
			}
			w.WriteString(expand(line[i:j]))
			inWord = true
			i = j - 1
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}

var (
	managerOnce sync.Once
	managerPath string
	managerErr  string
)

// managerBinary builds the manager exactly as the Dockerfile does, for the
// machine the test runs on, with testVersion injected. It is built once and
// shared by the tests that run it.
func managerBinary(t *testing.T) string {
	t.Helper()
	managerOnce.Do(func() {
		d := parseDockerfile(t)
		vars := map[string]string{}
		for k, v := range d.args {
			vars[k] = v
		}
		// What buildx passes on a native build.
		vars["TARGETOS"], vars["TARGETARCH"], vars["VERSION"] = runtime.GOOS, runtime.GOARCH, testVersion
		words := shellWords(t, d.build, vars)
		env := os.Environ()
		for len(words) > 0 && regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`).MatchString(words[0]) {
			env = append(env, words[0])
			words = words[1:]
		}
		if len(words) < 2 || words[0] != "go" || words[1] != "build" {
			managerErr = "the Dockerfile's build command is not `[VAR=value...] go build ...`: " + d.build
			return
		}
		dir, err := os.MkdirTemp("", "orgforge-manager-")
		if err != nil {
			managerErr = err.Error()
			return
		}
		out := filepath.Join(dir, "manager")
		for i := range words {
			if words[i] == "-o" && i+1 < len(words) {
				words[i+1] = out
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", words[1:]...)
		cmd.Dir, cmd.Env = root, env
		if b, err := cmd.CombinedOutput(); err != nil {
			managerErr = "building as the Dockerfile does: " + err.Error() + "\n" + string(b)
			return
		}
		managerPath = out
	})
	if managerErr != "" {
		t.Fatal(managerErr)
	}
	return managerPath
}

// TestDockerfileBuild builds the manager with the Dockerfile's own command
// and checks the result: the injected version, a static binary, -trimpath.
func TestDockerfileBuild(t *testing.T) {
	bin := managerBinary(t)

	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatalf("--version: %v", err)
	}
	if got, want := strings.TrimSpace(string(out)), "orgforge "+testVersion; got != want {
		t.Errorf("--version printed %q, want %q", got, want)
	}

	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	for k, want := range map[string]string{"CGO_ENABLED": "0", "-trimpath": "true", "GOOS": runtime.GOOS, "GOARCH": runtime.GOARCH} {
		if settings[k] != want {
			t.Errorf("build setting %s = %q, want %q", k, settings[k], want)
		}
	}
	// With -trimpath the toolchain does not record -ldflags; --version
	// above is the proof that the version was injected.

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has a dynamic loader (PT_INTERP): it is not static and will not run on distroless/static")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary links shared libraries %v", libs)
	}
}

// TestDockerfileImage checks the parts of the image the build test cannot
// run: a multi-stage build onto distroless nonroot, and a build context that
// holds every package the manager is built from.
func TestDockerfileImage(t *testing.T) {
	d := parseDockerfile(t)
	if len(d.froms) < 2 {
		t.Errorf("want a multi-stage build, found FROM %v", d.froms)
	}
	base := d.froms[len(d.froms)-1]
	if !strings.HasPrefix(base, "gcr.io/distroless/static") || !strings.Contains(base, "nonroot") {
		t.Errorf("final stage is FROM %s, want gcr.io/distroless/static...:nonroot", base)
	}
	final := strings.Join(d.final, "\n")
	if !regexp.MustCompile(`(?m)^USER (65532|nonroot)`).MatchString(final) {
		t.Errorf("final stage does not run as the nonroot user:\n%s", final)
	}
	if !strings.Contains(final, `ENTRYPOINT ["/manager"]`) {
		t.Errorf("final stage's entrypoint is not /manager:\n%s", final)
	}

	// .dockerignore leaves only what is copied in the build context.
	ignore, err := os.ReadFile(repoPath(".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range d.copies {
		if !regexp.MustCompile(`(?m)^!` + regexp.QuoteMeta(c) + `$`).Match(ignore) {
			t.Errorf("the Dockerfile copies %s but .dockerignore does not let it in (want a line !%s)", c, c)
		}
	}

	// Every package of this module the manager imports must be in a
	// COPY, or `docker build` fails where `go build` here succeeds.
	out := command(t, []string{"go", "list", "-deps", "-f", "{{if .Module}}{{if .Module.Main}}{{.Dir}}{{end}}{{end}}", "."})
	for _, dir := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(root, dir)
		if err != nil {
			t.Fatal(err)
		}
		copied := false
		for _, c := range d.copies {
			c = strings.TrimSuffix(c, "/")
			if rel == c || strings.HasPrefix(rel, c+"/") || (rel == "." && c == "main.go") {
				copied = true
			}
		}
		if !copied {
			t.Errorf("package ./%s is built into the manager but the Dockerfile does not COPY it", rel)
		}
	}
}

// TestLogFormat checks that the manager logs JSON by default, as it does in
// a cluster, and console lines with --zap-devel, as under make dev.
func TestLogFormat(t *testing.T) {
	dsn := filepath.Join(t.TempDir(), "dsn")
	// Nothing listens on port 1: the manager logs its start, then fails to
	// reach PostgreSQL, which is all this test needs.
	if err := os.WriteFile(dsn, []byte("postgres://admin:secret@127.0.0.1:1/postgres?sslmode=disable\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	firstLine := func(t *testing.T, extra ...string) string {
		t.Helper()
		env := []string{"KUBERNETES_SERVICE_HOST=10.0.0.1", "KUBERNETES_SERVICE_PORT=443"}
		line := managerFirstLine(t, append([]string{"--database-admin-dsn-file", dsn, "--s3-bucket", "b"}, extra...), env)
		if strings.Contains(line, "secret") {
			t.Errorf("the log shows the password: %s", line)
		}
		return line
	}

	var entry map[string]any
	line := firstLine(t)
	if err := json.Unmarshal([]byte(line), &entry); err != nil {
		t.Fatalf("default log line is not JSON: %v\n%s", err, line)
	}
	if entry["msg"] != "Starting orgforge" || entry["version"] != testVersion || entry["level"] != "info" {
		t.Errorf("first JSON log entry = %v, want msg \"Starting orgforge\", version %s, level info", entry, testVersion)
	}

	line = firstLine(t, "--zap-devel")
	if json.Valid([]byte(line)) || !strings.Contains(line, "Starting orgforge") {
		t.Errorf("with --zap-devel the first line should be a console line about the start, got:\n%s", line)
	}
}

// managerFirstLine starts the manager with args and extra environment and
// returns the first line it writes to stderr, then stops it. A manager whose
// configuration is valid logs "Starting orgforge" first; one whose
// configuration is not prints why and exits.
func managerFirstLine(t *testing.T, args, env []string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, managerBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	r := bufio.NewReader(stderr)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the manager's first log line: %v (%q)", err, line)
	}
	if strings.HasPrefix(line, "orgforge: ") {
		rest, _ := io.ReadAll(r)
		t.Fatalf("the manager refused its configuration:\n%s%s", line, rest)
	}
	return line
}
