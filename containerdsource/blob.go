package containerdsource

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"sync"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/errdefs"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/blobs"
	"github.com/layerbridge/layerbridge/store"
)

// Blob opens blob d of the namespace's content store for serving
// (blobs.Opener): the layer server and the registry view read it from
// containerd, in place. containerd's content store is content-addressed
// and checks every blob's digest when it is written (a pull, an import);
// layerbridge does not hash the bytes again as it serves them (Clair does,
// and refuses a layer whose bytes do not match). An absent blob is an
// error wrapping fs.ErrNotExist.
func (s *Source) Blob(ctx context.Context, d digest.Digest) (blobs.Blob, error) {
	if err := store.CheckDigest(d); err != nil {
		return nil, fmt.Errorf("open blob: %w", err)
	}
	b, err := s.backend()
	if err != nil {
		return nil, err
	}
	ra, err := b.ReaderAt(s.withNamespace(ctx), ocispec.Descriptor{Digest: d})
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil, fmt.Errorf("open blob %s in containerd namespace %q: %w", d, s.cfg.Namespace, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("open blob %s in containerd namespace %q: %w", d, s.cfg.Namespace, classify(s.cfg.Address, err))
	}
	return newRemoteBlob(ra), nil
}

// readAhead is how much a small read fetches from containerd at once. Each
// ReadAt of containerd's client is one streaming call; an HTTP server
// copying a blob in 32 KiB pieces would make one call per piece.
const readAhead = 1 << 20

// remoteBlob reads a blob of containerd's content store, fetching
// readAhead bytes for each small read that misses the last window.
type remoteBlob struct {
	ra content.ReaderAt

	mu   sync.Mutex
	win  []byte // the bytes at woff
	woff int64
}

func newRemoteBlob(ra content.ReaderAt) *remoteBlob { return &remoteBlob{ra: ra} }

func (b *remoteBlob) Size() int64 { return b.ra.Size() }

func (b *remoteBlob) Close() error { return b.ra.Close() }

// ReadAt reads as io.ReaderAt says: it returns fewer bytes than len(p)
// only with an error (io.EOF past the end).
func (b *remoteBlob) ReadAt(p []byte, off int64) (int, error) {
	size := b.ra.Size()
	if off < 0 {
		return 0, fmt.Errorf("read at %d: negative offset", off)
	}
	if off >= size {
		return 0, io.EOF
	}
	want := len(p)
	if rest := size - off; int64(want) > rest {
		p = p[:rest]
	}
	if len(p) >= readAhead {
		n, err := readFull(b.ra, p, off)
		return n, eofIfShort(n, want, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if off < b.woff || off+int64(len(p)) > b.woff+int64(len(b.win)) {
		n := min(int64(readAhead), size-off)
		if cap(b.win) < readAhead {
			b.win = make([]byte, readAhead)
		}
		b.win = b.win[:n]
		got, err := readFull(b.ra, b.win, off)
		b.win, b.woff = b.win[:got], off
		if got < len(p) {
			n := copy(p, b.win)
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
	}
	n := copy(p, b.win[off-b.woff:])
	return n, eofIfShort(n, want, nil)
}

// readFull fills p from ra at off; containerd's ReaderAt returns io.EOF
// with a full buffer at the end of a blob, which is no error here.
func readFull(ra io.ReaderAt, p []byte, off int64) (int, error) {
	n, err := ra.ReadAt(p, off)
	if n == len(p) {
		return n, nil
	}
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// eofIfShort is io.EOF when fewer than want bytes were read because the
// blob ended, else err.
func eofIfShort(n, want int, err error) error {
	if err == nil && n < want {
		return io.EOF
	}
	return err
}
