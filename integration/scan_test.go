package integration_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/layerbridge/layerbridge/integration/harness"
)

// The end-to-end tests run the built layerbridge binary as a user would,
// against the real Docker daemon and real Clair 4.9 (or the Clair v2
// stand-in), and compare its findings with what Clair reports for the same
// layers served by a plain file server (alpine311V4, alpine311V2: the
// reference tests in harness_test.go check those tables against Clair).

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// layerbridgeBin returns the binary under test: $LAYERBRIDGE_BIN (make test
// sets it to bin/layerbridge), else one built from this checkout.
func layerbridgeBin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("LAYERBRIDGE_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("LAYERBRIDGE_BIN: %v", err)
		}
		return p
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "layerbridge-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "layerbridge")
		cmd := exec.Command("go", "build", "-o", builtBin, "./cmd/layerbridge")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/layerbridge: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// jsonReport is layerbridge's json report, the fields the tests read.
type jsonReport struct {
	Image struct {
		Ref            string `json:"ref"`
		ID             string `json:"id"`
		Platform       string `json:"platform"`
		ManifestDigest string `json:"manifest_digest"`
	} `json:"image"`
	Clair struct {
		URL string `json:"url"`
		API string `json:"api"`
	} `json:"clair"`
	Vulnerabilities []struct {
		Name    string `json:"name"`
		Package string `json:"package"`
		Version string `json:"version"`
		Layer   string `json:"layer"`
	} `json:"vulnerabilities"`
	Warnings []string `json:"warnings"`
}

func (r jsonReport) findings() []harness.Finding {
	var out []harness.Finding
	for _, v := range r.Vulnerabilities {
		out = append(out, harness.Finding{Package: v.Package, Version: v.Version, Vulnerability: v.Name})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Package != b.Package {
			return a.Package < b.Package
		}
		if a.Version != b.Version {
			return a.Version < b.Version
		}
		return a.Vulnerability < b.Vulnerability
	})
	return out
}

type run struct {
	code           int
	stdout, stderr string
}

// layerbridge runs the binary with args and a clean environment (plus env)
// and waits for it.
func layerbridge(t *testing.T, ctx context.Context, env []string, args ...string) run {
	t.Helper()
	cmd := exec.CommandContext(ctx, layerbridgeBin(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := run{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("run layerbridge %v: %v", args, err)
	}
	t.Logf("layerbridge %s: exit %d\n%s", strings.Join(args, " "), r.code, r.stderr)
	return r
}

func decodeReport(t *testing.T, r run) jsonReport {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d, want 0; stderr:\n%s", r.code, r.stderr)
	}
	var rep jsonReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("json report: %v\n%s", err, r.stdout)
	}
	return rep
}

