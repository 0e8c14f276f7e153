package sidecar

import (
	"context"
	"errors"
	"fmt"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/dockersave"
	"github.com/layerbridge/layerbridge/scan"
)

// Cache is the eviction side of the image store: what the sidecar needs to
// keep the store under --cache-max-size without pulling an image out from
// under a running scan. *dockersave.Store is one.
type Cache interface {
	// Pin keeps img's blobs from being evicted, by this process or any
	// other sharing the store, until release is called. It fails with an
	// error wrapping dockersave.ErrNotStored when img was evicted after it
	// was loaded: load it again.
	Pin(ctx context.Context, img dockersave.Image) (release func(), err error)
	// Prune evicts the least recently used images that are not pinned
	// until the store holds at most maxBytes, or nothing unpinned is left.
	Prune(ctx context.Context, maxBytes int64) (dockersave.PruneResult, error)
}

// maxPinAttempts bounds the loads of an image that a concurrent Prune (of
// another process sharing the store) keeps evicting before it is pinned.
const maxPinAttempts = 3

// pinLoader loads an image for one scan: it measures the export and, with a
// Cache, pins the image before scan.Run hands its layers to Clair.
type pinLoader struct {
	s     *Service
	rec   *record
	unpin *func() // set once the image is pinned; the scan goroutine calls it
}

func (l pinLoader) Load(ctx context.Context, ref string, platform *ocispec.Platform) (dockersave.Image, error) {
	for attempt := 1; ; attempt++ {
		start := time.Now()
		img, err := l.s.cfg.Loader.Load(ctx, ref, platform)
		if err != nil {
			return img, err
		}
		l.s.metrics.observeExport(time.Since(start), img.CacheHit)
		l.s.log.Debug("image loaded for scan", "scan", l.rec.id, "ref", ref, "id", img.ID, "cache_hit", img.CacheHit)
		if l.s.cfg.Cache == nil || l.s.cfg.CacheMaxSize <= 0 {
			return img, nil
		}
		release, err := l.s.cfg.Cache.Pin(ctx, img)
		if err == nil {
			*l.unpin = release
			return img, nil
		}
		if !errors.Is(err, dockersave.ErrNotStored) || attempt == maxPinAttempts {
			return img, fmt.Errorf("pin %s in the image cache: %w", ref, err)
		}
		l.s.log.Debug("image evicted before it was pinned: loading it again", "scan", l.rec.id, "ref", ref, "attempt", attempt)
	}
}

var _ scan.ImageLoader = pinLoader{}
