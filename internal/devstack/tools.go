package devstack

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Environment variables that name prebuilt tools. The Makefile sets them from
// hack/tools.sh; when they are unset the stack runs hack/tools.sh itself.
const (
	EnvKubeAssets = "KUBEBUILDER_ASSETS"
	EnvVersitygw  = "ORGFORGE_VERSITYGW"
	EnvPGBin      = "ORGFORGE_PG_BIN"
	// EnvPGBins names the binaries of every PostgreSQL major, as
	// `hack/tools.sh postgres-all` prints them: major=folder entries
	// separated by spaces or new lines, for example
	// "13=/cache/13/bin 17=/cache/17/bin". A server given a Major takes
	// its binaries from there.
	EnvPGBins = "ORGFORGE_PG_BINS"
)

// toolPath returns the path named by envVar, or asks hack/tools.sh for it,
// which builds and caches the tool when it is missing.
func toolPath(kind, envVar string) (string, error) {
	if v := os.Getenv(envVar); v != "" {
		return v, nil
	}
	path, err := runTools(envVar, kind)
	if err != nil {
		return "", err
	}
	_ = os.Setenv(envVar, path)
	return path, nil
}

// runTools runs hack/tools.sh with args and returns the path it prints.
// envVar is the variable that, set, would have named the path instead.
func runTools(envVar string, args ...string) (string, error) {
	what := strings.Join(args, " ")
	root, err := RepoRoot()
	if err != nil {
		return "", fmt.Errorf("finding %s: %s is unset and %w", what, envVar, err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command("bash", append([]string{filepath.Join(root, "hack", "tools.sh")}, args...)...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("hack/tools.sh %s: %w\n%s", what, err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}

// postgresBin returns the folder of the PostgreSQL binaries of major, or of
// the default major, named by ORGFORGE_PG_BIN, when major is 0. When
// ORGFORGE_PG_BINS is set, as make test sets it, a major it does not name is
// an error; when it is unset, hack/tools.sh installs the major, as for the
// other tools.
func postgresBin(major int) (string, error) {
	if major == 0 {
		return toolPath("postgres", EnvPGBin)
	}
	v := os.Getenv(EnvPGBins)
	if strings.TrimSpace(v) == "" {
		return runTools(EnvPGBins, "postgres", strconv.Itoa(major))
	}
	bins, err := parsePGBins(v)
	if err != nil {
		return "", err
	}
	bin, ok := bins[major]
	if !ok {
		have := slices.Sorted(maps.Keys(bins))
		return "", fmt.Errorf("postgres: %s names no binaries of PostgreSQL %d, only of %v; `hack/tools.sh postgres-all` prints every major's, as make test sets it",
			EnvPGBins, major, have)
	}
	return bin, nil
}

// parsePGBins reads ORGFORGE_PG_BINS: major=folder entries separated by
// white space.
func parsePGBins(v string) (map[int]string, error) {
	bins := map[int]string{}
	for _, entry := range strings.Fields(v) {
		major, bin, ok := strings.Cut(entry, "=")
		m, err := strconv.Atoi(major)
		if !ok || err != nil || m <= 0 || bin == "" {
			return nil, fmt.Errorf("postgres: %s has %q; each entry is major=folder, as in 17=/path/to/bin", EnvPGBins, entry)
		}
		bins[m] = bin
	}
	return bins, nil
}

// RepoRoot finds the orgforge checkout by walking up from the working
// directory to the go.mod that declares the module.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/orgforge/orgforge\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no orgforge go.mod above the working directory")
		}
		dir = parent
	}
}
