package scan

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync"
	"testing"

	"github.com/layerbridge/layerbridge/bridge"
	"github.com/layerbridge/layerbridge/dockersave"
	"github.com/layerbridge/layerbridge/internal/fakeclair"
	"github.com/layerbridge/layerbridge/store"
)

const samples = "../testdata/clair-samples"

const alpineArchive = "docker-archive:../testdata/fixtures/alpine-3.11-docker-save.tar.gz"

var testPSK = []byte("layerbridge-test-psk-0123456789ab")

func noWait(ctx context.Context, _ int) error { return ctx.Err() }

// newConfig scans the alpine fixture against the Clair at clair; opts
// configure its clients (their Backoff returns at once).
func newConfig(t *testing.T, clair string, opts ...func(*ClairOptions)) Config {
	t.Helper()
	o := ClairOptions{Backoff: noWait}
	for _, f := range opts {
		f(&o)
	}
	srv, base := serveLayers(t)
	return Config{
		Image:  alpineArchive,
		Loader: dockersave.NewLoader(emptyCache(t)),
		Clair:  NewClair(parseURL(t, clair), APIAuto, o),
		Server: srv,
		Base:   base,
	}
}

// emptyCache opens an image cache in a new directory, closed when the test
// ends.
func emptyCache(t *testing.T) *store.Store {
	t.Helper()
	cache, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cache.Close() })
	return cache
}

func parseURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// serveLayers runs a layer server with opts on loopback until the test
// ends, as the commands run theirs, and returns it with its URL.
func serveLayers(t *testing.T, opts ...bridge.Option) (*bridge.Server, *url.URL) {
	t.Helper()
	srv := bridge.New(opts...)
	ts := httptest.NewServer(bridge.NewHTTPServer(srv, nil, bridge.Limits{}).Handler)
	t.Cleanup(ts.Close)
	base, err := url.Parse(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	return srv, base
}

type pair struct{ pkg, vuln string }

func pairs(res *Result) map[pair]bool {
	out := map[pair]bool{}
	for _, f := range res.Report.Findings {
		out[pair{f.Package, f.Name}] = true
	}
	return out
}

func TestScanV4DownloadsAndReports(t *testing.T) {
	fake := &fakeclair.V4{Samples: samples}
	clair := httptest.NewServer(fake)
	defer clair.Close()
	res, err := Run(t.Context(), newConfig(t, clair.URL))
	if err != nil {
		t.Fatal(err)
	}
	if res.API != APIv4 {
		t.Errorf("api = %q, want v4", res.API)
	}
	if got := len(pairs(res)); got != 17 {
		t.Errorf("%d (package, vulnerability) pairs, want the 17 Clair 4.9 reports", got)
	}
	if fake.Downloads() != 1 || len(res.Fetches) != 1 || res.Fetches[0].Status != 200 {
		t.Errorf("clair downloaded %d layers, bridge saw %+v; want one successful fetch", fake.Downloads(), res.Fetches)
	}
	// The report names the digest Clair indexed the image under: for a
	// classic docker save archive, whose manifest layerbridge
	// synthesized, its config digest (the image ID).
	if res.Report.Image.ManifestDigest != res.Image.IndexDigest.String() || res.Image.IndexDigest != res.Image.ID || res.Report.Clair.API != "v4" {
		t.Errorf("report header = %+v %+v", res.Report.Image, res.Report.Clair)
	}
	// The archive carries one tag, which names the image.
	if img := res.Report.Image; img.Ref != alpineArchive || img.Name != "docker.io/library/alpine:3.11" {
		t.Errorf("report image ref %q, name %q; want the archive as given, named docker.io/library/alpine:3.11", img.Ref, img.Name)
	}
	if len(res.Report.Raw) == 0 {
		t.Error("clair's own response was not kept")
	}
	if len(res.Report.Warnings) != 0 {
		t.Errorf("warnings = %q, want none", res.Report.Warnings)
	}
	checkPackages(t, res)
}

// TestScanReportsStagesAndFetches: Stage sees each stage in order, and the
// layer server's fetch observer each layer request, while Clair is
// indexing.
func TestScanReportsStagesAndFetches(t *testing.T) {
	clair := httptest.NewServer(&fakeclair.V4{Samples: samples})
	defer clair.Close()
	cfg := newConfig(t, clair.URL)
	var events []string
	var mu sync.Mutex
	cfg.Stage = func(s Stage) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, string(s))
	}
	// The layer server's owner observes Clair's downloads.
	cfg.Server, cfg.Base = serveLayers(t, bridge.WithFetchObserver(func(f bridge.Fetch) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, fmt.Sprintf("fetched %s %d", f.Digest, f.Status))
	}))
	res, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"exporting", "indexing", fmt.Sprintf("fetched %s 200", res.Image.Manifest.Layers[0].Digest), "matching"}
	if !slices.Equal(events, want) {
		t.Errorf("events %q, want %q", events, want)
	}
}

