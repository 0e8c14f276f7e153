package main

import (
	"bytes"
	"io"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/creack/pty"

	"github.com/layerbridge/layerbridge/internal/fakeclair"
)

// onTerminal runs layerbridge with stderr on a pseudo-terminal, and returns
// the exit code, stdout and what the terminal received.
func onTerminal(t *testing.T, e env, args ...string) (int, string, string) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer ptmx.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 120}); err != nil {
		t.Fatal(err)
	}
	var received bytes.Buffer
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		io.Copy(&received, ptmx) // ends with EIO once the terminal side is closed
	}()
	e.isTTY = isTerminal
	var stdout bytes.Buffer
	code := run(t.Context(), args, e, &stdout, tty)
	tty.Close()
	select {
	case <-copied:
	case <-t.Context().Done():
		t.Fatal("the terminal's output never ended")
	}
	return code, stdout.String(), received.String()
}

// screenLines is what stays on a terminal (and in its scrollback) of out:
// each line as the last carriage return left it.
func screenLines(out string) []string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		l = strings.TrimSuffix(l, "\r") // the terminal's own newline translation
		if i := strings.LastIndex(l, "\r"); i >= 0 {
			l = l[i+1:]
		}
		lines = append(lines, strings.TrimPrefix(l, "\033[K"))
	}
	return lines
}

// TestProgressOnATerminal drives a scan of a daemon image with stderr on a
// pseudo-terminal: the export's percentage of the inspected size climbs to
// 100 and never beyond, each stage leaves one summary line, and nothing of
// the display is left in the scrollback.
func TestProgressOnATerminal(t *testing.T) {
	v4 := httptest.NewServer(&fakeclair.V4{Samples: samples})
	defer v4.Close()
	sock := serveFakeDaemon(t)
	e := testEnv(t, map[string]string{"DOCKER_HOST": "unix://" + sock})
	cache := filepath.Join(t.TempDir(), "cache")

	code, stdout, out := onTerminal(t, e, "scan", "--cache-dir", cache, "--clair", v4.URL, "alpine:3.11")
	if code != 0 || !strings.Contains(stdout, "CVE-2021-3450") {
		t.Fatalf("exit %d, stdout:\n%s\nterminal:\n%q", code, stdout, out)
	}
	// The fake daemon's inspect says 5611669 bytes; the export reads more
	// (tar framing), so the percentage must stop short of 100 until done.
	var pcts []int
	for _, m := range regexp.MustCompile(`(\d+)%`).FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(m[1])
		pcts = append(pcts, n)
	}
	if len(pcts) < 3 || pcts[len(pcts)-1] != 100 || pcts[0] >= 100 {
		t.Errorf("percentages %v: want several, climbing to 100", pcts)
	}
	for i := 1; i < len(pcts); i++ {
		if pcts[i] < pcts[i-1] || pcts[i] > 100 {
			t.Errorf("percentages %v: not climbing, or beyond 100", pcts)
			break
		}
	}
	if !strings.Contains(out, "exporting alpine:3.11 [") || !regexp.MustCompile(`MB/s  ETA \d`).MatchString(out) {
		t.Errorf("no running export line with a bar, rate and ETA:\n%q", out)
	}
	lines := screenLines(out)
	want := []*regexp.Regexp{
		regexp.MustCompile(`^exported alpine:3\.11 \[=+\] 100%  5\.86MB in [\d.]+m?s, [\d.]+[kMG]?B/s$`),
		regexp.MustCompile(`^indexed alpine:3\.11: Clair fetched 1 of 1 layers in [\d.]+m?s$`),
		regexp.MustCompile(`^matched alpine:3\.11 in [\d.]+m?s$`),
	}
	next := 0
	for _, l := range lines {
		if strings.ContainsAny(l, "\r\033") {
			t.Errorf("control sequence left on the screen: %q", l)
		}
		if next < len(want) && want[next].MatchString(l) {
			next++
		} else if strings.HasPrefix(l, "exporting") || strings.HasPrefix(l, "indexing") || strings.HasPrefix(l, "matching") {
			t.Errorf("a running stage's line was left on the screen: %q", l)
		}
	}
	if next != len(want) {
		t.Errorf("the screen lacks the summary %s; it shows:\n%s", want[next], strings.Join(lines, "\n"))
	}

	// The same image again: Clair has indexed it, and one line says so.
	_, _, out = onTerminal(t, e, "scan", "--cache-dir", cache, "--clair", v4.URL, "alpine:3.11")
	if lines := screenLines(out); lines[0] != "alpine:3.11: Clair has indexed it already, not exported" {
		t.Errorf("image clair knows: screen starts %q", lines[0])
	}
	// Another Clair, which never saw it: a cache hit, and one line says so.
	other := httptest.NewServer(&fakeclair.V4{Samples: samples})
	defer other.Close()
	_, _, out = onTerminal(t, e, "scan", "--cache-dir", cache, "--clair", other.URL, "alpine:3.11")
	if lines := screenLines(out); lines[0] != "alpine:3.11: in the cache, not exported again" {
		t.Errorf("cache hit: screen starts %q", lines[0])
	}
}

// TestNoProgressWithoutATerminal: not on a terminal, or with --quiet, the
// display draws nothing; --quiet leaves only warnings and errors.
func TestNoProgressWithoutATerminal(t *testing.T) {
	v4 := httptest.NewServer(&fakeclair.V4{Samples: samples})
	defer v4.Close()
	sock := serveFakeDaemon(t)
	e := testEnv(t, map[string]string{"DOCKER_HOST": "unix://" + sock})

	code, _, stderr := runCLI(t, e, "scan", "--cache-dir", filepath.Join(t.TempDir(), "cache"), "--clair", v4.URL, "alpine:3.11")
	if code != 0 || strings.ContainsAny(stderr, "\r\033") || strings.Contains(stderr, "exported") || strings.Contains(stderr, "%") {
		t.Errorf("not a terminal: exit %d, stderr:\n%q", code, stderr)
	}
	for _, quiet := range []string{"--quiet", "-q"} {
		for _, cmd := range []string{"scan", "inspect"} {
			args := []string{cmd, quiet, "--cache-dir", filepath.Join(t.TempDir(), "cache")}
			if cmd == "scan" {
				args = append(args, "--clair", v4.URL)
			}
			code, _, out := onTerminal(t, e, append(args, "alpine:3.11")...)
			if code != 0 || out != "" {
				t.Errorf("%s %s on a terminal: exit %d, the terminal got %q, want nothing", cmd, quiet, code, out)
			}
		}
	}
	// --quiet keeps an explicit --log-level.
	_, _, out := onTerminal(t, e, "inspect", "-q", "--log-level", "debug", "--cache-dir", filepath.Join(t.TempDir(), "cache"), "alpine:3.11")
	if !strings.Contains(out, "level=DEBUG") || strings.Contains(out, "\033[K") {
		t.Errorf("inspect -q --log-level debug: terminal got %q, want debug logs and no display", out)
	}
}
