package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/layerbridge/layerbridge/internal/fakeclair"
	"github.com/layerbridge/layerbridge/internal/testwait"
)

const (
	samples       = "../../testdata/clair-samples"
	alpineArchive = "docker-archive:../../testdata/fixtures/alpine-3.11-docker-save.tar.gz"
)

func TestScanCommand(t *testing.T) {
	v4 := httptest.NewServer(&fakeclair.V4{Samples: samples})
	defer v4.Close()
	v2 := httptest.NewServer(&fakeclair.V2{Samples: samples})
	defer v2.Close()
	down := httptest.NewServer(nil)
	downURL := down.URL
	down.Close()

	dir := t.TempDir()
	ignoreFile := filepath.Join(dir, "ignore.yaml")
	os.WriteFile(ignoreFile, []byte("ignore:\n  - id: CVE-2021-30139\n    reason: apk is not used at runtime\n"), 0o644)

	tests := []struct {
		name       string
		env        map[string]string
		args       []string
		wantCode   int
		wantStdout []string
		wantStderr []string
	}{
		{"table by default", nil, []string{"--clair", v4.URL}, 0,
			[]string{"Summary: Unknown: 17", "CVE-2021-3450", "libssl1.1"}, nil},
		{"CLAIR_ADDR when --clair is absent", map[string]string{"CLAIR_ADDR": v4.URL}, nil, 0,
			[]string{"Clair:    " + v4.URL + " (API v4)"}, nil},
		{"fail-on at the findings' severity exits 3", nil, []string{"--clair", v4.URL, "--fail-on", "unknown"}, 3,
			[]string{"CVE-2021-3450"}, []string{"layerbridge: 17 finding(s) at or above Unknown (--fail-on)"}},
		{"fail-on above the findings exits 0", nil, []string{"--clair", v4.URL, "--fail-on", "High"}, 0, nil, nil},
		{"ignored findings never fail", nil, []string{"--clair", v4.URL, "--ignore", ignoreFile, "-f", "json"}, 0,
			[]string{`"name": "CVE-2021-30139"`, `"reason": "apk is not used at runtime"`}, nil},
		{"clair v2", nil, []string{"--clair", v2.URL, "-f", "json"}, 0, []string{`"api": "v2"`, `"CVE-2020-28928"`}, nil},
		{"cyclonedx with VEX", nil, []string{"--clair", v4.URL, "--ignore", ignoreFile, "-f", "cyclonedx"}, 0,
			[]string{`"specVersion": "1.6"`, `"timestamp": "`, `"purl": "pkg:apk/alpine/musl@1.1.24-r2?arch=x86_64&distro=alpine-3.11"`,
				`"state": "not_affected"`, `"detail": "apk is not used at runtime"`}, nil},
		{"cyclonedx from clair v2", nil, []string{"--clair", v2.URL, "-f", "cyclonedx"}, 0,
			[]string{`"value": "v2"`, `"purl": "pkg:apk/alpine/musl@1.1.24-r2?distro=alpine-3.11"`,
				`"value": "sha256:beee9f30bc1f711043e78d4a2be0668955d4b761d587d6f60c2c8dc081efb203"`}, nil},
		{"v2 client against clair 4", nil, []string{"--clair", v4.URL, "--clair-api", "v2"}, 1, nil,
			[]string{"speaks the v4 API", "hint: use --clair-api v4"}},
		{"v4 client against clair 2", nil, []string{"--clair", v2.URL, "--clair-api", "v4"}, 1, nil,
			[]string{"speaks the v2 API (/v1/layers), not v4", "hint: use --clair-api v2"}},
		{"clair down", nil, []string{"--clair", downURL}, 1, nil,
			[]string{"cannot reach clair at " + downURL, "hint: is Clair running at"}},
		{"clair cannot reach the advertised address", nil, []string{"--clair", v4.URL, "--listen", "127.0.0.1:0", "--advertise", "http://127.0.0.1:1"}, 1, nil,
			[]string{"clair could not download the layers from http://127.0.0.1:1 (no request from clair reached layerbridge)", "hint: Clair never reached layerbridge at http://127.0.0.1:1", "--advertise"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"scan", "--cache-dir", filepath.Join(dir, "cache")}, tt.args...)
			args = append(args, alpineArchive)
			code, stdout, stderr := runCLI(t, testEnv(t, tt.env), args...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstderr:\n%s", code, tt.wantCode, stderr)
			}
			for _, w := range tt.wantStdout {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout)
				}
			}
			for _, w := range tt.wantStderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
}

