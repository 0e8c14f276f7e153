package dockersave

import (
	"fmt"
	"hash"
	"io"
	"os"
	"sync"

	"github.com/layerbridge/layerbridge/internal/directio"
)

// Staging files of blobs of directMinSize bytes or more are written with
// direct I/O where the file system allows it (see directio.Writer: reading
// and hashing use two cores, and the page cache is bypassed). Smaller blobs
// keep the buffered path, where one write and one fsync cost less than the
// pipeline.
const directMinSize = 8 << 20

// stagingWriter writes the bytes of one staging file and feeds them to the
// blob's hash.
type stagingWriter interface {
	io.Writer
	// Finish writes out what is buffered and completes the hash (which is
	// complete only once Finish returned). The caller then fsyncs and
	// closes the file (stager.persist).
	Finish() error
	// Abort stops writing after a failure; the caller closes and removes
	// the file. It may be called after Finish.
	Abort()
}

// stagingWriterFor returns the writer for a staging file that will hold
// size bytes (-1: unknown), hashing them into h. written, when not nil, is
// told how long the prefix of the file is that is written, as it grows.
func (st *stager) stagingWriterFor(f *os.File, size int64, h hash.Hash, written func(int64)) stagingWriter {
	minSize := st.directMin
	if minSize == 0 {
		minSize = directMinSize
	}
	if minSize > 0 && size >= minSize {
		if st.direct == nil {
			st.direct = directio.NewPool()
		}
		if dw, err := directio.NewWriter(f, h, st.direct); err == nil {
			if written != nil {
				dw.OnWritten(written)
			}
			return dw
		}
	}
	if written != nil {
		st.out.Reset(&reportingFile{f: f, written: written})
	} else {
		st.out.Reset(f)
	}
	return bufferedWriter{st: st, f: f, h: h}
}

// reportingFile tells, after each write, how much of the file is written.
type reportingFile struct {
	f       *os.File
	n       int64
	written func(int64)
}

func (r *reportingFile) Write(p []byte) (int, error) {
	n, err := r.f.Write(p)
	if n > 0 {
		r.n += int64(n)
		r.written(r.n)
	}
	return n, err
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

func (b bufferedWriter) Finish() error {
	err := b.st.out.Flush()
	b.st.out.Reset(nil)
	if err != nil {
		return fmt.Errorf("write staging file: %w", err)
	}
	return nil
}

func (b bufferedWriter) Abort() { b.st.out.Reset(nil) }

func syncClose(f *os.File) error {
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync staging file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close staging file: %w", err)
	}
	return nil
}

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
