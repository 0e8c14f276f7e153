package dockersave

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

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
