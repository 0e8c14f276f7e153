package dockersave

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/client"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/engine"
	"github.com/layerbridge/layerbridge/internal/fakeengine"
	"github.com/layerbridge/layerbridge/internal/testwait"
	"github.com/layerbridge/layerbridge/store"
)

// fakeEngine is a daemon holding one image, exported as a legacy archive.
type fakeEngine struct {
	api      string
	inspect  image.InspectResponse
	archive  []byte
	saves    atomic.Int32
	saveOpts []int
	// saving, when set, receives a value each time ImageSave starts; gate,
	// when set, must be closed before ImageSave returns.
	saving chan struct{}
	gate   chan struct{}

	inspectErr         error
	platformInspectErr error // fakeDaemon answers an inspect for a platform with it
	mu                 sync.Mutex

	// serveSave, when set, answers the export request of the fake daemon
	// on a socket (fakeDaemonHandler) instead of sending archive whole.
	serveSave func(w http.ResponseWriter, r *http.Request, archive []byte)
}

func (f *fakeEngine) Ping(context.Context, client.PingOptions) (client.PingResult, error) {
	return client.PingResult{APIVersion: f.api, OSType: "linux"}, nil
}

func (f *fakeEngine) Info(context.Context, client.InfoOptions) (client.SystemInfoResult, error) {
	return client.SystemInfoResult{}, nil
}

// ImageInspect ignores the options, which the client keeps opaque: tests of
// platform inspection go through fakeDaemon and the real client.
func (f *fakeEngine) ImageInspect(_ context.Context, name string, opts ...client.ImageInspectOption) (client.ImageInspectResult, error) {
	if f.inspectErr != nil {
		return client.ImageInspectResult{}, f.inspectErr
	}
	return client.ImageInspectResult{InspectResponse: f.inspect}, nil
}

func (f *fakeEngine) ImageSave(ctx context.Context, ids []string, opts ...client.ImageSaveOption) (client.ImageSaveResult, error) {
	f.saves.Add(1)
	f.mu.Lock()
	f.saveOpts = append(f.saveOpts, len(opts))
	f.mu.Unlock()
	if len(ids) != 1 || ids[0] != f.inspect.ID {
		return nil, fmt.Errorf("fake: saved %v, not by the inspected id %s", ids, f.inspect.ID)
	}
	if f.saving != nil {
		f.saving <- struct{}{}
	}
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return io.NopCloser(bytes.NewReader(f.archive)), nil
}

func newFakeEngine(t *testing.T) *fakeEngine {
	layers := testLayers(t)
	data, configHex := legacyArchive(t, nil, layers, false)
	var diffIDs []string
	for _, l := range layers {
		diffIDs = append(diffIDs, digest.FromBytes(l).String())
	}
	return &fakeEngine{
		api:     "1.41",
		archive: data,
		inspect: image.InspectResponse{
			ID: "sha256:" + configHex, RepoTags: []string{"app:1"}, Os: "linux", Architecture: "amd64",
			RootFS: image.RootFS{Type: "layers", Layers: diffIDs},
		},
	}
}

var testEndpoint = engine.Endpoint{Host: "unix:///fake/docker.sock", Source: "default"}

func daemonLoader(s *store.Store, f engine.Client) *Loader {
	return NewLoader(s, WithEngine(f, testEndpoint), WithHostPlatform(linuxAMD64))
}

