package sidecar_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"testing"

	"github.com/layerbridge/layerbridge/blobs"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/bridge"
	"github.com/layerbridge/layerbridge/sidecar"
	"github.com/layerbridge/layerbridge/store"
)

func TestRepositoryOf(t *testing.T) {
	tests := []struct {
		repoTag, name, tag string
		ok                 bool
	}{
		{"alpine:3.11", "alpine", "3.11", true},
		{"docker.io/library/alpine:3.11", "alpine", "3.11", true},
		{"library/alpine:3.11", "alpine", "3.11", true},
		{"index.docker.io/library/alpine:3.11", "alpine", "3.11", true},
		{"user/app:1", "user/app", "1", true},
		{"docker.io/user/app:1", "user/app", "1", true},
		{"ghcr.io/org/team/app:v1.2", "ghcr.io/org/team/app", "v1.2", true},
		{"localhost:5000/app:dev", "localhost-5000/app", "dev", true},
		{"localhost/app:dev", "localhost/app", "dev", true},
		{"Registry.Example:5000/app:1", "registry.example-5000/app", "1", true},
		{"alpine", "", "", false},        // no tag: Docker always records one
		{"<none>:<none>", "", "", false}, // legacy untagged
		{"alpine@sha256:" + strings.Repeat("a", 64), "", "", false},
		{"[::1]:5000/app:1", "", "", false}, // no repository name can hold it
	}
	for _, tt := range tests {
		name, tag, ok := sidecar.RepositoryOf(tt.repoTag)
		if name != tt.name || tag != tt.tag || ok != tt.ok {
			t.Errorf("RepositoryOf(%q) = %q, %q, %v; want %q, %q, %v", tt.repoTag, name, tag, ok, tt.name, tt.tag, tt.ok)
		}
	}
}

type images []store.Record

func (l images) Images() ([]store.Record, error) { return l, nil }

func (l images) Blob(_ context.Context, d digest.Digest) (blobs.Blob, error) {
	return nil, fmt.Errorf("open blob %s: %w", d, fs.ErrNotExist)
}

// touchingImages also records the images marked used.
type touchingImages struct {
	images
	touched []digest.Digest
}

func (l *touchingImages) Touch(img store.Record) error {
	l.touched = append(l.touched, img.ManifestDigest)
	return nil
}

// Resolving a manifest marks its image used; reading a blob does not.
func TestCatalogMarksPulledImagesUsed(t *testing.T) {
	a, b := image("a", "alpine:3.11"), image("b", "busybox:1")
	l := &touchingImages{images: images{a, b}}
	cat := sidecar.NewCatalog(l)
	if _, err := cat.ResolveTag(t.Context(), "alpine", "3.11"); err != nil {
		t.Fatal(err)
	}
	if _, err := cat.Lookup(t.Context(), "busybox", b.Manifest.Layers[0].Digest); err != nil {
		t.Fatal(err)
	}
	if _, err := cat.Lookup(t.Context(), "busybox", b.ManifestDigest); err != nil {
		t.Fatal(err)
	}
	if want := []digest.Digest{a.ManifestDigest, b.ManifestDigest}; !slices.Equal(l.touched, want) {
		t.Errorf("touched %v, want %v", l.touched, want)
	}
}

// image is a stored image with made-up digests derived from seed.
func image(seed string, tags ...string) store.Record {
	d := func(s string) digest.Digest { return digest.FromString(seed + s) }
	return store.Record{
		RepoTags:       tags,
		ManifestDigest: d("manifest"),
		ManifestSize:   100,
		Manifest: ocispec.Manifest{
			MediaType: ocispec.MediaTypeImageManifest,
			Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: d("config"), Size: 10},
			Layers:    []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayer, Digest: d("layer"), Size: 1000}},
		},
	}
}