// TestScanFixtureWithRealClair is the product's main job: the alpine 3.11
// image, loaded into the real Docker daemon (or read from an archive or a
// layout), scanned by layerbridge through real Clair 4.9 and through the
// Clair v2 stand-in, gives exactly the pairs Clair gives for the layer
// served by a plain file server.
func TestScanFixtureWithRealClair(t *testing.T) {
	t.Parallel()
	stack := harness.StartT(t, harness.Options{FeedDir: recordedFeed})
	docker := harness.DockerT(t)
	ref := loadFixture(t, docker, "alpine-3.11-docker-save.tar.gz")
	if ref != "alpine:3.11" {
		t.Fatalf("loaded %q, want alpine:3.11", ref)
	}
	fixture, err := filepath.Abs(alpineFixture)
	if err != nil {
		t.Fatal(err)
	}
	daemonCache := t.TempDir()

	t.Run("daemon image, clair v4", func(t *testing.T) {
		ctx := withTimeout(t, 3*time.Minute)
		r := layerbridge(t, ctx, nil, "scan", "--clair", stack.Clair.URL, "--cache-dir", daemonCache,
			"--log-level", "debug", "-f", "json", ref)
		rep := decodeReport(t, r)
		checkFindings(t, "layerbridge via clair v4.9", rep.findings(), alpine311V4, 17, 9)
		if rep.Clair.API != "v4" || rep.Image.ID != "sha256:a187dde48cd289ac374ad8539930628314bc581a481cdb41409c9289419ddb72" || rep.Image.Platform != "linux/amd64" {
			t.Errorf("report header: %+v %+v", rep.Image, rep.Clair)
		}
		for _, v := range rep.Vulnerabilities {
			if v.Layer != alpineLayerSum {
				t.Errorf("%s in %s introduced by layer %q, want %s", v.Name, v.Package, v.Layer, alpineLayerSum)
			}
		}
		// Clair really downloaded the layer from the bridge, and the debug
		// log says from where and why.
		for _, want := range []string{`msg="layer fetched"`, "digest=" + alpineLayerSum, "status=200", "bytes=5861888",
			`msg="advertised address"`, "why=", `msg="docker daemon"`, "chosen_by="} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("debug log lacks %q", want)
			}
		}
		if len(rep.Warnings) != 0 {
			t.Errorf("warnings: %q", rep.Warnings)
		}
	})

	// The CycloneDX BOM of the same scan lists every package Clair 4.9
	// indexed, each vulnerability, and the ignored one as VEX.
	t.Run("cyclonedx, clair v4", func(t *testing.T) {
		ignore := filepath.Join(t.TempDir(), "ignore.yaml")
		os.WriteFile(ignore, []byte("ignore:\n  - id: CVE-2021-30139\n    reason: apk is not run in production\n    vex-justification: code_not_reachable\n"), 0o644)
		out := filepath.Join(t.TempDir(), "bom.json")
		r := layerbridge(t, withTimeout(t, 3*time.Minute), nil, "scan", "--clair", stack.Clair.URL, "--cache-dir", daemonCache,
			"-f", "cyclonedx", "--ignore", ignore, "-o", out, ref)
		if r.code != 0 {
			t.Fatalf("exit %d\n%s", r.code, r.stderr)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		var bom struct {
			SpecVersion string
			Components  []struct {
				Type, Name, Purl string
				Properties       []struct{ Name, Value string }
			}
			Vulnerabilities []struct {
				ID       string
				Affects  []struct{ Ref string }
				Analysis *struct{ State, Justification string }
			}
		}
		if err := json.Unmarshal(b, &bom); err != nil || bom.SpecVersion != "1.6" {
			t.Fatalf("not a CycloneDX 1.6 BOM (%v):\n%.400s", err, b)
		}
		libraries := 0
		for _, c := range bom.Components {
			if c.Type != "library" {
				continue
			}
			libraries++
			if !strings.HasPrefix(c.Purl, "pkg:apk/alpine/"+c.Name+"@") || !strings.HasSuffix(c.Purl, "?arch=x86_64&distro=alpine-3.11") {
				t.Errorf("%s: purl %q", c.Name, c.Purl)
			}
			if !slices.Contains(c.Properties, struct{ Name, Value string }{"layerbridge:layer:digest", alpineLayerSum}) {
				t.Errorf("%s does not name its layer: %+v", c.Name, c.Properties)
			}
		}
		pairs, vex := 0, 0
		for _, v := range bom.Vulnerabilities {
			pairs += len(v.Affects)
			if v.Analysis != nil {
				vex++
				if v.ID != "CVE-2021-30139" || v.Analysis.State != "not_affected" || v.Analysis.Justification != "code_not_reachable" {
					t.Errorf("VEX entry %s %+v", v.ID, *v.Analysis)
				}
			}
		}
		// 14 packages; 17 pairs over 9 vulnerabilities, CVE-2021-30139
		// (apk-tools only) moved to its VEX entry.
		if libraries != 14 || len(bom.Vulnerabilities) != 9 || pairs != 17 || vex != 1 {
			t.Errorf("%d packages, %d vulnerabilities, %d pairs, %d VEX; want 14, 9, 17, 1", libraries, len(bom.Vulnerabilities), pairs, vex)
		}
	})

	// Issue 18: with an empty cache (a fresh CI runner), an image Clair has
	// indexed is not exported again: its report is read at once.
	t.Run("re-scan with an empty cache, clair v4", func(t *testing.T) {
		cache := t.TempDir()
		r := layerbridge(t, withTimeout(t, 3*time.Minute), nil, "scan", "--clair", stack.Clair.URL, "--cache-dir", cache,
			"--log-level", "debug", "-f", "json", ref)
		rep := decodeReport(t, r)
		checkFindings(t, "re-scan via clair v4.9", rep.findings(), alpine311V4, 17, 9)
		for _, want := range []string{`msg="clair has indexed this image already: not exported"`, "manifest=" + alpineConfig} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("debug log lacks %q", want)
			}
		}
		for _, unwanted := range []string{`msg="layer fetched"`, `msg=exported`} {
			if strings.Contains(r.stderr, unwanted) {
				t.Errorf("debug log has %q: the image was exported or served again", unwanted)
			}
		}
		if rep.Image.ManifestDigest != alpineConfig {
			t.Errorf("manifest digest %s, want %s (the first scan's)", rep.Image.ManifestDigest, alpineConfig)
		}
		checkNoBlobs(t, cache)
	})

	t.Run("second scan is a cache hit", func(t *testing.T) {
		r := layerbridge(t, withTimeout(t, time.Minute), nil, "inspect", "--cache-dir", daemonCache, "--log-level", "debug", ref)
		if r.code != 0 || !strings.Contains(r.stdout, "cache hit, not exported again") {
			t.Fatalf("exit %d, stdout:\n%s", r.code, r.stdout)
		}
	})

	// The other sources give the same layer and so the same findings.
	layoutDir := t.TempDir()
	sources := []struct{ name, ref string }{
		{"docker-archive", "docker-archive:" + fixture},
		{"oci layout", "oci:" + layoutDir},
		{"oci-archive", "oci-archive:" + filepath.Join(t.TempDir(), "alpine-oci.tar")},
	}
	// The cache directory of a scan is itself an OCI image layout: copy it
	// (one image) to make the oci: and oci-archive: inputs.
	copyLayout(t, daemonCache, layoutDir)
	tarDir(t, layoutDir, strings.TrimPrefix(sources[2].ref, "oci-archive:"))
	for _, src := range sources {
		t.Run(src.name, func(t *testing.T) {
			ctx := withTimeout(t, 3*time.Minute)
			rep := decodeReport(t, layerbridge(t, ctx, nil, "scan", "--clair", stack.Clair.URL, "--cache-dir", t.TempDir(), "-f", "json", src.ref))
			checkFindings(t, "layerbridge via clair v4.9 from "+src.name, rep.findings(), alpine311V4, 17, 9)
		})
	}

	t.Run("clair v2", func(t *testing.T) {
		standin := harness.StartStandinT(t, recordedFeed)
		for _, api := range []string{"v2", "auto"} {
			ctx := withTimeout(t, 2*time.Minute)
			rep := decodeReport(t, layerbridge(t, ctx, nil, "scan", "--clair", standin.URL, "--clair-api", api, "--cache-dir", daemonCache, "-f", "json", ref))
			checkFindings(t, "layerbridge via the clair v2 stand-in (--clair-api "+api+")", rep.findings(), alpine311V2, 3, 3)
			if rep.Clair.API != "v2" {
				t.Errorf("api = %q", rep.Clair.API)
			}
		}
		// Clair 2 knows the top layer now: an empty cache exports nothing.
		cache := t.TempDir()
		rep := decodeReport(t, layerbridge(t, withTimeout(t, 2*time.Minute), nil, "scan", "--clair", standin.URL, "--clair-api", "v2", "--cache-dir", cache, "-f", "json", ref))
		checkFindings(t, "re-scan via the clair v2 stand-in", rep.findings(), alpine311V2, 3, 3)
		checkNoBlobs(t, cache)
	})

	t.Run("wrong api", func(t *testing.T) {
		r := layerbridge(t, withTimeout(t, time.Minute), nil, "scan", "--clair", stack.Clair.URL, "--clair-api", "v2", "--cache-dir", daemonCache, ref)
		if r.code != 1 || !strings.Contains(r.stderr, "speaks the v4 API") || !strings.Contains(r.stderr, "hint: use --clair-api v4") {
			t.Errorf("exit %d; want 1 naming the mismatch", r.code)
		}
	})

	t.Run("table and fail-on", func(t *testing.T) {
		r := layerbridge(t, withTimeout(t, time.Minute), nil, "scan", "--clair", stack.Clair.URL, "--cache-dir", daemonCache, "--fail-on", "Unknown", ref)
		if r.code != 3 || !strings.Contains(r.stdout, "CVE-2021-3450") || !strings.Contains(r.stderr, "17 finding(s) at or above Unknown") {
			t.Errorf("exit %d, want 3 with the table on stdout", r.code)
		}
	})

	t.Run("missing image", func(t *testing.T) {
		r := layerbridge(t, withTimeout(t, time.Minute), nil, "scan", "--clair", stack.Clair.URL, "--cache-dir", daemonCache, "layerbridge-no-such-image:never")
		if r.code != 1 || !strings.Contains(r.stderr, "no such image: layerbridge-no-such-image:never") {
			t.Errorf("exit %d; want 1 naming the image", r.code)
		}
	})

	t.Run("clair cannot reach the advertised address", func(t *testing.T) {
		// A fresh image (new manifest and layer) so that Clair must fetch.
		fresh := buildTinyImage(t, docker)
		r := layerbridge(t, withTimeout(t, 2*time.Minute), nil, "scan", "--clair", stack.Clair.URL, "--cache-dir", daemonCache,
			"--listen", "127.0.0.1:0", "--advertise", "http://127.0.0.1:1", fresh)
		for _, want := range []string{
			"clair could not download the layers from http://127.0.0.1:1 (no request from clair reached layerbridge)",
			"failed to fetch layers", // Clair's own message
			"hint: Clair never reached layerbridge at http://127.0.0.1:1",
		} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("stderr lacks %q", want)
			}
		}
		if r.code != 1 {
			t.Errorf("exit %d, want 1", r.code)
		}
	})

	t.Run("stayed on the machine", func(t *testing.T) {
		if ext := stack.Clair.ExternalRequests(); len(ext) > 0 {
			t.Errorf("clair tried to reach public hosts: %v", ext)
		}
	})
}

