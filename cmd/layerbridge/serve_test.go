package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/bridge"
	"github.com/layerbridge/layerbridge/dockersave"
	"github.com/layerbridge/layerbridge/engine"
	"github.com/layerbridge/layerbridge/internal/fakeclair"
	"github.com/layerbridge/layerbridge/internal/testwait"
	"github.com/layerbridge/layerbridge/scan"
	"github.com/layerbridge/layerbridge/sidecar"
	"github.com/layerbridge/layerbridge/store"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"0", 0},
		{"1048576", 1 << 20},
		{"10GB", 10e9},
		{"10gb", 10e9},
		{"10 GB", 10e9},
		{"500MB", 500e6},
		{"1.5GiB", 3 << 29},
		{"2KiB", 2048},
		{"7k", 7000},
		{"3TB", 3e12},
		{"1B", 1},
		{"0.5", 0},
	}
	for _, tt := range tests {
		got, err := parseSize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "GB", "-1GB", "10XB", "ten", "1.2.3GB", "99999999999TB", "1e3"} {
		if got, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", bad, got)
		}
	}
}

func TestServeFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"alpine"}, "serve takes no arguments"},
		{[]string{"--clair", "clair:6060"}, `--clair "clair:6060" is not an http(s) URL`},
		{[]string{"--clair-api", "v3"}, `--clair-api "v3": want auto, v4 or v2`},
		{[]string{"--clair-api", "v2", "--clair-psk", "a2V5"}, "--clair-psk is for Clair 4"},
		{[]string{"--listen", "8080"}, `--listen "8080": want IP:PORT`},
		{[]string{"--listen", ":http"}, `port "http" is not a number`},
		{[]string{"--listen", "layerbridge:8080"}, `"layerbridge" is not an IP address`},
		{[]string{"--advertise", "layerbridge:8080"}, `--advertise "layerbridge:8080" is not an http(s) URL`},
		{[]string{"--max-concurrent-scans", "0"}, "--max-concurrent-scans 0: want at least 1"},
		{[]string{"--shutdown-grace", "-1s"}, "--shutdown-grace -1s is negative"},
		{[]string{"--cache-max-size", "lots"}, `--cache-max-size: size "lots"`},
		{[]string{"--log-level", "loud"}, `--log-level "loud"`},
		{[]string{"--no-such-flag"}, "unknown flag: --no-such-flag"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, stderr := runCLI(t, testEnv(t, nil), append([]string{"serve"}, tt.args...)...)
			if code != exitUsage || stdout != "" {
				t.Fatalf("exit %d, stdout %q; want %d", code, stdout, exitUsage)
			}
			if !strings.HasPrefix(stderr, "layerbridge: error: ") || !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr lacks %q:\n%s", tt.want, stderr)
			}
		})
	}
}

// logLines is a stderr that hands every line the logger writes to a channel.
type logLines chan string

func (l logLines) Write(p []byte) (int, error) {
	select {
	case l <- string(p):
	default:
	}
	return len(p), nil
}

var listeningRE = regexp.MustCompile(`msg=listening addr=(\S+)`)

// startServe runs "layerbridge serve" in-process on a free loopback port
// and returns its address, and a stop that sends the shutdown signal and
// returns the exit code.
func startServe(t *testing.T, args ...string) (base string, stop func() int) {
	t.Helper()
	base, _, stop = startServeIn(t, false, args...)
	return base, stop
}