func TestCatalog(t *testing.T) {
	old := image("old", "alpine:3.11", "alpine:latest")
	retagged := image("new", "docker.io/library/alpine:3.11")
	app := image("app", "localhost:5000/app:dev")
	untagged := image("untagged")
	cat := sidecar.NewCatalog(images{old, app, untagged, retagged})
	ctx := t.Context()

	// The most recently stored image of a tag wins, whatever the spelling.
	for _, name := range []string{"alpine", "library/alpine", "docker.io/library/alpine", "index.docker.io/library/alpine"} {
		d, err := cat.ResolveTag(ctx, name, "3.11")
		if err != nil || d.Digest != retagged.ManifestDigest || d.MediaType != ocispec.MediaTypeImageManifest || d.Size != 100 {
			t.Errorf("ResolveTag(%s, 3.11) = %+v, %v; want the re-tagged image's manifest", name, d, err)
		}
	}
	if d, err := cat.ResolveTag(ctx, "alpine", "latest"); err != nil || d.Digest != old.ManifestDigest {
		t.Errorf("ResolveTag(alpine, latest) = %v, %v", d.Digest, err)
	}
	tags, err := cat.Tags(ctx, "alpine")
	slices.Sort(tags)
	if err != nil || !slices.Equal(tags, []string{"3.11", "latest"}) {
		t.Errorf("Tags(alpine) = %q, %v", tags, err)
	}
	if d, err := cat.ResolveTag(ctx, "localhost-5000/app", "dev"); err != nil || d.Digest != app.ManifestDigest {
		t.Errorf("ResolveTag(localhost-5000/app, dev) = %v, %v", d.Digest, err)
	}

	// Blobs of an image are found in its repositories, by digest, and
	// nowhere else.
	for _, want := range []ocispec.Descriptor{old.ManifestDescriptor(), old.Manifest.Config, old.Manifest.Layers[0]} {
		d, err := cat.Lookup(ctx, "alpine", want.Digest)
		if err != nil || d.Digest != want.Digest || d.MediaType != want.MediaType || d.Size != want.Size {
			t.Errorf("Lookup(alpine, %s) = %+v, %v", want.Digest, d, err)
		}
	}
	if _, err := cat.Lookup(ctx, "alpine", app.Manifest.Layers[0].Digest); !errors.Is(err, bridge.ErrNotInRepository) {
		t.Errorf("another repository's layer: err = %v, want ErrNotInRepository", err)
	}
	if _, err := cat.ResolveTag(ctx, "alpine", "3.12"); !errors.Is(err, bridge.ErrNotInRepository) {
		t.Errorf("unknown tag: err = %v, want ErrNotInRepository", err)
	}
	for _, name := range []string{"nginx", "localhost:5000/app", "app"} {
		if _, err := cat.Tags(ctx, name); !errors.Is(err, bridge.ErrRepositoryUnknown) {
			t.Errorf("Tags(%s): err = %v, want ErrRepositoryUnknown", name, err)
		}
	}

	// Untagged images are reachable by digest only.
	if d, err := cat.Lookup(ctx, sidecar.UntaggedRepository, untagged.ManifestDigest); err != nil || d.Digest != untagged.ManifestDigest {
		t.Errorf("untagged image by digest: %v, %v", d.Digest, err)
	}
	if tags, err := cat.Tags(ctx, sidecar.UntaggedRepository); err != nil || len(tags) != 0 {
		t.Errorf("Tags(untagged) = %q, %v; want none", tags, err)
	}
	if _, err := cat.Lookup(ctx, sidecar.UntaggedRepository, old.ManifestDigest); !errors.Is(err, bridge.ErrNotInRepository) {
		t.Errorf("a tagged image in the untagged repository: err = %v", err)
	}
}