// TestDaemonSecondLoadIsCacheHit: an unchanged image is exported once.
func TestDaemonSecondLoadIsCacheHit(t *testing.T) {
	f := newFakeEngine(t)
	s := openTestStore(t)
	first, err := daemonLoader(s, f).loadReleased(t.Context(), "app:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, s, first)
	if first.CacheHit || first.ID.String() != f.inspect.ID || first.Source != SourceDaemon || first.Ref != "app:1" {
		t.Fatalf("first load: %+v", first)
	}
	// A new Loader on a reopened store, as a second process would.
	s2, err := store.Open(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	second, err := daemonLoader(s2, f).loadReleased(t.Context(), "app:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := f.saves.Load(); n != 1 {
		t.Fatalf("ImageSave called %d times, want 1", n)
	}
	if !second.CacheHit || second.ManifestDigest != first.ManifestDigest {
		t.Fatalf("second load: cache hit %v, manifest %s (first %s)", second.CacheHit, second.ManifestDigest, first.ManifestDigest)
	}
}

// TestDaemonReexportsWhenBlobMissing: a cache entry with a deleted blob is
// not a hit.
func TestDaemonReexportsWhenBlobMissing(t *testing.T) {
	f := newFakeEngine(t)
	s := openTestStore(t)
	img, err := daemonLoader(s, f).loadReleased(t.Context(), "app:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(s.Dir(), blobPath(img.Manifest.Layers[1].Digest))); err != nil {
		t.Fatal(err)
	}
	again, err := daemonLoader(s, f).loadReleased(t.Context(), "app:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if again.CacheHit || f.saves.Load() != 2 {
		t.Fatalf("cache hit %v after %d saves", again.CacheHit, f.saves.Load())
	}
	checkImage(t, s, again)
}

// contendedLoads runs two loads of one image, the second starting only once
// the first is inside ImageSave, and releases the first only once the second
// waits for the image lock (waiting, from onImageLockWait, is closed).
func contendedLoads(t *testing.T, f *fakeEngine, first, second *Loader, waiting <-chan struct{}) (Image, Image) {
	f.saving, f.gate = make(chan struct{}, 2), make(chan struct{})
	type result struct {
		img Image
		err error
	}
	r1, r2 := make(chan result, 1), make(chan result, 1)
	ctx := testwait.Context(t)
	go func() {
		img, err := first.loadReleased(ctx, "app:1", nil)
		r1 <- result{img, err}
	}()
	testwait.Recv(t, f.saving, "the first load to export")
	go func() {
		img, err := second.loadReleased(ctx, "app:1", nil)
		r2 <- result{img, err}
	}()
	select {
	case <-waiting:
	case res := <-r2:
		t.Fatalf("second load finished while the first held the lock: %+v %v", res.img, res.err)
	case <-ctx.Done():
		t.Fatalf("the second load never waited for the image's lock: %v", context.Cause(ctx))
	}
	close(f.gate)
	a := testwait.Recv(t, r1, "the first load")
	b := testwait.Recv(t, r2, "the second load")
	if a.err != nil || b.err != nil {
		t.Fatalf("loads: %v, %v", a.err, b.err)
	}
	if n := f.saves.Load(); n != 1 {
		t.Fatalf("ImageSave called %d times, want 1", n)
	}
	if a.img.CacheHit || !b.img.CacheHit || a.img.ManifestDigest != b.img.ManifestDigest {
		t.Fatalf("first hit=%v %s, second hit=%v %s", a.img.CacheHit, a.img.ManifestDigest, b.img.CacheHit, b.img.ManifestDigest)
	}
	return a.img, b.img
}

func TestDaemonConcurrentLoadsExportOnce(t *testing.T) {
	f := newFakeEngine(t)
	waitOpt, waiting := onImageLockWait()
	s := openTestStore(t, waitOpt)
	l := daemonLoader(s, f)
	img, _ := contendedLoads(t, f, l, l, waiting)
	checkImage(t, s, img)
}

// TestDaemonTwoStoresOneDirExportOnce stands in for two processes: separate
// Store instances on one directory exclude each other with flock.
func TestDaemonTwoStoresOneDirExportOnce(t *testing.T) {
	f := newFakeEngine(t)
	s1 := openTestStore(t)
	waitOpt, waiting := onImageLockWait()
	s2, err := store.Open(s1.Dir(), waitOpt)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	img, _ := contendedLoads(t, f, daemonLoader(s1, f), daemonLoader(s2, f), waiting)
	checkImage(t, s2, img)
}

func TestDaemonSavePlatformOnlyFromAPI148(t *testing.T) {
	for api, want := range map[string]int{"1.41": 0, "1.47": 0, "1.48": 1, "1.52": 1} {
		f := newFakeEngine(t)
		f.api = api
		if _, err := daemonLoader(openTestStore(t), f).loadReleased(t.Context(), "app:1", nil); err != nil {
			t.Fatal(err)
		}
		if len(f.saveOpts) != 1 || f.saveOpts[0] != want {
			t.Errorf("api %s: save options %v, want %d", api, f.saveOpts, want)
		}
	}
}

func TestDaemonPlatformMismatch(t *testing.T) {
	arm := ocispec.Platform{OS: "linux", Architecture: "arm64"}
	for _, api := range []string{"1.41", "1.49"} {
		f := newFakeEngine(t)
		f.api = api
		f.platformInspectErr = cerrdefs.ErrNotFound.WithMessage("image has no linux/arm64 variant")
		// Through the real client, which puts the platform in the query.
		ep := fakeDaemon(t, api, f)
		c, err := engine.NewClient(ep)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, err = NewLoader(openTestStore(t), WithEngine(c, ep), WithHostPlatform(linuxAMD64)).loadReleased(t.Context(), "app:1", &arm)
		var pe *PlatformError
		if !errors.As(err, &pe) || pe.Want.Architecture != "arm64" || pe.Ref != "app:1" {
			t.Errorf("api %s: got %v, want *PlatformError", api, err)
		}
		if f.saves.Load() != 0 {
			t.Errorf("api %s: exported despite the platform mismatch", api)
		}
	}
	// The matching platform works, variant-less request included.
	f := newFakeEngine(t)
	amd := ocispec.Platform{OS: "linux", Architecture: "amd64"}
	if _, err := daemonLoader(openTestStore(t), f).loadReleased(t.Context(), "app:1", &amd); err != nil {
		t.Fatal(err)
	}
}

func TestDaemonNoSuchImage(t *testing.T) {
	f := newFakeEngine(t)
	f.inspectErr = cerrdefs.ErrNotFound.WithMessage("No such image: nope:latest")
	_, err := daemonLoader(openTestStore(t), f).loadReleased(t.Context(), "nope:latest", nil)
	var nf *engine.NotFoundError
	if !errors.As(err, &nf) || nf.Ref != "nope:latest" {
		t.Fatalf("got %v, want *engine.NotFoundError for nope:latest", err)
	}
}

func TestDaemonExportMismatch(t *testing.T) {
	f := newFakeEngine(t)
	other, _ := legacyArchive(t, nil, [][]byte{randomLayer(t, 100)}, false)
	f.archive = other
	err := func() error {
		_, err := daemonLoader(openTestStore(t), f).loadReleased(t.Context(), "app:1", nil)
		return err
	}()
	if !errors.Is(err, ErrExportMismatch) {
		t.Fatalf("got %v, want ErrExportMismatch", err)
	}
	f = newFakeEngine(t)
	f.inspect.RootFS.Layers = f.inspect.RootFS.Layers[:1]
	if _, err := daemonLoader(openTestStore(t), f).loadReleased(t.Context(), "app:1", nil); !errors.Is(err, ErrExportMismatch) {
		t.Fatalf("got %v, want ErrExportMismatch for differing diff ids", err)
	}
}

func TestDaemonTrailingError(t *testing.T) {
	f := newFakeEngine(t)
	f.archive = append(f.archive[:len(f.archive)/2:len(f.archive)/2], daemonErrJSON...)
	s := openTestStore(t)
	_, err := daemonLoader(s, f).loadReleased(t.Context(), "app:1", nil)
	var de *DaemonError
	if !errors.As(err, &de) || !errors.Is(err, ErrTruncated) {
		t.Fatalf("got %v, want ErrTruncated with a *DaemonError", err)
	}
	if b := storeBlobs(t, s); len(b) != 0 {
		t.Fatalf("blobs visible after a failed export: %v", b)
	}
}

// TestEngineOpenedLazily: archive loads never build the engine client.
func TestEngineOpenedLazily(t *testing.T) {
	var opened atomic.Int32
	f := newFakeEngine(t)
	l := NewLoader(openTestStore(t), WithEngineFunc(func() (engine.Client, engine.Endpoint, error) {
		opened.Add(1)
		return f, testEndpoint, nil
	}))
	if _, err := l.loadReleased(t.Context(), "docker-archive:"+filepath.Join(fixturesDir, "dive-test-docker-image.tar"), nil); err != nil {
		t.Fatal(err)
	}
	if opened.Load() != 0 {
		t.Fatal("engine opened for an archive")
	}
	for range 2 {
		if _, err := l.loadReleased(t.Context(), "app:1", nil); err != nil {
			t.Fatal(err)
		}
	}
	if opened.Load() != 1 {
		t.Fatalf("engine opened %d times, want 1", opened.Load())
	}
	if _, err := NewLoader(openTestStore(t)).loadReleased(t.Context(), "app:1", nil); err == nil {
		t.Fatal("daemon load without an engine succeeded")
	}
}

// fakeDaemonHandler answers the Engine API calls dockersave makes, for the
// image f holds.
func fakeDaemonHandler(apiVersion string, f *fakeEngine) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/_ping", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", apiVersion)
		w.Header().Set("Ostype", "linux")
		w.Write([]byte("OK"))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/info") {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"ServerVersion":"20.10.24","Driver":"overlay2","DriverStatus":[["Backing Filesystem","extfs"]]}`))
			return
		}
		_, name, ok := strings.Cut(r.URL.EscapedPath(), "/images/")
		if !ok || !strings.HasPrefix(r.URL.Path, "/v1.") {
			http.NotFound(w, r)
			return
		}
		switch {
		case name == "get":
			f.saves.Add(1)
			if r.URL.Query().Get("names") != f.inspect.ID {
				http.Error(w, "wrong name", http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Type", "application/x-tar")
			f.mu.Lock()
			serve := f.serveSave
			f.mu.Unlock()
			if serve != nil {
				serve(w, r, f.archive)
				return
			}
			w.Write(f.archive)
		case strings.HasSuffix(name, "/json"):
			ref, _ := url.PathUnescape(strings.TrimSuffix(name, "/json"))
			if r.URL.Query().Has("platform") && f.platformInspectErr != nil {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusNotFound)
				json.NewEncoder(w).Encode(map[string]string{"message": f.platformInspectErr.Error()})
				return
			}
			if ref != "app:1" && ref != f.inspect.ID {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusNotFound)
				json.NewEncoder(w).Encode(map[string]string{"message": "No such image: " + ref})
				return
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(f.inspect)
		default:
			http.NotFound(w, r)
		}
	})
	return mux
}

