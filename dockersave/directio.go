package dockersave

import (
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// Staging files of large blobs are written with direct I/O where the file
// system allows it, through a three-stage pipeline over a few reused aligned
// chunks: stage's goroutine reads the stream into a chunk, a second
// goroutine hashes the chunks in order, and two more write them at their
// offsets. Reading and hashing thus use two cores, which matters because
// the daemon streams faster than one core can read and hash. The page cache
// is bypassed, so a 1 GiB layer neither costs 1 GiB of freshly allocated
// cache pages (the largest CPU cost of a buffered write, more so in a VM
// whose memory is backed lazily) nor leaves 1 GiB of dirty pages for the
// final fsync: by then the data is on the disk. Small blobs keep the
// buffered path, where one write and one fsync cost less than the pipeline.
const (
	directMinSize = 8 << 20 // smaller blobs are written through the page cache
	directChunk   = 1 << 20 // bytes per chunk (one hash call, one write)
	directBuffers = 8       // chunks being filled, hashed or written at once: 8 MiB
	directWriters = 2       // direct writes in flight at once
	directAlign   = 4096    // buffer address, length and file offset alignment
)

// stagingWriter writes the bytes of one staging file and feeds them to the
// blob's hash.
type stagingWriter interface {
	io.Writer
	// finish writes out what is buffered and completes the hash (which is
	// complete only once finish returned). The caller then fsyncs and
	// closes the file (stager.persist).
	finish() error
	// abort stops writing after a failure; the caller closes and removes
	// the file. It may be called after finish.
	abort()
}

// stagingWriterFor returns the writer for a staging file that will hold
// size bytes (-1: unknown), hashing them into h.
func (st *stager) stagingWriterFor(f *os.File, size int64, h hash.Hash) stagingWriter {
	minSize := st.directMin
	if minSize == 0 {
		minSize = directMinSize
	}
	if minSize > 0 && size >= minSize {
		if dw := st.newDirectWriter(f, h); dw != nil {
			return dw
		}
	}
	st.out.Reset(f)
	return bufferedWriter{st: st, f: f, h: h}
}

// bufferedWriter writes through the stager's reused bufio.Writer and the
// page cache, hashing in the caller's goroutine.
type bufferedWriter struct {
	st *stager
	f  *os.File
	h  hash.Hash
}

func (b bufferedWriter) Write(p []byte) (int, error) {
	n, err := b.st.out.Write(p)
	b.h.Write(p[:n])
	return n, err
}

func (b bufferedWriter) finish() error {
	err := b.st.out.Flush()
	b.st.out.Reset(nil)
	if err != nil {
		return fmt.Errorf("write staging file: %w", err)
	}
	return nil
}

func (b bufferedWriter) abort() { b.st.out.Reset(nil) }

func syncClose(f *os.File) error {
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync staging file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close staging file: %w", err)
	}
	return nil
}

// alignedBuffer returns n bytes starting at a directAlign boundary. The Go
// heap does not move objects, so the alignment holds for its lifetime.
func alignedBuffer(n int) []byte {
	b := make([]byte, n+directAlign)
	off := int(uintptr(unsafe.Pointer(unsafe.SliceData(b))) & (directAlign - 1))
	if off != 0 {
		off = directAlign - off
	}
	return b[off : off+n : off+n]
}

// chunk is a filled buffer on its way through the pipeline: all of buf is
// hashed, buf[:write] is written at off.
type chunk struct {
	buf   []byte
	off   int64
	write int
}

// directWriter is the pipeline. Write, ReadFrom and finish are called from
// one goroutine (stage's); the hasher and the writers run until stop.
type directWriter struct {
	f      *os.File
	h      hash.Hash
	free   chan []byte // the stager's buffers not being filled, hashed or written
	hashq  chan chunk
	writeq chan chunk
	hashed sync.WaitGroup
	wrote  sync.WaitGroup
	cur    []byte // chunk being filled; nil when none is held
	off    int64  // file offset of cur
	done   bool   // hashq closed

	mu     sync.Mutex
	err    error
	direct bool // O_DIRECT still set on f
}

// newDirectWriter turns on O_DIRECT for f and starts the pipeline; nil when
// the file system refuses direct I/O.
func (st *stager) newDirectWriter(f *os.File, h hash.Hash) *directWriter {
	if setDirectIO(f, true) != nil {
		return nil
	}
	if st.direct == nil {
		st.direct = make(chan []byte, directBuffers)
		for range directBuffers {
			st.direct <- alignedBuffer(directChunk)[:0]
		}
	}
	d := &directWriter{
		f: f, h: h, free: st.direct, direct: true,
		hashq: make(chan chunk, directBuffers), writeq: make(chan chunk, directBuffers),
	}
	d.hashed.Add(1)
	go d.hash()
	d.wrote.Add(directWriters)
	for range directWriters {
		go d.writeChunks()
	}
	return d
}

func (d *directWriter) hash() {
	defer d.hashed.Done()
	defer close(d.writeq)
	for c := range d.hashq {
		d.h.Write(c.buf)
		d.writeq <- c
	}
}

