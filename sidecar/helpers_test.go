package sidecar_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

const (
	samples       = "../testdata/clair-samples"
	alpineArchive = "docker-archive:../testdata/fixtures/alpine-3.11-docker-save.tar.gz"
	// alpineLayerSize is the size of the fixture's one (uncompressed) layer.
	alpineLayerSize = 5861888
	testToken       = "sidecar-test-token-0123456789"
)

func noWait(ctx context.Context, _ int) error { return ctx.Err() }

// pollNow is a Client poll backoff that only yields: tests wait for states
// with channels where they can, and poll without a clock where they cannot.
func pollNow(ctx context.Context, _ int) error {
	runtime.Gosched()
	return ctx.Err()
}

// fixtureLoader stands in for the Docker daemon: it loads the daemon
// references it knows from fixture archives, with the real dockersave
// loader, and counts every load. Like the daemon path of dockersave, it
// answers from the store (CacheHit) an image it stored before. With gate
// set, each load waits for a value (or the gate's close) after announcing
// itself on entered. With events set, it records every pin and release.
type fixtureLoader struct {
	inner   *dockersave.Loader
	store   *store.Store
	images  map[string]string // daemon reference -> archive reference
	loads   atomic.Int64
	gate    chan struct{}
	entered chan string
	events  *eventLog

	mu     sync.Mutex
	stored map[string]dockersave.Image // by reference
}

// Load pins the image in the store as dockersave does.
func (l *fixtureLoader) Load(ctx context.Context, ref string, p *ocispec.Platform, opts ...dockersave.LoadOption) (dockersave.Image, func(), error) {
	l.loads.Add(1)
	if l.entered != nil {
		l.entered <- ref
	}
	if l.gate != nil {
		select {
		case <-l.gate:
		case <-ctx.Done():
			return dockersave.Image{}, nil, ctx.Err()
		}
	}
	archive, ok := l.images[ref]
	if !ok {
		return dockersave.Image{}, nil, &engine.NotFoundError{Ref: ref}
	}
	l.mu.Lock()
	prev, seen := l.stored[ref]
	l.mu.Unlock()
	if seen && p == nil {
		if _, pin, ok, err := l.store.LookupPinned(ctx, prev.ID, prev.Platform); err == nil && ok {
			prev.CacheHit = true
			return prev, l.events.pinned(prev, pin.Release), nil
		}
	}
	img, release, err := l.inner.Load(ctx, archive, p)
	if err != nil {
		return img, nil, err
	}
	l.mu.Lock()
	l.stored[ref] = img
	l.mu.Unlock()
	return img, l.events.pinned(img, release), nil
}

// eventLog records the pins of a fixtureLoader and the prunes of a
// fakeCache, in the order they happen.
type eventLog struct {
	mu     sync.Mutex
	pins   map[string]int // manifest digest -> pins held
	events []string
}

func newEventLog() *eventLog { return &eventLog{pins: map[string]int{}} }

func (e *eventLog) add(event string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events = append(e.events, event)
}

// pinned records img's pin and returns its release, which records its end;
// on a nil log it returns release.
func (e *eventLog) pinned(img dockersave.Image, release func()) func() {
	if e == nil {
		return release
	}
	d := img.ManifestDigest.String()
	e.mu.Lock()
	e.pins[d]++
	e.events = append(e.events, "pin "+d)
	e.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			release()
			e.mu.Lock()
			defer e.mu.Unlock()
			e.pins[d]--
			e.events = append(e.events, "release "+d)
		})
	}
}

// held is the number of pins held.
func (e *eventLog) held() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, v := range e.pins {
		n += v
	}
	return n
}

// String is the events, one a line.
func (e *eventLog) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return strings.Join(e.events, "\n")
}

// blockingClair is a Clair 4 double (fakeclair.V4, which really downloads
// the layers) that, when hold is set, stops each index request before it
// starts downloading: it announces it on entered with the layer URLs it was
// given, then waits for release (or for the request to be cancelled).
type blockingClair struct {
	fake    *fakeclair.V4
	hold    bool
	entered chan []string
	release chan struct{}
}

