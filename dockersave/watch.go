package dockersave

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/blobs"
	"github.com/layerbridge/layerbridge/store"
)

// A Watcher learns about an image while a Source loads it, so that its
// caller can act before the load returns: ask Clair whether it has indexed
// the image before anything is exported, and hand Clair the layers' URLs
// while the layers are still arriving. A source calls each method at most
// once, in this order, from the loading goroutine; keep them fast. Sources
// that learn everything at the end (archive files) call neither.
type Watcher interface {
	// Identified tells what the source knows of the image before reading
	// it (a daemon image: after inspect, before looking in the store or
	// exporting). A non-nil error ends the load, which returns it.
	Identified(ctx context.Context, id Identity) error
	// Layers gives the image's layers as they will be served (digests of
	// the bytes Clair downloads, oldest first; sizes may be 0 when not
	// known yet) and an opener of them. The opener serves a layer once the
	// load has read it and checked it (its digest, and its diff ID against
	// the image's); a layer not read yet is waited for, as long as the
	// request's context allows, and fails once the load fails. After the
	// load has returned, the opener serves from the store for as long as
	// the load's release is not called.
	Layers(ctx context.Context, layers []ocispec.Descriptor, opener blobs.Opener)
}

// Identity is what a source knows of an image before reading it.
type Identity struct {
	// ID, Platform and RepoTags are as Image has them.
	ID       digest.Digest
	Platform ocispec.Platform
	RepoTags []string
	// IndexDigest is the digest Clair indexes the image under, as
	// Image.IndexDigest will be, when the source can tell it without
	// reading the image ("" otherwise).
	IndexDigest digest.Digest
	// DiffIDs are the layers' uncompressed digests, oldest first (nil when
	// unknown).
	DiffIDs []digest.Digest
}

// LoadOption configures one Loader.Load.
type LoadOption func(*Request)

// WithWatcher has the load tell w what it learns before it returns (see
// Watcher).
func WithWatcher(w Watcher) LoadOption {
	return func(r *Request) { r.Watch = w }
}

// liveBlobs serves the blobs of one load as the load stages them (see
// Watcher.Layers): a blob is served once staged and accepted, from its
// staging file; once the load has committed, from the store.
type liveBlobs struct {
	store *store.Store
	// accept checks a staged blob before it is served (its diff ID against
	// the image's); nil accepts every blob the load staged.
	accept func(b *stagedBlob) error

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change
	ready   map[digest.Digest]*os.File
	refused map[digest.Digest]error
	done    bool
	err     error // why the load failed, once done
}

func newLiveBlobs(s *store.Store, accept func(*stagedBlob) error) *liveBlobs {
	return &liveBlobs{
		store:   s,
		accept:  accept,
		changed: make(chan struct{}),
		ready:   make(map[digest.Digest]*os.File),
		refused: make(map[digest.Digest]error),
	}
}

// broadcast wakes every waiter; the caller holds mu.
func (lb *liveBlobs) broadcast() {
	close(lb.changed)
	lb.changed = make(chan struct{})
}

// staged is told of every blob the load staged, once it is hashed and its
// digest checked against its name.
func (lb *liveBlobs) staged(b *stagedBlob) {
	var f *os.File
	err := b.DiffErr
	if err == nil && lb.accept != nil {
		err = lb.accept(b)
	}
	if err == nil {
		f, err = lb.store.OpenStaging(b.tmp)
	}
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.done {
		if f != nil {
			f.Close()
		}
		return
	}
	if err != nil {
		lb.refused[b.Digest] = err
	} else if _, ok := lb.ready[b.Digest]; !ok {
		lb.ready[b.Digest] = f
	} else {
		f.Close()
	}
	lb.broadcast()
}

// finish ends the load: with err nil its blobs are in the store from now
// on; otherwise every request fails with err.
func (lb *liveBlobs) finish(err error) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.done {
		return
	}
	lb.done, lb.err = true, err
	for d, f := range lb.ready {
		f.Close()
		delete(lb.ready, d)
	}
	lb.broadcast()
}

// errLoadFailed is what a request for a blob of a failed load gets.
var errLoadFailed = errors.New("the load of this image failed")

// Blob opens d (blobs.Opener), waiting for the load to stage it.
func (lb *liveBlobs) Blob(ctx context.Context, d digest.Digest) (blobs.Blob, error) {
	for {
		lb.mu.Lock()
		if f, ok := lb.ready[d]; ok {
			b, err := reopen(f)
			lb.mu.Unlock()
			return b, err
		}
		if err, ok := lb.refused[d]; ok {
			lb.mu.Unlock()
			return nil, fmt.Errorf("blob %s failed verification: %w", d, err)
		}
		if lb.done {
			err := lb.err
			lb.mu.Unlock()
			if err != nil {
				return nil, fmt.Errorf("blob %s: %w: %w", d, errLoadFailed, err)
			}
			return lb.store.Blob(ctx, d)
		}
		changed := lb.changed
		lb.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("blob %s: waited for the load to read it: %w", d, context.Cause(ctx))
		case <-changed:
		}
	}
}

// reopen opens the file f is open on anew, so that each reader has its own
// offset (the layer server seeks), even after the staging file was renamed
// into blobs/ or removed.
func reopen(f *os.File) (blobs.Blob, error) {
	g, err := os.Open("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	if err != nil {
		return nil, fmt.Errorf("reopen staged blob: %w", err)
	}
	return blobs.FromFile(g)
}
