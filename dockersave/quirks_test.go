package dockersave

import (
	"archive/tar"
	"errors"
	"slices"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/platforms"
	"github.com/layerbridge/layerbridge/store"
)

func loadBytes(t *testing.T, s *store.Store, kind SourceKind, data []byte, p *ocispec.Platform) (Image, error) {
	t.Helper()
	path := writeFile(t, t.TempDir(), "image.tar", data)
	return NewLoader(s, WithHostPlatform(linuxAMD64)).loadReleased(t.Context(), string(kind)+":"+path, p)
}

func testLayers(t *testing.T) [][]byte {
	return [][]byte{
		layerTar(t, map[string]string{"etc/os-release": "ID=test\n", "bin/sh": "#!"}),
		layerTar(t, map[string]string{"app/main": "hello"}),
	}
}

// docker25Archive is what Docker 25+ on the graphdriver store writes: an OCI
// layout of uncompressed layers plus manifest.json with LayerSources, and one
// unreferenced legacy v1 json blob per layer.
func docker25Archive(t *testing.T, layers [][]byte) (data []byte, unreferenced []string) {
	cfg := configFor(t, linuxAMD64, layers...)
	mts := []string{ocispec.MediaTypeImageLayer, ocispec.MediaTypeImageLayer}
	man := ociManifest(t, cfg, layers, mts)
	var entries []tarEntry
	entries = append(entries, tarEntry{name: "blobs/", typ: tar.TypeDir}, tarEntry{name: "blobs/sha256/", typ: tar.TypeDir})
	sources := map[string]any{}
	var paths []string
	for i, l := range layers {
		v1 := []byte(`{"id":"legacy-` + string(rune('a'+i)) + `"}`)
		unreferenced = append(unreferenced, hexOf(v1))
		entries = append(entries, blobEntry(l), blobEntry(v1))
		paths = append(paths, "blobs/sha256/"+hexOf(l))
		sources[digest.FromBytes(l).String()] = map[string]any{"mediaType": ocispec.MediaTypeImageLayer, "digest": digest.FromBytes(l), "size": len(l)}
	}
	entries = append(entries, blobEntry(cfg), blobEntry(man))
	idx := ocispec.Index{Manifests: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(man), Size: int64(len(man)),
		Annotations: map[string]string{"io.containerd.image.name": "docker.io/library/app:1", ocispec.AnnotationRefName: "1"}}}}
	idx.SchemaVersion = 2
	entries = append(entries,
		tarEntry{name: "index.json", body: mustJSON(t, idx)},
		tarEntry{name: "manifest.json", body: mustJSON(t, []map[string]any{{"Config": "blobs/sha256/" + hexOf(cfg), "RepoTags": []string{"app:1"}, "Layers": paths, "LayerSources": sources}})},
		tarEntry{name: "oci-layout", body: []byte(`{"imageLayoutVersion": "1.0.0"}`)},
		tarEntry{name: "repositories", body: []byte(`{"app":{"1":"` + hexOf(layers[len(layers)-1]) + `"}}`)})
	return buildTar(t, entries), unreferenced
}

// TestDocker25LayoutMatchesLegacy: the same image saved by Docker 24 (legacy)
// and Docker 25 (OCI layout + manifest.json) is stored under the same
// deterministic manifest, and the unreferenced legacy json blobs are dropped.
func TestDocker25LayoutMatchesLegacy(t *testing.T) {
	layers := testLayers(t)
	s := openTestStore(t)
	d25, unreferenced := docker25Archive(t, layers)
	img25, err := loadBytes(t, s, SourceDockerArchive, d25, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, s, img25)
	for _, h := range unreferenced {
		if slices.Contains(storeBlobs(t, s), h) {
			t.Errorf("unreferenced legacy blob %s was stored", h)
		}
	}
	legacy, _ := legacyArchive(t, []string{"app:1"}, layers, false)
	imgLegacy, err := loadBytes(t, openTestStore(t), SourceDockerArchive, legacy, nil)
	if err != nil {
		t.Fatal(err)
	}
	if img25.ManifestDigest != imgLegacy.ManifestDigest || img25.ID != imgLegacy.ID {
		t.Errorf("docker 25 gave %s/%s, legacy %s/%s", img25.ID, img25.ManifestDigest, imgLegacy.ID, imgLegacy.ManifestDigest)
	}
	if !slices.Equal(img25.RepoTags, []string{"app:1"}) {
		t.Errorf("repo tags %v", img25.RepoTags)
	}
}

