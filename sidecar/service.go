package sidecar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/layerbridge/layerbridge/bridge"
	"github.com/layerbridge/layerbridge/containerdsource"
	"github.com/layerbridge/layerbridge/engine"
	"github.com/layerbridge/layerbridge/scan"
)

// Defaults of the Config limits left at zero.
const (
	DefaultMaxConcurrent = 2
	DefaultMaxQueued     = 100
	DefaultScanTimeout   = 30 * time.Minute
	DefaultRetention     = time.Hour
	DefaultMaxFinished   = 1000
)

// Config is everything a Service needs. Loader, Base and Clair are
// required; every limit left at zero takes its Default.
type Config struct {
	// Loader loads images; the layer server serves each scan's layers
	// with its image's Blobs. Only Docker daemon and containerd:
	// references reach it: the API refuses docker-archive:, oci-archive:
	// and oci: references, which would name files on the sidecar's own
	// file system.
	Loader scan.ImageLoader
	// Catalog, when set, enables the registry view (read-only /v2/) over
	// its images, guarded by Token. NewCatalog adapts the store.
	Catalog bridge.Catalog
	// Token guards the API and the registry view as bridge.Guard does: the
	// zero Token answers loopback clients only. The per-scan layer URLs
	// handed to Clair are never guarded (they carry a capability), and
	// neither are /healthz, /readyz and /metrics, which name no image;
	// /readyz gives the reasons behind its answer only to the clients the
	// token lets in and to loopback clients.
	Token bridge.Token
	// Base is the URL Clair reaches the listener that serves Handler at;
	// the layer URLs handed to Clair are built on it.
	Base *url.URL

	// Clair is the Clair every scan and the readiness probe ask
	// (scan.NewClair). The API it speaks is detected once, by the first
	// scan or readiness probe that reaches it, and kept.
	Clair scan.Clair

	// Engine opens the Docker Engine client that /readyz probes with
	// engine.Probe; it should be the one the Loader uses. nil leaves
	// Docker out of readiness.
	Engine func() (engine.Client, engine.Endpoint, error)
	// Containerd, when set, is probed by /readyz too: the containerd of
	// containerd: images answers (it should be the source the Loader
	// reads them with).
	Containerd ContainerdProber
	// Store, when set, is probed by /readyz: while it cannot be written (a
	// read-only file system, say), no scan of a new image can succeed, so
	// the service is not ready. It should be the store the Loader writes;
	// *dockersave.Store is one.
	Store WritableStore

	// MaxConcurrent bounds the scans that run at once; the others wait in
	// state queued. MaxQueued bounds those waiting: beyond it the API
	// answers 429.
	MaxConcurrent int
	MaxQueued     int
	// ScanTimeout bounds one scan, queueing included.
	ScanTimeout time.Duration
	// A finished scan (done or failed) is kept for Retention after it
	// finished, and only the MaxFinished most recent are kept; then GET
	// answers 404 for it.
	Retention   time.Duration
	MaxFinished int

	// Cache, when set with CacheMaxSize > 0, is pruned to CacheMaxSize
	// bytes after each scan. Each scan's image is pinned by the Loader
	// from its load until Clair is done with it.
	Cache        Cache
	CacheMaxSize int64

	// Version is layerbridge's version, written into sarif and html reports.
	Version string
	// Logger receives one line per decision; nil discards.
	Logger *slog.Logger
	// Now is the clock of timestamps and retention; nil is time.Now.
	Now func() time.Time
}

// ContainerdProber is a containerd /readyz can probe;
// *containerdsource.Source is one.
type ContainerdProber interface {
	Probe(ctx context.Context) (containerdsource.ServerInfo, error)
}

// WritableStore is an image store /readyz can probe.
type WritableStore interface {
	// CheckWritable returns why no image can be stored now, or nil.
	CheckWritable() error
}

// Service runs scans requested over HTTP. Create it with New, serve
// Handler, and call Shutdown before the http.Server's own Shutdown. It is
// safe for concurrent use.
type Service struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	server  *bridge.Server
	metrics *metrics
	api     detectedAPI // the API Clair speaks, once known

	sem chan struct{}  // one token per running scan
	wg  sync.WaitGroup // scan goroutines

	probes readyProbes // the cached readiness probes

	mu       sync.Mutex
	draining bool
	scans    map[string]*record // by id
	active   map[string]*record // by request key, while queued or running
	finished []*record          // oldest first
}

// ErrShuttingDown is the cause of scans cancelled by Shutdown, and the
// reason the API refuses new scans once Drain was called.
var ErrShuttingDown = errors.New("layerbridge is shutting down")

