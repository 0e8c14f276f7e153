package doctor

import (
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerbridge/layerbridge/containerdsource"
)

// TestContainerdChecks: the containerd checks run for a containerd:
// image (failing), or when a containerd was named (warning), and are
// skipped otherwise; a missing socket and one nothing listens on are told
// apart, each with its fix, and the Docker image check leaves a
// containerd: image to them.
func TestContainerdChecks(t *testing.T) {
	dir := shortTempDir(t)
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	missing := filepath.Join(dir, "none.sock")
	for _, tc := range []struct {
		name    string
		address string
		named   bool
		image   string
		status  map[string]Status
		text    string
	}{
		{"docker image, containerd not named", missing, false, "alpine:3.11",
			map[string]Status{CheckContainerdReachable: Skipped, CheckContainerdNamespace: Skipped, CheckContainerdImage: Skipped}, "IMAGE is no containerd: image"},
		{"no image, containerd named", missing, true, "",
			map[string]Status{CheckContainerdReachable: Warning, CheckContainerdImage: Skipped}, "no socket there"},
		{"containerd image, no socket", missing, false, "containerd:alpine:3.11",
			map[string]Status{CheckContainerdReachable: Failed, CheckContainerdNamespace: Skipped, CheckContainerdImage: Skipped, CheckDockerImage: Skipped}, "--containerd-address"},
		{"containerd image, nothing listens", stale, false, "containerd:alpine:3.11",
			map[string]Status{CheckContainerdReachable: Failed}, "does not answer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := containerdsource.New(containerdsource.Config{Address: tc.address})
			defer src.Close()
			results := Run(t.Context(), Config{Containerd: src, ContainerdNamed: tc.named, Image: tc.image})
			var text strings.Builder
			for _, r := range results {
				if want, ok := tc.status[r.Check]; ok && r.Status != want {
					t.Errorf("%s: %s (%s), want %s", r.Check, r.Status, r.Evidence, want)
				}
				if strings.HasPrefix(r.Check, "containerd.") {
					text.WriteString(r.Evidence + " " + r.Fix + "\n")
				}
			}
			if !strings.Contains(text.String(), tc.text) {
				t.Errorf("containerd checks say\n%s\nwant %q", text.String(), tc.text)
			}
		})
	}
}
