package dockersave

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/blobs"
	"github.com/layerbridge/layerbridge/internal/directio"
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
	// known yet) and an opener of them. The opener serves a layer from the
	// moment the load starts writing it, when its digest is known before
	// its bytes (its name in the archive, or its legacy layer directory):
	// reads wait for the bytes, and the last byte is served only once the
	// whole layer is checked (its digest, and its diff ID against the
	// image's), so a layer that fails them is never read whole. Other
	// layers are served once read and checked. A layer not reached yet is
	// waited for, as long as the request's context allows; everything
	// fails once the load fails. After the load has returned, the opener
	// serves from the store for as long as the load's release is not
	// called.
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
// Watcher.Layers): a blob expected under its digest while it is written
// (growingBlob), any other once staged and accepted, from its staging
// file; once the load has committed, from the store.
type liveBlobs struct {
	store *store.Store
	log   *slog.Logger
	ref   string
	// accept checks a staged blob before it is served (its diff ID against
	// the image's); nil accepts every blob the load staged.
	accept func(b *stagedBlob) error

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change
	ready   map[digest.Digest]*os.File
	growing map[digest.Digest]*growingBlob
	refused map[digest.Digest]error
	done    bool
	err     error // why the load failed, once done
}

func newLiveBlobs(s *store.Store, log *slog.Logger, ref string, accept func(*stagedBlob) error) *liveBlobs {
	return &liveBlobs{
		store:   s,
		log:     log,
		ref:     ref,
		accept:  accept,
		changed: make(chan struct{}),
		ready:   make(map[digest.Digest]*os.File),
		growing: make(map[digest.Digest]*growingBlob),
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
	if g, ok := lb.growing[b.Digest]; ok {
		delete(lb.growing, b.Digest)
		g.end(err)
	}
	if err != nil {
		lb.log.Debug("blob read from the export is not served", "ref", lb.ref, "digest", b.Digest, "reason", err)
		lb.refused[b.Digest] = err
	} else if _, ok := lb.ready[b.Digest]; !ok {
		lb.log.Debug("blob read from the export: served from now on", "ref", lb.ref, "digest", b.Digest, "size", b.Size)
		lb.ready[b.Digest] = f
	} else {
		f.Close()
	}
	lb.broadcast()
}

// following starts serving the blob expected as d while it is staged
// into tmp (stager.onStaging); it returns what is told how much is
// written, or nil when d is served already or the load is over.
func (lb *liveBlobs) following(d digest.Digest, size int64, tmp string) func(int64) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.done || lb.ready[d] != nil || lb.growing[d] != nil || lb.refused[d] != nil {
		return nil
	}
	f, err := lb.store.OpenStaging(tmp)
	if err != nil {
		lb.log.Debug("cannot serve a blob while the export writes it", "ref", lb.ref, "digest", d, "err", err)
		return nil
	}
	g := newGrowingBlob(d, size, f)
	lb.growing[d] = g
	lb.log.Debug("blob served while the export writes it", "ref", lb.ref, "digest", d, "size", size)
	lb.broadcast()
	return g.wrote
}

// abandoned is told that the blob followed as d will not be staged under
// d: its readers fail with err.
func (lb *liveBlobs) abandoned(d digest.Digest, err error) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if g, ok := lb.growing[d]; ok {
		delete(lb.growing, d)
		lb.log.Debug("blob served while written failed: its downloads are cut", "ref", lb.ref, "digest", d, "err", err)
		g.end(err)
	}
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
	for d, g := range lb.growing {
		cause := err
		if cause == nil {
			cause = errors.New("the load ended before the blob was read")
		}
		g.end(fmt.Errorf("%w: %w", errLoadFailed, cause))
		delete(lb.growing, d)
	}
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
	waited := false
	for {
		lb.mu.Lock()
		if f, ok := lb.ready[d]; ok {
			b, err := reopen(f)
			lb.mu.Unlock()
			return b, err
		}
		if g, ok := lb.growing[d]; ok {
			r, err := g.reader(ctx)
			lb.mu.Unlock()
			return r, err
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
			f, err := lb.store.OpenBlob(d)
			if err != nil {
				return nil, err
			}
			return openDirect(f)
		}
		changed := lb.changed
		lb.mu.Unlock()
		if !waited {
			waited = true
			lb.log.Debug("blob requested before the export reached it: the request waits", "ref", lb.ref, "digest", d)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("blob %s: waited for the load to read it: %w", d, context.Cause(ctx))
		case <-changed:
		}
	}
}

// reopen opens the staged blob f is open on anew (see reopenFile).
func reopen(f *os.File) (blobs.Blob, error) {
	g, err := reopenFile(f)
	if err != nil {
		return nil, fmt.Errorf("reopen staged blob: %w", err)
	}
	return openDirect(g)
}

