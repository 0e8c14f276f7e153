package harness

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// The directories of dead harness processes are swept; live owners',
// other hosts', ownerless ones and other prefixes' are kept.
func TestSweepTempDirs(t *testing.T) {
	parent := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	mk := func(name, owner string) string {
		dir := filepath.Join(parent, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if owner != "" {
			if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(owner), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	host, _ := os.Hostname()
	deadOwner := host + "/" + strconv.Itoa(dead.Process.Pid)
	deadDir := mk("layerbridge-pg-1", deadOwner)
	liveDir := mk("layerbridge-pg-2", ownerID())
	ownerless := mk("layerbridge-pg-3", "")
	garbage := mk("layerbridge-pg-4", "not an owner")
	otherHost := mk("layerbridge-pg-5", "another-host/"+strconv.Itoa(dead.Process.Pid))
	otherPrefix := mk("layerbridge-clair-1", deadOwner)

	sweepTempDirs(parent, "layerbridge-pg-")

	for dir, want := range map[string]bool{deadDir: false, liveDir: true, ownerless: true, garbage: true, otherHost: true, otherPrefix: true} {
		_, err := os.Stat(dir)
		if got := err == nil; got != want {
			t.Errorf("%s kept: %v, want %v", filepath.Base(dir), got, want)
		}
	}
}

func TestTempDirRecordsItsOwner(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	dir, err := tempDir("layerbridge-test-")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, ownerFile))
	if err != nil || string(b) != ownerID() {
		t.Errorf("owner file: %q, %v; want %q", b, err, ownerID())
	}
}

// An engine's directory left by a killed harness process is swept with what
// still uses it: a mount below it is detached (not emptied through), and a
// process naming it (a containerd shim) is killed.
func TestSweepEngineLeftovers(t *testing.T) {
	if os.Geteuid() != 0 {
		Unavailable(t, fmt.Errorf("mounting a tmpfs needs root: %w", ErrUnavailable))
	}
	parent := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	dir := filepath.Join(parent, "layerbridge-dockerd-1")
	mnt := filepath.Join(dir, "containerd", "state", "rootfs")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(host+"/"+strconv.Itoa(dead.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	// What a mount below the directory shows: a bind mount of a directory
	// outside it, which removing the directory through the mount would
	// empty.
	outside := t.TempDir()
	keep := filepath.Join(outside, "keep")
	if err := os.WriteFile(keep, []byte("not the harness's"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount(outside, mnt, "", syscall.MS_BIND, ""); err != nil {
		Unavailable(t, fmt.Errorf("bind mount: %v: %w", err, ErrUnavailable))
	}
	t.Cleanup(func() { _ = syscall.Unmount(mnt, syscall.MNT_DETACH) })
	shim := exec.Command("sleep", "600", filepath.Join(dir, "containerd", "containerd.sock"))
	if err := shim.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- shim.Wait() }()
	t.Cleanup(func() { _ = shim.Process.Kill() })

	sweepTempDirs(parent, "layerbridge-dockerd-")

	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s still there (%v)", dir, err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("the mounted directory was emptied through the mount: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	select {
	case <-exited:
	case <-ctx.Done():
		t.Error("the process naming the directory still runs")
	}
}
