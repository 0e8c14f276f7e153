package clairv2standin

import (
	"os/exec"
	"strings"
	"testing"
)

// The stand-in is a peer layerbridge is tested against: it must not use
// layerbridge's own packages (it would then agree with them by
// construction), nor Clair's code.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "github.com/layerbridge/layerbridge") && dep != "github.com/layerbridge/layerbridge/integration/clairv2standin" ||
			strings.HasPrefix(dep, "github.com/quay/") {
			t.Errorf("clairv2standin depends on %s", dep)
		}
	}
}