// TestLegacyDuplicateLayerSymlink: Docker <= 24 stores a repeated diff ID as
// a symlink to the first copy.
func TestLegacyDuplicateLayerSymlink(t *testing.T) {
	layers := testLayers(t)
	data, configHex := legacyArchive(t, nil, layers, true)
	s := openTestStore(t)
	img, err := loadBytes(t, s, SourceDockerArchive, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, s, img)
	if len(img.Manifest.Layers) != 3 || img.Manifest.Layers[0].Digest != img.Manifest.Layers[2].Digest {
		t.Fatalf("layers %+v: want 3 with the first repeated last", img.Manifest.Layers)
	}
	if img.ID.Encoded() != configHex {
		t.Errorf("id %s, want config %s", img.ID, configHex)
	}
}

// TestPodmanDockerArchive: podman writes <hex>.tar layers, <hex>.json config
// and <legacy-id>/layer.tar symlinks to them; manifest.json may name either.
func TestPodmanDockerArchive(t *testing.T) {
	layers := testLayers(t)
	cfg := configFor(t, linuxAMD64, layers...)
	for _, viaSymlink := range []bool{false, true} {
		var entries []tarEntry
		var paths []string
		for i, l := range layers {
			id := hexOf([]byte{byte(i), 'p'})
			entries = append(entries, tarEntry{name: hexOf(l) + ".tar", body: l},
				tarEntry{name: id + "/", typ: tar.TypeDir},
				tarEntry{name: id + "/layer.tar", typ: tar.TypeSymlink, link: "../" + hexOf(l) + ".tar"},
				tarEntry{name: id + "/VERSION", body: []byte("1.0")})
			if viaSymlink {
				paths = append(paths, id+"/layer.tar")
			} else {
				paths = append(paths, hexOf(l)+".tar")
			}
		}
		entries = append(entries, tarEntry{name: hexOf(cfg) + ".json", body: cfg},
			tarEntry{name: "manifest.json", body: mustJSON(t, []map[string]any{{"Config": hexOf(cfg) + ".json", "RepoTags": []string{"localhost/app:1"}, "Layers": paths}})},
			tarEntry{name: "repositories", body: []byte(`{}`)})
		s := openTestStore(t)
		img, err := loadBytes(t, s, SourceDockerArchive, buildTar(t, entries), nil)
		if err != nil {
			t.Fatalf("via symlink %v: %v", viaSymlink, err)
		}
		checkImage(t, s, img)
	}
}

type containerdExport struct {
	data         []byte
	amd64        digest.Digest // the host platform manifest
	index        digest.Digest // the nested registry index
	absentLayers []digest.Digest
	layerMedia   []string
}

