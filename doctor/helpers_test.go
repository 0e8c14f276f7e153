package doctor

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/layerbridge/layerbridge/engine"
	"github.com/layerbridge/layerbridge/internal/fakeclair"
	"github.com/layerbridge/layerbridge/scan"
)

const samples = "../testdata/clair-samples"

// testPSK is the secret fakeclair checks; testPSKBase64 is how Clair's
// config (and --clair-psk) spells it.
var testPSK = []byte("layerbridge-test-psk-0123456789ab")

var testPSKBase64 = "bGF5ZXJicmlkZ2UtdGVzdC1wc2stMDEyMzQ1Njc4OWFi"

// clairAt is the Clair at u as the command builds it, expecting api ("" is
// auto), with o's credentials (at most one ClairOptions).
func clairAt(u *url.URL, api string, o ...scan.ClairOptions) scan.Clair {
	var opts scan.ClairOptions
	if len(o) > 0 {
		opts = o[0]
	}
	return scan.NewClair(u, api, opts)
}

// fakeDaemon answers the Engine API calls doctor makes (ping, info, image
// inspect), like a Docker 28 daemon on the graphdriver store unless told
// otherwise. Images are keyed by the name the client asks for.
type fakeDaemon struct {
	api        string
	driver     string
	containerd bool
	images     map[string]string // name -> inspect JSON
	// info, when set, is the rest of /info: what Docker Desktop or a
	// rootless daemon say of themselves (OperatingSystem,
	// SecurityOptions).
	info string
}

func (f *fakeDaemon) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/_ping" {
		w.Header().Set("Api-Version", f.api)
		w.Header().Set("Ostype", "linux")
		w.Write([]byte("OK"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch {
	case strings.HasSuffix(r.URL.Path, "/info"):
		status := `[["Backing Filesystem","extfs"]]`
		if f.containerd {
			status = `[["driver-type","io.containerd.snapshotter.v1"]]`
		}
		extra := ""
		if f.info != "" {
			extra = "," + f.info
		}
		w.Write([]byte(`{"ServerVersion":"28.5.1","Driver":"` + f.driver + `","DriverStatus":` + status + extra + `}`))
	case strings.Contains(r.URL.Path, "/images/") && strings.HasSuffix(r.URL.Path, "/json"):
		_, name, _ := strings.Cut(r.URL.Path, "/images/")
		name = strings.TrimSuffix(name, "/json")
		body, ok := f.images[name]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(map[string]string{"message": "No such image: " + name})
			return
		}
		w.Write([]byte(body))
	default:
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"message":"page not found"}`))
	}
}

// shortTempDir returns a new directory with a path short enough for unix
// socket names (t.TempDir's can exceed the 108-byte limit).
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "lbdoc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// serveUnix serves h on a new unix socket at path until the test ends.
func serveUnix(t *testing.T, path string, h http.Handler) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// daemonAt is Config.Docker for a daemon at host, built the way the CLI
// builds it.
func daemonAt(host, source string) func() (engine.Client, engine.Endpoint, error) {
	return func() (engine.Client, engine.Endpoint, error) {
		ep := engine.Endpoint{Host: host, Source: source}
		c, err := engine.NewClient(ep)
		if err != nil {
			return nil, ep, err
		}
		return c, ep, nil
	}
}

// startDaemon serves f on a unix socket and returns Config.Docker for it.
func startDaemon(t *testing.T, f *fakeDaemon) func() (engine.Client, engine.Endpoint, error) {
	t.Helper()
	sock := filepath.Join(shortTempDir(t), "docker.sock")
	serveUnix(t, sock, f)
	return daemonAt("unix://"+sock, "DOCKER_HOST")
}

// withOpenAPI adds Clair 4.9's /openapi/v1 (info.version 1.2.0, as in
// quay/clair v4.9.0's httptransport/api/v1/openapi.json) in front of a fake
// Clair, which the recordings do not cover.
func withOpenAPI(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/openapi/v1" {
			w.Header().Set("Content-Type", "application/openapi+json")
			w.Write([]byte(`{"openapi":"3.1.0","info":{"title":"Clair Container Analyzer","version":"1.2.0"}}`))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// startV4 starts a fake Clair 4.9 that really downloads the layers it is
// given; without a PSK it also serves /openapi/v1.
func startV4(t *testing.T, f *fakeclair.V4) *url.URL {
	t.Helper()
	if f.Samples == "" {
		f.Samples = samples
	}
	if f.PSK != nil {
		return serve(t, f)
	}
	return serve(t, withOpenAPI(f))
}

func startV2(t *testing.T) (*fakeclair.V2, *url.URL) {
	t.Helper()
	f := &fakeclair.V2{Samples: samples}
	return f, serve(t, f)
}

func serve(t *testing.T, h http.Handler) *url.URL {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// result returns the result of check; every run reports every check.
func result(t *testing.T, results []Result, check string) Result {
	t.Helper()
	for _, r := range results {
		if r.Check == check {
			return r
		}
	}
	t.Fatalf("no result for %s in %+v", check, results)
	return Result{}
}

// expect asserts a check's status and that its evidence and fix contain the
// given fragments.
func expect(t *testing.T, results []Result, check string, status Status, evidence []string, fix []string) {
	t.Helper()
	r := result(t, results, check)
	if r.Status != status {
		t.Errorf("%s: status %s, want %s (evidence: %s; fix: %s)", check, r.Status, status, r.Evidence, r.Fix)
	}
	for _, s := range evidence {
		if !strings.Contains(r.Evidence, s) {
			t.Errorf("%s: evidence %q lacks %q", check, r.Evidence, s)
		}
	}
	for _, s := range fix {
		if !strings.Contains(r.Fix, s) {
			t.Errorf("%s: fix %q lacks %q", check, r.Fix, s)
		}
	}
}

func dump(t *testing.T, results []Result) {
	t.Helper()
	for _, r := range results {
		t.Logf("%-8s %-22s %s | %s", r.Status, r.Check, r.Evidence, r.Fix)
	}
}
