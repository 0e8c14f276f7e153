package sidecar_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/layerbridge/layerbridge/bridge"
	"github.com/layerbridge/layerbridge/internal/testwait"
	"github.com/layerbridge/layerbridge/sidecar"
	"github.com/layerbridge/layerbridge/store"
)

// A SIGTERM, as serve handles it: the API stops accepting scans, a scan
// whose layers Clair is downloading completes, and then the server stops.
func TestGracefulShutdown(t *testing.T) {
	e := newEnv(t, holdClair(), serveManually())
	// A real http.Server, as serve runs it, on the listener the layer URLs
	// point at, so that its Shutdown is tested too.
	srv := bridge.NewHTTPServer(e.svc.Handler(), nil, bridge.Limits{})
	shutdownStarted := make(chan struct{})
	srv.RegisterOnShutdown(func() { close(shutdownStarted) })
	served := make(chan error, 1)
	go func() { served <- srv.Serve(e.ts.Listener) }()

	st := e.post(t, "alpine:3.11")
	uris := e.indexing(t) // Clair is indexing: the scan is in flight

	e.svc.Drain()
	_, err := e.client.Submit(t.Context(), sidecar.Request{Image: "alpine:copy"})
	var ae *sidecar.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable || !strings.Contains(ae.Message, "shutting down") {
		t.Fatalf("POST while draining: err = %v, want 503 shutting down", err)
	}
	if r := e.svc.Ready(t.Context()); r.Ready {
		t.Errorf("ready while draining: %+v", r)
	}

	// A layer download that starts before the server's Shutdown ends whole.
	resp, err := http.Get(uris[0])
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("layer download: %v %v", resp, err)
	}
	defer resp.Body.Close()

	shutdown := make(chan error, 1)
	wait := testwait.Context(t)
	go func() { shutdown <- e.svc.Shutdown(wait) }()
	close(e.clair.release) // Clair downloads the layer and answers
	if err := testwait.Recv(t, shutdown, "Shutdown"); err != nil {
		t.Fatalf("Shutdown: %v, want nil: the scan finished within the grace period", err)
	}
	// The finished scan is still readable until the server stops.
	done, err := e.client.Status(t.Context(), st.ID)
	if err != nil || done.State != sidecar.StateDone {
		t.Fatalf("scan after shutdown: %+v, %v; want done", done, err)
	}
	if n := e.clair.fake.Downloads(); n != 1 {
		t.Errorf("clair downloaded %d layers", n)
	}

	stopped := make(chan error, 1)
	go func() { stopped <- srv.Shutdown(wait) }()
	testwait.Recv(t, shutdownStarted, "the server's Shutdown to start")
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || n != alpineLayerSize {
		t.Errorf("layer download across the server's Shutdown: %d bytes, %v; want %d", n, err, alpineLayerSize)
	}
	if err := testwait.Recv(t, stopped, "the server's Shutdown"); err != nil {
		t.Fatal(err)
	}
	if err := testwait.Recv(t, served, "Serve to return"); !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve returned %v, want ErrServerClosed", err)
	}
	if _, err := e.client.Status(t.Context(), st.ID); err == nil {
		t.Error("the server still answers after Shutdown")
	}
}

// When the grace period ends first, running scans are cancelled (and say
// why), queued ones never start, and Shutdown reports it.
func TestShutdownGracePeriodOver(t *testing.T) {
	e := newEnv(t, holdClair(), withConfig(func(c *sidecar.Config) { c.MaxConcurrent = 1 }))
	running := e.post(t, "alpine:3.11")
	e.indexing(t)
	queued := e.post(t, "alpine:copy")

	ctx, cancel := context.WithCancel(testwait.Context(t))
	shutdown := make(chan error, 1)
	go func() { shutdown <- e.svc.Shutdown(ctx) }()
	// The queued scan is cancelled at once, while the running one goes on.
	if st := e.wait(t, queued.ID); st.State != sidecar.StateFailed || !strings.Contains(st.Error, sidecar.ErrShuttingDown.Error()) {
		t.Errorf("queued scan: %s %q, want failed: shutting down", st.State, st.Error)
	}
	if st, _ := e.client.Status(t.Context(), running.ID); st.State != sidecar.StateIndexing {
		t.Errorf("running scan is %s before the grace period ends, want indexing", st.State)
	}
	cancel() // the grace period is over
	if err := testwait.Recv(t, shutdown, "Shutdown"); !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown: %v, want the grace period's end", err)
	}
	st, _ := e.client.Status(t.Context(), running.ID)
	if st.State != sidecar.StateFailed || !strings.Contains(st.Error, sidecar.ErrShuttingDown.Error()) {
		t.Errorf("running scan: %s %q, want failed: shutting down", st.State, st.Error)
	}
	if n := e.loader.loads.Load(); n != 1 {
		t.Errorf("%d images loaded, want 1: the queued scan must never start", n)
	}
	m := scrape(t, e)
	if got := value(t, m, "layerbridge_scans_total", map[string]string{"outcome": "cancelled"}); got != 2 {
		t.Errorf("scans_total{outcome=cancelled} = %v, want 2", got)
	}
}