func TestScanV2PostsLayersInOrder(t *testing.T) {
	fake := &fakeclair.V2{Samples: samples}
	clair := httptest.NewServer(fake)
	defer clair.Close()
	for _, api := range []string{APIAuto, APIv2} {
		t.Run(api, func(t *testing.T) {
			cfg := newConfig(t, clair.URL)
			cfg.Clair.API = api
			res, err := Run(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.API != APIv2 {
				t.Errorf("api = %q, want v2", res.API)
			}
			if got := len(pairs(res)); got != 3 {
				t.Errorf("%d pairs, want the 3 Clair v2.1.7 reports", got)
			}
			if len(res.Fetches) != 1 || res.Fetches[0].Status != 200 {
				t.Errorf("fetches = %+v", res.Fetches)
			}
			checkPackages(t, res)
		})
	}
}

// checkPackages checks that a scan of the alpine fixture reports its 14
// packages, and that packages and findings name the layer that introduced
// them by digest (Clair 2 names it by the name it was posted under).
func checkPackages(t *testing.T, res *Result) {
	t.Helper()
	layer := res.Image.Manifest.Layers[0].Digest.String()
	if len(res.Report.Packages) != 14 {
		t.Errorf("%d packages, want the 14 of alpine:3.11", len(res.Report.Packages))
	}
	for _, p := range res.Report.Packages {
		if p.Layer != layer || p.Type != "apk" {
			t.Errorf("package %+v: want an apk from layer %s", p, layer)
		}
	}
	for _, f := range res.Report.Findings {
		if f.Layer != layer {
			t.Errorf("finding %s in %s names layer %q, want %s", f.Name, f.Package, f.Layer, layer)
		}
	}
}

func TestScanWithPSK(t *testing.T) {
	fake := &fakeclair.V4{Samples: samples, PSK: testPSK}
	clair := httptest.NewServer(fake)
	defer clair.Close()
	key := base64.StdEncoding.EncodeToString(testPSK)

	withPSK := func(key string) func(*ClairOptions) {
		return func(o *ClairOptions) { o.PSK, o.PSKIssuer = key, "layerbridge" }
	}
	cfg := newConfig(t, clair.URL, withPSK(key))
	if _, err := Run(t.Context(), cfg); err != nil {
		t.Fatalf("with the right key: %v", err)
	}

	var ae *AuthError
	cfg = newConfig(t, clair.URL)
	if _, err := Run(t.Context(), cfg); !errors.As(err, &ae) || ae.Rejected {
		t.Fatalf("without a key: err = %v, want an AuthError saying auth is required", err)
	}
	cfg = newConfig(t, clair.URL, withPSK(base64.StdEncoding.EncodeToString([]byte("wrong key"))))
	if _, err := Run(t.Context(), cfg); !errors.As(err, &ae) || !ae.Rejected {
		t.Fatalf("with a wrong key: err = %v, want an AuthError saying the token was rejected", err)
	}
	if fake.IndexPosts() != 1 {
		t.Errorf("%d index requests reached clair, want only the authenticated one", fake.IndexPosts())
	}
}

func TestScanWrongAPI(t *testing.T) {
	v4 := httptest.NewServer(&fakeclair.V4{Samples: samples})
	defer v4.Close()
	v2 := httptest.NewServer(&fakeclair.V2{Samples: samples})
	defer v2.Close()
	tests := []struct {
		clair, api, found string
	}{
		{v4.URL, APIv2, APIv4},
		{v2.URL, APIv4, APIv2},
	}
	for _, tt := range tests {
		cfg := newConfig(t, tt.clair)
		cfg.Clair.API = tt.api
		var me *APIMismatchError
		_, err := Run(t.Context(), cfg)
		if !errors.As(err, &me) || me.Want != tt.api || me.Found != tt.found {
			t.Errorf("--clair-api %s against clair %s: err = %v, want an APIMismatchError", tt.api, tt.found, err)
		}
	}
}

func TestScanClairCannotReachTheAdvertisedAddress(t *testing.T) {
	fake := &fakeclair.V4{Samples: samples}
	clair := httptest.NewServer(fake)
	defer clair.Close()
	cfg := newConfig(t, clair.URL)
	// The server listens on loopback, but Clair is told an address where
	// nothing listens.
	cfg.Base, _ = url.Parse("http://127.0.0.1:1")
	cfg.Reason = "it was given with --advertise"
	_, err := Run(t.Context(), cfg)
	var fe *LayerFetchError
	if !errors.As(err, &fe) {
		t.Fatalf("err = %v, want a LayerFetchError", err)
	}
	if !fe.NeverReached() || fe.Advertised != "http://127.0.0.1:1" || fe.Reason != cfg.Reason {
		t.Errorf("LayerFetchError = %+v, want: never reached, advertised http://127.0.0.1:1 because %s", fe, cfg.Reason)
	}
}

func TestScanClairDown(t *testing.T) {
	clair := httptest.NewServer(&fakeclair.V4{Samples: samples})
	u := clair.URL
	clair.Close()
	_, err := Run(t.Context(), newConfig(t, u))
	var cu *ClairUnreachableError
	if !errors.As(err, &cu) {
		t.Fatalf("err = %v, want ClairUnreachableError", err)
	}
}

func TestScanWarnsAboutAnEmptyDatabase(t *testing.T) {
	clair := httptest.NewServer(&fakeclair.V4{Samples: samples, EmptyDB: true})
	defer clair.Close()
	res, err := Run(t.Context(), newConfig(t, clair.URL))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Report.Warnings) == 0 {
		t.Fatal("no warning for a clair whose vulnerability database was never updated")
	}
}

