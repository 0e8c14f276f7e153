package directio

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

// A Writer writes one file with direct I/O through a three-stage pipeline
// over a few reused aligned chunks: the caller's goroutine reads the stream
// into a chunk, a second goroutine hashes the chunks in order, and two more
// write them at their offsets. Reading and hashing thus use two cores, which
// matters because the Docker daemon streams faster than one core can read
// and hash. The page cache is bypassed, so a 1 GiB layer neither costs 1 GiB
// of freshly allocated cache pages (the largest CPU cost of a buffered
// write, more so in a VM whose memory is backed lazily) nor leaves 1 GiB of
// dirty pages for the final fsync: by then the data is on the disk. Small
// files are better written through the page cache, where one write and one
// fsync cost less than the pipeline: the caller decides.
const (
	Chunk   = 1 << 20 // bytes per chunk (one hash call, one write)
	Buffers = 8       // chunks being filled, hashed or written at once: 8 MiB
	Align   = 4096    // buffer address, length and file offset alignment
	writers = 2       // direct writes in flight at once
)

// Pool is the aligned chunks of Writers used one after the other (a load's
// layers), allocated once.
type Pool struct {
	free chan []byte // the chunks not being filled, hashed or written
}

// NewPool allocates Buffers chunks of Chunk bytes.
func NewPool() *Pool {
	p := &Pool{free: make(chan []byte, Buffers)}
	for range Buffers {
		p.free <- alignedBuffer(Chunk)[:0]
	}
	return p
}

// alignedBuffer returns n bytes starting at an Align boundary. The Go heap
// does not move objects, so the alignment holds for its lifetime.
func alignedBuffer(n int) []byte {
	b := make([]byte, n+Align)
	off := int(uintptr(unsafe.Pointer(unsafe.SliceData(b))) & (Align - 1))
	if off != 0 {
		off = Align - off
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

// Writer is the pipeline writing one file. Write, ReadFrom, Finish and
// Abort are called from one goroutine; the hasher and the writers run until
// Finish or Abort.
type Writer struct {
	f      *os.File
	h      hash.Hash
	free   chan []byte // the pool's
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
	// written is told the length of the file's written prefix (see
	// OnWritten); mark is that length, and ahead the chunks written past
	// it, by offset.
	written func(int64)
	mark    int64
	ahead   map[int64]int
}

// OnWritten has fn told, each time it grows, how long the prefix of the
// file is that is written (readable from the file by others), from the
// goroutine that wrote it and with the Writer's lock held: keep fn fast.
// Set it before the first Write.
func (d *Writer) OnWritten(fn func(n int64)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.written = fn
	d.ahead = make(map[int64]int)
}

// wroteAt records that n bytes at off are in the file.
func (d *Writer) wroteAt(off int64, n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.written == nil || n == 0 {
		return
	}
	d.ahead[off] = n
	grew := false
	for {
		m, ok := d.ahead[d.mark]
		if !ok {
			break
		}
		delete(d.ahead, d.mark)
		d.mark += int64(m)
		grew = true
	}
	if grew {
		d.written(d.mark)
	}
}

// NewWriter turns on O_DIRECT for f (empty, open for writing) and starts
// the pipeline, which writes f from its start and feeds every byte to h, in
// order, with chunks of pool. It fails when the file system refuses direct
// I/O (tmpfs before Linux 6.6, some FUSE and network file systems, systems
// other than Linux).
func NewWriter(f *os.File, h hash.Hash, pool *Pool) (*Writer, error) {
	if err := SetDirect(f, true); err != nil {
		return nil, err
	}
	return startPipeline(f, h, pool, true), nil
}

func startPipeline(f *os.File, h hash.Hash, pool *Pool, direct bool) *Writer {
	d := &Writer{
		f: f, h: h, free: pool.free, direct: direct,
		hashq: make(chan chunk, Buffers), writeq: make(chan chunk, Buffers),
	}
	d.hashed.Add(1)
	go d.hash()
	d.wrote.Add(writers)
	for range writers {
		go d.writeChunks()
	}
	return d
}

func (d *Writer) hash() {
	defer d.hashed.Done()
	defer close(d.writeq)
	for c := range d.hashq {
		d.h.Write(c.buf)
		d.writeq <- c
	}
}

func (d *Writer) writeChunks() {
	defer d.wrote.Done()
	for c := range d.writeq {
		if c.write > 0 && d.failed() == nil {
			if err := d.writeAt(c.buf[:c.write], c.off); err != nil {
				d.fail(err)
			} else {
				d.wroteAt(c.off, c.write)
			}
		}
		d.free <- c.buf[:0]
	}
}

// writeAt writes one chunk. A file system that takes O_DIRECT but not these
// alignments answers EINVAL: the file then goes on through the page cache.
func (d *Writer) writeAt(b []byte, off int64) error {
	_, err := d.f.WriteAt(b, off)
	if err != nil && errors.Is(err, syscall.EINVAL) && d.stopDirect() {
		_, err = d.f.WriteAt(b, off)
	}
	return err
}

// stopDirect clears O_DIRECT on the file. It reports whether the file is
// now written through the page cache.
func (d *Writer) stopDirect() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.direct && SetDirect(d.f, false) == nil {
		d.direct = false
	}
	return !d.direct
}

func (d *Writer) fail(err error) {
	d.mu.Lock()
	if d.err == nil {
		d.err = err
	}
	d.mu.Unlock()
}

func (d *Writer) failed() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

// next makes sure a buffer with room is held.
func (d *Writer) next() error {
	if err := d.failed(); err != nil {
		return err
	}
	if d.cur == nil {
		d.cur = <-d.free
	}
	return nil
}

// Write copies p into the chunks.
func (d *Writer) Write(p []byte) (int, error) {
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
// through a caller's bufio.Reader (which hands its source to ReadFrom).
func (d *Writer) ReadFrom(r io.Reader) (int64, error) {
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
func (d *Writer) submit(write int) {
	d.hashq <- chunk{buf: d.cur, off: d.off, write: write}
	d.off += int64(len(d.cur))
	d.cur = nil
}

// stop waits until every submitted chunk is hashed and written and every
// buffer is back.
func (d *Writer) stop() {
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

// Finish writes out what is buffered and completes the hash (which is
// complete only once Finish returned); every chunk is back in the pool. The
// caller then fsyncs and closes the file.
func (d *Writer) Finish() error {
	var tail []byte
	var tailOff int64
	if d.cur != nil {
		// The last chunk is hashed whole; its aligned part is written
		// directly, the rest through the page cache below.
		aligned := len(d.cur) &^ (Align - 1)
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
		d.wroteAt(tailOff, len(tail))
	}
	return nil
}

// Abort stops writing after a failure and returns the chunks to the pool;
// the caller closes and removes the file. It may be called after Finish.
func (d *Writer) Abort() { d.stop() }