// A scan's image stays pinned from its load until Clair is done with it,
// and the cache is pruned to its limit after the scan.
func TestCachePinnedDuringScanThenPruned(t *testing.T) {
	cache := newFakeCache()
	cache.size, cache.evicted = 12345, 678
	e := newEnv(t, holdClair(), withConfig(func(c *sidecar.Config) {
		c.Cache = cache
		c.CacheMaxSize = 10 << 30
	}))
	e.loader.events = cache.eventLog // the loader pins, the cache prunes
	st := e.post(t, "alpine:3.11")
	e.indexing(t)
	if n := cache.held(); n != 1 {
		t.Errorf("%d pins while clair downloads the layers, want 1", n)
	}
	close(e.clair.release)
	if got := testwait.Recv(t, cache.pruned, "the prune after the scan"); got != 10<<30 {
		t.Errorf("pruned to %d bytes, want the limit %d", got, int64(10<<30))
	}
	done := e.wait(t, st.ID)
	if done.State != sidecar.StateDone {
		t.Fatalf("scan: %s %s", done.State, done.Error)
	}
	if n := cache.held(); n != 0 {
		t.Errorf("%d pins left after the scan", n)
	}
	events := cache.String()
	if !strings.HasPrefix(events, "pin ") || !strings.Contains(events, "\nrelease ") || !strings.HasSuffix(events, "\nprune 10737418240") {
		t.Errorf("cache events:\n%s\nwant pin, release, prune", events)
	}
	m := scrape(t, e)
	if got := value(t, m, "layerbridge_cache_size_bytes", nil); got != 12345 {
		t.Errorf("cache_size_bytes = %v, want 12345", got)
	}
	if got := value(t, m, "layerbridge_cache_max_size_bytes", nil); got != 10<<30 {
		t.Errorf("cache_max_size_bytes = %v", got)
	}
	if got := value(t, m, "layerbridge_cache_evicted_bytes_total", nil); got != 678 {
		t.Errorf("cache_evicted_bytes_total = %v, want 678", got)
	}
}

var _ sidecar.Cache = (*store.Store)(nil)

// With the real store as the cache: a Prune from elsewhere while Clair
// downloads cannot take the scan's layers away, and the scan's own prune
// afterwards brings the store under its limit.
func TestStoreEvictionAroundAScan(t *testing.T) {
	e := newEnv(t, holdClair(), func(e *env) {
		e.cfg.Cache = e.store
		e.cfg.CacheMaxSize = 1 // evict everything that is not pinned
	})
	st := e.post(t, "alpine:3.11")
	e.indexing(t)
	res, err := e.store.Prune(t.Context(), 0)
	if err != nil || len(res.Evicted) != 0 || res.InUse != 1 {
		t.Errorf("prune during the scan: %+v, %v; want nothing evicted, one image in use", res, err)
	}
	close(e.clair.release)
	done := e.wait(t, st.ID)
	if done.State != sidecar.StateDone {
		t.Fatalf("scan: %s %s", done.State, done.Error)
	}
	if n := e.clair.fake.Downloads(); n != 1 {
		t.Errorf("clair downloaded %d layers", n)
	}
	// The scan's own prune ran before it was marked done.
	if imgs, err := e.store.Images(); err != nil || len(imgs) != 0 {
		t.Errorf("store after the scan holds %d images (%v), want none: the limit is 1 byte", len(imgs), err)
	}
	m := scrape(t, e)
	if got := value(t, m, "layerbridge_cache_size_bytes", nil); got != 0 {
		t.Errorf("cache_size_bytes = %v, want 0", got)
	}
	if got := value(t, m, "layerbridge_cache_evicted_bytes_total", nil); got < alpineLayerSize {
		t.Errorf("cache_evicted_bytes_total = %v, want at least the layer's %d", got, alpineLayerSize)
	}
}