// A distribution client (go-containerregistry) pulls a scanned image from
// the registry view with the token, and gets the digests that were scanned.
func TestPullScannedImage(t *testing.T) {
	e := newEnv(t, withToken(t))
	st := e.wait(t, e.post(t, "alpine:3.11").ID)
	if st.State != "done" {
		t.Fatalf("scan: %s %s", st.State, st.Error)
	}
	imgs, err := e.store.Images()
	if err != nil || len(imgs) != 1 {
		t.Fatalf("store holds %d images, %v", len(imgs), err)
	}
	stored := imgs[0]
	host := strings.TrimPrefix(e.ts.URL, "http://")
	auth := remote.WithAuth(&authn.Basic{Username: "clairctl", Password: testToken})
	for _, ref := range []string{host + "/alpine:3.11", host + "/library/alpine:3.11", host + "/alpine@" + stored.ManifestDigest.String()} {
		r, err := name.ParseReference(ref, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		img, err := remote.Image(r, remote.WithContext(t.Context()), auth)
		if err != nil {
			t.Fatalf("pull %s: %v", ref, err)
		}
		// Fast: go-containerregistry takes every remote layer for gzip, and
		// this one is an uncompressed tar; the layer is re-hashed below.
		if err := validate.Image(img, validate.Fast); err != nil {
			t.Errorf("pull %s: the image does not validate: %v", ref, err)
		}
		d, err := img.Digest()
		if err != nil || d.String() != stored.ManifestDigest.String() {
			t.Errorf("pull %s: digest %s, want the stored %s", ref, d, stored.ManifestDigest)
		}
		layers, err := img.Layers()
		if err != nil || len(layers) != 1 {
			t.Fatalf("pull %s: %d layers, %v", ref, len(layers), err)
		}
		rc, err := layers[0].Compressed()
		if err != nil {
			t.Fatal(err)
		}
		got, err := digest.FromReader(rc)
		rc.Close()
		if err != nil || got != stored.Manifest.Layers[0].Digest {
			t.Errorf("pull %s: the layer's bytes hash to %s (%v), want %s", ref, got, err, stored.Manifest.Layers[0].Digest)
		}
	}
	// Without the token: nothing.
	r, _ := name.ParseReference(host+"/alpine:3.11", name.Insecure)
	if _, err := remote.Image(r, remote.WithContext(t.Context())); err == nil {
		t.Error("pulled without the token")
	}
}

// blobImages are images whose blobs it opens from memory, or fails to
// open with err.
type blobImages struct {
	images
	blobs map[digest.Digest]string
	err   error
}

func (l blobImages) Blob(_ context.Context, d digest.Digest) (blobs.Blob, error) {
	if l.err != nil {
		return nil, l.err
	}
	data, ok := l.blobs[d]
	if !ok {
		return nil, fmt.Errorf("open blob %s: %w", d, fs.ErrNotExist)
	}
	return stringBlob{strings.NewReader(data)}, nil
}

type stringBlob struct{ *strings.Reader }

func (stringBlob) Close() error { return nil }

// TestCatalogOfSeveralListers: the store's images and those another
// lister (containerd's) has are one registry view: each repository gathers
// both, a tag of the later lister wins, and a blob is opened by whichever
// lister has it. A lister that fails otherwise than "absent" is the error.
func TestCatalogOfSeveralListers(t *testing.T) {
	stored, fromContainerd := image("stored", "alpine:3.11", "alpine:3.10"), image("containerd", "docker.io/library/alpine:3.11", "app:1")
	layer := fromContainerd.Manifest.Layers[0].Digest
	cat := sidecar.NewCatalog(images{stored}, blobImages{images: images{fromContainerd}, blobs: map[digest.Digest]string{layer: "layer bytes"}})
	ctx := t.Context()
	if d, err := cat.ResolveTag(ctx, "alpine", "3.11"); err != nil || d.Digest != fromContainerd.ManifestDigest {
		t.Errorf("alpine:3.11 = %v, %v; want containerd's image", d.Digest, err)
	}
	if d, err := cat.ResolveTag(ctx, "alpine", "3.10"); err != nil || d.Digest != stored.ManifestDigest {
		t.Errorf("alpine:3.10 = %v, %v; want the stored image", d.Digest, err)
	}
	tags, err := cat.Tags(ctx, "alpine")
	slices.Sort(tags)
	if err != nil || !slices.Equal(tags, []string{"3.10", "3.11"}) {
		t.Errorf("tags %v, %v", tags, err)
	}
	if _, err := cat.Lookup(ctx, "app", layer); err != nil {
		t.Errorf("containerd's layer is not in its repository: %v", err)
	}
	b, err := cat.Blob(ctx, layer)
	if err != nil {
		t.Fatalf("containerd's layer: %v", err)
	}
	b.Close()
	if _, err := cat.Blob(ctx, digest.FromString("nowhere")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a blob no lister has: %v", err)
	}
	down := errors.New("containerd does not answer")
	cat = sidecar.NewCatalog(images{stored}, blobImages{images: images{fromContainerd}, err: down})
	if _, err := cat.Blob(ctx, layer); !errors.Is(err, down) {
		t.Errorf("with containerd down: %v, want its error", err)
	}
}