// startServeIn is startServe in a container (inContainer) or not, returning
// the log lines written before serve was listening too.
func startServeIn(t *testing.T, inContainer bool, args ...string) (base string, early []string, stop func() int) {
	t.Helper()
	dir := t.TempDir()
	e := testEnv(t, map[string]string{
		"DOCKER_HOST":           "unix://" + filepath.Join(dir, "no-docker.sock"),
		"LAYERBRIDGE_CACHE_DIR": filepath.Join(dir, "cache"),
	})
	e.inContainer = func() bool { return inContainer }
	ctx, cancel := context.WithCancel(t.Context())
	lines := make(logLines, 1000)
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, append([]string{"serve", "--listen", "127.0.0.1:0"}, args...), e, io.Discard, lines)
	}()
	wait := testwait.Context(t)
	for {
		select {
		case <-wait.Done():
			cancel()
			t.Fatalf("serve did not start listening: %v; its log:\n%s", context.Cause(wait), strings.Join(early, ""))
		case line := <-lines:
			if m := listeningRE.FindStringSubmatch(line); m != nil {
				return "http://" + m[1], early, sync.OnceValue(func() int {
					cancel()
					return testwait.Recv(t, code, "serve to exit")
				})
			}
			early = append(early, line)
		case c := <-code:
			cancel()
			t.Fatalf("serve exited %d before listening", c)
		}
	}
}

func get(t *testing.T, u, auth string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", u, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// serve's wiring, without Docker: the listener, the API, readiness that
// names the missing daemon, and a clean exit on the shutdown signal.
func TestServeCommand(t *testing.T) {
	clair := httptest.NewServer(&fakeclair.V4{Samples: samples})
	defer clair.Close()
	base, stop := startServe(t, "--clair", clair.URL, "--cache-max-size", "1GB")
	defer stop()

	if code, _ := get(t, base+"/healthz", ""); code != 200 {
		t.Errorf("/healthz: %d", code)
	}
	code, body := get(t, base+"/readyz", "")
	var ready sidecar.Readiness
	json.Unmarshal([]byte(body), &ready)
	if code != 503 || ready.Ready || len(ready.Checks) != 4 || ready.Checks[1].Name != "store" || !ready.Checks[1].OK ||
		ready.Checks[2].Name != "docker" || ready.Checks[3].Name != "clair" ||
		!strings.Contains(ready.Checks[2].Detail, "no-docker.sock") || !ready.Checks[3].OK {
		t.Errorf("/readyz without a docker daemon: %d %s", code, body)
	}
	if code, body := get(t, base+"/metrics", ""); code != 200 || !strings.Contains(body, "layerbridge_cache_max_size_bytes 1e+09") {
		t.Errorf("/metrics: %d, want the cache limit in it:\n%.300s", code, body)
	}
	if code, _ := get(t, base+"/v2/", ""); code != 200 {
		t.Errorf("registry view from loopback without a token: %d", code)
	}

	c := sidecar.NewClient(mustParse(t, base), "")
	st, err := c.Submit(t.Context(), sidecar.Request{Image: "alpine:3.11"})
	if err != nil {
		t.Fatal(err)
	}
	st, err = c.Wait(testwait.Context(t), st.ID, nil)
	if st.State != sidecar.StateFailed || !strings.Contains(st.Error, "no-docker.sock") {
		t.Errorf("scan without a docker daemon: %s %q (%v), want failed naming the socket", st.State, st.Error, err)
	}
	if code := stop(); code != 0 {
		t.Errorf("serve exited %d on the shutdown signal, want 0", code)
	}
}

// hangingDaemon is a Docker daemon that runs no container, answers pings
// and holds every other request (an image's inspect or export) until its
// client goes away, announcing it on held.
type hangingDaemon struct{ held chan string }

func (d hangingDaemon) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case strings.HasSuffix(r.URL.Path, "/_ping"):
		w.Header().Set("Api-Version", "1.47")
		w.Header().Set("Ostype", "linux")
		io.WriteString(w, "OK")
		return
	case strings.HasSuffix(r.URL.Path, "/containers/json"):
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, "[]")
		return
	}
	select {
	case d.held <- r.Method + " " + r.URL.Path:
	default:
	}
	<-r.Context().Done()
}

