package directio

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// directFile writes data to a new file with a direct Writer and opens it
// anew with a Reader; it skips the test where the file system refuses
// direct I/O.
func directFile(t *testing.T, data []byte) *Reader {
	t.Helper()
	w, f, _ := newWriter(t, NewPool())
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	g, err := os.Open(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	r, err := NewReader(g)
	if err != nil {
		t.Skipf("no direct reads on %s: %v", filepath.Dir(f.Name()), err)
	}
	return r
}

// TestReaderReadsWhatWasWritten: reads of every size at every offset, in
// order and out of it, return the file's bytes, up to the limit given and
// never past it, and io.EOF at it.
func TestReaderReadsWhatWasWritten(t *testing.T) {
	for _, size := range []int{1, Align - 1, Chunk + Align + 3, 3*Chunk + 17} {
		data := randomBytes(size, uint64(size))
		r := directFile(t, data)
		rng := rand.New(rand.NewPCG(uint64(size), 3))
		// In order, in reads of 32 KiB and odd sizes.
		var got []byte
		buf := make([]byte, 32<<10+7)
		for off := int64(0); ; {
			n, err := r.ReadAt(buf[:1+rng.IntN(len(buf)-1)], off, int64(size))
			got = append(got, buf[:n]...)
			off += int64(n)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("size %d: read %d bytes in order, not the file's %d", size, len(got), size)
		}
		// Anywhere, with a limit below the size: never a byte past it.
		for range 200 {
			limit := int64(1 + rng.IntN(size))
			off := int64(rng.IntN(size))
			p := make([]byte, 1+rng.IntN(2*Chunk))
			n, err := r.ReadAt(p, off, limit)
			want := data[min(off, limit):limit]
			if int64(len(p)) < int64(len(want)) {
				want = want[:len(p)]
			}
			if !bytes.Equal(p[:n], want) {
				t.Fatalf("size %d: ReadAt(%d bytes, %d, limit %d) gave %d bytes, not the file's %d", size, len(p), off, limit, n, len(want))
			}
			if n < len(p) && !errors.Is(err, io.EOF) {
				t.Fatalf("size %d: short read of %d at %d (limit %d) with %v, want io.EOF", size, n, off, limit, err)
			}
		}
	}
}
