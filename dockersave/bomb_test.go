package dockersave

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// zeroBomb is a gzip or zstd stream inflating to mib MiB of zeros from a
// few KiB: mib concatenated members (frames) of 1 MiB each, which both
// decompressors read as one stream. Making it costs one 1 MiB compression.
func zeroBomb(t testing.TB, comp compression, mib int) []byte {
	t.Helper()
	one := make([]byte, 1<<20)
	var member []byte
	switch comp {
	case compressionGzip:
		member = gzipBytes(t, one)
	case compressionZstd:
		member = zstdBytes(t, one)
	default:
		t.Fatalf("no bomb for %s", comp)
	}
	return bytes.Repeat(member, mib)
}

// allocated runs fn and returns the bytes it allocated on the heap (the
// process's total, so nothing else may run meanwhile).
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestDecompressionIsCapped: computing a diff ID stops at the limit it is
// given, with ErrTooLarge, having allocated a small fraction of what the
// bomb would inflate to.
func TestDecompressionIsCapped(t *testing.T) {
	const limit = 4 << 20
	for _, comp := range []compression{compressionGzip, compressionZstd} {
		t.Run(comp.String(), func(t *testing.T) {
			bomb := zeroBomb(t, comp, 64)
			st := newStager(openTestStore(t), nil)
			defer st.cleanup()
			var err error
			var read countingReader
			n := allocated(func() {
				read.r = bytes.NewReader(bomb)
				_, err = st.meter.decompressedDigest(comp, &read, limit)
			})
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("got %v, want %v", err, ErrTooLarge)
			}
			t.Logf("%d of %d compressed bytes read, %d bytes allocated", read.n, len(bomb), n)
			if n > 16<<20 {
				t.Errorf("%d bytes allocated to stop at %d: the output is buffered", n, limit)
			}
			if read.n == int64(len(bomb)) {
				t.Errorf("the whole bomb was read: decompression went on past the limit")
			}
		})
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// TestDecompressionBombsStream: layers (gzip, zstd) and a docker-archive
// gzip wrapper inflating to 64 (16) MiB, within the limit but not matching
// the config, are rejected without the inflated bytes ever being held in
// memory. (The wrapper's inflated bytes are also staged on disk, which
// costs more under -race: it inflates less.)
func TestDecompressionBombsStream(t *testing.T) {
	wrongDiffIDs := func(g *genImage) {
		g.diffIDs = []digest.Digest{digest.FromString("not this"), digest.FromBytes(g.layers[1])}
	}
	cases := []struct {
		name  string
		mib   int
		f     archiveFormat
		build func(t *testing.T, mib int) []byte
	}{
		{"gzip layer (kaniko)", 64, archiveFormats[4], func(t *testing.T, mib int) []byte {
			g := genImage{layers: genLayers(t)}
			wrongDiffIDs(&g)
			a := buildKaniko(t, g)
			// The layer's name is its digest: rename it with the bomb.
			bomb := zeroBomb(t, compressionGzip, mib)
			a.replace(t, a.layer, tarEntry{name: hexOf(bomb) + ".tar.gz", body: bomb})
			return rewriteManifestJSON(t, a, a.layer, hexOf(bomb)+".tar.gz")
		}},
		{"zstd layer (containerd export)", 64, archiveFormats[2], func(t *testing.T, mib int) []byte {
			g := genImage{layers: genLayers(t)}
			wrongDiffIDs(&g)
			a := buildContainerd(t, g)
			bomb := zeroBomb(t, compressionZstd, mib)
			a.replace(t, a.layer, blobEntry(bomb))
			return rewriteManifestJSON(t, a, a.layer, blobEntry(bomb).name)
		}},
		{"docker-archive gzip wrapper", 16, archiveFormats[7], func(t *testing.T, mib int) []byte {
			g := genImage{layers: genLayers(t)}
			wrongDiffIDs(&g)
			a := buildLegacy(t, g)
			// A layer.tar of zeros, inflated from the wrapper: the tar is
			// compressed in three parts (before, the zeros, after).
			a.entry(t, a.layer).body = make([]byte, mib<<20)
			data := buildTar(t, a.entries)
			at := bodyOffset(t, data, a.layer)
			return append(append(gzipBytes(t, data[:at]), zeroBomb(t, compressionGzip, mib)...), gzipBytes(t, data[at+mib<<20:])...)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sb := newSandbox(t)
			data := tc.build(t, tc.mib)
			ref := string(tc.f.kind) + ":" + sb.input("bomb.tar", data)
			var err error
			n := allocated(func() { _, err = sb.load(ref) })
			if !errors.Is(err, ErrDiffIDMismatch) {
				t.Fatalf("got %v, want %v", err, ErrDiffIDMismatch)
			}
			t.Logf("%d compressed bytes inflating to %d MiB: %d bytes allocated", len(data), tc.mib, n)
			// A load allocates about 11 MiB whatever the size (copy
			// buffers, and the direct-I/O buffers of a large staging
			// file); buffering the inflated bytes would add all of them.
			if n > 16<<20 {
				t.Errorf("%d bytes allocated for a %d MiB bomb: inflated data is buffered", n, tc.mib)
			}
		})
	}
}

// bodyOffset is where the content of entry name starts in the tar data.
func bodyOffset(t *testing.T, data []byte, name string) int {
	t.Helper()
	cr := &countingReader{r: bytes.NewReader(data)}
	tr := tar.NewReader(cr)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no entry %s: %v", name, err)
		}
		if h.Name == name {
			return int(cr.n) // archive/tar reads headers block by block
		}
	}
}