// serve stops on the shutdown signal with exit status 0 when every running
// scan finished within --shutdown-grace (TestServeCommand); when it had to
// cancel one, work was lost and the status says so: 130 (143 for SIGTERM).
func TestServeExitStatusWhenScansAreCancelled(t *testing.T) {
	clair := httptest.NewServer(&fakeclair.V4{Samples: samples})
	t.Cleanup(clair.Close)
	daemon := hangingDaemon{held: make(chan string, 10)}
	docker := httptest.NewServer(daemon)
	t.Cleanup(docker.Close)
	base, stop := startServe(t, "--clair", clair.URL, "--docker-host", "tcp://"+docker.Listener.Addr().String(), "--shutdown-grace", "0s")

	c := sidecar.NewClient(mustParse(t, base), "")
	if _, err := c.Submit(t.Context(), sidecar.Request{Image: "alpine:3.11"}); err != nil {
		t.Fatal(err)
	}
	held := testwait.Recv(t, daemon.held, "the scan to ask the daemon for its image")
	if code := stop(); code != exitInterrupted {
		t.Errorf("serve exited %d after cancelling a running scan (held at %s), want %d", code, held, exitInterrupted)
	}
}

// In a container, loopback is the container's own: a --clair on loopback
// where nothing answers is then almost always a mistake, and serve says so
// at start-up. Where Clair does answer on that loopback (it shares the
// container's network, or runs in the same container), and on a host,
// nothing is said.
func TestServeWarnsAboutLoopbackClairInAContainer(t *testing.T) {
	clair := httptest.NewServer(&fakeclair.V4{Samples: samples})
	defer clair.Close()
	down := httptest.NewServer(nil)
	downURL := down.URL
	down.Close()
	for _, tc := range []struct {
		name        string
		inContainer bool
		clair       string
		wantWarning bool
	}{
		{"in a container, clair answers on its loopback", true, clair.URL, false},
		{"in a container, nothing answers on its loopback", true, downURL, true},
		{"in a container, localhost where nothing answers", true, strings.Replace(downURL, "127.0.0.1", "localhost", 1), true},
		{"on the host, clair answers", false, clair.URL, false},
		{"on the host, nothing answers", false, downURL, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, early, stop := startServeIn(t, tc.inContainer, "--clair", tc.clair)
			defer stop()
			warned := slices.ContainsFunc(early, func(l string) bool {
				return strings.Contains(l, "WARN") && strings.Contains(l, "nothing answers there") && strings.Contains(l, "--clair http://clair:6060")
			})
			if warned != tc.wantWarning {
				t.Errorf("warned about a loopback --clair: %v, want %v; log before listening:\n%s", warned, tc.wantWarning, strings.Join(early, "\n"))
			}
		})
	}
}

// scan gives the same advice, as a hint of the error, when the loopback
// Clair it was given does not answer from inside a container, and says
// nothing when it answers.
func TestScanLoopbackClairInAContainer(t *testing.T) {
	clair := httptest.NewServer(&fakeclair.V4{Samples: samples})
	defer clair.Close()
	down := httptest.NewServer(nil)
	downURL := down.URL
	down.Close()
	cache := filepath.Join(t.TempDir(), "cache")
	for _, tc := range []struct {
		name        string
		inContainer bool
		clair       string
		wantCode    int
		wantHint    bool
	}{
		{"in a container, clair answers on its loopback", true, clair.URL, 0, false},
		{"in a container, nothing answers on its loopback", true, downURL, 1, true},
		{"on the host, nothing answers", false, downURL, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := testEnv(t, nil)
			e.inContainer = func() bool { return tc.inContainer }
			code, _, stderr := runCLI(t, e, "scan", "--cache-dir", cache, "--clair", tc.clair, alpineArchive)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d\n%s", code, tc.wantCode, stderr)
			}
			if tc.wantCode == 0 && strings.Contains(stderr, "WARN") {
				t.Errorf("a warning although clair answered:\n%s", stderr)
			}
			hinted := strings.Contains(stderr, "layerbridge: hint: layerbridge runs in a container, whose loopback is its own")
			if hinted != tc.wantHint {
				t.Errorf("container hint: %v, want %v\n%s", hinted, tc.wantHint, stderr)
			}
		})
	}
}

