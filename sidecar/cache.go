package sidecar

import (
	"context"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/dockersave"
	"github.com/layerbridge/layerbridge/scan"
	"github.com/layerbridge/layerbridge/store"
)

// Cache is the eviction side of the image store: what the sidecar needs to
// keep the store under --cache-max-size. *store.Store is one. The images
// of running scans are pinned by the loader, so Prune leaves them alone.
type Cache interface {
	// Prune evicts the least recently used images that are not pinned
	// until the store holds at most maxBytes, or nothing unpinned is left.
	Prune(ctx context.Context, maxBytes int64) (store.PruneResult, error)
}

// scanLoader loads an image for one scan and measures the export; the
// loader's pin is released by scan.Run once Clair is done with the image.
type scanLoader struct {
	s   *Service
	rec *record
}

func (l scanLoader) Load(ctx context.Context, ref string, platform *ocispec.Platform, opts ...dockersave.LoadOption) (dockersave.Image, func(), error) {
	start := time.Now()
	img, release, err := l.s.cfg.Loader.Load(ctx, ref, platform, opts...)
	if err != nil {
		return img, nil, err
	}
	l.s.metrics.observeExport(time.Since(start), img.CacheHit)
	l.s.log.Debug("image loaded for scan", "scan", l.rec.id, "ref", ref, "id", img.ID, "cache_hit", img.CacheHit)
	return img, release, nil
}

var _ scan.ImageLoader = scanLoader{}
