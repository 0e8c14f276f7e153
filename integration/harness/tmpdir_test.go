package harness

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
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
