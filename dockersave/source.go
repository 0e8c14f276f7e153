package dockersave

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/platforms"
	"github.com/layerbridge/layerbridge/store"
)

// A Source reads the images of one kind of reference (see SourceKind) for a
// Loader: the Docker daemon, archive files and OCI layouts are built in,
// and WithSource adds others (or replaces these).
//
// Load returns the image req names, verified (see verify.go: every source
// holds its images to the same rules), with Blobs set to what opens its
// blobs, and a release that keeps those blobs available until it is called
// (a store pin, a lease). Errors name req.Ref.
type Source interface {
	Load(ctx context.Context, req Request) (img Image, release func(), err error)
}

// SourceFunc adapts a function to Source.
type SourceFunc func(ctx context.Context, req Request) (Image, func(), error)

// Load calls f.
func (f SourceFunc) Load(ctx context.Context, req Request) (Image, func(), error) { return f(ctx, req) }

// Request is one load, as a Source receives it from Loader.Load.
type Request struct {
	// Ref is the reference as given to Loader.Load: the Image's Ref, and
	// what errors name.
	Ref string
	// Kind is the reference's kind, the one the Source is registered for;
	// Name is the rest of it, what the source reads (an image name of the
	// daemon, a path).
	Kind SourceKind
	Name string
	// Platform, when not nil, is the platform asked for, normalized (see
	// platforms.Normalize): an image without it is a *PlatformError. nil
	// leaves the choice to the source (the daemon's image as inspected, or
	// Host, or the only image).
	Platform *ocispec.Platform
	// Host is the platform to prefer when several images match and
	// Platform is nil.
	Host ocispec.Platform
	// Progress, when not nil, takes how far the load has read its source
	// (see WithProgress, WithLoadProgress).
	Progress func(Progress)
	// Log takes the source's decisions, at debug level; never nil.
	Log *slog.Logger
	// Watch, when not nil, is told what the load learns before it returns
	// (WithWatcher); a source may ignore it.
	Watch Watcher
}

// progressFor is the callback that reports bytes read to req.Progress, for
// a load expected to read about expected bytes (0: unknown); nil without
// req.Progress.
func (req Request) progressFor(expected int64) func(int64) {
	if req.Progress == nil {
		return nil
	}
	return func(n int64) { req.Progress(Progress{Bytes: n, Expected: expected}) }
}

// The kinds imageref.Parse knows; the prefix "docker-daemon:" names SourceDaemon.
var builtinKinds = []SourceKind{SourceDaemon, SourceDockerArchive, SourceOCIArchive, SourceOCILayout, "docker-daemon"}

// maxPinAttempts bounds the loads of an image that Prune keeps evicting
// between its load and its pin.
const maxPinAttempts = 3

// storeSource makes a Source of load, which reads images into the store
// and returns them pinned when it could take the pin before Prune could
// evict the image (a cache hit is looked up under the pin; a commit pins
// before it releases the store's index lock). When it could not (another
// export of the image interfered), the image is pinned afterwards and,
// should Prune have evicted it meanwhile, loaded again (a few times at
// most, then the load fails with an error wrapping store.ErrNotStored).
func (l *Loader) storeSource(load func(context.Context, Request) (Image, *store.Pin, error)) Source {
	return SourceFunc(func(ctx context.Context, req Request) (Image, func(), error) {
		for attempt := 1; ; attempt++ {
			img, pin, err := load(ctx, req)
			if err != nil {
				return Image{}, nil, err
			}
			img.Blobs = l.store
			if img.CacheHit {
				// Exports were marked used when committed. The mark is
				// advisory: a store that cannot take it (read-only) still
				// serves the image.
				if err := l.store.Touch(img.record()); err != nil {
					req.Log.DebugContext(ctx, "cannot mark image used", "ref", req.Ref, "error", err)
				}
			}
			if pin != nil {
				return img, pin.Release, nil
			}
			req.Log.DebugContext(ctx, "pinning after load", "ref", req.Ref, "manifest", img.ManifestDigest)
			pin, err = l.store.Pin(ctx, img.record())
			if err == nil {
				return img, pin.Release, nil
			}
			if !errors.Is(err, store.ErrNotStored) || attempt == maxPinAttempts {
				return Image{}, nil, fmt.Errorf("%s: %w", req.Ref, err)
			}
			req.Log.DebugContext(ctx, "evicted before pinned, loading again", "ref", req.Ref, "attempt", attempt)
		}
	})
}

// commit stores the verified image img (v: verify checked its blobs and
// manifest) holding its lock (nil when not held), and returns its pin (nil
// when it must be pinned afterwards).
func (l *Loader) commit(ctx context.Context, img Image, v *verified, lock *store.ImageLock) (*store.Pin, error) {
	pin, err := l.store.Commit(ctx, img.record(), v.manifestBytes, v.staged(), lock)
	if err != nil {
		return nil, fmt.Errorf("%s: store: %w", img.Ref, err)
	}
	v.published()
	return pin, nil
}

func imageOf(ref string, kind SourceKind, id digest.Digest, p ocispec.Platform, tags []string, v *verified) Image {
	return Image{
		Ref:            ref,
		Source:         kind,
		ID:             id,
		Platform:       platforms.Normalize(p),
		RepoTags:       tags,
		ManifestDigest: v.manifestDigest,
		ManifestSize:   int64(len(v.manifestBytes)),
		Synthesized:    v.manifestBlob == nil,
		IndexDigest:    indexDigest(v.manifestDigest, v.config.Digest, v.manifestBlob == nil),
		Manifest:       v.manifest,
		DiffIDs:        v.diffIDs,
	}
}