// reopenFile opens the file f is open on anew, so that each reader has a
// descriptor (and flags, such as O_DIRECT) of its own, even after the
// staging file was renamed into blobs/ or removed.
func reopenFile(f *os.File) (*os.File, error) {
	return os.Open("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
}

// openDirect returns a Blob reading f, which it then owns: a large blob,
// which the load staged with direct I/O, is read the same way (through
// the page cache, serving it would cost what writing it directly saved);
// a small one, or where direct reads are refused, as a file (sendfile).
func openDirect(f *os.File) (blobs.Blob, error) {
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("blob %s: %w", f.Name(), err)
	}
	if fi.Size() < directMinSize {
		return blobs.FromFile(f)
	}
	rd, err := directio.NewReader(f)
	if err != nil {
		return blobs.FromFile(f)
	}
	return &directBlob{f: f, rd: rd, size: fi.Size()}, nil
}

// directBlob reads a whole blob with direct I/O.
type directBlob struct {
	f    *os.File
	rd   *directio.Reader
	size int64
}

func (b *directBlob) Size() int64  { return b.size }
func (b *directBlob) Close() error { return b.f.Close() }
func (b *directBlob) ReadAt(p []byte, off int64) (int, error) {
	return b.rd.ReadAt(p, off, b.size)
}

// growingBlob is a blob being staged whose digest was expected before its
// bytes were read: it is served while it is written, all but its last byte,
// which is served once the whole blob is hashed and checked. A blob that
// fails its checks thus never reaches a client whole: the download is cut.
type growingBlob struct {
	digest digest.Digest
	size   int64
	f      *os.File // the staging file, open for reading

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change
	written int64
	whole   bool  // checked: every byte may be served
	err     error // why it will never be whole
}

func newGrowingBlob(d digest.Digest, size int64, f *os.File) *growingBlob {
	return &growingBlob{digest: d, size: size, f: f, changed: make(chan struct{})}
}

// wrote is told that the first n bytes are in the staging file.
func (g *growingBlob) wrote(n int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if n > g.written {
		g.written = n
		close(g.changed)
		g.changed = make(chan struct{})
	}
}

// end makes the blob whole (err nil) or failed, once; the staging file's
// descriptor is closed (readers hold their own).
func (g *growingBlob) end(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.whole || g.err != nil {
		return
	}
	if err == nil {
		g.whole = true
	} else {
		g.err = err
	}
	g.f.Close()
	close(g.changed)
	g.changed = make(chan struct{})
}

// wait waits until the first end bytes may be served, and returns how many
// may be.
func (g *growingBlob) wait(ctx context.Context, end int64) (int64, error) {
	for {
		g.mu.Lock()
		servable := min(g.written, g.size-1)
		if g.whole {
			servable = g.size
		}
		switch {
		case g.err != nil:
			err := g.err
			g.mu.Unlock()
			return 0, fmt.Errorf("blob %s: %w", g.digest, err)
		case end <= servable:
			g.mu.Unlock()
			return servable, nil
		}
		changed := g.changed
		g.mu.Unlock()
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("blob %s: waited for the load to write it: %w", g.digest, context.Cause(ctx))
		case <-changed:
		}
	}
}

// reader opens the blob for one request, bounded by ctx; the caller holds
// the board's lock, so the blob has not ended yet.
func (g *growingBlob) reader(ctx context.Context) (blobs.Blob, error) {
	f, err := reopenFile(g.f)
	if err != nil {
		return nil, fmt.Errorf("reopen blob being staged: %w", err)
	}
	r := &growingReader{ctx: ctx, g: g, f: f}
	if g.size >= directMinSize {
		// Written with direct I/O: read the same way (see openDirect).
		r.rd, _ = directio.NewReader(f)
	}
	return r, nil
}

// growingReader reads a growingBlob, waiting for its bytes.
type growingReader struct {
	ctx context.Context
	g   *growingBlob
	f   *os.File
	rd  *directio.Reader // nil: f is read as usual
}

func (r *growingReader) Size() int64  { return r.g.size }
func (r *growingReader) Close() error { return r.f.Close() }

func (r *growingReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= r.g.size {
		return 0, io.EOF
	}
	end := min(off+int64(len(p)), r.g.size)
	servable, err := r.g.wait(r.ctx, end)
	if err != nil {
		return 0, err
	}
	var n int
	if r.rd != nil {
		n, err = r.rd.ReadAt(p[:end-off], off, servable)
	} else {
		n, err = r.f.ReadAt(p[:end-off], off)
	}
	if err == nil && n < len(p) {
		err = io.EOF
	}
	return n, err
}
