package doctor

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// helperSocketEnv makes the test binary, re-executed as another user, run
// the checks against the socket it names and print the results.
const helperSocketEnv = "LAYERBRIDGE_DOCTOR_TEST_SOCKET"

const resultsPrefix = "doctor-results: "

// TestHelperAsOtherUser is not a test of its own: it runs only in the
// re-executed child of TestSocketPermissionDenied.
func TestHelperAsOtherUser(t *testing.T) {
	sock := os.Getenv(helperSocketEnv)
	if sock == "" {
		t.Skip("helper process only")
	}
	results := Run(t.Context(), Config{Docker: daemonAt("unix://"+sock, "DOCKER_HOST")})
	b, err := json.Marshal(results)
	if err != nil {
		t.Fatal(err)
	}
	os.Stdout.Write([]byte("\n" + resultsPrefix + string(b) + "\n"))
}

// TestSocketPermissionDenied runs the checks as the unprivileged user
// nobody against a real daemon socket it may not open. Root bypasses file
// modes, so the test binary re-executes itself with nobody's credentials.
func TestSocketPermissionDenied(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: to create a root-owned socket and run the checks as nobody")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody on this system")
	}
	uid, _ := strconv.ParseUint(nobody.Uid, 10, 32)
	gid, _ := strconv.ParseUint(nobody.Gid, 10, 32)

	// A directory nobody may enter, holding a copy of this test binary
	// (go test's build directory is private to root) and the socket.
	dir := shortTempDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := copyTestBinary(t, dir)

	tests := []struct {
		name     string
		group    string // the socket's group
		evidence []string
		fix      []string
	}{
		{"root:root", "root",
			[]string{"you are uid " + nobody.Uid + " (nobody)", "owned by root:root", "srw-rw---- (0660)", "neither its owner nor in its group root"},
			[]string{"only root may open it", "sudo", "DOCKER_HOST"}},
		{"root:docker", "docker",
			[]string{"owned by root:docker", "neither its owner nor in its group docker"},
			[]string{"sudo usermod -aG docker $USER", "newgrp docker"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			grp, err := user.LookupGroup(tt.group)
			if err != nil {
				t.Skipf("no group %s on this system", tt.group)
			}
			sgid, _ := strconv.Atoi(grp.Gid)
			sock := filepath.Join(dir, tt.group+".sock")
			serveUnix(t, sock, healthyDaemon())
			if err := os.Chown(sock, 0, sgid); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(sock, 0o660); err != nil {
				t.Fatal(err)
			}

			cmd := exec.CommandContext(t.Context(), bin, "-test.run=^TestHelperAsOtherUser$", "-test.count=1")
			cmd.Dir = dir
			cmd.Env = []string{helperSocketEnv + "=" + sock, "PATH=/usr/bin:/bin", "HOME=" + dir}
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("helper as nobody: %v\n%s%s", err, stdout.String(), stderr.String())
			}
			results := parseHelperResults(t, stdout.String())
			expect(t, results, CheckDockerEndpoint, Passed, []string{"unix://" + sock}, nil)
			expect(t, results, CheckDockerReachable, Skipped, []string{"permission denied", CheckDockerPermission}, nil)
			expect(t, results, CheckDockerPermission, Failed, tt.evidence, tt.fix)
		})
	}
}

func copyTestBinary(t *testing.T, dir string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	bin := filepath.Join(dir, "doctor.test")
	out, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return bin
}

func parseHelperResults(t *testing.T, out string) []Result {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), resultsPrefix); ok {
			var results []Result
			if err := json.Unmarshal([]byte(rest), &results); err != nil {
				t.Fatal(err)
			}
			return results
		}
	}
	t.Fatalf("no results in the helper's output:\n%s", out)
	return nil
}
