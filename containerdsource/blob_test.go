package containerdsource

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
)

// countingReaderAt is containerd's ReaderAt as its client has it: each
// ReadAt is one call to the daemon, and a read reaching the end of the
// blob may return io.EOF with its bytes.
type countingReaderAt struct {
	data  []byte
	calls atomic.Int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	c.calls.Add(1)
	if off >= int64(len(c.data)) {
		return 0, io.EOF
	}
	n := copy(p, c.data[off:])
	if off+int64(n) == int64(len(c.data)) {
		return n, io.EOF
	}
	return n, nil
}

func (c *countingReaderAt) Size() int64  { return int64(len(c.data)) }
func (c *countingReaderAt) Close() error { return nil }

// TestRemoteBlobReadsAhead: a blob copied in small pieces (as an HTTP
// server copies a section reader) costs one call to containerd per
// megabyte, not one per piece, and reads the same bytes.
func TestRemoteBlobReadsAhead(t *testing.T) {
	data := make([]byte, 3*readAhead+12345)
	rand.Read(data)
	ra := &countingReaderAt{data: data}
	b := newRemoteBlob(ra)
	got, err := io.ReadAll(io.NewSectionReader(b, 0, b.Size()))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes (%v), want the blob's %d", len(got), err, len(data))
	}
	if n := ra.calls.Load(); n > 5 {
		t.Errorf("%d calls to containerd for a %d-byte blob", n, len(data))
	}
	small := data[:readAhead/4+123]
	if err := iotest.TestReader(io.NewSectionReader(newRemoteBlob(&countingReaderAt{data: small}), 0, int64(len(small))), small); err != nil {
		t.Error(err)
	}
}

// TestRemoteBlobReadAt: ReadAt keeps io.ReaderAt's contract at every
// offset: a full read, or fewer bytes with io.EOF at the end, and only
// io.EOF past it; concurrent readers get their own bytes.
func TestRemoteBlobReadAt(t *testing.T) {
	data := make([]byte, 2*readAhead+7)
	rand.Read(data)
	b := newRemoteBlob(&countingReaderAt{data: data})
	for _, tc := range []struct {
		off  int64
		n    int
		want int
		err  error
	}{
		{0, 10, 10, nil},
		{readAhead - 5, 10, 10, nil}, // across a window
		{int64(len(data)) - 3, 10, 3, io.EOF},
		{int64(len(data)), 10, 0, io.EOF},
		{int64(len(data)) + 100, 10, 0, io.EOF},
		{5, 2 * readAhead, 2 * readAhead, nil}, // a large read, past the window
		{10, 3 * readAhead, len(data) - 10, io.EOF},
	} {
		p := make([]byte, tc.n)
		n, err := b.ReadAt(p, tc.off)
		if n != tc.want || !errors.Is(err, tc.err) && !(tc.err == nil && err == nil) {
			t.Errorf("ReadAt(%d bytes at %d) = %d, %v; want %d, %v", tc.n, tc.off, n, err, tc.want, tc.err)
			continue
		}
		if !bytes.Equal(p[:n], data[min(tc.off, int64(len(data))):min(tc.off, int64(len(data)))+int64(n)]) {
			t.Errorf("ReadAt(%d bytes at %d): wrong bytes", tc.n, tc.off)
		}
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			p := make([]byte, 4096)
			for off := int64(i * 1000); off+4096 < int64(len(data)); off += 300007 {
				if n, err := b.ReadAt(p, off); n != len(p) || err != nil || !bytes.Equal(p, data[off:off+4096]) {
					t.Errorf("concurrent ReadAt at %d: %d, %v", off, n, err)
					return
				}
			}
		})
	}
	wg.Wait()
}
