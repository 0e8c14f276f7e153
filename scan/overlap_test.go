package scan

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/client"

	"github.com/layerbridge/layerbridge/bridge"
	"github.com/layerbridge/layerbridge/dockersave"
	"github.com/layerbridge/layerbridge/engine"
	"github.com/layerbridge/layerbridge/internal/fakeclair"
	"github.com/layerbridge/layerbridge/internal/testwait"
	"github.com/layerbridge/layerbridge/store"
)

// The alpine 3.11 fixture as a graphdriver daemon holds it.
const (
	alpineID     = "sha256:a187dde48cd289ac374ad8539930628314bc581a481cdb41409c9289419ddb72"
	alpineDiffID = "sha256:beee9f30bc1f711043e78d4a2be0668955d4b761d587d6f60c2c8dc081efb203"
)

// daemon is a graphdriver Docker daemon holding the alpine fixture. Its
// export is what export returns (the fixture's archive by default).
type daemon struct {
	archive []byte
	saves   atomic.Int32
	export  func(archive []byte) io.ReadCloser
}

func newDaemon(t *testing.T) *daemon {
	t.Helper()
	f, err := os.Open("../testdata/fixtures/alpine-3.11-docker-save.tar.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return &daemon{archive: b}
}

func (d *daemon) Ping(context.Context, client.PingOptions) (client.PingResult, error) {
	return client.PingResult{APIVersion: "1.41", OSType: "linux"}, nil
}

func (d *daemon) Info(context.Context, client.InfoOptions) (client.SystemInfoResult, error) {
	return client.SystemInfoResult{}, nil
}

func (d *daemon) ImageInspect(context.Context, string, ...client.ImageInspectOption) (client.ImageInspectResult, error) {
	return client.ImageInspectResult{InspectResponse: image.InspectResponse{
		ID: alpineID, RepoTags: []string{"alpine:3.11"}, Os: "linux", Architecture: "amd64",
		RootFS: image.RootFS{Type: "layers", Layers: []string{alpineDiffID}},
	}}, nil
}

func (d *daemon) ImageSave(_ context.Context, ids []string, _ ...client.ImageSaveOption) (client.ImageSaveResult, error) {
	d.saves.Add(1)
	if len(ids) != 1 || ids[0] != alpineID {
		return nil, errors.New("fake daemon: export of an unknown image")
	}
	if d.export != nil {
		return d.export(d.archive), nil
	}
	return io.NopCloser(bytes.NewReader(d.archive)), nil
}

// daemonConfig scans alpine:3.11 of d, with an empty cache of its own,
// against the Clair at clair.
func daemonConfig(t *testing.T, d *daemon, clair string) (Config, *store.Store) {
	t.Helper()
	cache := emptyCache(t)
	srv, base := serveLayers(t)
	ep := engine.Endpoint{Host: "unix:///fake/docker.sock", Source: "test"}
	return Config{
		Image:  "alpine:3.11",
		Loader: dockersave.NewLoader(cache, dockersave.WithEngine(d, ep)),
		Clair:  NewClair(parseURL(t, clair), APIv4, ClairOptions{Backoff: noWait}),
		Server: srv,
		Base:   base,
	}, cache
}

// TestRescanOfAnImageClairKnows: with an empty cache, an image Clair has
// indexed is not exported: its report is read at once, under the same
// digest a scan that exported it reported.
func TestRescanOfAnImageClairKnows(t *testing.T) {
	fake := &fakeclair.V4{Samples: samples}
	clair := httptest.NewServer(fake)
	defer clair.Close()
	d := newDaemon(t)
	cfg, _ := daemonConfig(t, d, clair.URL)
	first, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if first.AlreadyIndexed || d.saves.Load() != 1 {
		t.Fatalf("first scan: already indexed %v, %d exports; want an export", first.AlreadyIndexed, d.saves.Load())
	}
	cfg, cache := daemonConfig(t, d, clair.URL) // another empty cache: a fresh CI runner
	again, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if d.saves.Load() != 1 {
		t.Errorf("%d exports, want the first scan's only", d.saves.Load())
	}
	if !again.AlreadyIndexed || fake.IndexPosts() != 1 {
		t.Errorf("already indexed %v, %d index requests; want the report read without a second index", again.AlreadyIndexed, fake.IndexPosts())
	}
	if got, want := again.Report.Image.ManifestDigest, first.Report.Image.ManifestDigest; got != want || got != alpineID {
		t.Errorf("manifest digest %s, first scan %s; want both the image id %s (its manifest was synthesized)", got, want, alpineID)
	}
	if len(pairs(again)) != 17 || len(again.Report.Packages) != len(first.Report.Packages) {
		t.Errorf("%d pairs, %d packages; want the first scan's 17 and %d", len(pairs(again)), len(again.Report.Packages), len(first.Report.Packages))
	}
	if imgs, err := cache.Images(); err != nil || len(imgs) != 0 {
		t.Errorf("the cache holds %d images (%v), want none", len(imgs), err)
	}
}

// TestExportFailsWhileClairIndexes: Clair is handed the layers before the
// export ends; when the export fails, Clair's download fails (it never gets
// a complete body), its index is stopped, and nothing is left: no blob, no
// staging file, no layer served any more.
func TestExportFailsWhileClairIndexes(t *testing.T) {
	fake := &fakeclair.V4{Samples: samples}
	clair := httptest.NewServer(fake)
	defer clair.Close()
	d := newDaemon(t)
	asked := make(chan struct{})
	var once sync.Once
	// The export sends a third, then waits until Clair has asked for the
	// layer, then fails.
	d.export = func(archive []byte) io.ReadCloser {
		pr, pw := io.Pipe()
		go func() {
			pw.Write(archive[:len(archive)/3])
			testwait.Recv(t, asked, "clair's download request")
			pw.CloseWithError(errors.New("daemon went away"))
		}()
		return pr
	}
	cfg, cache := daemonConfig(t, d, clair.URL)
	// The layer server tells when Clair's request arrives.
	serveLayersThrough(t, &cfg, func(w http.ResponseWriter) http.ResponseWriter {
		once.Do(func() { close(asked) })
		return w
	})
	res, err := Run(t.Context(), cfg)
	if err == nil || !strings.Contains(err.Error(), "daemon went away") {
		t.Fatalf("scan: %v, want the export's failure", err)
	}
	checkNothingWhole(t, fake, res, cache)
	if fake.IndexPosts() != 1 {
		t.Errorf("%d index requests, want the one made while the export ran", fake.IndexPosts())
	}
	for _, dir := range []string{"blobs/sha256", "tmp"} {
		entries, _ := os.ReadDir(filepath.Join(cache.Dir(), dir))
		if len(entries) != 0 {
			t.Errorf("%s holds %d files after the failed scan", dir, len(entries))
		}
	}
}

// TestCorruptLayerNeverReachesClairWhole: a layer whose bytes are not the
// image's diff ID is never served: Clair's download fails, however early it
// asked, and the scan fails with the export's verification error.
func TestCorruptLayerNeverReachesClairWhole(t *testing.T) {
	fake := &fakeclair.V4{Samples: samples}
	clair := httptest.NewServer(fake)
	defer clair.Close()
	d := newDaemon(t)
	d.archive = bytes.Clone(d.archive)
	d.archive[len(d.archive)/2] ^= 0xff // inside the layer's 5.8 MB
	cfg, cache := daemonConfig(t, d, clair.URL)
	res, err := Run(t.Context(), cfg)
	if !errors.Is(err, dockersave.ErrDiffIDMismatch) {
		t.Fatalf("scan: %v, want the export's diff id mismatch", err)
	}
	checkNothingWhole(t, fake, res, cache)
}

// TestLayerFailingMidStreamReachesClairBroken: Clair downloads a layer
// while the export writes it; when the rest of the layer turns out not to
// be the image's diff ID, Clair's download breaks after the bytes it had,
// its body never ends as if whole, and the scan fails with the export's
// verification error.
func TestLayerFailingMidStreamReachesClairBroken(t *testing.T) {
	fake := &fakeclair.V4{Samples: samples}
	clair := httptest.NewServer(fake)
	defer clair.Close()
	d := newDaemon(t)
	corrupt := bytes.Clone(d.archive)
	mid := len(corrupt) / 2 // inside the layer's 5.8 MB
	corrupt[mid+len(corrupt)/8] ^= 0xff
	streaming := make(chan struct{})
	var once sync.Once
	// The export sends the first half, waits until Clair's download of
	// the layer has received bytes, then sends the corrupt rest.
	d.export = func([]byte) io.ReadCloser {
		pr, pw := io.Pipe()
		go func() {
			pw.Write(corrupt[:mid])
			testwait.Recv(t, streaming, "clair's download receiving the layer's first bytes")
			pw.Write(corrupt[mid:])
			pw.Close()
		}()
		return pr
	}
	cfg, cache := daemonConfig(t, d, clair.URL)
	serveLayersThrough(t, &cfg, func(w http.ResponseWriter) http.ResponseWriter {
		return &firstBodyWrite{ResponseWriter: w, once: &once, wrote: streaming}
	})
	res, err := Run(t.Context(), cfg)
	if !errors.Is(err, dockersave.ErrDiffIDMismatch) {
		t.Fatalf("scan: %v, want the export's diff id mismatch", err)
	}
	checkNothingWhole(t, fake, res, cache)
	cut := false
	for _, f := range res.Fetches {
		if f.Bytes > 0 && errors.Is(f.Err, bridge.ErrInterrupted) {
			cut = true
		}
	}
	if !cut {
		t.Errorf("no download was cut after its first bytes: %+v", res.Fetches)
	}
}

// checkNothingWhole checks what a scan whose export failed leaves: Clair
// downloaded no layer whole, the layer server served none whole, and the
// cache holds no image.
func checkNothingWhole(t *testing.T, fake *fakeclair.V4, res *Result, cache *store.Store) {
	t.Helper()
	if len(fake.Completed()) != 0 {
		t.Errorf("clair received complete layers %v", fake.Completed())
	}
	for _, f := range res.Fetches {
		if f.Status == 200 && f.Err == nil {
			t.Errorf("a layer was served whole: %+v", f)
		}
	}
	if imgs, err := cache.Images(); err != nil || len(imgs) != 0 {
		t.Errorf("the cache holds %d images (%v), want none", len(imgs), err)
	}
}

// serveLayersThrough has cfg's layers served by a layer server of their
// own whose responses go through wrap, which sees each request arrive.
func serveLayersThrough(t *testing.T, cfg *Config, wrap func(http.ResponseWriter) http.ResponseWriter) {
	t.Helper()
	srv := bridge.New()
	h := bridge.NewHTTPServer(srv, nil, bridge.Limits{}).Handler
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(wrap(w), r)
	}))
	t.Cleanup(ts.Close)
	cfg.Server = srv
	cfg.Base, _ = url.Parse(ts.URL)
}