// checkNoBlobs fails t if the image cache in dir holds any blob.
func checkNoBlobs(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("the cache holds %d blobs: the image was exported", len(entries))
	}
}

// TestScanWithPSK scans through a Clair that requires pre-shared-key JWTs.
func TestScanWithPSK(t *testing.T) {
	t.Parallel()
	psk := harness.TestPSK
	stack := harness.StartT(t, harness.Options{FeedDir: recordedFeed, PSK: &psk})
	fixture, err := filepath.Abs(alpineFixture)
	if err != nil {
		t.Fatal(err)
	}
	ref := "docker-archive:" + fixture
	cache := t.TempDir()

	r := layerbridge(t, withTimeout(t, 3*time.Minute), []string{"LAYERBRIDGE_CLAIR_PSK=" + psk.Key},
		"scan", "--clair", stack.Clair.URL, "--clair-psk-issuer", psk.Issuer, "--cache-dir", cache, "-f", "json", ref)
	checkFindings(t, "layerbridge via clair v4.9 with psk", decodeReport(t, r).findings(), alpine311V4, 17, 9)

	r = layerbridge(t, withTimeout(t, time.Minute), nil, "scan", "--clair", stack.Clair.URL, "--cache-dir", cache, ref)
	if r.code != 1 || !strings.Contains(r.stderr, "requires authentication (401)") || !strings.Contains(r.stderr, "hint: Clair has auth.psk configured") {
		t.Errorf("without a key: exit %d", r.code)
	}
	r = layerbridge(t, withTimeout(t, time.Minute), nil, "scan", "--clair", stack.Clair.URL, "--cache-dir", cache,
		"--clair-psk", "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk=", "--clair-psk-issuer", psk.Issuer, ref)
	if r.code != 1 || !strings.Contains(r.stderr, "rejected the pre-shared-key token") {
		t.Errorf("with a wrong key: exit %d", r.code)
	}
}

