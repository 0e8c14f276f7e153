package sidecar_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/layerbridge/layerbridge/bridge"
	"github.com/layerbridge/layerbridge/internal/testwait"
	"github.com/layerbridge/layerbridge/report"
	"github.com/layerbridge/layerbridge/sidecar"
	"github.com/opencontainers/go-digest"
)

func newToken() (bridge.Token, error) { return bridge.NewToken(testToken) }

func TestScanLifecycle(t *testing.T) {
	e := newEnv(t)
	resp, body := e.do(t, "POST", "/api/v1/scans", `{"image": "alpine:3.11"}`)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: %d %s", resp.StatusCode, body)
	}
	var st sidecar.Status
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	if st.ID == "" || st.Image != "alpine:3.11" || st.Platform != "" || st.State.Finished() {
		t.Fatalf("POST answered %+v", st)
	}
	if loc := resp.Header.Get("Location"); loc != "/api/v1/scans/"+st.ID {
		t.Errorf("Location = %q, want /api/v1/scans/%s", loc, st.ID)
	}

	st = e.wait(t, st.ID)
	if st.State != sidecar.StateDone || st.Error != "" {
		t.Fatalf("scan ended %s: %s", st.State, st.Error)
	}
	var states []sidecar.State
	for i, tr := range st.History {
		states = append(states, tr.State)
		if i > 0 && tr.At.Before(st.History[i-1].At) {
			t.Errorf("history goes back in time: %+v", st.History)
		}
	}
	want := []sidecar.State{sidecar.StateQueued, sidecar.StateExporting, sidecar.StateIndexing, sidecar.StateMatching, sidecar.StateDone}
	if !slices.Equal(states, want) {
		t.Errorf("history = %v, want %v", states, want)
	}
	if !st.CreatedAt.Equal(st.History[0].At) || !st.UpdatedAt.Equal(st.History[len(st.History)-1].At) {
		t.Errorf("created %s, updated %s, history %+v", st.CreatedAt, st.UpdatedAt, st.History)
	}
	rep, err := report.Decode(bytes.NewReader(st.Report))
	if err != nil {
		t.Fatalf("embedded report: %v", err)
	}
	if len(rep.Findings) != 17 || rep.Image.Ref != "alpine:3.11" || rep.Clair.API != "v4" {
		t.Errorf("embedded report: %d findings, image %+v, clair %+v", len(rep.Findings), rep.Image, rep.Clair)
	}
	if n := e.clair.fake.Downloads(); n != 1 {
		t.Errorf("clair downloaded %d layers, want 1", n)
	}
}

