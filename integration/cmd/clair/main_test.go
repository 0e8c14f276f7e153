package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/layerbridge/layerbridge/integration/harness"
	"github.com/layerbridge/layerbridge/internal/testwait"
)

func TestUsageErrors(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"--feeed", "x"}, &stdout, &stderr); code != 2 || stdout.Len() != 0 ||
		!strings.Contains(stderr.String(), "flag provided but not defined") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
	stderr.Reset()
	if code := run(t.Context(), []string{"extra"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "unexpected arguments") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}

// stackProcess is one run of the command, as `make clair` runs it.
type stackProcess struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	addr   string // the CLAIR_ADDR it printed
	exited chan struct{}
}

// startStack builds the command once and runs it until it prints its
// CLAIR_ADDR line; the process is killed at cleanup if still running.
func startStack(t *testing.T, bin string) *stackProcess {
	t.Helper()
	p := &stackProcess{stderr: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, "--feed", "../../testdata/secdb")
	p.cmd.Stderr = p.stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrRE := regexp.MustCompile(`^export CLAIR_ADDR=(http://127\.0\.0\.1:\d+)$`)
	addrs := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		found := false
		for sc.Scan() {
			if m := addrRE.FindStringSubmatch(sc.Text()); m != nil && !found {
				found = true
				addrs <- m[1]
			}
		}
		p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		testwait.Recv(t, p.exited, "clair-stack to exit once killed")
		if t.Failed() {
			t.Logf("clair-stack's stderr:\n%s", p.stderr.String())
		}
	})
	// Building Clair takes minutes the first time on a machine.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	select {
	case p.addr = <-addrs:
		return p
	case <-p.exited:
		if strings.Contains(p.stderr.String(), harness.ErrUnavailable.Error()) {
			harness.Unavailable(t, errors.New(p.stderr.String()))
		}
		t.Fatalf("clair-stack exited (%v) without printing CLAIR_ADDR; stderr:\n%s", p.cmd.ProcessState, p.stderr.String())
	case <-ctx.Done():
		t.Fatalf("clair-stack never printed CLAIR_ADDR within %s", 10*time.Minute)
	}
	return nil
}

// descendants returns the processes below pid, from /proc.
func descendants(t *testing.T, pid int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	children := map[int][]int{}
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, state, ok := procStat(n); ok && state != "Z" {
			children[ppid] = append(children[ppid], n)
		}
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		out = append(out, children[p]...)
		queue = append(queue, children[p]...)
	}
	return out
}

// procStat reads a process's parent and state; ok is false once it is gone.
func procStat(pid int) (ppid int, state string, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, "", false
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	rest := string(b[bytes.LastIndexByte(b, ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 2 {
		return 0, "", false
	}
	ppid, _ = strconv.Atoi(f[1])
	return ppid, f[0], true
}

// alive reports whether pid still runs (a zombie has stopped running).
func alive(pid int) bool {
	_, state, ok := procStat(pid)
	return ok && state != "Z"
}

// ownedDirs returns the harness's temporary directories owned by pid.
func ownedDirs(t *testing.T, pid int) []string {
	t.Helper()
	host, _ := os.Hostname()
	owner := host + "/" + strconv.Itoa(pid)
	entries, err := os.ReadDir(os.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "layerbridge-") {
			continue
		}
		dir := filepath.Join(os.TempDir(), e.Name())
		if b, err := os.ReadFile(filepath.Join(dir, ".layerbridge-harness-owner")); err == nil && strings.TrimSpace(string(b)) == owner {
			dirs = append(dirs, dir)
		}
	}
	return dirs
}

// answersAsClair checks that addr is Clair 4's indexer.
func answersAsClair(t *testing.T, addr string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", addr+"/indexer/api/v1/index_state", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("the printed CLAIR_ADDR %s does not answer: %v", addr, err)
	}
	defer resp.Body.Close()
	var state struct {
		State string `json:"state"`
	}
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&state) != nil || state.State == "" {
		t.Fatalf("%s/indexer/api/v1/index_state: %d, not Clair's index state", addr, resp.StatusCode)
	}
}

// waitGone waits, within the test's time, until none of pids runs and
// nothing answers at addr.
func waitGone(t *testing.T, pids []int, addr string) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var left []int
		for _, p := range pids {
			if alive(p) {
				left = append(left, p)
			}
		}
		conn, err := net.DialTimeout("tcp", strings.TrimPrefix(addr, "http://"), time.Second)
		if err == nil {
			conn.Close()
		}
		if len(left) == 0 && err != nil {
			return
		}
		select {
		case <-tick.C:
		case <-t.Context().Done():
			t.Fatalf("still running: processes %v; clair answering at %s: %v", left, addr, err == nil)
		}
	}
}

func buildStack(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "clair-stack")
	if out, err := exec.CommandContext(t.Context(), "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// TestStopsOnSignal runs the command as make clair does, checks that the
// address it prints is Clair's, then stops it with SIGTERM and with SIGINT
// (Ctrl-C): it exits 0, and its processes, Clair's port and its temporary
// directories are gone.
func TestStopsOnSignal(t *testing.T) {
	if _, err := harness.FindPostgres(); err != nil {
		harness.Unavailable(t, err)
	}
	bin := buildStack(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			p := startStack(t, bin)
			answersAsClair(t, p.addr)
			pids := descendants(t, p.cmd.Process.Pid)
			dirs := ownedDirs(t, p.cmd.Process.Pid)
			if len(pids) < 2 || len(dirs) < 2 {
				t.Fatalf("processes %v and directories %v: want clair's and postgres's at least", pids, dirs)
			}
			p.cmd.Process.Signal(sig)
			select {
			case <-p.exited:
			case <-t.Context().Done():
				t.Fatalf("still running after %s", sig)
			}
			if code := p.cmd.ProcessState.ExitCode(); code != 0 {
				t.Errorf("exit %d after %s, want 0", code, sig)
			}
			if !strings.Contains(p.stderr.String(), "clair-stack: stopped") {
				t.Errorf("stderr does not say it stopped:\n%s", p.stderr.String())
			}
			waitGone(t, pids, p.addr)
			for _, d := range dirs {
				if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s is left after %s (%v)", d, sig, err)
				}
			}
		})
	}
}

// TestSecondRunCleansUp kills the command outright: its services die with
// it (the kernel's parent-death signal), and the next run removes the
// directories it left.
func TestSecondRunCleansUp(t *testing.T) {
	if _, err := harness.FindPostgres(); err != nil {
		harness.Unavailable(t, err)
	}
	bin := buildStack(t)
	first := startStack(t, bin)
	pids := descendants(t, first.cmd.Process.Pid)
	dirs := ownedDirs(t, first.cmd.Process.Pid)
	first.cmd.Process.Kill()
	testwait.Recv(t, first.exited, "the first run to exit once killed")
	waitGone(t, pids, first.addr)
	for _, d := range dirs {
		if _, err := os.Stat(d); err != nil {
			t.Fatalf("%s is gone already after SIGKILL (%v): the test proves nothing", d, err)
		}
	}
	second := startStack(t, bin)
	for _, d := range dirs {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s, left by the killed run, is still there after the second started (%v)", d, err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	second.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-second.exited:
	case <-ctx.Done():
		t.Fatal("the second run did not stop on SIGTERM")
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
