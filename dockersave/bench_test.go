package dockersave

import (
	"bytes"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// benchArchive reads data with the archive reader and interprets it, as a
// daemon export would be, reporting throughput over the archive bytes.
func benchArchive(b *testing.B, data []byte) {
	s := openTestStore(b)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		st := newStager(s, nil)
		a, err := readArchive(b.Context(), bytes.NewReader(data), st, "bench")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := interpret(a, a.meta, nil, linuxAMD64); err != nil {
			b.Fatal(err)
		}
		st.cleanup()
	}
}

// BenchmarkReadArchive: 4 incompressible 16 MiB layers, as a legacy save
// (hash + write) and as a containerd export of gzip layers (hash + write +
// decompressing tee for the diff ID); and 200 layers of 1 MiB as a legacy
// save (per-layer costs: a staging file and an fsync each).
func BenchmarkReadArchive(b *testing.B) {
	var layers [][]byte
	for range 4 {
		layers = append(layers, randomLayer(b, 16<<20))
	}
	b.Run("legacy-uncompressed", func(b *testing.B) {
		data, _ := legacyArchive(b, nil, layers, false)
		benchArchive(b, data)
	})
	b.Run("legacy-200x1MiB", func(b *testing.B) {
		// The per-layer cost: 200 small layers (issue 8's many-layers image).
		var small [][]byte
		for range 200 {
			small = append(small, randomLayer(b, 1<<20))
		}
		data, _ := legacyArchive(b, nil, small, false)
		benchArchive(b, data)
	})
	b.Run("oci-gzip", func(b *testing.B) {
		var blobs [][]byte
		var mts []string
		var entries []tarEntry
		for _, l := range layers {
			g := gzipBytes(b, l)
			blobs = append(blobs, g)
			mts = append(mts, ocispec.MediaTypeImageLayerGzip)
			entries = append(entries, blobEntry(g))
		}
		cfg := configFor(b, linuxAMD64, layers...)
		m := ociManifest(b, cfg, blobs, mts)
		entries = append(entries, blobEntry(cfg), blobEntry(m),
			tarEntry{name: "index.json", body: mustJSON(b, ocispec.Index{Manifests: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageManifest, Digest: digestOfBytes(m), Size: int64(len(m))}}})},
			tarEntry{name: "oci-layout", body: []byte(`{"imageLayoutVersion":"1.0.0"}`)})
		benchArchive(b, buildTar(b, entries))
	})
}
