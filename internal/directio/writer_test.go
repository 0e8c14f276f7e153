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
// is back in the pool, and that OnWritten reported a growing prefix that
// was in the file each time, ending with the whole.
func TestWriterExactBytes(t *testing.T) {
	pool := NewPool()
	sizes := []int{0, 1, Align - 1, Align, Align + 1, Chunk - 1, Chunk, Chunk + 1,
		3*Chunk + 5, Buffers*Chunk + Align + 17, 2*Buffers*Chunk - 1}
	for i, size := range sizes {
		data := randomBytes(size, uint64(i))
		for _, how := range []string{"ReadFrom", "Write"} {
			t.Run(fmt.Sprintf("%s/%d", how, size), func(t *testing.T) {
				w, f, hashed := newWriter(t, pool)
				var marks []int64
				var early error
				w.OnWritten(func(n int64) {
					prefix := make([]byte, n)
					if _, err := f.ReadAt(prefix, 0); err != nil && early == nil {
						early = fmt.Errorf("read the %d bytes reported written: %w", n, err)
					} else if !bytes.Equal(prefix, data[:n]) && early == nil {
						early = fmt.Errorf("the %d bytes reported written differ from the data", n)
					}
					marks = append(marks, n)
				})
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
				if early != nil {
					t.Error(early)
				}
				for k := 1; k < len(marks); k++ {
					if marks[k] <= marks[k-1] {
						t.Fatalf("written prefix reported as %d after %d", marks[k], marks[k-1])
					}
				}
				if size > 0 && (len(marks) == 0 || marks[len(marks)-1] != int64(size)) {
					t.Errorf("written prefixes %v, want them to end with %d", marks, size)
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
