package dockersave

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/layerbridge/layerbridge/store"
)

// The fuzz targets of this package. `make fuzz` runs each for FUZZTIME
// (30 s by default) and `make fuzz-smoke` (part of `make test`) for 5 s;
// `go test` runs their seeds and testdata/fuzz corpus as ordinary tests.
//
// Speed: every input stages blobs into a store, and each staging file is
// fsynced before it can be published. On a disk that is about 2.5 ms per
// blob, which kept the old FuzzReadArchive at a few executions per second.
// fuzzStore puts the store on tmpfs, where fsync is free. Seeds are at most
// maxFuzzSeed bytes: the fuzzing engine mutates and minimizes large inputs
// very slowly.

const maxFuzzSeed = 64 << 10

// fuzzStore opens a store for a fuzz target (see above).
func fuzzStore(f *testing.F) *store.Store {
	f.Helper()
	s, err := store.Open(filepath.Join(fastTempDir(f), "store"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	return s
}

// fuzzStager returns a function giving the stager for the next input: one
// stager reused (each makes 2 MiB of copy buffers, the largest cost of a
// small input), emptied of the previous input's blobs. A fuzz function runs
// its inputs one at a time in each process.
func fuzzStager(s *store.Store) func() *stager {
	st := newStager(s, nil)
	return func() *stager {
		st.cleanup()
		st.blobs = make(map[digest.Digest]*stagedBlob)
		st.total = 0
		return st
	}
}

// addArchiveSeeds adds the small fixtures (decompressed) and an archive of
// every generated format.
func addArchiveSeeds(f *testing.F) {
	for _, w := range fixtureWants {
		data, err := os.ReadFile(filepath.Join(fixturesDir, w.file))
		if err != nil {
			f.Fatal(err)
		}
		if detectCompression(data) == compressionGzip {
			zr, err := gzip.NewReader(bytes.NewReader(data))
			if err != nil {
				f.Fatal(err)
			}
			if data, err = io.ReadAll(zr); err != nil {
				f.Fatal(err)
			}
		}
		if len(data) <= maxFuzzSeed {
			f.Add(data)
		}
	}
	for _, af := range archiveFormats {
		if af.dir || af.wrap != nil {
			continue
		}
		f.Add(buildTar(f, af.build(f, genImage{layers: genLayers(f)}).entries))
	}
}

// checkNothingPublished fails when a staging file or a blob is left: only a
// commit may publish.
func checkNothingPublished(t *testing.T, s *store.Store) {
	t.Helper()
	if left, _ := os.ReadDir(filepath.Join(s.Dir(), stagingDir)); len(left) != 0 {
		t.Fatalf("staging files left: %v", left)
	}
	if b := storeBlobs(t, s); len(b) != 0 {
		t.Fatalf("blobs published without a commit: %v", b)
	}
}

// checkTyped fails on an error that is none of the documented kinds.
func checkTyped(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var ae *ArchiveError
	if !errors.As(err, &ae) && !errors.As(err, new(*AmbiguousError)) && !errors.As(err, new(*PlatformError)) {
		t.Fatalf("untyped error %T: %v", err, err)
	}
}

// checkVerified checks what interpretation accepted: every layer's diff ID
// is the config's, and the manifest describes the blobs (rule 5 of
// verify.go, which the store relies on).
func checkVerified(t *testing.T, v *verified) {
	t.Helper()
	if len(v.layers) != len(v.diffIDs) {
		t.Fatalf("%d layers, %d diff ids", len(v.layers), len(v.diffIDs))
	}
	for i, l := range v.layers {
		if l.DiffID != v.diffIDs[i] {
			t.Fatalf("layer %d accepted with diff id %s, config %s", i, l.DiffID, v.diffIDs[i])
		}
	}
	if v.manifestDigest != digest.FromBytes(v.manifestBytes) {
		t.Fatalf("manifest digest %s is not that of its bytes", v.manifestDigest)
	}
	if err := v.checkDescribed("fuzz"); err != nil {
		t.Fatalf("accepted a manifest that does not describe its blobs: %v", err)
	}
}

// FuzzReadArchive feeds arbitrary bytes to the archive reader and the
// interpretation: no panic, every failure is a typed error, a success is
// internally consistent, and nothing is ever published or left in staging.
func FuzzReadArchive(f *testing.F) {
	addArchiveSeeds(f)
	s := fuzzStore(f)
	next := fuzzStager(s)
	f.Fuzz(func(t *testing.T, data []byte) {
		st := next()
		a, err := readArchive(t.Context(), bytes.NewReader(data), st, "fuzz")
		if err == nil {
			var v *verified
			if v, err = interpret(a, a.meta, nil, linuxAMD64); err == nil {
				checkVerified(t, v)
			}
		}
		checkTyped(t, err)
		st.cleanup()
		checkNothingPublished(t, s)
	})
}

// metadataArchive is the archive FuzzInterpretMetadata reads: two fixed
// layers (uncompressed and gzip, each under an OCI and a docker save name)
// and the fuzzed metadata, each file only when not empty: manifest.json,
// index.json, the config as an OCI blob and as <hex>.json, and a manifest
// blob.
func metadataArchive(t testing.TB, layers [][]byte, manifestJSON, indexJSON, config, manifest []byte) []byte {
	entries := []tarEntry{{name: "oci-layout", body: []byte(`{"imageLayoutVersion":"1.0.0"}`)}}
	for _, l := range layers {
		entries = append(entries, blobEntry(l), tarEntry{name: hexOf(l) + ".tar", body: l})
	}
	if len(config) > 0 {
		entries = append(entries, blobEntry(config), tarEntry{name: hexOf(config) + ".json", body: config})
	}
	if len(manifest) > 0 {
		entries = append(entries, blobEntry(manifest))
	}
	if len(indexJSON) > 0 {
		entries = append(entries, tarEntry{name: "index.json", body: indexJSON})
	}
	if len(manifestJSON) > 0 {
		entries = append(entries, tarEntry{name: "manifest.json", body: manifestJSON})
	}
	return buildTar(t, entries)
}

// FuzzInterpretMetadata fuzzes the JSON an archive is interpreted from:
// manifest.json (every docker save generation, podman, kaniko), index.json
// (nested indexes, descriptors, platforms), the image config and an OCI
// manifest, around fixed layers. Whatever is accepted is committed to the
// store and read back: Lookup finds it, and every blob it names is in the
// store with the named digest and size. Then the store is emptied again.
func FuzzInterpretMetadata(f *testing.F) {
	layers := [][]byte{layerTar(f, map[string]string{"etc/os-release": "ID=fuzz\n"}), nil}
	layers[1] = gzipBytes(f, layerTar(f, map[string]string{"app/main": "x"}))
	// Seeds: the metadata of the generated formats over the same layers.
	uncompressed := [][]byte{layers[0], layerTar(f, map[string]string{"app/main": "x"})}
	for _, af := range archiveFormats {
		a := af.build(f, genImage{layers: uncompressed})
		meta := map[string][]byte{}
		var config, manifest []byte
		for _, e := range a.entries {
			switch {
			case e.name == "manifest.json" || e.name == "index.json":
				meta[e.name] = e.body
			case e.name == a.config:
				config = e.body
			case strings.HasPrefix(e.name, "blobs/sha256/") && bytes.Contains(e.body, []byte(`"layers"`)):
				manifest = e.body
			}
		}
		f.Add(meta["manifest.json"], meta["index.json"], config, manifest)
	}
	f.Add([]byte(`[{"Config":"../../etc/passwd"}]`), []byte(`{"manifests":[{"digest":"sha256:x"}]}`), []byte(`{}`), []byte(`{"layers":[]}`))
	s := fuzzStore(f)
	next := fuzzStager(s)
	f.Fuzz(func(t *testing.T, manifestJSON, indexJSON, config, manifest []byte) {
		data := metadataArchive(t, layers, manifestJSON, indexJSON, config, manifest)
		st := next()
		defer st.cleanup()
		a, err := readArchive(t.Context(), bytes.NewReader(data), st, "fuzz")
		var v *verified
		if err == nil {
			v, err = interpret(a, a.meta, nil, linuxAMD64)
		}
		checkTyped(t, err)
		if err != nil {
			st.cleanup()
			checkNothingPublished(t, s)
			return
		}
		checkVerified(t, v)
		img := imageOf("fuzz", SourceOCIArchive, v.config.Digest, v.platform, v.repoTags, v)
		// Interpretation refused any manifest that does not describe its
		// blobs: what it accepted is stored.
		pin, err := NewLoader(s).commit(context.Background(), img, v, nil)
		if err != nil {
			t.Fatalf("commit: %v", err)
		}
		pin.Release() // or Prune could not empty the store
		got, ok, err := s.Lookup(img.ID, img.Platform)
		if err != nil || !ok || got.ManifestDigest != img.ManifestDigest {
			t.Fatalf("committed %s, Lookup = %v %v %v", img.ManifestDigest, got.ManifestDigest, ok, err)
		}
		for _, d := range imageBlobs(imageFromRecord(got)) {
			f, err := s.OpenBlob(d.Digest)
			if err != nil {
				t.Fatalf("blob %s of a committed image: %v", d.Digest, err)
			}
			b, err := io.ReadAll(f)
			f.Close()
			if err != nil || digest.FromBytes(b) != d.Digest || int64(len(b)) != d.Size {
				t.Fatalf("blob %s (%d bytes) holds %d bytes hashing to %s (%v)", d.Digest, d.Size, len(b), digest.FromBytes(b), err)
			}
		}
		if _, err := s.Prune(context.Background(), 0); err != nil {
			t.Fatal(err)
		}
		checkNothingPublished(t, s)
	})
}
