package directio

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// chunkyReader returns its data in reads of irregular sizes (up to 70000
// bytes), as a socket does, so that chunk boundaries fall anywhere.
type chunkyReader struct {
	data []byte
	rng  *rand.Rand
}

func (c *chunkyReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(c.data), 1+c.rng.IntN(70000))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 2))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// newPageCacheWriter is newWriter with NewPageCacheWriter, which works on
// every file system.
func newPageCacheWriter(t *testing.T, pool *Pool) (*Writer, *os.File, *bytes.Buffer) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "blob"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	hashed := &bytes.Buffer{}
	return NewPageCacheWriter(f, hashWriter{hashed}, pool), f, hashed
}

// newWriter opens a new file in a temporary directory and a Writer on it;
// it skips the test where the file system refuses direct I/O.
func newWriter(t *testing.T, pool *Pool) (*Writer, *os.File, *bytes.Buffer) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "blob"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	hashed := &bytes.Buffer{}
	w, err := NewWriter(f, hashWriter{hashed}, pool)
	if err != nil {
		t.Skipf("no direct I/O on %s: %v", t.TempDir(), err)
	}
	return w, f, hashed
}

// hashWriter records what the pipeline hashes, in the order it hashes it.
type hashWriter struct{ *bytes.Buffer }

func (hashWriter) Sum(b []byte) []byte { return b }
func (hashWriter) Size() int           { return 0 }
func (hashWriter) BlockSize() int      { return 1 }

// TestWriterExactBytes writes files of awkward sizes through both of the
// Writer's entries (ReadFrom, as from a bufio.Reader, and Write) and checks
// that the file and the hash got every byte in order and that every chunk
// is back in the pool.
// The page-cache pipeline (NewPageCacheWriter) gets the same checks.
func TestWriterExactBytes(t *testing.T) {
	pool := NewPool()
	sizes := []int{0, 1, Align - 1, Align, Align + 1, Chunk - 1, Chunk, Chunk + 1,
		3*Chunk + 5, Buffers*Chunk + Align + 17, 2*Buffers*Chunk - 1}
	for i, size := range sizes {
		data := randomBytes(size, uint64(i))
		for _, how := range []string{"ReadFrom", "Write", "page cache/ReadFrom", "page cache/Write"} {
			t.Run(fmt.Sprintf("%s/%d", how, size), func(t *testing.T) {
				var w *Writer
				var f *os.File
				var hashed *bytes.Buffer
				if cached, ok := strings.CutPrefix(how, "page cache/"); ok {
					how = cached
					w, f, hashed = newPageCacheWriter(t, pool)
				} else {
					w, f, hashed = newWriter(t, pool)
				}
				r := &chunkyReader{data: data, rng: rand.New(rand.NewPCG(uint64(i), 1))}
				var err error
				if how == "ReadFrom" {
					_, err = w.ReadFrom(r)
				} else {
					_, err = io.CopyBuffer(struct{ io.Writer }{w}, r, make([]byte, 70001))
				}
				if err != nil {
					t.Fatal(err)
				}
				if err := w.Finish(); err != nil {
					t.Fatal(err)
				}
				got, err := os.ReadFile(f.Name())
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, data) || !bytes.Equal(hashed.Bytes(), data) {
					t.Errorf("file holds %d bytes (%x), hash saw %d, want %d bytes (%x)", len(got), sha256.Sum256(got), hashed.Len(), len(data), sha256.Sum256(data))
				}
				if len(pool.free) != Buffers {
					t.Errorf("%d of %d buffers back after Finish", len(pool.free), Buffers)
				}
			})
		}
	}
}

// failingReader returns its data, then err.
type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

// TestWriterAbort: after a stream breaks, Abort returns every chunk to the
// pool, and the pool serves the next Writer.
func TestWriterAbort(t *testing.T) {
	pool := NewPool()
	data := randomBytes(Buffers*Chunk+Chunk/2, 3)
	broken := errors.New("connection reset")
	w, _, _ := newWriter(t, pool)
	r := &chunkyReader{data: data[:len(data)-5], rng: rand.New(rand.NewPCG(1, 1))}
	if _, err := w.ReadFrom(&failingReader{r: r, err: broken}); !errors.Is(err, broken) {
		t.Errorf("broken stream: err %v, want %v", err, broken)
	}
	w.Abort()
	w.Abort() // harmless
	if len(pool.free) != Buffers {
		t.Errorf("%d of %d buffers back after Abort", len(pool.free), Buffers)
	}
	w, f, _ := newWriter(t, pool)
	if _, err := w.ReadFrom(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(f.Name()); !bytes.Equal(got, data) {
		t.Error("a writer after an aborted one wrote other bytes")
	}
}
