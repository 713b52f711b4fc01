package ship

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// readmeLayout returns the paths the README's Layout block names: its
// top-level entries (api/v1alpha1/, main.go, ...) and, under controllers/,
// the files it lists one by one.
func readmeLayout(t *testing.T) (entries, controllerFiles []string) {
	t.Helper()
	b, err := os.ReadFile(repoPath("README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)## Layout\n\n```\n(.*?)```").FindSubmatch(b)
	if m == nil {
		t.Fatal("README.md has no Layout section with a code block")
	}
	for _, line := range strings.Split(string(m[1]), "\n") {
		fields := strings.Fields(line)
		switch {
		case len(fields) == 0:
		case strings.HasPrefix(line, "  "):
			// An indented line lists controllers/ files, comma-separated
			// when there is no description.
			for _, f := range fields {
				if f = strings.TrimSuffix(f, ","); strings.HasSuffix(f, ".go") {
					controllerFiles = append(controllerFiles, f)
				} else {
					break
				}
			}
		default:
			entries = append(entries, fields[0])
		}
	}
	return entries, controllerFiles
}

// goDirs returns the repository's folders that hold Go files, relative to
// its root, each with a trailing slash.
func goDirs(t *testing.T) []string {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(repoPath(), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "bin" || d.Name() == "dist" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		rel, err := filepath.Rel(repoPath(), filepath.Dir(path))
		if err != nil || rel == "." {
			return err
		}
		if dir := filepath.ToSlash(rel) + "/"; !slices.Contains(dirs, dir) {
			dirs = append(dirs, dir)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

func TestReadmeLayoutNamesEveryPackageAndEveryControllersSourceFile(t *testing.T) {
	entries, listed := readmeLayout(t)
	if len(entries) < 10 || len(listed) < 5 {
		t.Fatalf("README layout: %d entries, %d controllers files: the parse is broken", len(entries), len(listed))
	}
	for _, e := range entries {
		if _, err := os.Stat(repoPath(e)); err != nil {
			t.Errorf("the README's layout names %s, which does not exist", e)
		}
	}
	for _, dir := range goDirs(t) {
		covered := slices.ContainsFunc(entries, func(e string) bool { return strings.HasSuffix(e, "/") && strings.HasPrefix(dir, e) })
		if !covered {
			t.Errorf("the README's layout does not describe %s", dir)
		}
	}
	sources, err := filepath.Glob(repoPath("controllers", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range sources {
		if name := filepath.Base(src); !strings.HasSuffix(name, "_test.go") && !slices.Contains(listed, name) {
			t.Errorf("the README's layout does not list controllers/%s", name)
		}
	}
	for _, name := range listed {
		if _, err := os.Stat(repoPath("controllers", name)); err != nil {
			t.Errorf("the README's layout lists controllers/%s, which does not exist", name)
		}
	}
}
