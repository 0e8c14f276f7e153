package directio

import (
	"io"
	"os"
	"sync"
)

// A Reader reads a file with direct I/O through one aligned buffer of Chunk
// bytes, filled by one read of the disk per chunk: for files written with
// direct I/O, which are not in the page cache. Reading them through the
// page cache would fill it first, page by page, the CPU cost that writing
// them directly avoided; a direct read costs almost no CPU. Small reads (an
// HTTP server's 32 KiB) are served from the buffer. It is safe for
// concurrent use; one buffer serves one reader best, reading in order.
type Reader struct {
	f *os.File

	mu  sync.Mutex
	buf []byte
	off int64 // file offset of buf[0]
	n   int   // bytes of buf that hold the file's
}

// NewReader turns on O_DIRECT for f, a descriptor of its own open for
// reading, which the Reader then reads (the caller still closes it). It
// fails where direct I/O is not available: the caller then reads f as
// usual.
func NewReader(f *os.File) (*Reader, error) {
	if err := SetDirect(f, true); err != nil {
		return nil, err
	}
	return &Reader{f: f, buf: alignedBuffer(Chunk)}, nil
}

// ReadAt reads len(p) bytes at off, of which none at or beyond limit: the
// file's first limit bytes are readable (the rest may be being written, or
// be past the end). Like io.ReaderAt, it returns fewer bytes only with an
// error, io.EOF at limit.
func (r *Reader) ReadAt(p []byte, off, limit int64) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	total := 0
	for len(p) > 0 {
		if off >= limit {
			return total, io.EOF
		}
		if off < r.off || off >= r.off+int64(r.n) {
			if err := r.fill(off&^(Align-1), limit); err != nil {
				return total, err
			}
			if off >= r.off+int64(r.n) {
				return total, io.ErrUnexpectedEOF
			}
		}
		end := min(int64(r.n), limit-r.off)
		c := copy(p, r.buf[off-r.off:end])
		p = p[c:]
		off += int64(c)
		total += c
	}
	return total, nil
}

// fill reads the chunk at start (aligned), keeping what lies below limit.
func (r *Reader) fill(start, limit int64) error {
	r.n = 0
	n, err := pread(r.f, r.buf, start)
	if err != nil {
		return err
	}
	r.off, r.n = start, int(min(int64(n), limit-start))
	return nil
}
