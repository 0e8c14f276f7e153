package harness

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// ownerFile holds, in each of the harness's temporary directories, the
// ownerID of the process that made it.
const ownerFile = ".layerbridge-harness-owner"

// tempDir makes a temporary directory named prefix* that records its owner,
// after removing the directories of the same prefix left by harness
// processes that died without cleaning up (killed tests, an interrupted make
// demo): a PostgreSQL data directory is tens of megabytes.
func tempDir(prefix string) (string, error) {
	sweepTempDirs(os.TempDir(), prefix)
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(ownerID()), 0o644); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// sweepTempDirs removes the directories prefix* in parent whose owner is
// gone (see ownerGone), as RemoveOrphans does for Docker objects, with
// what still uses them (removeEngineDir). One without an owner file (being
// created, or made by something else) is kept, as is one whose owner is
// alive or on another host. Best effort: errors are ignored.
func sweepTempDirs(parent, prefix string) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		dir := filepath.Join(parent, e.Name())
		if b, err := os.ReadFile(filepath.Join(dir, ownerFile)); err == nil && ownerGone(strings.TrimSpace(string(b))) {
			_ = removeEngineDir(dir)
		}
	}
}

// removeEngineDir removes a temporary directory in which an engine
// (containerd, dockerd, podman) ran: first it kills the processes whose
// command line names the directory (containerd's shims outlive a killed
// containerd; the daemons themselves die with the harness process), then
// detaches the mounts below it (snapshots, container root file systems),
// deepest first, so that removing it cannot reach through a mount.
func removeEngineDir(dir string) error {
	killProcessesNaming(dir)
	if err := unmountBelow(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

// killProcessesNaming sends SIGKILL to every process (but this one) with an
// argument inside dir. Best effort.
func killProcessesNaming(dir string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	self := os.Getpid()
	for _, p := range procs {
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, arg := range strings.Split(string(b), "\x00") {
			if arg == dir || strings.HasPrefix(arg, dir+"/") || strings.Contains(arg, "="+dir+"/") {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				break
			}
		}
	}
}

// unmountBelow detaches (lazily, MNT_DETACH) every mount point inside dir,
// deepest first.
func unmountBelow(dir string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		if mp := unescapeMountPath(f[4]); strings.HasPrefix(mp, dir+"/") {
			points = append(points, mp)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, mp := range points {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
