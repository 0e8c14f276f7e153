package main

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/layerbridge/layerbridge/integration/harness"
)

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no layerbridge", nil, "--layerbridge is required"},
		{"missing binary", []string{"--layerbridge", filepath.Join(t.TempDir(), "nope")}, "not an executable file"},
		{"unknown flag", []string{"--layerbrige", "x"}, "flag provided but not defined"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(t.Context(), tc.args, &stdout, &stderr); code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if !strings.Contains(stderr.String(), tc.want) || stdout.Len() != 0 {
				t.Errorf("stdout %q, stderr %q, want %q on stderr", stdout.String(), stderr.String(), tc.want)
			}
		})
	}
}

// TestDemo runs the whole demo with a fake layerbridge that checks how it
// is called (Clair reachable, image built) and exits 3: the demo must pass
// its output and exit status through and leave nothing running.
func TestDemo(t *testing.T) {
	docker := harness.DockerT(t)
	fake := buildFake(t)
	image := testImage(t, docker)
	t.Setenv("FAKE_EXIT", "3")

	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := run(t.Context(), []string{
		"--layerbridge", fake,
		"--feed", "../../testdata/secdb",
		"--context", "../../testdata/demo-image",
		"--image", image,
	}, &stdout, &stderr)
	t.Logf("demo took %v; stderr:\n%s", time.Since(start).Round(time.Millisecond), stderr.String())
	if strings.Contains(stderr.String(), harness.ErrUnavailable.Error()) {
		harness.Unavailable(t, errString(stderr.String()))
	}
	if code != 3 {
		t.Fatalf("exit %d, want the fake's 3", code)
	}
	m := regexp.MustCompile(`^FAKE-LAYERBRIDGE OK clair=(http://127\.0\.0\.1:\d+) image=(\S+) id=sha256:[0-9a-f]{64}\n$`).FindStringSubmatch(stdout.String())
	if m == nil || m[2] != image {
		t.Fatalf("stdout %q: want exactly the fake layerbridge's line for %s", stdout.String(), image)
	}
	if !strings.Contains(stderr.String(), "fakelayerbridge: to stderr") {
		t.Error("layerbridge's stderr was not passed through")
	}
	if conn, err := net.DialTimeout("tcp", strings.TrimPrefix(m[1], "http://"), time.Second); err == nil {
		conn.Close()
		t.Errorf("clair at %s still answers after the demo", m[1])
	}
	if _, err := docker.ImageInspect(t.Context(), image); err == nil {
		t.Errorf("demo image %s is still in the daemon after the demo", image)
	}
}

// TestDemoInterrupted cancels the demo (what Ctrl-C does) while
// layerbridge runs: layerbridge gets SIGINT, the demo answers 130, and
// Clair and PostgreSQL are gone.
func TestDemoInterrupted(t *testing.T) {
	docker := harness.DockerT(t)
	fake := buildFake(t)
	image := testImage(t, docker)
	t.Setenv("FAKE_BLOCK", "1")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stdout := &watchWriter{line: "FAKE-LAYERBRIDGE BLOCKING", seen: make(chan struct{}), onSeen: cancel}
	var stderr bytes.Buffer
	code := run(ctx, []string{
		"--layerbridge", fake,
		"--feed", "../../testdata/secdb",
		"--context", "../../testdata/demo-image",
		"--image", image,
	}, stdout, &stderr)
	t.Logf("stderr:\n%s", stderr.String())
	select {
	case <-stdout.seen:
	default:
		t.Fatalf("layerbridge never ran (exit %d), stdout %q", code, stdout.String())
	}
	if code != 130 {
		t.Errorf("exit %d, want 130", code)
	}
	if !strings.Contains(stdout.String(), "FAKE-LAYERBRIDGE INTERRUPTED") {
		t.Errorf("layerbridge did not get SIGINT: stdout %q", stdout.String())
	}
	m := regexp.MustCompile(`clair=(http://127\.0\.0\.1:\d+)`).FindStringSubmatch(stdout.String())
	if m == nil {
		t.Fatalf("no clair URL in %q", stdout.String())
	}
	if conn, err := net.DialTimeout("tcp", strings.TrimPrefix(m[1], "http://"), time.Second); err == nil {
		conn.Close()
		t.Errorf("clair at %s still answers after the interrupted demo", m[1])
	}
	if _, err := docker.ImageInspect(t.Context(), image); err == nil {
		t.Errorf("demo image %s is still in the daemon after the interrupted demo", image)
	}
}

// buildFake builds testdata/fakelayerbridge into a temporary directory.
func buildFake(t *testing.T) string {
	t.Helper()
	fake := filepath.Join(t.TempDir(), "layerbridge")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", fake, "./testdata/fakelayerbridge")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the fake layerbridge: %v\n%s", err, out)
	}
	return fake
}

// testImage returns a tag unique to this test and removes the image at
// cleanup.
func testImage(t *testing.T, docker *client.Client) string {
	t.Helper()
	image := "layerbridge-demo:test-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := docker.ImageRemove(ctx, image, client.ImageRemoveOptions{Force: true, PruneChildren: true}); err != nil {
			t.Logf("remove %s: %v", image, err)
		}
	})
	return image
}

// watchWriter collects output and calls onSeen once when line appears.
type watchWriter struct {
	line   string
	seen   chan struct{}
	onSeen func()

	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.buf.Write(p)
	select {
	case <-w.seen:
	default:
		if strings.Contains(w.buf.String(), w.line) {
			close(w.seen)
			w.onSeen()
		}
	}
	return n, err
}

func (w *watchWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

type errString string

func (e errString) Error() string { return string(e) }