// New checks cfg and returns a Service. It starts nothing: scans start on
// request.
func New(cfg Config) (*Service, error) {
	if cfg.Loader == nil || cfg.Clair.URL == nil || cfg.Clair.V4 == nil || cfg.Clair.V2 == nil {
		return nil, errors.New("sidecar: Loader and Clair (scan.NewClair) are required")
	}
	if cfg.Base == nil || cfg.Base.Scheme == "" || cfg.Base.Host == "" {
		return nil, fmt.Errorf("sidecar: base url %q is not absolute", cfg.Base)
	}
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = DefaultMaxConcurrent
	}
	if cfg.MaxQueued <= 0 {
		cfg.MaxQueued = DefaultMaxQueued
	}
	if cfg.ScanTimeout <= 0 {
		cfg.ScanTimeout = DefaultScanTimeout
	}
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.MaxFinished <= 0 {
		cfg.MaxFinished = DefaultMaxFinished
	}
	s := &Service{
		cfg:     cfg,
		log:     cfg.Logger,
		now:     cfg.Now,
		metrics: newMetrics(),
		sem:     make(chan struct{}, cfg.MaxConcurrent),
		scans:   make(map[string]*record),
		active:  make(map[string]*record),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if cfg.Cache != nil && cfg.CacheMaxSize > 0 {
		s.metrics.registerCacheLimit(cfg.CacheMaxSize)
	}
	opts := []bridge.Option{bridge.WithLogger(s.log), bridge.WithFetchObserver(s.metrics.observeFetch)}
	if cfg.Catalog != nil {
		opts = append(opts, bridge.WithRegistry(cfg.Catalog, cfg.Token))
	}
	s.server = bridge.New(opts...)
	s.routes()
	return s, nil
}

// Handler serves everything on one listener: the API under /api/v1/, the
// per-scan layer URLs, the registry view under /v2/ (with a Catalog),
// /healthz, /readyz and /metrics.
func (s *Service) Handler() http.Handler { return s.server }

// Drain stops accepting scans: from now on POST answers 503 and /readyz
// reports not ready. Scans already accepted go on. It returns at once.
func (s *Service) Drain() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.draining {
		s.log.Info("draining: no new scans are accepted")
	}
	s.draining = true
}

// Shutdown drains (see Drain), cancels the scans still queued, and waits
// for the running ones to finish until ctx is done: then it cancels them
// (their grants are revoked, so Clair's later layer requests get 404) and
// waits for them to return. It returns an error wrapping ctx's when it had
// to cancel running scans (work was lost), nil otherwise.
//
// Call it before the http.Server's Shutdown, which then waits for the layer
// downloads still in flight; scans already finished stay readable until
// the server stops.
func (s *Service) Shutdown(ctx context.Context) error {
	s.Drain()
	s.mu.Lock()
	running := 0
	for _, rec := range s.active {
		if rec.state == StateQueued {
			rec.cancel(ErrShuttingDown)
		} else {
			running++
		}
	}
	s.mu.Unlock()
	s.log.Info("waiting for running scans", "running", running)
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	n := 0 // running scans cancelled; the queued ones were cancelled above
	for _, rec := range s.active {
		if rec.state != StateQueued {
			n++
		}
		rec.cancel(ErrShuttingDown)
	}
	s.mu.Unlock()
	if n > 0 {
		s.log.Warn("grace period over: cancelling running scans", "scans", n)
	}
	<-done
	if n == 0 {
		// Every running scan ended as the grace period did.
		return nil
	}
	return fmt.Errorf("cancelled %d running scan(s): %w", n, ctx.Err())
}

// PruneCache prunes the cache to Config.CacheMaxSize now, as happens after
// every scan (for example once at start-up). Without a Cache or a limit it
// does nothing.
func (s *Service) PruneCache(ctx context.Context) error {
	if s.cfg.Cache == nil || s.cfg.CacheMaxSize <= 0 {
		return nil
	}
	start := time.Now()
	res, err := s.cfg.Cache.Prune(ctx, s.cfg.CacheMaxSize)
	// A failed Prune may still have evicted some: count what it did.
	s.metrics.evicted.Add(float64(res.BytesFreed))
	if err != nil {
		return fmt.Errorf("prune the image cache to %d bytes: %w", s.cfg.CacheMaxSize, err)
	}
	s.metrics.cacheSize.Set(float64(res.After))
	s.log.Debug("cache pruned", "before", res.Before, "after", res.After, "limit", s.cfg.CacheMaxSize,
		"evicted_images", len(res.Evicted), "blobs_removed", res.BlobsRemoved, "freed", res.BytesFreed,
		"in_use", res.InUse, "duration", time.Since(start).Round(time.Millisecond))
	if res.After > s.cfg.CacheMaxSize {
		s.log.Info("the image cache stays above its limit: the images of running scans are pinned",
			"size", res.After, "limit", s.cfg.CacheMaxSize, "in_use", res.InUse)
	}
	return nil
}