// TestScanInterruptedDuringIndex sends SIGINT while Clair is indexing: the
// layer server stops, the exit code is 130, and the cache stays usable.
func TestScanInterruptedDuringIndex(t *testing.T) {
	t.Parallel()
	posted := make(chan struct{}, 1)
	clair := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/indexer/api/v1/index_state":
			io.WriteString(w, `{"state":"x"}`)
		case "/matcher/api/v1/internal/update_operation":
			io.WriteString(w, `{"alpine":[{"ref":"0b8a6a5e-2c6b-4d1f-8a1e-3d8b1a0c9e11","updater":"alpine","date":"2026-11-24T10:00:00Z"}]}`)
		case "/indexer/api/v1/index_report":
			posted <- struct{}{}
			<-r.Context().Done() // Clair indexing "forever"
		default:
			http.NotFound(w, r)
		}
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go clair.Serve(ln)
	t.Cleanup(func() { clair.Close() })

	fixture, _ := filepath.Abs(alpineFixture)
	cache := t.TempDir()
	ctx := withTimeout(t, 2*time.Minute)
	stderr := interruptWhen(t, ctx, posted, "the scan never reached clair",
		"scan", "--clair", "http://"+ln.Addr().String(), "--cache-dir", cache, "docker-archive:"+fixture)
	if !strings.Contains(stderr, "layerbridge: interrupted") {
		t.Errorf("stderr lacks the interruption:\n%s", stderr)
	}
	// The store is consistent: the image is there and inspect reads it
	// without exporting again.
	r := layerbridge(t, withTimeout(t, time.Minute), nil, "inspect", "--cache-dir", cache, "docker-archive:"+fixture)
	if r.code != 0 || !strings.Contains(r.stdout, alpineLayerSum) {
		t.Errorf("inspect after the interrupted scan: exit %d", r.code)
	}
	assertNoStaging(t, cache)
}