func TestScanV2ChainsParents(t *testing.T) {
	fake := &fakeclair.V2{Samples: samples}
	clair := httptest.NewServer(fake)
	defer clair.Close()
	cfg := newConfig(t, clair.URL)
	cfg.Image = "docker-archive:../testdata/fixtures/dive-test-docker-image.tar"
	res, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	n := len(res.Image.Manifest.Layers)
	posted, parents := fake.Posted()
	if n < 2 || len(posted) != n || len(res.Fetches) != n {
		t.Fatalf("image has %d layers; clair got %d posts, bridge saw %d fetches", n, len(posted), len(res.Fetches))
	}
	for i, name := range posted {
		want := ""
		if i > 0 {
			want = posted[i-1]
		}
		if got := parents[name]; got != want {
			t.Errorf("layer %d posted with parent %q, want %q", i, got, want)
		}
	}
}

func TestScanOnASharedLayerServer(t *testing.T) {
	clair := httptest.NewServer(&fakeclair.V4{Samples: samples})
	defer clair.Close()
	cfg := newConfig(t, clair.URL)
	var stages []Stage
	cfg.Stage = func(s Stage) { stages = append(stages, s) }

	res, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if want := []Stage{StageExporting, StageIndexing, StageMatching}; !slices.Equal(stages, want) {
		t.Errorf("stages = %v, want %v", stages, want)
	}
	// Every request Clair made is in the result, finished, when Run returns.
	if res.Advertised.String() != cfg.Base.String() || len(res.Fetches) != 1 || res.Fetches[0].Status != 200 {
		t.Fatalf("advertised %s, scan recorded %+v", res.Advertised, res.Fetches)
	}
	// The scan's capability ended with the scan; the server lives on.
	grantURL := cfg.Base.String() + res.Fetches[0].Path
	resp, err := http.Get(cfg.Base.JoinPath("/healthz").String())
	if err != nil {
		t.Fatalf("the layer server stopped with the scan: %v", err)
	}
	resp.Body.Close()
	resp, err = http.Get(grantURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("GET %s after the scan: %d, want 404", grantURL, resp.StatusCode)
	}
}

// TestScanWithTheDetectedAPI: given the API the caller detected before
// (the sidecar keeps it), Run sends Clair no probe; without it, one.
func TestScanWithTheDetectedAPI(t *testing.T) {
	var mu sync.Mutex
	probes := 0
	fake := &fakeclair.V4{Samples: samples}
	clair := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/indexer/api/v1/index_state" {
			mu.Lock()
			probes++
			mu.Unlock()
		}
		fake.ServeHTTP(w, r)
	}))
	defer clair.Close()
	for _, tt := range []struct {
		detected string
		probes   int
	}{{APIv4, 0}, {"", 1}} {
		mu.Lock()
		probes = 0
		mu.Unlock()
		cfg := newConfig(t, clair.URL)
		cfg.Detected = tt.detected
		res, err := Run(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		got := probes
		mu.Unlock()
		if got != tt.probes || res.API != APIv4 || len(pairs(res)) != 17 {
			t.Errorf("detected %q: %d probes, api %s, %d pairs; want %d probes and the 17 pairs of v4", tt.detected, got, res.API, len(pairs(res)), tt.probes)
		}
	}
	cfg := newConfig(t, clair.URL)
	cfg.Detected = "v3"
	if _, err := Run(t.Context(), cfg); err == nil {
		t.Error("Run accepted a detected API that does not exist")
	}
}
