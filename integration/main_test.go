package integration_test

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/layerbridge/layerbridge/integration/harness"
)

// The engines the tests of this process share (see harness.SharedEngine):
// started by the first test that needs one, stopped when all have run.
var (
	docker29   = &harness.SharedEngine[*harness.Dockerd]{Start: harness.StartDockerd}
	podman     = &harness.SharedEngine[*harness.Podman]{Start: harness.StartPodman}
	containerd = &harness.SharedEngine[*harness.Containerd]{Start: harness.StartContainerd}
)

func TestMain(m *testing.M) {
	code := m.Run()
	if err := errors.Join(docker29.Close(), podman.Close(), containerd.Close()); err != nil {
		fmt.Fprintf(os.Stderr, "stop the shared engines: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}