func TestScanOutputFile(t *testing.T) {
	v4 := httptest.NewServer(&fakeclair.V4{Samples: samples})
	defer v4.Close()
	dir := t.TempDir()
	out := filepath.Join(dir, "report.json")
	code, stdout, stderr := runCLI(t, testEnv(t, nil), "scan", "--cache-dir", filepath.Join(dir, "cache"), "--clair", v4.URL, "-f", "json", "-o", out, alpineArchive)
	if code != 0 || stdout != "" {
		t.Fatalf("exit %d, stdout %q, stderr %s", code, stdout, stderr)
	}
	var rep struct {
		Image           struct{ Ref, ManifestDigest string }
		Vulnerabilities []struct{ Name, Package string }
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Vulnerabilities) != 17 {
		t.Errorf("%d vulnerabilities in the json report, want 17", len(rep.Vulnerabilities))
	}

	// A failed scan leaves no report file behind.
	v4.Close()
	failed := filepath.Join(dir, "failed.json")
	if code, _, _ := runCLI(t, testEnv(t, nil), "scan", "--cache-dir", filepath.Join(dir, "cache"), "--clair", v4.URL, "-o", failed, alpineArchive); code != 1 {
		t.Fatalf("exit %d against a stopped clair, want 1", code)
	}
	if _, err := os.Stat(failed); !os.IsNotExist(err) {
		t.Errorf("a failed scan left %s behind (err %v)", failed, err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

// TestScanOutputNotARegularFile: -o names what the user has, and a scan
// writes into it without replacing it: a FIFO (as /dev/null or /dev/stdout
// would be a device) gets the report and stays a FIFO; a symbolic link stays
// a link, and the file it names gets the report.
func TestScanOutputNotARegularFile(t *testing.T) {
	v4 := httptest.NewServer(&fakeclair.V4{Samples: samples})
	defer v4.Close()
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")

	fifo := filepath.Join(dir, "report.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := os.ReadFile(fifo) // opens once the scan opens it for writing
		got <- b
	}()
	t.Cleanup(func() { // a reader still waiting (the scan failed) gets EOF
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	code, _, stderr := runCLI(t, testEnv(t, nil), "scan", "--cache-dir", cache, "--clair", v4.URL, "-f", "json", "-o", fifo, alpineArchive)
	if code != 0 {
		t.Fatalf("-o FIFO: exit %d, stderr %s", code, stderr)
	}
	if b := testwait.Recv(t, got, "the report through the FIFO"); !json.Valid(b) || !strings.Contains(string(b), "CVE-2021-3450") {
		t.Errorf("the FIFO's reader got %.200q, want the json report", b)
	}
	if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("%s is no longer a FIFO: %v %v", fifo, fi.Mode(), err)
	}

	target := filepath.Join(dir, "reports", "latest.json")
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(target, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "report.json")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCLI(t, testEnv(t, nil), "scan", "--cache-dir", cache, "--clair", v4.URL, "-f", "json", "-o", link, alpineArchive)
	if code != 0 {
		t.Fatalf("-o symlink: exit %d, stderr %s", code, stderr)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("%s is no longer a symbolic link: %v %v", link, fi.Mode(), err)
	}
	if b, err := os.ReadFile(target); err != nil || !json.Valid(b) {
		t.Errorf("the link's target holds %.100q (%v), want the json report", b, err)
	}
}

func TestScanAlsoOutputs(t *testing.T) {
	v4 := httptest.NewServer(&fakeclair.V4{Samples: samples})
	defer v4.Close()
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	sarif, junit, jsonFile := filepath.Join(dir, "scan.sarif"), filepath.Join(dir, "junit.xml"), filepath.Join(dir, "scan.json")

	// The table still goes to stdout; each --also file holds its format,
	// and --fail-on still decides the exit code once they are written.
	code, stdout, stderr := runCLI(t, testEnv(t, nil), "scan", "--cache-dir", cache, "--clair", v4.URL, "--fail-on", "Unknown",
		"--also", "sarif="+sarif, "--also", "junit="+junit, "--also", "json="+jsonFile, alpineArchive)
	if code != 3 || !strings.Contains(stdout, "Summary: Unknown: 17") {
		t.Fatalf("exit %d, want 3 with the table on stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	for file, want := range map[string]string{sarif: `"version": "2.1.0"`, junit: "<testsuites", jsonFile: `"Unknown": 17`} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %q", filepath.Base(file), want)
		}
	}

	// -o and --also together.
	out := filepath.Join(dir, "table.txt")
	code, stdout, stderr = runCLI(t, testEnv(t, nil), "scan", "--cache-dir", cache, "--clair", v4.URL, "-o", out, "--also", "json="+jsonFile, alpineArchive)
	if code != 0 || stdout != "" {
		t.Fatalf("exit %d, stdout %q, stderr %s", code, stdout, stderr)
	}
	if b, _ := os.ReadFile(out); !strings.Contains(string(b), "CVE-2021-3450") {
		t.Errorf("-o file lacks the table:\n%s", b)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no FILE", []string{"--also", "json"}, `--also "json" is not FORMAT=FILE`},
		{"empty FILE", []string{"--also", "json="}, `--also "json=" is not FORMAT=FILE`},
		{"unknown format", []string{"--also", "jsn=x.json"}, `--also jsn=x.json: unknown report format "jsn"`},
		{"a directory", []string{"--also", "json=" + dir}, "is a directory"},
		{"no such directory", []string{"--also", "json=" + filepath.Join(dir, "nope", "x.json")}, "no such file or directory"},
		{"the file of -o", []string{"-o", out, "--also", "json=" + out}, "is already written by -o/--output"},
		{"twice the same file", []string{"--also", "json=" + out, "--also", "sarif=" + out}, "is already written by --also json="},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"scan", "--cache-dir", cache, "--clair", v4.URL}, tc.args...)
			code, _, stderr := runCLI(t, testEnv(t, nil), append(args, alpineArchive)...)
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, want 2 with %q; stderr:\n%s", code, tc.want, stderr)
			}
		})
	}
}

// The scan command owns its layer server: it serves the layers while Clair
// fetches them and stops with the scan, whether it succeeded or not.
func TestScanStopsItsLayerServer(t *testing.T) {
	v4 := httptest.NewServer(&fakeclair.V4{Samples: samples})
	defer v4.Close()
	advertised := regexp.MustCompile(`msg="advertised address" url=(\S+)`)
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"a scan that succeeds", []string{"--clair", v4.URL}, 0},
		{"a scan Clair fails", []string{"--clair", v4.URL, "--clair-api", "v2"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"scan", "--log-level", "debug", "--cache-dir", filepath.Join(t.TempDir(), "cache")}, tc.args...)
			code, _, stderr := runCLI(t, testEnv(t, nil), append(args, alpineArchive)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s", code, tc.code, stderr)
			}
			m := advertised.FindStringSubmatch(stderr)
			if m == nil {
				t.Fatalf("no advertised address in the log:\n%s", stderr)
			}
			if resp, err := http.Get(m[1] + "/healthz"); err == nil {
				resp.Body.Close()
				t.Fatalf("the layer server still answers at %s after the scan", m[1])
			}
		})
	}
}
