package dockersave

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// TestOpenBlobRefusesPlantedFiles: whatever someone with write access plants
// in blobs/ under a stored blob's name, OpenBlob opens only a regular file
// the store wrote there: links (inside or outside the store), fifos (without
// waiting for a writer), directories and devices are reported missing.
func TestOpenBlobRefusesPlantedFiles(t *testing.T) {
	outside := writeFile(t, t.TempDir(), "secret", []byte("outside the store"))
	cases := []struct {
		name  string
		plant func(t *testing.T, s *Store, path string, other string)
	}{
		{"symlink to index.json", func(t *testing.T, s *Store, p, _ string) { mustDo(t, os.Symlink("../../index.json", p)) }},
		{"symlink to another blob", func(t *testing.T, s *Store, p, other string) { mustDo(t, os.Symlink(filepath.Base(other), p)) }},
		{"symlink leaving the store", func(t *testing.T, s *Store, p, _ string) { mustDo(t, os.Symlink("../../../../../../../.."+outside, p)) }},
		{"absolute symlink", func(t *testing.T, s *Store, p, _ string) { mustDo(t, os.Symlink(outside, p)) }},
		{"fifo", func(t *testing.T, s *Store, p, _ string) { mustDo(t, unix.Mkfifo(p, 0o644)) }},
		{"directory", func(t *testing.T, s *Store, p, _ string) { mustDo(t, os.Mkdir(p, 0o755)) }},
		{"character device", func(t *testing.T, s *Store, p, _ string) {
			mustDo(t, unix.Mknod(p, unix.S_IFCHR|0o644, int(unix.Mkdev(1, 3))))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := openTestStore(t)
			img, err := NewLoader(s).Load(t.Context(), "oci-archive:"+filepath.Join(fixturesDir, "dive-test-oci-gzip-image.tar"), nil)
			if err != nil {
				t.Fatal(err)
			}
			d := img.Manifest.Layers[0].Digest
			p := filepath.Join(s.Dir(), blobPath(d))
			mustDo(t, os.Remove(p))
			tc.plant(t, s, p, filepath.Join(s.Dir(), blobPath(img.Manifest.Config.Digest)))
			f, err := s.OpenBlob(d)
			if err == nil {
				f.Close()
				t.Fatalf("OpenBlob opened a planted %s", tc.name)
			}
			if !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("got %v, want an error wrapping fs.ErrNotExist (the blob is not there)", err)
			}
			// The image is no longer complete: the next load would
			// export or read it again.
			if _, ok, _ := s.Lookup(img.ID, img.Platform); ok {
				t.Errorf("Lookup still finds the image")
			}
		})
	}
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestAlteredBlobLimits pins down what the store does not protect against,
// so that the documentation stays true: a stored blob whose bytes are
// changed in place (same size) is opened and would be served as it is (the
// bridge checks sizes, Clair 4 re-hashes every layer; the store itself never
// re-hashes on the serving path); a blob whose size changed makes the image
// incomplete, so a daemon image is exported again and healed.
func TestAlteredBlobLimits(t *testing.T) {
	f := newFakeEngine(t)
	s := openTestStore(t)
	img := loadEngine(t, s, f)
	l := img.Manifest.Layers[0]
	p := filepath.Join(s.Dir(), blobPath(l.Digest))
	mustDo(t, os.Chmod(p, 0o644))
	same := make([]byte, l.Size)
	mustDo(t, os.WriteFile(p, same, 0o644))
	file, err := s.OpenBlob(l.Digest)
	if err != nil {
		t.Fatalf("a same-size altered blob: %v", err)
	}
	b, _ := io.ReadAll(file)
	file.Close()
	if digest.FromBytes(b) == l.Digest {
		t.Fatal("the blob was not altered")
	}
	if again := loadEngine(t, s, f); !again.CacheHit {
		t.Fatal("a same-size alteration is not noticed by Lookup (by design: it reads no blob)")
	}

	mustDo(t, os.WriteFile(p, same[:1], 0o644))
	again := loadEngine(t, s, f)
	if again.CacheHit || f.saves.Load() != 2 {
		t.Fatalf("a blob of the wrong size: cache hit %v after %d exports, want a new export", again.CacheHit, f.saves.Load())
	}
	checkImage(t, s, again)
}