// firstBodyWrite closes wrote once the response's body has begun.
type firstBodyWrite struct {
	http.ResponseWriter
	once  *sync.Once
	wrote chan struct{}
}

func (w *firstBodyWrite) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	if n > 0 {
		w.once.Do(func() { close(w.wrote) })
	}
	return n, err
}

// TestRescanClair2: Clair 2 is asked for the image's top layer (named from
// the diff IDs, which inspect gives) before anything is exported.
func TestRescanClair2(t *testing.T) {
	fake := &fakeclair.V2{Samples: samples}
	clair := httptest.NewServer(fake)
	defer clair.Close()
	d := newDaemon(t)
	cfg, _ := daemonConfig(t, d, clair.URL)
	cfg.Clair = NewClair(cfg.Clair.URL, APIv2, ClairOptions{Backoff: noWait})
	first, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg2, _ := daemonConfig(t, d, clair.URL)
	cfg2.Clair = cfg.Clair
	again, err := Run(t.Context(), cfg2)
	if err != nil {
		t.Fatal(err)
	}
	if d.saves.Load() != 1 || first.AlreadyIndexed || !again.AlreadyIndexed {
		t.Errorf("%d exports, already indexed %v then %v; want one export, then the report without one", d.saves.Load(), first.AlreadyIndexed, again.AlreadyIndexed)
	}
	if names, _ := fake.Posted(); len(names) != 1 {
		t.Errorf("layers posted %v, want the one of the first scan", names)
	}
	if len(pairs(again)) != len(pairs(first)) || len(pairs(first)) != 3 {
		t.Errorf("%d pairs, then %d; want Clair 2's 3 both times", len(pairs(first)), len(pairs(again)))
	}
	for _, f := range again.Report.Findings {
		if f.Layer != alpineDiffID {
			t.Errorf("finding %s in layer %q, want %s", f.Name, f.Layer, alpineDiffID)
		}
	}
}
