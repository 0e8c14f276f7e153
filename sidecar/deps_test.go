package sidecar_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/layerbridge/layerbridge"

// TestDependencies enforces doc.go: the sidecar reads no flags and no
// environment, and the packages it builds on never import it.
func TestDependencies(t *testing.T) {
	deps := func(pkgs ...string) map[string]bool {
		t.Helper()
		args := append([]string{"list", "-deps", "-f", "{{.ImportPath}}"}, pkgs...)
		out, err := exec.Command("go", args...).Output()
		if err != nil {
			t.Fatalf("go list: %v", err)
		}
		m := map[string]bool{}
		for _, p := range strings.Fields(string(out)) {
			m[p] = true
		}
		return m
	}
	for p := range deps(".") {
		if p == "flag" || strings.Contains(p, "pflag") || p == module+"/cmd/layerbridge" {
			t.Errorf("sidecar depends on %s", p)
		}
	}
	for _, base := range []string{"bridge", "dockersave", "report", "scan", "clairv4", "clairv2"} {
		if deps("../" + base)[module+"/sidecar"] {
			t.Errorf("%s depends on sidecar", base)
		}
	}
	files, _ := filepath.Glob("*.go")
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, banned := range []string{"os.Getenv", "os.LookupEnv", "os.Environ"} {
			if strings.Contains(string(src), banned) {
				t.Errorf("%s uses %s", name, banned)
			}
		}
	}
}