// buildContainerdExport is a containerd image store export without a
// platform: index.json -> registry index -> {amd64 manifest (gzip + zstd
// layers, all present), arm64 manifest (present, layers absent), an absent
// s390x manifest, an attestation manifest}; manifest.json for amd64.
func buildContainerdExport(t *testing.T, withManifestJSON bool) containerdExport {
	layers := testLayers(t)
	blobs := [][]byte{gzipBytes(t, layers[0]), zstdBytes(t, layers[1])}
	mts := []string{ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerZstd}
	cfg := configFor(t, linuxAMD64, layers...)
	amd := ociManifest(t, cfg, blobs, mts)

	armLayers := [][]byte{randomLayer(t, 1000)}
	armCfg := configFor(t, ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, armLayers...)
	armBlobs := [][]byte{gzipBytes(t, armLayers[0])}
	arm := ociManifest(t, armCfg, armBlobs, []string{ocispec.MediaTypeImageLayerGzip})

	intoto := []byte(`{"_type":"https://in-toto.io/Statement/v0.1"}`)
	attCfg := []byte(`{"architecture":"unknown","os":"unknown","rootfs":{"type":"layers","diff_ids":["` + digest.FromBytes(intoto).String() + `"]}}`)
	att := ociManifest(t, attCfg, [][]byte{intoto}, []string{"application/vnd.in-toto+json"})

	desc := func(b []byte, p *ocispec.Platform, ann map[string]string) ocispec.Descriptor {
		return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(b), Size: int64(len(b)), Platform: p, Annotations: ann}
	}
	reg := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{
		desc(amd, &ocispec.Platform{OS: "linux", Architecture: "amd64"}, nil),
		desc(arm, &ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, nil),
		{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("absent s390x"), Size: 500, Platform: &ocispec.Platform{OS: "linux", Architecture: "s390x"}},
		desc(att, &ocispec.Platform{OS: "unknown", Architecture: "unknown"}, map[string]string{"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": digest.FromBytes(amd).String()}),
	}}
	reg.SchemaVersion = 2
	regb := mustJSON(t, reg)
	top := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{{
		MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromBytes(regb), Size: int64(len(regb)),
		Annotations: map[string]string{"io.containerd.image.name": "docker.io/library/app:1", "containerd.io/distribution.source.docker.io": "library/app"},
	}}}
	top.SchemaVersion = 2

	present := [][]byte{blobs[0], blobs[1], cfg, amd, arm, armCfg, att, attCfg, intoto, regb}
	slices.SortFunc(present, func(a, b []byte) int {
		if hexOf(a) < hexOf(b) {
			return -1
		}
		return 1
	})
	entries := []tarEntry{{name: "blobs/", typ: tar.TypeDir}, {name: "blobs/sha256/", typ: tar.TypeDir}}
	for _, b := range present {
		entries = append(entries, blobEntry(b))
	}
	entries = append(entries, tarEntry{name: "index.json", body: mustJSON(t, top)})
	if withManifestJSON {
		entries = append(entries, tarEntry{name: "manifest.json", body: mustJSON(t, []map[string]any{{
			"Config": "blobs/sha256/" + hexOf(cfg), "RepoTags": []string{"app:1"},
			"Layers": []string{"blobs/sha256/" + hexOf(blobs[0]), "blobs/sha256/" + hexOf(blobs[1])},
		}})})
	}
	entries = append(entries, tarEntry{name: "oci-layout", body: []byte(`{"imageLayoutVersion":"1.0.0"}`)})
	return containerdExport{
		data: buildTar(t, entries), amd64: digest.FromBytes(amd), index: digest.FromBytes(regb),
		absentLayers: []digest.Digest{digest.FromBytes(armBlobs[0])}, layerMedia: mts,
	}
}

// TestContainerdExport: original compressed blobs and the original manifest
// are kept; absent platforms and attestations are skipped.
func TestContainerdExport(t *testing.T) {
	for _, withManifestJSON := range []bool{true, false} {
		ce := buildContainerdExport(t, withManifestJSON)
		s := openTestStore(t)
		kind := SourceDockerArchive
		if !withManifestJSON {
			kind = SourceOCIArchive
		}
		img, err := loadBytes(t, s, kind, ce.data, nil)
		if err != nil {
			t.Fatalf("manifest.json %v: %v", withManifestJSON, err)
		}
		checkImage(t, s, img)
		if img.ManifestDigest != ce.amd64 {
			t.Errorf("manifest %s, want the original amd64 manifest %s", img.ManifestDigest, ce.amd64)
		}
		for i, l := range img.Manifest.Layers {
			if l.MediaType != ce.layerMedia[i] {
				t.Errorf("layer %d media type %s, want %s", i, l.MediaType, ce.layerMedia[i])
			}
		}
		if platforms.Format(img.Platform) != "linux/amd64" {
			t.Errorf("platform %s", platforms.Format(img.Platform))
		}
	}
}

