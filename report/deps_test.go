package report_test

import (
	"go/build"
	"strings"
	"testing"
)

// report is imported by both Clair clients and by cmd; it must import
// nothing of this module, and nothing outside the standard library except
// the YAML parser for ignore files.
func TestDependencies(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"go.yaml.in/yaml/v3": true}
	for _, imp := range pkg.Imports {
		std := !strings.Contains(strings.SplitN(imp, "/", 2)[0], ".")
		if strings.HasPrefix(imp, "github.com/layerbridge/layerbridge") {
			t.Errorf("report imports %s of this module", imp)
		} else if !std && !allowed[imp] {
			t.Errorf("report imports %s: only the standard library and go.yaml.in/yaml/v3 are allowed", imp)
		}
	}
}