func TestReportFormats(t *testing.T) {
	e := newEnv(t)
	st := e.wait(t, e.post(t, "alpine:3.11").ID)
	rep, err := report.Decode(bytes.NewReader(st.Report))
	if err != nil {
		t.Fatal(err)
	}
	base := "/api/v1/scans/" + st.ID + "/report"
	tests := []struct {
		query, contentType, contains string
	}{
		{"", "application/json", `"vulnerabilities"`},
		{"?format=json", "application/json", `"CVE-2021-3450"`},
		{"?format=table", "text/plain; charset=utf-8", "CVE-2021-3450"},
		{"?format=html", "text/html; charset=utf-8", "<html"},
		{"?format=sarif", "application/sarif+json", `"version": "2.1.0"`},
		{"?format=junit", "application/xml", "<testsuites"},
		{"?format=clair", "application/json", `"package_vulnerabilities"`},
		{"?format=cyclonedx", "application/vnd.cyclonedx+json; version=1.6", `"purl": "pkg:apk/alpine/musl@1.1.24-r2?arch=x86_64&distro=alpine-3.11"`},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			resp, body := e.do(t, "GET", base+tt.query, "")
			if resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			if got := resp.Header.Get("Content-Type"); got != tt.contentType {
				t.Errorf("Content-Type = %q, want %q", got, tt.contentType)
			}
			if !bytes.Contains(body, []byte(tt.contains)) {
				t.Errorf("body lacks %q:\n%.400s", tt.contains, body)
			}
		})
	}
	// The json format is the embedded report, and the table renders the
	// same report.
	_, body := e.do(t, "GET", base+"?format=json", "")
	var fromReport, fromStatus any
	if err := json.Unmarshal(body, &fromReport); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(st.Report, &fromStatus); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromReport, fromStatus) {
		t.Errorf("?format=json differs from the report embedded in the status:\n%s\n%s", body, st.Report)
	}
	// The status carries the packages, so a client renders the same BOM
	// from it (scan --server does); the BOM is dated when the scan ended.
	if len(rep.Packages) != 14 {
		t.Errorf("the embedded report lists %d packages, want 14", len(rep.Packages))
	}
	_, bom := e.do(t, "GET", base+"?format=cyclonedx", "")
	var local bytes.Buffer
	if err := (report.Options{Time: st.UpdatedAt, ToolVersion: "v0.0.0-test"}).Render(&local, "cyclonedx", rep); err != nil {
		t.Fatal(err)
	}
	if _, again := e.do(t, "GET", base+"?format=cyclonedx", ""); !bytes.Equal(again, bom) {
		t.Errorf("two downloads of the BOM differ")
	}
	if !bytes.Equal(bom, local.Bytes()) {
		t.Errorf("?format=cyclonedx differs from the decoded report rendered as cyclonedx:\n%s\n---\n%s", bom, local.Bytes())
	}
	var table bytes.Buffer
	if err := report.Render(&table, "table", rep); err != nil {
		t.Fatal(err)
	}
	if _, body := e.do(t, "GET", base+"?format=table", ""); !bytes.Equal(body, table.Bytes()) {
		t.Errorf("?format=table differs from the decoded report rendered as a table:\n%s", body)
	}

	resp, body := e.do(t, "GET", base+"?format=xml", "")
	if resp.StatusCode != 400 || !bytes.Contains(body, []byte("FORMAT_UNKNOWN")) {
		t.Errorf("?format=xml: %d %s, want 400 FORMAT_UNKNOWN", resp.StatusCode, body)
	}

	// junit's failures follow fail_on as scan's follow --fail-on: none
	// without it, the findings at or above it with it.
	for query, want := range map[string]string{
		"?format=junit":                 `failures="0"`,
		"?format=junit&fail_on=unknown": `failures="17"`,
		"?format=junit&fail_on=High":    `failures="0"`,
	} {
		if resp, body := e.do(t, "GET", base+query, ""); resp.StatusCode != 200 || !bytes.Contains(body, []byte("<testsuites name=\"layerbridge\" tests=\"17\" "+want)) {
			t.Errorf("%s: %d, want %s:\n%.300s", query, resp.StatusCode, want, body)
		}
	}
	resp, body = e.do(t, "GET", base+"?format=junit&fail_on=severe", "")
	if resp.StatusCode != 400 || !bytes.Contains(body, []byte("FAIL_ON_UNKNOWN")) {
		t.Errorf("?fail_on=severe: %d %s, want 400 FAIL_ON_UNKNOWN", resp.StatusCode, body)
	}
}

func TestUnknownScan(t *testing.T) {
	e := newEnv(t)
	for _, path := range []string{"/api/v1/scans/NOSUCHSCAN", "/api/v1/scans/NOSUCHSCAN/report"} {
		resp, body := e.do(t, "GET", path, "")
		if resp.StatusCode != 404 || !bytes.Contains(body, []byte("SCAN_UNKNOWN")) {
			t.Errorf("GET %s: %d %s, want 404 SCAN_UNKNOWN", path, resp.StatusCode, body)
		}
	}
	var ae *sidecar.APIError
	if _, err := e.client.Status(t.Context(), "NOSUCHSCAN"); !errors.As(err, &ae) || ae.Status != 404 || ae.Code != "SCAN_UNKNOWN" {
		t.Errorf("client: err = %v, want an APIError 404 SCAN_UNKNOWN", err)
	}
}

func TestBadRequests(t *testing.T) {
	e := newEnv(t)
	tests := []struct{ name, body, want string }{
		{"not json", `image=alpine`, "BAD_REQUEST"},
		{"no image", `{"platform": "linux/amd64"}`, `\"image\" is required`},
		{"unknown field", `{"image": "alpine:3.11", "platfrom": "linux/amd64"}`, `unknown field \"platfrom\"`},
		{"two values", `{"image": "alpine:3.11"} {}`, "more than one JSON value"},
		{"archive", `{"image": "docker-archive:/etc/passwd"}`, "scans images of its Docker daemon and of its containerd only"},
		{"layout", `{"image": "oci:/var/lib"}`, "scans images of its Docker daemon and of its containerd only"},
		{"bad platform", `{"image": "alpine:3.11", "platform": "linux"}`, "want os/arch"},
		// Too large: 413, see TestOversizedScanRequest.
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := e.do(t, "POST", "/api/v1/scans", tt.body)
			if resp.StatusCode != 400 || !bytes.Contains(body, []byte(tt.want)) {
				t.Errorf("%d %s, want 400 with %q", resp.StatusCode, body, tt.want)
			}
		})
	}
	if n := e.loader.loads.Load(); n != 0 {
		t.Errorf("%d loads for refused requests", n)
	}
}

