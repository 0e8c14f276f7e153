package harness

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ownerFile names, in each of the harness's temporary directories, the PID
// of the process that made it.
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
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// sweepTempDirs removes the directories prefix* in parent whose owner is no
// longer running. A directory without an owner file (being created, or made
// by something else) and one whose owner is alive are kept; so is anything
// that cannot be read. Best effort: errors are ignored.
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
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || processAlive(pid) {
			continue
		}
		os.RemoveAll(dir)
	}
}

// processAlive reports whether pid names a process (of any user: EPERM
// means it exists).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