func TestServeWithToken(t *testing.T) {
	clair := httptest.NewServer(&fakeclair.V4{Samples: samples})
	defer clair.Close()
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("serve-test-token-0123456789\n"), 0o600)
	base, stop := startServe(t, "--clair", clair.URL, "--token-file", tokenFile)
	defer stop()
	for auth, want := range map[string]int{"": 401, "Bearer wrong-token-0123456789": 401, "Bearer serve-test-token-0123456789": 404} {
		if code, body := get(t, base+"/api/v1/scans/NOSUCHSCAN", auth); code != want {
			t.Errorf("GET with %q: %d %s, want %d", auth, code, body, want)
		}
	}
	if code := stop(); code != 0 {
		t.Errorf("exit %d", code)
	}

	bad := filepath.Join(t.TempDir(), "short")
	os.WriteFile(bad, []byte("short\n"), 0o600)
	code, _, stderr := runCLI(t, testEnv(t, nil), "serve", "--clair", clair.URL, "--token-file", bad)
	if code != exitError || !strings.Contains(stderr, "token has 5 characters") || !strings.Contains(stderr, "hint: create one with: openssl rand -hex 32") {
		t.Errorf("short token: exit %d\n%s", code, stderr)
	}
}

func mustParse(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// fixtureDaemon stands in for the sidecar's Docker daemon: it loads the
// images it knows from fixture archives.
type fixtureDaemon struct {
	loader *dockersave.Loader
	images map[string]string
}

func (d fixtureDaemon) Load(ctx context.Context, ref string, p *ocispec.Platform, opts ...dockersave.LoadOption) (dockersave.Image, func(), error) {
	archive, ok := d.images[ref]
	if !ok {
		return dockersave.Image{}, nil, &engine.NotFoundError{Ref: ref}
	}
	return d.loader.Load(ctx, archive, p, opts...)
}

// newSidecar starts a sidecar (the sidecar package, as serve wires it) on
// a loopback httptest server, with alpine:3.11 in its "daemon".
func newSidecar(t *testing.T, clairURL, token string) string {
	t.Helper()
	cache, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cache.Close() })
	ts := httptest.NewUnstartedServer(nil)
	cfg := sidecar.Config{
		Loader:  fixtureDaemon{dockersave.NewLoader(cache), map[string]string{"alpine:3.11": alpineArchive}},
		Catalog: sidecar.NewCatalog(cache),
		Base:    mustParse(t, "http://"+ts.Listener.Addr().String()),
		Clair:   scan.NewClair(mustParse(t, clairURL), scan.APIAuto, scan.ClairOptions{}),
	}
	if token != "" {
		if cfg.Token, err = bridge.NewToken(token); err != nil {
			t.Fatal(err)
		}
	}
	svc, err := sidecar.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts.Config.Handler = svc.Handler()
	ts.Start()
	t.Cleanup(func() {
		svc.Shutdown(t.Context())
		ts.Close()
	})
	return ts.URL
}