func (d *directWriter) writeChunks() {
	defer d.wrote.Done()
	for c := range d.writeq {
		if c.write > 0 && d.failed() == nil {
			if err := d.writeAt(c.buf[:c.write], c.off); err != nil {
				d.fail(err)
			}
		}
		d.free <- c.buf[:0]
	}
}

// writeAt writes one chunk. A file system that takes O_DIRECT but not these
// alignments answers EINVAL: the file then goes on through the page cache.
func (d *directWriter) writeAt(b []byte, off int64) error {
	_, err := d.f.WriteAt(b, off)
	if err != nil && errors.Is(err, syscall.EINVAL) && d.stopDirect() {
		_, err = d.f.WriteAt(b, off)
	}
	return err
}

// stopDirect clears O_DIRECT on the file. It reports whether the file is
// now written through the page cache.
func (d *directWriter) stopDirect() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.direct && setDirectIO(d.f, false) == nil {
		d.direct = false
	}
	return !d.direct
}

func (d *directWriter) fail(err error) {
	d.mu.Lock()
	if d.err == nil {
		d.err = err
	}
	d.mu.Unlock()
}

func (d *directWriter) failed() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

// next makes sure a buffer with room is held.
func (d *directWriter) next() error {
	if err := d.failed(); err != nil {
		return err
	}
	if d.cur == nil {
		d.cur = <-d.free
	}
	return nil
}

func (d *directWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		if err := d.next(); err != nil {
			return n, err
		}
		c := copy(d.cur[len(d.cur):cap(d.cur)], p)
		d.cur = d.cur[:len(d.cur)+c]
		p = p[c:]
		n += c
		if len(d.cur) == cap(d.cur) {
			d.submit(len(d.cur))
		}
	}
	return n, nil
}

// ReadFrom reads r to its end straight into the chunks, saving the copy
// through stage's bufio.Reader (which hands its source to ReadFrom).
func (d *directWriter) ReadFrom(r io.Reader) (int64, error) {
	var n int64
	for {
		if err := d.next(); err != nil {
			return n, err
		}
		m, err := r.Read(d.cur[len(d.cur):cap(d.cur)])
		d.cur = d.cur[:len(d.cur)+m]
		n += int64(m)
		if len(d.cur) == cap(d.cur) {
			d.submit(len(d.cur))
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// submit sends the held chunk down the pipeline, to be written up to write.
func (d *directWriter) submit(write int) {
	d.hashq <- chunk{buf: d.cur, off: d.off, write: write}
	d.off += int64(len(d.cur))
	d.cur = nil
}

// stop waits until every submitted chunk is hashed and written and every
// buffer is back.
func (d *directWriter) stop() {
	if d.cur != nil {
		d.free <- d.cur[:0]
		d.cur = nil
	}
	if !d.done {
		close(d.hashq)
		d.done = true
	}
	d.hashed.Wait()
	d.wrote.Wait()
}

func (d *directWriter) finish() error {
	var tail []byte
	var tailOff int64
	if d.cur != nil {
		// The last chunk is hashed whole; its aligned part is written
		// directly, the rest through the page cache below.
		aligned := len(d.cur) &^ (directAlign - 1)
		tail = append(tail, d.cur[aligned:]...)
		tailOff = d.off + int64(aligned)
		d.submit(aligned)
	}
	d.stop()
	if err := d.failed(); err != nil {
		return fmt.Errorf("write staging file: %w", err)
	}
	if len(tail) > 0 {
		if !d.stopDirect() {
			return fmt.Errorf("write staging file: cannot turn direct i/o off for the last %d bytes", len(tail))
		}
		if _, err := d.f.WriteAt(tail, tailOff); err != nil {
			return fmt.Errorf("write staging file: %w", err)
		}
	}
	return nil
}

func (d *directWriter) abort() { d.stop() }

// maxBackgroundSyncs bounds the staging files being fsynced at once (each
// holds a descriptor). Concurrent fsyncs share journal commits.
const maxBackgroundSyncs = 8

// backgroundSyncs fsyncs and closes staging files off the reading
// goroutine, so that reading the next blob overlaps with making the last one
// durable. wait must return before any staged blob is published.
type backgroundSyncs struct {
	sem chan struct{}
	wg  sync.WaitGroup
	mu  sync.Mutex
	err error
}

// syncInBackground makes persist asynchronous until the returned wait is
// called; wait returns the first fsync or close error.
func (st *stager) syncInBackground() (wait func() error) {
	b := &backgroundSyncs{sem: make(chan struct{}, maxBackgroundSyncs)}
	st.syncs = b
	return func() error {
		b.wg.Wait()
		st.syncs = nil
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.err
	}
}

// persist fsyncs and closes a verified staging file: now, or in the
// background when syncInBackground is in effect.
func (st *stager) persist(f *os.File) error {
	b := st.syncs
	if b == nil {
		return syncClose(f)
	}
	b.mu.Lock()
	err := b.err
	b.mu.Unlock()
	if err != nil {
		f.Close()
		return err
	}
	b.sem <- struct{}{}
	b.wg.Go(func() {
		defer func() { <-b.sem }()
		if err := syncClose(f); err != nil {
			f.Close()
			b.mu.Lock()
			if b.err == nil {
				b.err = err
			}
			b.mu.Unlock()
		}
	})
	return nil
}