func TestFailedScan(t *testing.T) {
	e := newEnv(t)
	st := e.wait(t, e.post(t, "nosuch:image").ID)
	if st.State != sidecar.StateFailed || !strings.Contains(st.Error, "no such image: nosuch:image") || st.Report != nil {
		t.Fatalf("scan = %s %q, want failed with the loader's reason", st.State, st.Error)
	}
	_, err := e.client.Wait(testwait.Context(t), st.ID, nil)
	var fe *sidecar.FailedError
	if !errors.As(err, &fe) || fe.Status.ID != st.ID {
		t.Errorf("Wait: err = %v, want a FailedError", err)
	}
	resp, body := e.do(t, "GET", "/api/v1/scans/"+st.ID+"/report", "")
	if resp.StatusCode != 409 || !bytes.Contains(body, []byte("no such image")) {
		t.Errorf("report of a failed scan: %d %s, want 409 with the reason", resp.StatusCode, body)
	}
}

// N identical requests while the first is queued or running share one
// export and one Clair submission; the same image asked for differently
// (docker.io/library/...) is the same request.
func TestIdenticalRequestsShareOneScan(t *testing.T) {
	e := newEnv(t, gateLoads())
	first := e.post(t, "alpine:3.11")
	e.exporting(t) // the scan is exporting and cannot finish: the gate is shut

	const n = 8
	ids := make([]string, n)
	var wg sync.WaitGroup
	ctx := testwait.Context(t)
	for i := range n {
		image := "alpine:3.11"
		if i%2 == 1 {
			image = "docker.io/library/alpine:3.11"
		}
		// No t.Fatal here: this is not the test's goroutine.
		wg.Go(func() {
			st, err := e.client.Submit(ctx, sidecar.Request{Image: image})
			if err != nil {
				t.Errorf("POST %s: %v", image, err)
			}
			ids[i] = st.ID
		})
	}
	testwait.Wait(t, &wg, "%d identical requests", n)
	for i, id := range ids {
		if id != first.ID {
			t.Errorf("request %d got scan %s, want the running %s", i, id, first.ID)
		}
	}
	// The same name in containerd is another image.
	ctr, err := e.client.Submit(t.Context(), sidecar.Request{Image: "containerd:alpine:3.11"})
	if err != nil || ctr.ID == first.ID {
		t.Errorf("request for containerd:alpine:3.11: %+v, %v; want a scan of its own", ctr, err)
	}
	if ref := e.exporting(t); ref != "containerd:alpine:3.11" {
		t.Errorf("the loader was asked for %q, want containerd:alpine:3.11", ref)
	}
	// Another platform is another scan.
	other, err := e.client.Submit(t.Context(), sidecar.Request{Image: "alpine:3.11", Platform: "linux/arm64"})
	if err != nil || other.ID == first.ID || other.Platform != "linux/arm64" {
		t.Errorf("request for linux/arm64: %+v, %v; want a scan of its own", other, err)
	}
	close(e.loader.gate) // the arm64 scan waits for a slot meanwhile

	if st := e.wait(t, first.ID); st.State != sidecar.StateDone {
		t.Fatalf("shared scan: %s %s", st.State, st.Error)
	}
	if st := e.wait(t, other.ID); st.State != sidecar.StateFailed || !strings.Contains(st.Error, "linux/arm64") {
		t.Errorf("arm64 scan of an amd64 image: %s %q, want failed naming the platform", st.State, st.Error)
	}
	if loads, posts := e.loader.loads.Load(), e.clair.fake.IndexPosts(); loads != 3 || posts != 1 {
		t.Errorf("%d exports and %d clair index requests, want 3 (amd64 shared, containerd's, arm64) and 1", loads, posts)
	}

	// Once finished, the same request starts a new scan.
	if again := e.post(t, "alpine:3.11"); again.ID == first.ID {
		t.Error("a request after the scan finished got the finished scan")
	}
}