// rewriteManifestJSON renames a layer in manifest.json and returns the tar.
func rewriteManifestJSON(t *testing.T, a genArchive, from, to string) []byte {
	t.Helper()
	m := a.entry(t, "manifest.json")
	m.body = []byte(strings.ReplaceAll(string(m.body), from, to))
	return buildTar(t, a.entries)
}

// TestDecompressionBombBeyondTheLimit: a zstd layer inflating past the
// limit (1 GiB for a small blob) is rejected as too large as soon as it is
// read. It inflates that gigabyte, which the race detector makes take
// half a minute: `make unit` runs it without -race.
func TestDecompressionBombBeyondTheLimit(t *testing.T) {
	if raceEnabled {
		t.Skip("inflates 1 GiB, too slow under -race: make unit runs this test without it")
	}
	bomb := zeroBomb(t, compressionZstd, minDecompressedLimit>>20+64)
	for _, f := range []archiveFormat{archiveFormats[5], archiveFormats[6]} {
		t.Run(f.name, func(t *testing.T) {
			sb := newSandbox(t)
			g := genImage{layers: genLayers(t)}
			// The config can only name the bomb's diff id by hashing a
			// gigabyte: any other id will do, the limit comes first.
			g.diffIDs = []digest.Digest{digest.FromString("bomb"), digest.FromBytes(g.layers[1])}
			a := buildOCIWithLayerBlob(t, g, bomb)
			_, err := sb.load(sb.format(f, a))
			if f.dir {
				// The layout reader reports the limit inside a diff id
				// mismatch (see the report on issue 9).
				if !errors.Is(err, ErrDiffIDMismatch) || !strings.Contains(err.Error(), ErrTooLarge.Error()) {
					t.Fatalf("got %v, want a diff id mismatch saying the layer exceeds the limit", err)
				}
				return
			}
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("got %v, want %v", err, ErrTooLarge)
			}
			var ae *ArchiveError
			if !errors.As(err, &ae) || ae.Entry != blobEntry(bomb).name {
				t.Errorf("%v does not name the bomb's entry", err)
			}
		})
	}
}

// buildOCIWithLayerBlob is an OCI layout whose first layer blob is blob
// (zstd), the second an ordinary uncompressed layer.
func buildOCIWithLayerBlob(t *testing.T, g genImage, blob []byte) genArchive {
	cfg := g.config(t)
	// One media type for both: the layers are told apart by their bytes.
	m := g.manifest(t, cfg, [][]byte{blob, g.layers[1]}, ocispec.MediaTypeImageLayerZstd)
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2},
		Manifests: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(m), Size: int64(len(m))}}}
	a := genArchive{entries: []tarEntry{{name: "blobs/", typ: tar.TypeDir}, {name: "blobs/sha256/", typ: tar.TypeDir},
		blobEntry(blob), blobEntry(g.layers[1]), blobEntry(cfg), blobEntry(m),
		{name: "index.json", body: mustJSON(t, idx)},
		{name: "oci-layout", body: []byte(`{"imageLayoutVersion":"1.0.0"}`)}}}
	a.layer, a.config, a.meta = blobEntry(blob).name, blobEntry(cfg).name, "index.json"
	return a
}