// interruptWhen runs layerbridge with args, sends it SIGINT once reached
// fires (failing with never if ctx ends first), checks that it exits with
// code 130 and returns its stderr.
func interruptWhen(t *testing.T, ctx context.Context, reached <-chan struct{}, never string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, layerbridgeBin(t), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reached:
	case <-ctx.Done():
		t.Fatal(never)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("exit: %v, want code 130; stderr:\n%s", err, stderr.String())
	}
	return stderr.String()
}

func assertNoStaging(t *testing.T, cache string) {
	t.Helper()
	filepath.WalkDir(filepath.Join(cache, "tmp"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			t.Errorf("staging file left behind: %s", p)
		}
		return nil
	})
}

// buildTinyImage builds a one-layer FROM-scratch image whose content is new
// to Clair (a random file), so that Clair must download it. The image is
// removed when the test ends.
func buildTinyImage(t *testing.T, docker harness.DockerAPI) string {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY nonce /nonce\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "nonce"), []byte(fmt.Sprintf("%s %d\n", t.Name(), time.Now().UnixNano())), 0o644)
	return harness.BuildImageT(t, docker, dir, "layerbridge-test-tiny")
}

func copyLayout(t *testing.T, from, to string) {
	t.Helper()
	for _, name := range []string{"oci-layout", "index.json"} {
		b, err := os.ReadFile(filepath.Join(from, name))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(to, name), b, 0o644)
	}
	os.MkdirAll(filepath.Join(to, "blobs", "sha256"), 0o755)
	entries, err := os.ReadDir(filepath.Join(from, "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(from, "blobs", "sha256", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(to, "blobs", "sha256", e.Name()), b, 0o644)
	}
}

func tarDir(t *testing.T, dir, out string) {
	t.Helper()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if d.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestScanInterruptedDuringExport sends SIGINT while the daemon's export is
// streaming (a fake Engine API that stops mid-layer): exit 130, no blob
// becomes visible in the cache and no staging file is left; the next scan
// of a real image into the same cache works.
func TestScanInterruptedDuringExport(t *testing.T) {
	t.Parallel()
	sock := filepath.Join(t.TempDir(), "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	streaming := make(chan struct{}, 1)
	const id = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	daemon := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.41")
		switch {
		case strings.HasSuffix(r.URL.Path, "/_ping"):
			io.WriteString(w, "OK")
		case strings.HasSuffix(r.URL.Path, "/json") && strings.Contains(r.URL.Path, "/images/"):
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"Id":%q,"RepoTags":["slow:latest"],"Os":"linux","Architecture":"amd64","RootFS":{"Type":"layers","Layers":["sha256:2222222222222222222222222222222222222222222222222222222222222222"]}}`, id)
		case strings.HasSuffix(r.URL.Path, "/images/get"):
			w.Header().Set("Content-Type", "application/x-tar")
			tw := tar.NewWriter(w)
			tw.WriteHeader(&tar.Header{Name: strings.Repeat("a", 64) + "/layer.tar", Mode: 0o644, Size: 64 << 20, Typeflag: tar.TypeReg})
			tw.Write(bytes.Repeat([]byte{'x'}, 1<<20))
			w.(http.Flusher).Flush()
			streaming <- struct{}{}
			<-r.Context().Done() // the daemon stalls mid-layer
		default:
			http.NotFound(w, r)
		}
	})}
	go daemon.Serve(ln)
	t.Cleanup(func() { daemon.Close() })

	cache := t.TempDir()
	ctx := withTimeout(t, 2*time.Minute)
	interruptWhen(t, ctx, streaming, "the export never started",
		"inspect", "--docker-host", "unix://"+sock, "--cache-dir", cache, "slow:latest")
	blobs, _ := os.ReadDir(filepath.Join(cache, "blobs", "sha256"))
	if len(blobs) != 0 {
		t.Errorf("%d blobs visible after an interrupted export, want none", len(blobs))
	}
	assertNoStaging(t, cache)

	fixture, _ := filepath.Abs(alpineFixture)
	if r := layerbridge(t, withTimeout(t, time.Minute), nil, "inspect", "--cache-dir", cache, "docker-archive:"+fixture); r.code != 0 {
		t.Errorf("the next load into the same cache: exit %d", r.code)
	}
}
