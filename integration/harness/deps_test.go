package harness

import (
	"os/exec"
	"strings"
	"testing"
)

// The harness is the independent reference layerbridge is checked against:
// it must not use layerbridge's product packages, only this module's
// clairv2standin. Clair is run as a binary, never linked in.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		own := strings.HasPrefix(dep, "github.com/layerbridge/layerbridge/integration/")
		if strings.HasPrefix(dep, "github.com/layerbridge/layerbridge") && !own || strings.HasPrefix(dep, "github.com/quay/") {
			t.Errorf("harness depends on %s", dep)
		}
	}
}