// scan --server applies --format, --ignore, --fail-on and -o to the
// sidecar's report exactly as a local scan does to its own.
func TestScanServer(t *testing.T) {
	clair := httptest.NewServer(&fakeclair.V4{Samples: samples})
	defer clair.Close()
	server := newSidecar(t, clair.URL, "")
	dir := t.TempDir()
	ignoreFile := filepath.Join(dir, "ignore.yaml")
	os.WriteFile(ignoreFile, []byte("ignore:\n  - id: CVE-2021-30139\n    reason: apk is not used at runtime\n"), 0o644)

	// The same image scanned here (from the archive) and by the sidecar
	// (from its "daemon") gives the same report but for the reference.
	// (sarif derives its rule and artifact names from the reference, so it
	// is checked apart.)
	for _, format := range []string{"json", "table", "junit", "clair"} {
		t.Run(format, func(t *testing.T) {
			common := []string{"-f", format, "--ignore", ignoreFile, "--fail-on", "High"}
			code, local, stderr := runCLI(t, testEnv(t, nil), append([]string{"scan", "--cache-dir", filepath.Join(dir, "cache"), "--clair", clair.URL}, append(common, alpineArchive)...)...)
			if code != 0 {
				t.Fatalf("local scan: exit %d\n%s", code, stderr)
			}
			code, remote, stderr := runCLI(t, testEnv(t, nil), append([]string{"scan", "--server", server}, append(common, "alpine:3.11")...)...)
			if code != 0 {
				t.Fatalf("scan --server: exit %d\n%s", code, stderr)
			}
			local = strings.ReplaceAll(local, alpineArchive, "alpine:3.11")
			if format == "table" {
				// The table pads the reference.
				local = regexp.MustCompile(`(?m)^(Image: +)alpine:3.11 +`).ReplaceAllString(local, "${1}alpine:3.11")
				remote = regexp.MustCompile(`(?m)^(Image: +)alpine:3.11 +`).ReplaceAllString(remote, "${1}alpine:3.11")
			}
			if diff := firstDiff(local, remote); diff != "" {
				t.Errorf("scan --server -f %s differs from the local scan: %s", format, diff)
			}
			if format == "json" && !strings.Contains(remote, `"reason": "apk is not used at runtime"`) {
				t.Errorf("--ignore not applied:\n%s", remote)
			}
		})
	}

	// cyclonedx: the sidecar's report carries the packages, so the BOM lists
	// the same components and vulnerabilities, VEX included, as a local
	// scan's (the image, timestamp and serial number differ).
	var boms [2]struct {
		Components      []any
		Vulnerabilities []struct {
			ID       string
			Analysis *struct{ State, Detail string }
		}
	}
	for i, args := range [][]string{
		{"scan", "--cache-dir", filepath.Join(dir, "cache"), "--clair", clair.URL, "-f", "cyclonedx", "--ignore", ignoreFile, alpineArchive},
		{"scan", "--server", server, "-f", "cyclonedx", "--ignore", ignoreFile, "alpine:3.11"},
	} {
		code, stdout, stderr := runCLI(t, testEnv(t, nil), args...)
		if err := json.Unmarshal([]byte(stdout), &boms[i]); err != nil || code != 0 {
			t.Fatalf("%s -f cyclonedx: exit %d, %v\n%s", args[1], code, err, stderr)
		}
	}
	if len(boms[1].Components) != 15 || !reflect.DeepEqual(boms[0], boms[1]) {
		t.Errorf("scan --server -f cyclonedx: %d components, %d vulnerabilities; local scan: %d, %d; want the same 15 components",
			len(boms[1].Components), len(boms[1].Vulnerabilities), len(boms[0].Components), len(boms[0].Vulnerabilities))
	}
	vex := 0
	for _, v := range boms[1].Vulnerabilities {
		if v.Analysis != nil {
			vex++
			if v.ID != "CVE-2021-30139" || v.Analysis.State != "not_affected" || v.Analysis.Detail != "apk is not used at runtime" {
				t.Errorf("VEX entry %s %+v, want CVE-2021-30139 not_affected for the ignore file's reason", v.ID, *v.Analysis)
			}
		}
	}
	if vex != 1 {
		t.Errorf("%d VEX entries, want the 1 --ignore makes", vex)
	}

	code, stdout, stderr := runCLI(t, testEnv(t, nil), "scan", "--server", server, "-f", "sarif", "--ignore", ignoreFile, "alpine:3.11")
	var sarif struct {
		Version string
		Runs    []struct {
			Results []struct {
				RuleID       string
				Suppressions []struct{ Justification string }
			}
		}
	}
	if err := json.Unmarshal([]byte(stdout), &sarif); err != nil || code != 0 || sarif.Version != "2.1.0" || len(sarif.Runs) != 1 || len(sarif.Runs[0].Results) != 17 {
		t.Fatalf("-f sarif: exit %d, %v: %.300s\n%s", code, err, stdout, stderr)
	}
	for _, r := range sarif.Runs[0].Results {
		if (r.RuleID == "CVE-2021-30139") != (len(r.Suppressions) == 1) {
			t.Errorf("sarif result %s: suppressions %+v; want only the ignored CVE-2021-30139 suppressed", r.RuleID, r.Suppressions)
		}
	}

	code, _, stderr = runCLI(t, testEnv(t, nil), "scan", "--server", server, "--fail-on", "unknown", "alpine:3.11")
	if code != exitFindings || !strings.Contains(stderr, "17 finding(s) at or above Unknown") {
		t.Errorf("--fail-on unknown: exit %d\n%s", code, stderr)
	}
	out := filepath.Join(dir, "report.html")
	if code, stdout, stderr := runCLI(t, testEnv(t, nil), "scan", "--server", server, "-f", "html", "-o", out, "alpine:3.11"); code != 0 || stdout != "" {
		t.Errorf("-o: exit %d, stdout %q\n%s", code, stdout, stderr)
	}
	if b, err := os.ReadFile(out); err != nil || !strings.Contains(string(b), "<html") {
		t.Errorf("-o %s: %v", out, err)
	}
	code, _, stderr = runCLI(t, testEnv(t, nil), "scan", "--server", server, "nosuch:image")
	if code != exitError || !strings.Contains(stderr, "no such image: nosuch:image") || !strings.Contains(stderr, "hint: the sidecar scans images of its own Docker daemon") {
		t.Errorf("unknown image: exit %d\n%s", code, stderr)
	}
}