func (c *blockingClair) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if c.hold && r.Method == "POST" && r.URL.Path == "/indexer/api/v1/index_report" {
		body, _ := io.ReadAll(r.Body)
		var m struct {
			Layers []struct {
				URI string `json:"uri"`
			} `json:"layers"`
		}
		json.Unmarshal(body, &m)
		var uris []string
		for _, l := range m.Layers {
			uris = append(uris, l.URI)
		}
		c.entered <- uris
		select {
		case <-c.release:
		case <-r.Context().Done():
			http.Error(w, "cancelled", http.StatusServiceUnavailable)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	c.fake.ServeHTTP(w, r)
}

// env is one sidecar under test: the service, the listener it serves on,
// its Clair double and its image source.
type env struct {
	manual bool // the test serves ts.Listener itself
	svc    *sidecar.Service
	ts     *httptest.Server
	clair  *blockingClair
	loader *fixtureLoader
	store  *store.Store
	client *sidecar.Client
	cfg    sidecar.Config
	limits bridge.Limits // of the listener
}

type option func(*env)

func withToken(t *testing.T) option {
	return func(e *env) {
		tok, err := newToken()
		if err != nil {
			t.Fatal(err)
		}
		e.cfg.Token = tok
	}
}

// serveManually leaves ts unstarted: the test serves ts.Listener with its
// own http.Server.
func serveManually() option { return func(e *env) { e.manual = true } }

func holdClair() option { return func(e *env) { e.clair.hold = true } }

func gateLoads() option {
	return func(e *env) {
		e.loader.gate = make(chan struct{})
		e.loader.entered = make(chan string, 100)
	}
}

func withConfig(fn func(*sidecar.Config)) option { return func(e *env) { fn(&e.cfg) } }

func withLimits(l bridge.Limits) option { return func(e *env) { e.limits = l } }

// newEnv starts a sidecar on a loopback httptest server whose images are
// alpine:3.11 (and its copy alpine:copy) from the fixture archive.
func newEnv(t *testing.T, opts ...option) *env {
	t.Helper()
	cache, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cache.Close() })
	e := &env{
		store: cache,
		clair: &blockingClair{
			fake:    &fakeclair.V4{Samples: samples},
			entered: make(chan []string, 100),
			release: make(chan struct{}),
		},
		loader: &fixtureLoader{
			inner:  dockersave.NewLoader(cache),
			store:  cache,
			stored: map[string]dockersave.Image{},
			images: map[string]string{"alpine:3.11": alpineArchive, "alpine:copy": alpineArchive},
		},
	}
	clair := httptest.NewServer(e.clair)
	t.Cleanup(clair.Close)
	clairURL, _ := url.Parse(clair.URL)

	e.ts = httptest.NewUnstartedServer(nil)
	base, _ := url.Parse("http://" + e.ts.Listener.Addr().String())
	e.cfg = sidecar.Config{
		Loader:  e.loader,
		Catalog: sidecar.NewCatalog(cache),
		Store:   cache,
		Base:    base,
		Clair:   scan.NewClair(clairURL, scan.APIAuto, scan.ClairOptions{Backoff: noWait}),
		Version: "v0.0.0-test",
	}
	for _, o := range opts {
		o(e)
	}
	e.svc, err = sidecar.New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Served as serve serves it.
	e.ts.Config = bridge.NewHTTPServer(e.svc.Handler(), nil, e.limits)
	if !e.manual {
		e.ts.Start()
	}
	t.Cleanup(func() {
		// Let every scan end before the stores and servers close.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		e.svc.Shutdown(ctx)
		if !e.manual {
			e.ts.Close()
		}
	})
	secret := ""
	if e.cfg.Token.IsSet() {
		secret = testToken
	}
	e.client = sidecar.NewClient(base, secret, sidecar.WithPollBackoff(pollNow))
	return e
}

// do sends a request to the sidecar with the test token when one is set.
func (e *env) do(t *testing.T, method, path, body string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, e.ts.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if e.cfg.Token.IsSet() {
		req.Header.Set("Authorization", "Bearer "+testToken)
	}
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// post asks for a scan and returns its status, failing unless the answer
// is 202.
func (e *env) post(t *testing.T, image string) sidecar.Status {
	t.Helper()
	st, err := e.client.Submit(t.Context(), sidecar.Request{Image: image})
	if err != nil {
		t.Fatalf("POST %s: %v", image, err)
	}
	return st
}

// wait polls scan id until it is finished.
func (e *env) wait(t *testing.T, id string) sidecar.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	st, err := e.client.Wait(ctx, id, nil)
	if err != nil && st.State != sidecar.StateFailed {
		t.Fatalf("wait for scan %s: %v", id, err)
	}
	return st
}

// exporting waits until a scan is inside the loader (gateLoads) and
// returns the reference it loads.
func (e *env) exporting(t *testing.T) string {
	t.Helper()
	return testwait.Recv(t, e.loader.entered, "a scan to start exporting")
}

// indexing waits until Clair holds a scan's index request (holdClair) and
// returns the layer URLs it was given.
func (e *env) indexing(t *testing.T) []string {
	t.Helper()
	return testwait.Recv(t, e.clair.entered, "Clair to receive an index request")
}

// fakeCache records prunes in its event log.
type fakeCache struct {
	*eventLog
	pruned  chan int64 // receives each Prune's limit
	size    int64
	evicted int64
}

func newFakeCache() *fakeCache {
	return &fakeCache{eventLog: newEventLog(), pruned: make(chan int64, 100)}
}

func (c *fakeCache) Prune(_ context.Context, max int64) (store.PruneResult, error) {
	c.add(fmt.Sprintf("prune %d", max))
	c.pruned <- max
	return store.PruneResult{Before: c.size + c.evicted, After: c.size, BlobsRemoved: 1, BytesFreed: c.evicted}, nil
}