func TestConcurrencyIsBounded(t *testing.T) {
	e := newEnv(t, gateLoads(), withConfig(func(c *sidecar.Config) { c.MaxConcurrent = 1; c.MaxQueued = 1 }))
	a := e.post(t, "alpine:3.11")
	e.exporting(t)
	b := e.post(t, "alpine:copy")
	if st, _ := e.client.Status(t.Context(), b.ID); st.State != sidecar.StateQueued {
		t.Fatalf("second scan is %s while the only slot is taken, want queued", st.State)
	}
	if st, _ := e.client.Status(t.Context(), a.ID); st.State != sidecar.StateExporting {
		t.Fatalf("first scan is %s, want exporting", st.State)
	}
	// MaxQueued is 1: a third distinct request is refused.
	resp, body := e.do(t, "POST", "/api/v1/scans", `{"image": "alpine:3.11", "platform": "linux/amd64"}`)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("third request: %d %s, want 429 with Retry-After", resp.StatusCode, body)
	}
	close(e.loader.gate)
	for _, id := range []string{a.ID, b.ID} {
		if st := e.wait(t, id); st.State != sidecar.StateDone {
			t.Errorf("scan %s: %s %s", id, st.State, st.Error)
		}
	}
}

func TestFinishedScansExpire(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	e := newEnv(t, withConfig(func(c *sidecar.Config) {
		c.Now = clock.Now
		c.Retention = time.Hour
		c.MaxFinished = 2
	}))
	var ids []string
	for range 3 {
		st := e.wait(t, e.post(t, "alpine:3.11").ID)
		ids = append(ids, st.ID)
		clock.advance(time.Minute)
	}
	// Only the two most recent are kept.
	if _, err := e.client.Status(t.Context(), ids[0]); !isStatus(err, 404) {
		t.Errorf("oldest of 3 finished scans with MaxFinished 2: err = %v, want 404", err)
	}
	if _, err := e.client.Status(t.Context(), ids[2]); err != nil {
		t.Errorf("newest scan: %v", err)
	}
	// ids[1] finished 2m ago; after an hour it is gone, ids[2] (1m younger) stays.
	clock.advance(time.Hour - 90*time.Second)
	if _, err := e.client.Status(t.Context(), ids[1]); !isStatus(err, 404) {
		t.Errorf("scan finished over an hour ago: err = %v, want 404", err)
	}
	if _, err := e.client.Status(t.Context(), ids[2]); err != nil {
		t.Errorf("scan finished 59m30s ago: %v", err)
	}
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func isStatus(err error, code int) bool {
	var ae *sidecar.APIError
	return errors.As(err, &ae) && ae.Status == code
}

func TestAccessWithToken(t *testing.T) {
	e := newEnv(t, withToken(t), holdClair())
	anon := sidecar.NewClient(mustURL(t, e.ts.URL), "", sidecar.WithPollBackoff(pollNow))
	wrong := sidecar.NewClient(mustURL(t, e.ts.URL), "not-the-token-at-all", sidecar.WithPollBackoff(pollNow))
	for name, c := range map[string]*sidecar.Client{"no token": anon, "wrong token": wrong} {
		if _, err := c.Submit(t.Context(), sidecar.Request{Image: "alpine:3.11"}); !isStatus(err, 401) || !sidecar.IsUnauthorized(err) {
			t.Errorf("%s: POST err = %v, want 401", name, err)
		}
	}
	st := e.post(t, "alpine:3.11")
	if _, err := anon.Status(t.Context(), st.ID); !isStatus(err, 401) {
		t.Errorf("GET without token: err = %v, want 401", err)
	}
	// Clair downloads the layers with the capability alone, from any
	// address: capture a layer URL while Clair holds it.
	uris := e.indexing(t)
	if len(uris) != 1 {
		t.Fatalf("clair was given %d layer urls", len(uris))
	}
	rec := serveFrom(e, "GET", strings.TrimPrefix(uris[0], e.ts.URL), "192.0.2.7:40000", "")
	if rec.Code != 200 || rec.Body.Len() != alpineLayerSize {
		t.Errorf("layer url from a non-loopback client without token: %d, %d bytes", rec.Code, rec.Body.Len())
	}
	close(e.clair.release)
	if st := e.wait(t, st.ID); st.State != sidecar.StateDone {
		t.Fatalf("scan: %s %s", st.State, st.Error)
	}
	// The registry view wants the token too, from loopback as well.
	for auth, want := range map[string]int{"": 401, "Bearer " + testToken: 200, "Bearer nope": 401} {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", e.ts.URL+"/v2/alpine/tags/list", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := e.ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("registry view with %q: %d, want %d", auth, resp.StatusCode, want)
		}
	}
	// With the token, from elsewhere on the network.
	if rec := serveFrom(e, "GET", "/api/v1/scans/"+st.ID, "192.0.2.7:40000", "Bearer "+testToken); rec.Code != 200 {
		t.Errorf("GET with the token from a non-loopback client: %d", rec.Code)
	}
}