// fakeDaemon serves the Engine API over a unix socket, so the real moby
// client is exercised without Docker.
func fakeDaemon(t *testing.T, apiVersion string, f *fakeEngine) engine.Endpoint {
	return engine.Endpoint{Host: fakeengine.Start(t, fakeDaemonHandler(apiVersion, f)).Host, Source: "--docker-host"}
}

// TestTLSEndpoint: a tcp:// endpoint with a CA file talks TLS.
func TestTLSEndpoint(t *testing.T) {
	f := newFakeEngine(t)
	srv := httptest.NewTLSServer(fakeDaemonHandler("1.41", f))
	defer srv.Close()
	ca := writeFile(t, t.TempDir(), "ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	host := "tcp://" + strings.TrimPrefix(srv.URL, "https://")
	ep := engine.Endpoint{Host: host, Source: "DOCKER_HOST", TLS: &engine.EndpointTLS{CAFile: ca}}
	s := openTestStore(t)
	img, err := realClientLoader(t, s, ep).loadReleased(t.Context(), "app:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, s, img)
	// Without the CA the server is not trusted.
	_, err = realClientLoader(t, openTestStore(t), engine.Endpoint{Host: host, TLS: &engine.EndpointTLS{}}).loadReleased(t.Context(), "app:1", nil)
	if !errors.As(err, new(*engine.UnreachableError)) {
		t.Fatalf("untrusted server: got %v, want *engine.UnreachableError", err)
	}
}

func realClientLoader(t *testing.T, s *store.Store, ep engine.Endpoint) *Loader {
	c, err := engine.NewClient(ep)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return NewLoader(s, WithEngine(c, ep))
}

// TestRealClientAgainstFakeDaemon drives github.com/moby/moby/client end to
// end: inspect, save by ID, cache hit, and a 404.
func TestRealClientAgainstFakeDaemon(t *testing.T) {
	f := newFakeEngine(t)
	ep := fakeDaemon(t, "1.41", f)
	s := openTestStore(t)
	l := realClientLoader(t, s, ep)
	img, err := l.loadReleased(t.Context(), "app:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, s, img)
	if again, err := l.loadReleased(t.Context(), "app:1", nil); err != nil || !again.CacheHit || f.saves.Load() != 1 {
		t.Fatalf("second load: hit %v, %d saves, %v", again.CacheHit, f.saves.Load(), err)
	}
	_, err = l.loadReleased(t.Context(), "missing:1", nil)
	var nf *engine.NotFoundError
	if !errors.As(err, &nf) || nf.Ref != "missing:1" {
		t.Fatalf("got %v, want *engine.NotFoundError", err)
	}
	info, err := engine.Probe(t.Context(), mustClient(t, ep), ep)
	if err != nil || info.APIVersion != "1.41" || info.Driver != "overlay2" || info.ContainerdStore {
		t.Fatalf("Probe = %+v, %v", info, err)
	}
}

func mustClient(t *testing.T, ep engine.Endpoint) *client.Client {
	c, err := engine.NewClient(ep)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestDaemonAPITooOld(t *testing.T) {
	ep := fakeDaemon(t, "1.30", newFakeEngine(t))
	_, err := realClientLoader(t, openTestStore(t), ep).loadReleased(t.Context(), "app:1", nil)
	var ve *engine.APIVersionError
	if !errors.As(err, &ve) {
		t.Fatalf("got %v, want *engine.APIVersionError", err)
	}
}

func TestDaemonUnreachable(t *testing.T) {
	dir, err := os.MkdirTemp("", "lbd")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	// A socket file nobody listens on: connection refused.
	refused := filepath.Join(dir, "refused.sock")
	ln, err := net.Listen("unix", refused)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	for name, sock := range map[string]string{"missing socket": filepath.Join(dir, "missing.sock"), "refused": refused} {
		ep := engine.Endpoint{Host: "unix://" + sock, Source: "DOCKER_HOST"}
		_, err := realClientLoader(t, openTestStore(t), ep).loadReleased(t.Context(), "app:1", nil)
		var ue *engine.UnreachableError
		if !errors.As(err, &ue) || ue.Host != ep.Host {
			t.Errorf("%s: got %v, want *engine.UnreachableError for %s", name, err, ep.Host)
		}
	}
}

// TestClassifyPlatform: the daemon refusing a platform is a *PlatformError
// (the engine package classifies the rest).
func TestClassifyPlatform(t *testing.T) {
	ep := engine.Endpoint{Host: "unix:///var/run/docker.sock"}
	if got := daemonErr(errors.New("no suitable export target found for platform linux/arm64"), ep, "x"); !errors.As(got, new(*PlatformError)) {
		t.Errorf("platform export error classified as %v", got)
	}
}

// TestProgressCallback: the callback sees a growing byte count ending at the
// bytes of every blob read.
func TestProgressCallback(t *testing.T) {
	var last int64
	var calls int
	l := NewLoader(openTestStore(t), WithProgress(func(n int64) {
		if n < last {
			t.Errorf("progress went back from %d to %d", last, n)
		}
		last, calls = n, calls+1
	}))
	img, err := l.loadReleased(t.Context(), "docker-archive:"+filepath.Join(fixturesDir, "dive-test-docker-image.tar"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var want int64 = img.Manifest.Config.Size
	for _, d := range img.Manifest.Layers {
		want += d.Size
	}
	if calls == 0 || last != want {
		t.Fatalf("progress ended at %d after %d calls, want %d", last, calls, want)
	}
}
