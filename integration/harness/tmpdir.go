package harness

import (
	"os"
	"path/filepath"
	"strings"
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
// gone (see ownerGone), as RemoveOrphans does for Docker objects. One
// without an owner file (being created, or made by something else) is kept,
// as is one whose owner is alive or on another host. Best effort: errors
// are ignored.
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
			os.RemoveAll(dir)
		}
	}
}