func TestContainerdExportPlatformChoice(t *testing.T) {
	ce := buildContainerdExport(t, false)
	arm := ocispec.Platform{OS: "linux", Architecture: "arm64"}
	_, err := loadBytes(t, openTestStore(t), SourceOCIArchive, ce.data, &arm)
	if !errors.Is(err, ErrMissingBlob) {
		t.Errorf("arm64 (manifest present, layers absent): got %v, want ErrMissingBlob", err)
	}
	s390x := ocispec.Platform{OS: "linux", Architecture: "s390x"}
	_, err = loadBytes(t, openTestStore(t), SourceOCIArchive, ce.data, &s390x)
	var pe *PlatformError
	if !errors.As(err, &pe) || len(pe.Available) != 2 {
		t.Errorf("s390x (manifest absent): got %v, want *PlatformError listing amd64 and arm64", err)
	}
	// A non-amd64 host still gets the only complete image.
	s := openTestStore(t)
	path := writeFile(t, t.TempDir(), "image.tar", ce.data)
	img, err := NewLoader(s, WithHostPlatform(ocispec.Platform{OS: "linux", Architecture: "riscv64"})).loadReleased(t.Context(), "oci-archive:"+path, nil)
	if err != nil || img.ManifestDigest != ce.amd64 {
		t.Errorf("riscv64 host: %v, %v", img.ManifestDigest, err)
	}
}

// TestMultiImageArchiveNeedsPlatform: two complete images, neither for the
// host, and no platform requested.
func TestMultiImageArchiveNeedsPlatform(t *testing.T) {
	l1, l2 := randomLayer(t, 100), randomLayer(t, 200)
	var entries []tarEntry
	var descs []ocispec.Descriptor
	for _, arch := range []struct {
		p ocispec.Platform
		l []byte
	}{{ocispec.Platform{OS: "linux", Architecture: "arm64"}, l1}, {ocispec.Platform{OS: "linux", Architecture: "ppc64le"}, l2}} {
		cfg := configFor(t, arch.p, arch.l)
		m := ociManifest(t, cfg, [][]byte{arch.l}, []string{ocispec.MediaTypeImageLayer})
		entries = append(entries, blobEntry(arch.l), blobEntry(cfg), blobEntry(m))
		descs = append(descs, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(m), Size: int64(len(m))})
	}
	entries = append(entries, tarEntry{name: "index.json", body: mustJSON(t, ocispec.Index{Manifests: descs})}, tarEntry{name: "oci-layout", body: []byte(`{"imageLayoutVersion":"1.0.0"}`)})
	data := buildTar(t, entries)
	_, err := loadBytes(t, openTestStore(t), SourceOCIArchive, data, nil)
	var ae *AmbiguousError
	if !errors.As(err, &ae) || len(ae.Platforms) != 2 {
		t.Fatalf("got %v, want *AmbiguousError with 2 platforms", err)
	}
	p := ocispec.Platform{OS: "linux", Architecture: "ppc64le"}
	img, err := loadBytes(t, openTestStore(t), SourceOCIArchive, data, &p)
	if err != nil || img.Platform.Architecture != "ppc64le" {
		t.Fatalf("with platform: %+v, %v", img.Platform, err)
	}
}

// TestGzipCompressedDockerArchive: docker save | gzip is sniffed.
func TestGzipCompressedDockerArchive(t *testing.T) {
	data, _ := legacyArchive(t, []string{"app:1"}, testLayers(t), false)
	for name, b := range map[string][]byte{"gzip": gzipBytes(t, data), "zstd": zstdBytes(t, data)} {
		s := openTestStore(t)
		img, err := loadBytes(t, s, SourceDockerArchive, b, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		checkImage(t, s, img)
	}
}

// TestBlobsSharedBetweenImages: a second image reusing a layer publishes it
// once and both stay loadable.
func TestBlobsSharedBetweenImages(t *testing.T) {
	layers := testLayers(t)
	s := openTestStore(t)
	a, _ := legacyArchive(t, []string{"a:1"}, layers[:1], false)
	b, _ := legacyArchive(t, []string{"b:1"}, layers, false)
	imgA, err := loadBytes(t, s, SourceDockerArchive, a, nil)
	if err != nil {
		t.Fatal(err)
	}
	imgB, err := loadBytes(t, s, SourceDockerArchive, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, s, imgA)
	checkImage(t, s, imgB)
	images, err := s.Images()
	if err != nil || len(images) != 2 {
		t.Fatalf("Images() = %d, %v", len(images), err)
	}
	// 2 layers + 2 configs + 2 manifests
	if n := len(storeBlobs(t, s)); n != 6 {
		t.Errorf("%d blobs stored, want 6", n)
	}
}
