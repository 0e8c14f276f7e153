package doctor

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImportRules enforces doc.go: no CLI, no flag parsing, no environment
// reads, no printing to the process's streams.
func TestImportRules(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, src, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if strings.Contains(p, "/cmd/") || p == "flag" || strings.Contains(p, "pflag") || p == "github.com/layerbridge/layerbridge/report" {
				t.Errorf("%s imports %s", name, p)
			}
		}
		for _, banned := range []string{"os.Getenv", "os.LookupEnv", "os.Environ", "os.Stdout", "os.Stderr", "fmt.Print"} {
			if strings.Contains(string(src), banned) {
				t.Errorf("%s uses %s", name, banned)
			}
		}
	}
}
