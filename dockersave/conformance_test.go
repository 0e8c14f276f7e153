package dockersave

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/platforms"
	"github.com/layerbridge/layerbridge/store"
)

// checkImage is the conformance check every source must pass: every blob
// of img is in the store with the recorded digest and size, the manifest blob
// is img.Manifest, the layer order and count agree with the config, each
// layer decompresses (by its media type) to its diff ID, and Lookup finds it.
func checkImage(t *testing.T, s *store.Store, img Image) {
	t.Helper()
	readBlob := func(d ocispec.Descriptor) []byte {
		t.Helper()
		f, err := s.OpenBlob(d.Digest)
		if err != nil {
			t.Fatalf("open blob %s: %v", d.Digest, err)
		}
		defer f.Close()
		b, err := io.ReadAll(f)
		if err != nil {
			t.Fatal(err)
		}
		if digest.FromBytes(b) != d.Digest || int64(len(b)) != d.Size {
			t.Fatalf("blob %s: content is %s, %d bytes; descriptor says %d bytes", d.Digest, digest.FromBytes(b), len(b), d.Size)
		}
		return b
	}
	mb := readBlob(img.ManifestDescriptor())
	var m ocispec.Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		t.Fatal(err)
	}
	if m.Config.Digest != img.Manifest.Config.Digest || len(m.Layers) != len(img.Manifest.Layers) {
		t.Fatalf("stored manifest %+v differs from Image.Manifest %+v", m, img.Manifest)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(readBlob(img.Manifest.Config), &cfg); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.RootFS.DiffIDs, img.DiffIDs) {
		t.Fatalf("DiffIDs %v, config says %v", img.DiffIDs, cfg.RootFS.DiffIDs)
	}
	if len(img.DiffIDs) != len(img.Manifest.Layers) {
		t.Fatalf("%d diff ids for %d layers", len(img.DiffIDs), len(img.Manifest.Layers))
	}
	if !platforms.Match(img.Platform, configPlatform(cfg)) {
		t.Fatalf("platform %v, config says %v", img.Platform, configPlatform(cfg))
	}
	for i, l := range img.Manifest.Layers {
		if m.Layers[i].Digest != l.Digest {
			t.Fatalf("layer %d order differs", i)
		}
		b := readBlob(l)
		var r io.Reader = bytes.NewReader(b)
		switch {
		case strings.HasSuffix(l.MediaType, "gzip"):
			zr, err := gzip.NewReader(r)
			if err != nil {
				t.Fatalf("layer %d (%s): %v", i, l.MediaType, err)
			}
			r = zr
		case strings.HasSuffix(l.MediaType, "zstd"):
			zr, err := zstd.NewReader(r)
			if err != nil {
				t.Fatal(err)
			}
			defer zr.Close()
			r = zr
		default:
			if detectCompression(b) != compressionNone {
				t.Fatalf("layer %d media type %s but content is %s", i, l.MediaType, detectCompression(b))
			}
		}
		h := sha256.New()
		if _, err := io.Copy(h, r); err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		if got := digestOf(h); got != img.DiffIDs[i] {
			t.Fatalf("layer %d: uncompressed %s, diff id %s", i, got, img.DiffIDs[i])
		}
	}
	got, ok, err := s.Lookup(img.ID, img.Platform)
	if err != nil || !ok {
		t.Fatalf("Lookup(%s, %s) = %v, %v", img.ID, platforms.Format(img.Platform), ok, err)
	}
	if got.ManifestDigest != img.ManifestDigest || !slices.Equal(got.DiffIDs, img.DiffIDs) {
		t.Fatalf("Lookup = %+v, want manifest %s", got, img.ManifestDigest)
	}
}

type fixtureWant struct {
	file     string
	kind     SourceKind
	id       string
	platform string
	layers   int
	manifest string // expected manifest digest when the original is kept
	tags     []string
	media    string
}

