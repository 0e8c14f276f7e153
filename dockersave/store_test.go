package dockersave

import (
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestOpenStoreLayout(t *testing.T) {
	s := openTestStore(t)
	var layout ocispec.ImageLayout
	b, err := os.ReadFile(filepath.Join(s.Dir(), "oci-layout"))
	if err != nil || json.Unmarshal(b, &layout) != nil || layout.Version != ocispec.ImageLayoutVersion {
		t.Fatalf("oci-layout %q, %v", b, err)
	}
	var idx ocispec.Index
	b, err = os.ReadFile(filepath.Join(s.Dir(), "index.json"))
	if err != nil || json.Unmarshal(b, &idx) != nil || idx.SchemaVersion != 2 || idx.Manifests == nil {
		t.Fatalf("index.json %q, %v", b, err)
	}
	// Reopening keeps what is there.
	img, err := NewLoader(s).Load(t.Context(), "docker-archive:"+filepath.Join(fixturesDir, "alpine-3.11-docker-save.tar.gz"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := OpenStore(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got, ok, err := s2.Lookup(img.ID, img.Platform); !ok || err != nil || got.ManifestDigest != img.ManifestDigest {
		t.Fatalf("reopened store lost the image: %v %v", ok, err)
	}
}

func TestStoreIndexRecord(t *testing.T) {
	s := openTestStore(t)
	img, err := NewLoader(s).Load(t.Context(), "docker-archive:"+filepath.Join(fixturesDir, "alpine-3.11-docker-save.tar.gz"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	b, _ := os.ReadFile(filepath.Join(s.Dir(), "index.json"))
	if err := json.Unmarshal(b, &idx); err != nil || len(idx.Manifests) != 1 {
		t.Fatalf("index %s", b)
	}
	d := idx.Manifests[0]
	want := map[string]string{
		AnnotationImageID:         img.ID.String(),
		AnnotationPlatform:        "linux/amd64",
		AnnotationRepoTags:        "alpine:3.11",
		AnnotationSourceKind:      "docker-archive",
		ocispec.AnnotationRefName: "alpine:3.11",
	}
	for k, v := range want {
		if d.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, d.Annotations[k], v)
		}
	}
	if d.Digest != img.ManifestDigest || d.Platform == nil || d.Platform.Architecture != "amd64" {
		t.Errorf("descriptor %+v", d)
	}
	// Loading again replaces the record instead of adding one.
	if _, err := NewLoader(s).Load(t.Context(), "docker-archive:"+filepath.Join(fixturesDir, "alpine-3.11-docker-save.tar.gz"), nil); err != nil {
		t.Fatal(err)
	}
	if images, _ := s.Images(); len(images) != 1 {
		t.Fatalf("%d records after reloading one image", len(images))
	}
}

func TestOpenBlob(t *testing.T) {
	s := openTestStore(t)
	img, err := NewLoader(s).Load(t.Context(), "oci-archive:"+filepath.Join(fixturesDir, "dive-test-oci-gzip-image.tar"), nil)
	if err != nil {
		t.Fatal(err)
	}
	f, err := s.OpenBlob(img.Manifest.Layers[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	if digest.FromBytes(b) != img.Manifest.Layers[0].Digest {
		t.Fatal("wrong content")
	}
	if _, err := s.OpenBlob(digest.FromString("absent")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("absent blob: %v", err)
	}
	for _, bad := range []digest.Digest{"sha256:../../index.json", "sha512:" + digest.Digest(hexOf(nil)+hexOf(nil)), "", "sha256:ABC"} {
		if _, err := s.OpenBlob(bad); err == nil || errors.Is(err, fs.ErrNotExist) {
			t.Errorf("OpenBlob(%q) = %v, want a validation error", bad, err)
		}
	}
}

// TestLookupReadsNoBlob: a cache hit is decided from index.json and stat
// alone, so a stored blob's content may be unreadable.
func TestLookupReadsNoBlob(t *testing.T) {
	s := openTestStore(t)
	img, err := NewLoader(s).Load(t.Context(), "docker-archive:"+filepath.Join(fixturesDir, "dive-test-docker-image.tar"), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Overwrite every blob with zeros of the same length: a lookup that
	// read (or hashed) any of them would notice.
	for _, l := range append(img.Manifest.Layers, img.Manifest.Config, img.ManifestDescriptor()) {
		p := filepath.Join(s.Dir(), blobPath(l.Digest))
		os.Chmod(p, 0o644)
		if err := os.Truncate(p, 0); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, l.Size); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	got, ok, err := s.Lookup(img.ID, img.Platform)
	if err != nil || !ok || got.ManifestDigest != img.ManifestDigest || len(got.Manifest.Layers) != 14 {
		t.Fatalf("Lookup = %v, %v, %v", got.ManifestDigest, ok, err)
	}
	t.Logf("lookup took %v", time.Since(start))
	if _, ok, _ := s.Lookup(img.ID, ocispec.Platform{OS: "linux", Architecture: "arm64"}); ok {
		t.Fatal("found for another platform")
	}
}

func TestStaleStagingRemoved(t *testing.T) {
	s := openTestStore(t)
	stale := filepath.Join(s.Dir(), stagingDir, "blob-stale")
	fresh := filepath.Join(s.Dir(), stagingDir, "blob-fresh")
	writeFile(t, filepath.Dir(stale), filepath.Base(stale), []byte("x"))
	writeFile(t, filepath.Dir(fresh), filepath.Base(fresh), []byte("x"))
	old := time.Now().Add(-48 * time.Hour)
	os.Chtimes(stale, old, old)
	s2, err := OpenStore(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Error("stale staging file kept")
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Error("fresh staging file (maybe another process's) removed")
	}
}

// CheckWritable is what /readyz asks: can an image be stored now? It leaves
// nothing behind when it can, and says why when it cannot (here: tmp/ is
// not a directory any more; a read-only file system fails the same create).
func TestCheckWritable(t *testing.T) {
	s := openTestStore(t)
	if err := s.CheckWritable(); err != nil {
		t.Fatalf("CheckWritable on a fresh store: %v", err)
	}
	if entries, err := os.ReadDir(filepath.Join(s.Dir(), "tmp")); err != nil || len(entries) != 0 {
		t.Errorf("CheckWritable left %v in tmp/ (%v)", entries, err)
	}
	tmp := filepath.Join(s.Dir(), "tmp")
	if err := os.Remove(tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tmp, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckWritable(); err == nil || !errors.Is(err, syscall.ENOTDIR) {
		t.Errorf("CheckWritable with tmp/ a file: %v, want ENOTDIR", err)
	}
}
