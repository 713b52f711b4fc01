package devstack

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Environment variables that name prebuilt tools. The Makefile sets them from
// hack/tools.sh; when they are unset the stack runs hack/tools.sh itself.
const (
	EnvKubeAssets = "KUBEBUILDER_ASSETS"
	EnvVersitygw  = "ORGFORGE_VERSITYGW"
	EnvPGBin      = "ORGFORGE_PG_BIN"
)

// toolPath returns the path named by envVar, or asks hack/tools.sh for it,
// which builds and caches the tool when it is missing.
func toolPath(kind, envVar string) (string, error) {
	if v := os.Getenv(envVar); v != "" {
		return v, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", fmt.Errorf("finding %s: %s is unset and %w", kind, envVar, err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command("bash", filepath.Join(root, "hack", "tools.sh"), kind)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("hack/tools.sh %s: %w\n%s", kind, err, stderr.String())
	}
	path := strings.TrimSpace(string(out))
	_ = os.Setenv(envVar, path)
	return path, nil
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
