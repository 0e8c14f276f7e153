package store

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

// The fuzz targets of this package. `make fuzz` runs each for FUZZTIME
// (30 s by default) and `make fuzz-smoke` (part of `make test`) for 10,000
// inputs; `go test` runs their seeds and testdata/fuzz corpus as ordinary
// tests.

// fuzzStore opens a store for a fuzz target, without the fsyncs of
// index.json and directories (Store.noSync, which only tests set), so that
// production keeps every fsync and fuzzing runs many inputs a second.
func fuzzStore(f *testing.F) *Store {
	f.Helper()
	s := openTestStore(f)
	s.noSync = true
	return s
}

// FuzzStoreIndex fuzzes the store's own index.json (another tool, an older
// layerbridge, a torn edit): reading it never panics, and an image it
// yields is complete, its blobs present with the recorded sizes.
func FuzzStoreIndex(f *testing.F) {
	s := fuzzStore(f)
	img := commitImage(f, s, "app:1", randomLayer(f, 4<<10), randomLayer(f, 8<<10))
	good, err := os.ReadFile(filepath.Join(s.Dir(), indexFile))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"manifests":[{"digest":"sha256:../../x","size":-1,"annotations":{"io.layerbridge.image.id":"sha256:"}}]}`))
	f.Add([]byte(`{"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"` + img.ManifestDigest.String() + `","size":1}]}`))
	f.Fuzz(func(t *testing.T, index []byte) {
		if err := os.WriteFile(filepath.Join(s.Dir(), indexFile), index, 0o644); err != nil {
			t.Fatal(err)
		}
		check := func(what string, im Record) {
			t.Helper()
			for _, d := range recordBlobs(im) {
				if !s.hasBlob(d.Digest, d.Size) {
					t.Fatalf("%s returned %s without its blob %s (%d bytes)", what, im.ManifestDigest, d.Digest, d.Size)
				}
			}
		}
		images, err := s.Images()
		if err == nil {
			for _, im := range images {
				check("Images", im)
			}
		}
		if im, ok, err := s.Lookup(img.ID, img.Platform); err == nil && ok {
			check("Lookup", im)
		}
		if usage, err := s.Usage(); err == nil {
			for _, u := range usage {
				if u.Complete {
					check("Usage", u.Record)
				}
			}
		}
	})
}

// FuzzOpenBlob: whatever the digest string, OpenBlob opens a regular file of
// blobs/sha256 holding exactly that digest's bytes, or fails.
func FuzzOpenBlob(f *testing.F) {
	s := fuzzStore(f)
	img := commitImage(f, s, "app:1", randomLayer(f, 4<<10), randomLayer(f, 8<<10))
	for _, d := range recordBlobs(img) {
		f.Add(d.Digest.String())
	}
	for _, s := range []string{"sha256:../../index.json", "sha256:" + strings.Repeat("a", 64) + "/../../index.json", "sha256:", "../oci-layout", "sha256:%2e%2e", "sha512:" + strings.Repeat("0", 128), "sha256:" + strings.Repeat("A", 64)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, d string) {
		file, err := s.OpenBlob(digest.Digest(d))
		if err != nil {
			return
		}
		defer file.Close()
		b, err := io.ReadAll(file)
		if err != nil {
			t.Fatal(err)
		}
		if got := digest.FromBytes(b); got.String() != d {
			t.Fatalf("OpenBlob(%q) opened %s", d, got)
		}
		if want := filepath.Join(s.Dir(), blobsDir, strings.TrimPrefix(d, "sha256:")); file.Name() != want {
			t.Fatalf("OpenBlob(%q) opened %s", d, file.Name())
		}
	})
}