func TestScanServerToken(t *testing.T) {
	clair := httptest.NewServer(&fakeclair.V4{Samples: samples})
	defer clair.Close()
	const token = "scan-server-token-0123456789"
	server := newSidecar(t, clair.URL, token)
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte(token+"\n"), 0o600)

	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		wantCode int
		want     string
	}{
		{"no token", nil, nil, exitError, "hint: pass the sidecar's token: --token-file FILE, or LAYERBRIDGE_TOKEN"},
		{"token file", nil, []string{"--token-file", tokenFile}, 0, "CVE-2021-3450"},
		{"LAYERBRIDGE_TOKEN", map[string]string{"LAYERBRIDGE_TOKEN": token}, nil, 0, "CVE-2021-3450"},
		{"wrong token", map[string]string{"LAYERBRIDGE_TOKEN": "not-the-right-token-at-all"}, nil, exitError, "401 UNAUTHORIZED"},
		{"malformed token", map[string]string{"LAYERBRIDGE_TOKEN": "short"}, nil, exitUsage, "the token of LAYERBRIDGE_TOKEN: token has 5 characters"},
		{"missing token file", nil, []string{"--token-file", tokenFile + ".nope"}, exitUsage, "--token-file: open"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append(append([]string{"scan", "--server", server}, tt.args...), "alpine:3.11")
			code, stdout, stderr := runCLI(t, testEnv(t, tt.env), args...)
			if code != tt.wantCode || !strings.Contains(stdout+stderr, tt.want) {
				t.Errorf("exit %d, want %d with %q\nstdout:\n%.300s\nstderr:\n%s", code, tt.wantCode, tt.want, stdout, stderr)
			}
		})
	}

	// A sidecar that is not there.
	down := httptest.NewServer(nil)
	down.Close()
	code, _, stderr := runCLI(t, testEnv(t, nil), "scan", "--server", down.URL, "alpine:3.11")
	if code != exitError || !strings.Contains(stderr, "cannot reach the layerbridge sidecar at "+down.URL) || !strings.Contains(stderr, "hint: is layerbridge serve running at") {
		t.Errorf("sidecar down: exit %d\n%s", code, stderr)
	}
}

// firstDiff describes the first line where a and b differ, "" when equal.
func firstDiff(a, b string) string {
	if a == b {
		return ""
	}
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range max(len(la), len(lb)) {
		var x, y string
		if i < len(la) {
			x = la[i]
		}
		if i < len(lb) {
			y = lb[i]
		}
		if x != y {
			return fmt.Sprintf("line %d:\n  local:  %q\n  server: %q", i+1, x, y)
		}
	}
	return "same lines, different bytes"
}
