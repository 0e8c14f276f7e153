package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"layerbridge": func() { os.Exit(run(context.Background(), os.Args[1:], osEnv(), os.Stdout, os.Stderr)) },
	})
}

// TestScripts runs testdata/script/*.txtar: usage, flag errors and hints,
// and offline inspect of the fixture archives.
func TestScripts(t *testing.T) {
	fixtures, err := filepath.Abs("../../testdata/fixtures")
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(e *testscript.Env) error {
			e.Setenv("FIXTURES", fixtures)
			e.Setenv("LAYERBRIDGE_CACHE_DIR", filepath.Join(e.WorkDir, "cache"))
			e.Setenv("DOCKER_HOST", "unix://"+filepath.Join(e.WorkDir, "no-docker.sock"))
			return nil
		},
	})
}

// testEnv is a process environment for run() in tests.
func testEnv(t *testing.T, vars map[string]string) env {
	home := t.TempDir()
	return env{
		getenv: func(k string) string { return vars[k] },
		home:   home,
		isTTY:  func(any) bool { return false },
	}
}

// runCLI runs the program in-process and returns its exit code and output.
func runCLI(t *testing.T, e env, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), args, e, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestHelp pins each command's help text: printed on stdout, exit 0.
func TestHelp(t *testing.T) {
	cmds := []string{"", "scan", "inspect", "doctor", "serve", "version"}
	for _, c := range cmds {
		name := c
		args := []string{"help"}
		if c != "" {
			args = []string{c, "--help"}
		} else {
			name = "layerbridge"
		}
		t.Run(name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, testEnv(t, nil), args...)
			if code != 0 || stderr != "" {
				t.Fatalf("exit %d, stderr %q", code, stderr)
			}
			golden := filepath.Join("testdata/help", name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(stdout), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if stdout != string(want) {
				t.Errorf("help text differs from %s (run go test -update to accept):\n%s", golden, stdout)
			}
		})
	}
}
