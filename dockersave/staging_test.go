package dockersave

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/layerbridge/layerbridge/internal/directio"
	"github.com/layerbridge/layerbridge/store"
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

func newChunky(data []byte, seed uint64) *chunkyReader {
	return &chunkyReader{data: data, rng: rand.New(rand.NewPCG(seed, 1))}
}

// stagedContent reads back what stage left in the staging area.
func stagedContent(t *testing.T, s *store.Store, b *stagedBlob) []byte {
	t.Helper()
	got, err := os.ReadFile(filepath.Join(s.Dir(), b.tmp))
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestStageWritesExactBytes stages blobs of awkward sizes through both
// writers (direct I/O forced on every size, and the buffered one)
// and both of stage's paths (uncompressed: read straight into the chunks;
// gzip: written through the decompressing tee), and checks the digest, the
// size and every byte of the staging file.
func TestStageWritesExactBytes(t *testing.T) {
	sizes := []int{0, 1, directio.Align - 1, directio.Align, directio.Align + 1, directio.Chunk - 1, directio.Chunk, directio.Chunk + 1,
		3*directio.Chunk + 5, directio.Buffers*directio.Chunk + directio.Align + 17, 2*directio.Buffers*directio.Chunk - 1}
	for i, size := range sizes {
		for _, gz := range []bool{false, true} {
			if gz && size > directio.Buffers*directio.Chunk {
				continue // compressing random bytes is slow; the smaller sizes cover this path
			}
			data := randomLayer(t, size)
			if gz {
				data = gzipBytes(t, data)
			}
			want := digest.FromBytes(data)
			for _, direct := range []bool{true, false} {
				t.Run(fmt.Sprintf("gzip=%v/direct=%v/%d", gz, direct, size), func(t *testing.T) {
					s := openTestStore(t)
					st := newStager(s, nil)
					defer st.cleanup()
					st.directMin = -1
					if direct {
						st.directMin = 1
					}
					b, err := st.stage(newChunky(data, uint64(i)), int64(len(data)), want, want, "entry")
					if err != nil {
						t.Fatal(err)
					}
					if b.Digest != want || b.Size != int64(len(data)) {
						t.Errorf("staged %s (%d bytes), want %s (%d bytes)", b.Digest, b.Size, want, len(data))
					}
					if got := stagedContent(t, s, b); !bytes.Equal(got, data) {
						t.Errorf("staging file holds %d bytes (%s), want %d bytes (%s)", len(got), digest.FromBytes(got), len(data), want)
					}
				})
			}
		}
	}
}

// TestStageLargeBlobsSequentially stages several blobs above directMinSize
// in a row with one stager (as a multi-layer export does), reusing the
// aligned buffers.
func TestStageLargeBlobsSequentially(t *testing.T) {
	s := openTestStore(t)
	st := newStager(s, nil)
	defer st.cleanup()
	var staged []*stagedBlob
	var blobs [][]byte
	for i := range 3 {
		data := randomLayer(t, directMinSize+i*directio.Align+i)
		b, err := st.stage(newChunky(data, uint64(i)), int64(len(data)), "", "", "entry")
		if err != nil {
			t.Fatal(err)
		}
		staged, blobs = append(staged, b), append(blobs, data)
	}
	for i, b := range staged {
		if b.Digest != digest.FromBytes(blobs[i]) || !bytes.Equal(stagedContent(t, s, b), blobs[i]) {
			t.Errorf("blob %d: staged %s, content differs from what was read", i, b.Digest)
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

// TestStageDirectFailures: a stream that breaks, and content that does
// not match its name, leave no staging file, and the stager stays usable.
func TestStageDirectFailures(t *testing.T) {
	s := openTestStore(t)
	st := newStager(s, nil)
	defer st.cleanup()
	data := randomLayer(t, directMinSize+directio.Chunk/2)
	broken := errors.New("connection reset")

	_, err := st.stage(&failingReader{r: newChunky(data[:directMinSize-5], 1), err: broken}, int64(len(data)), "", "", "entry")
	if !errors.Is(err, broken) {
		t.Errorf("broken stream: err %v, want %v", err, broken)
	}
	_, err = st.stage(newChunky(data, 2), int64(len(data)), digest.FromString("something else"), "", "entry")
	if !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("wrong content: err %v, want ErrDigestMismatch", err)
	}
	if entries, err := os.ReadDir(filepath.Join(s.Dir(), stagingDir)); err != nil || len(entries) != 0 {
		t.Errorf("staging area after failures: %v (err %v), want empty", entries, err)
	}
	b, err := st.stage(newChunky(data, 3), int64(len(data)), digest.FromBytes(data), "", "entry")
	if err != nil || !bytes.Equal(stagedContent(t, s, b), data) {
		t.Errorf("stage after failures: %v", err)
	}
}

// TestBackgroundSyncs: files are closed once wait returns, and a failure
// is reported by wait.
func TestBackgroundSyncs(t *testing.T) {
	s := openTestStore(t)
	st := newStager(s, nil)
	wait := st.syncInBackground()
	var files []*os.File
	for range 2 * maxBackgroundSyncs {
		f, _, err := s.CreateStaging()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString("x"); err != nil {
			t.Fatal(err)
		}
		if err := st.persist(f); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	if err := wait(); err != nil {
		t.Fatalf("wait: %v", err)
	}
	for _, f := range files {
		if _, err := f.WriteString("y"); !errors.Is(err, os.ErrClosed) {
			t.Fatalf("write after wait: %v, want os.ErrClosed (persist closes)", err)
		}
	}
	if st.syncs != nil {
		t.Error("persist still asynchronous after wait")
	}

	wait = st.syncInBackground()
	closed, _, err := s.CreateStaging()
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	if err := st.persist(closed); err != nil {
		t.Fatalf("persist reported %v at once; failures are for wait", err)
	}
	if err := wait(); err == nil {
		t.Error("wait: no error for a file that could not be synced")
	}
}