var fixtureWants = []fixtureWant{
	{file: "alpine-3.11-docker-save.tar.gz", kind: SourceDockerArchive, id: "sha256:a187dde48cd289ac374ad8539930628314bc581a481cdb41409c9289419ddb72", platform: "linux/amd64", layers: 1, tags: []string{"alpine:3.11"}, media: ocispec.MediaTypeImageLayer},
	{file: "dive-test-docker-image.tar", kind: SourceDockerArchive, id: "sha256:75ae28b8ebf89b203319069ddcbecdf5c3838503bbebc0d0d85e4b8589c5de3a", platform: "linux/amd64", layers: 14, tags: []string{"dive-test:latest"}, media: ocispec.MediaTypeImageLayer},
	{file: "dive-test-kaniko-image.tar", kind: SourceDockerArchive, id: "sha256:ae16a51058a758c7963b2f9b23d1acfa201ce9cbefc8cb93845f8cd934fb144d", platform: "linux/amd64", layers: 14, tags: []string{"dive-test:kaniko-latest"}, media: ocispec.MediaTypeImageLayerGzip},
	{file: "dive-test-oci-gzip-image.tar", kind: SourceOCIArchive, id: "sha256:3eaccc100f866490f00ae82727b459a737af031dcf44c791d8aa714a70f24959", platform: "linux/arm64", layers: 1, manifest: "sha256:7d255e9e3d216a9a92a5c1ce0563a5ddd92f28a34a9df025d3cf8dfa5ea08366", media: ocispec.MediaTypeImageLayerGzip},
	{file: "dive-test-oci-zstd-image.tar", kind: SourceOCIArchive, id: "sha256:3eaccc100f866490f00ae82727b459a737af031dcf44c791d8aa714a70f24959", platform: "linux/arm64", layers: 1, manifest: "sha256:f5e3515f39a16543547c03d03ec34faf9276742e6ce7c7dd6e467a14e90b29fc", media: ocispec.MediaTypeImageLayerZstd},
	{file: "dive-test-oci-uncompressed-image.tar", kind: SourceOCIArchive, id: "sha256:3eaccc100f866490f00ae82727b459a737af031dcf44c791d8aa714a70f24959", platform: "linux/arm64", layers: 1, manifest: "sha256:5cec6b4ce61c35c3a83e09d72d81a335b49fdcef727beee160d12eeaf066f11b", media: ocispec.MediaTypeImageLayer},
}

func checkFixture(t *testing.T, s *store.Store, img Image, w fixtureWant) {
	t.Helper()
	checkImage(t, s, img)
	if img.ID.String() != w.id || platforms.Format(img.Platform) != w.platform || len(img.Manifest.Layers) != w.layers {
		t.Errorf("got id %s platform %s %d layers, want %s %s %d", img.ID, platforms.Format(img.Platform), len(img.Manifest.Layers), w.id, w.platform, w.layers)
	}
	if w.manifest != "" && img.ManifestDigest.String() != w.manifest {
		t.Errorf("manifest %s, want the original %s", img.ManifestDigest, w.manifest)
	}
	if !slices.Equal(img.RepoTags, w.tags) {
		t.Errorf("repo tags %v, want %v", img.RepoTags, w.tags)
	}
	for _, l := range img.Manifest.Layers {
		if l.MediaType != w.media {
			t.Errorf("layer media type %s, want %s", l.MediaType, w.media)
		}
	}
	if img.CacheHit {
		t.Error("an archive load reported a cache hit")
	}
}

// TestConformanceFixtures loads every real archive in ../testdata/fixtures in
// place and checks it with checkImage.
func TestConformanceFixtures(t *testing.T) {
	for _, w := range fixtureWants {
		t.Run(w.file, func(t *testing.T) {
			s := openTestStore(t)
			ref := string(w.kind) + ":" + filepath.Join(fixturesDir, w.file)
			img, err := NewLoader(s).loadReleased(t.Context(), ref, nil)
			if err != nil {
				t.Fatal(err)
			}
			if img.Ref != ref || img.Source != w.kind {
				t.Errorf("ref %q source %s", img.Ref, img.Source)
			}
			checkFixture(t, s, img, w)
			if left, _ := os.ReadDir(filepath.Join(s.Dir(), stagingDir)); len(left) != 0 {
				t.Errorf("staging files left behind: %v", left)
			}
		})
	}
}

// TestConformanceOCILayoutDir reads the OCI fixtures as oci:DIR layouts and
// must store the same manifests as through oci-archive.
func TestConformanceOCILayoutDir(t *testing.T) {
	for _, w := range fixtureWants {
		if w.kind != SourceOCIArchive {
			continue
		}
		t.Run(w.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join(fixturesDir, w.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			dir := t.TempDir()
			untarInto(t, f, dir)
			s := openTestStore(t)
			img, err := NewLoader(s).loadReleased(t.Context(), "oci:"+dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			w.kind = SourceOCILayout
			checkFixture(t, s, img, w)
		})
	}
}

// TestSynthesizedManifestIsDeterministic: the same legacy archive in two
// stores yields the same manifest digest (Clair skips known manifests).
func TestSynthesizedManifestIsDeterministic(t *testing.T) {
	ref := "docker-archive:" + filepath.Join(fixturesDir, "dive-test-docker-image.tar")
	var digests []digest.Digest
	for range 2 {
		img, err := NewLoader(openTestStore(t)).loadReleased(context.Background(), ref, nil)
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, img.ManifestDigest)
	}
	if digests[0] != digests[1] {
		t.Fatalf("manifest digests differ: %v", digests)
	}
}
