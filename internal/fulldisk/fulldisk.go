// Package fulldisk lets a test fill a disk of its own: a small tmpfs,
// mounted in a private mount namespace by a second run of the test binary,
// so that the mount is invisible to everything else and goes away with the
// helper process. It needs root (CAP_SYS_ADMIN): elsewhere the test is
// skipped, except in CI (CI=true), where it fails.
package fulldisk

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/layerbridge/layerbridge/internal/testwait"
)

// env names the mount point to the helper run.
const env = "LAYERBRIDGE_TEST_FULL_DISK"

// Run runs the test named helper of this test binary again, in a new mount
// namespace, and fails t unless it passed. The helper calls Dir first. Run
// returns the mount point, an empty directory of t's as seen from outside
// the helper's namespace.
func Run(t *testing.T, helper string) string {
	t.Helper()
	if os.Getuid() != 0 {
		unavailable(t, "mounting a tmpfs needs root")
	}
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(testwait.Context(t), os.Args[0], "-test.run=^"+helper+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), env+"="+mnt)
	// A new mount namespace; Go makes its mounts private, so the tmpfs
	// does not propagate to the parent's.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL) || strings.Contains(string(out), "mount tmpfs on") {
		unavailable(t, "no private mount namespace with a tmpfs here: %v\n%s", err, out)
	}
	if err != nil || !strings.Contains(string(out), "--- PASS: "+helper+" ") {
		t.Fatalf("helper %s: %v\n%s", helper, err, out)
	}
	t.Logf("helper %s:\n%s", helper, out)
	return mnt
}

// Dir, in the helper Run started, mounts a tmpfs of size (as mount takes
// it: "1m") on the mount point and returns its path. Run directly (go
// test), the helper is skipped.
func Dir(t *testing.T, size string) string {
	t.Helper()
	dir := os.Getenv(env)
	if dir == "" {
		t.Skip("helper process of a fulldisk.Run")
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	return dir
}

func unavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("cannot run in CI: "+format, args...)
	}
	t.Skipf(format, args...)
}