func TestAccessWithoutToken(t *testing.T) {
	e := newEnv(t)
	st := e.wait(t, e.post(t, "alpine:3.11").ID) // from loopback: allowed
	if st.State != sidecar.StateDone {
		t.Fatalf("scan from loopback: %s %s", st.State, st.Error)
	}
	remote := "192.0.2.7:40000"
	tests := []struct {
		method, path string
		want         int
	}{
		{"POST", "/api/v1/scans", 403},
		{"GET", "/api/v1/scans/" + st.ID, 403},
		{"GET", "/api/v1/scans/" + st.ID + "/report", 403},
		{"GET", "/v2/", 403},
		{"GET", "/v2/alpine/manifests/3.11", 403},
		{"GET", "/v2/alpine/tags/list", 403},
		{"GET", "/healthz", 200},
		{"GET", "/metrics", 200},
	}
	for _, tt := range tests {
		rec := serveFrom(e, tt.method, tt.path, remote, "Bearer anything")
		if rec.Code != tt.want {
			t.Errorf("%s %s from %s: %d, want %d", tt.method, tt.path, remote, rec.Code, tt.want)
		}
	}
	for _, ip := range []string{"127.0.0.1:5000", "[::1]:5000"} {
		if rec := serveFrom(e, "GET", "/v2/alpine/tags/list", ip, ""); rec.Code != 200 {
			t.Errorf("registry view from %s: %d, want 200", ip, rec.Code)
		}
	}
}

// serveFrom calls the sidecar's handler directly as a client at remote.
func serveFrom(e *env, method, path, remote, auth string) *httptest.ResponseRecorder {
	body := ""
	if method == "POST" {
		body = `{"image": "alpine:3.11"}`
	}
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.RemoteAddr = remote
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	e.svc.Handler().ServeHTTP(rec, req)
	return rec
}

func TestRegistryServesOnlyStoredImages(t *testing.T) {
	e := newEnv(t)
	// Before any scan, nothing: the daemon's images are not listed.
	if resp, body := e.do(t, "GET", "/v2/alpine/tags/list", ""); resp.StatusCode != 404 || !bytes.Contains(body, []byte("NAME_UNKNOWN")) {
		t.Errorf("tags of an image never requested: %d %s, want 404 NAME_UNKNOWN", resp.StatusCode, body)
	}
	st := e.wait(t, e.post(t, "alpine:3.11").ID)
	rep, err := report.Decode(bytes.NewReader(st.Report))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"alpine", "library/alpine", "docker.io/library/alpine"} {
		resp, body := e.do(t, "GET", "/v2/"+name+"/manifests/3.11", "")
		// The stored manifest of the scanned image: layerbridge
		// synthesized it for this classic archive, so Clair indexed the
		// image under its config digest, the manifest's config.
		var m struct{ Config struct{ Digest string } }
		json.Unmarshal(body, &m)
		if resp.StatusCode != 200 || m.Config.Digest != rep.Image.ID || digest.FromBytes(body).String() != resp.Header.Get("Docker-Content-Digest") {
			t.Errorf("%s:3.11: %d, digest %q, config %q, want the scanned image's manifest, whose config is %s (%s)", name, resp.StatusCode,
				resp.Header.Get("Docker-Content-Digest"), m.Config.Digest, rep.Image.ID, body)
		}
	}
	if resp, body := e.do(t, "GET", "/v2/_catalog", ""); resp.StatusCode != 404 {
		t.Errorf("/v2/_catalog: %d %s, want 404", resp.StatusCode, body)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestHealthz(t *testing.T) {
	e := newEnv(t)
	resp, body := e.do(t, "GET", "/healthz", "")
	if resp.StatusCode != 200 {
		t.Errorf("/healthz: %d %s", resp.StatusCode, body)
	}
}
