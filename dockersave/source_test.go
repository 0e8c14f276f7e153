package dockersave_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerbridge/layerbridge/blobs"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/dockersave"
	"github.com/layerbridge/layerbridge/platforms"
	"github.com/layerbridge/layerbridge/store"
)

// dirBlobs opens blobs from a directory of files named by hex digest: the
// blobs of an image that is not in the store.
type dirBlobs string

func (d dirBlobs) Blob(_ context.Context, dg digest.Digest) (blobs.Blob, error) {
	if err := dg.Validate(); err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(string(d), dg.Encoded()))
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", dg, err)
	}
	return blobs.FromFile(f)
}

// fakeSource serves one image whose layer lives outside the store, and
// records what it was asked.
type fakeSource struct {
	blobs    dirBlobs
	layer    ocispec.Descriptor
	asked    []dockersave.Request
	released int
}

func newFakeSource(t *testing.T) *fakeSource {
	dir := t.TempDir()
	layer := []byte("a layer kept outside the store")
	d := digest.FromBytes(layer)
	if err := os.WriteFile(filepath.Join(dir, d.Encoded()), layer, 0o644); err != nil {
		t.Fatal(err)
	}
	return &fakeSource{blobs: dirBlobs(dir), layer: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d, Size: int64(len(layer))}}
}

func (s *fakeSource) Load(_ context.Context, req dockersave.Request) (dockersave.Image, func(), error) {
	s.asked = append(s.asked, req)
	return dockersave.Image{
		Ref:      req.Ref,
		Source:   req.Kind,
		ID:       s.layer.Digest,
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		Manifest: ocispec.Manifest{Layers: []ocispec.Descriptor{s.layer}},
		DiffIDs:  []digest.Digest{s.layer.Digest},
		Blobs:    s.blobs,
	}, func() { s.released++ }, nil
}

func openStore(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestWithSourceAddsAKind: a source registered from outside the package
// gets the references of its kind, parsed, with the platform normalized;
// the image it returns opens its blobs from where the source keeps them,
// and its release is the caller's. Other references go where they did.
func TestWithSourceAddsAKind(t *testing.T) {
	src := newFakeSource(t)
	s := openStore(t)
	l := dockersave.NewLoader(s, dockersave.WithSource("test", src))
	arm := ocispec.Platform{OS: "Linux", Architecture: "aarch64"}
	img, release, err := l.Load(t.Context(), "test:some/image:1", &arm)
	if err != nil {
		t.Fatal(err)
	}
	if len(src.asked) != 1 {
		t.Fatalf("source asked %d times", len(src.asked))
	}
	req := src.asked[0]
	if req.Ref != "test:some/image:1" || req.Kind != "test" || req.Name != "some/image:1" || req.Platform == nil || platforms.Format(*req.Platform) != "linux/arm64" || req.Log == nil {
		t.Errorf("request %+v", req)
	}
	f, err := img.Blobs.Blob(t.Context(), src.layer.Digest)
	if err != nil {
		t.Fatalf("the image's blob: %v", err)
	}
	f.Close()
	if _, err := s.OpenBlob(src.layer.Digest); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the layer was copied into the store (%v)", err)
	}
	release()
	if src.released != 1 {
		t.Errorf("released %d times", src.released)
	}
	// A daemon image of that name is still reachable, by its long form.
	if _, _, err := l.Load(t.Context(), "docker-daemon:test:1", nil); err == nil || len(src.asked) != 1 || !strings.Contains(err.Error(), "no docker engine") {
		t.Errorf("docker-daemon:test:1: %v, source asked %d times", err, len(src.asked))
	}
	if _, _, err := l.Load(t.Context(), "test:", nil); err == nil {
		t.Error("empty name accepted")
	}
}

// TestWithSourceReplacesABuiltinKind: a source registered for a kind
// imageref.Parse knows replaces the built-in one.
func TestWithSourceReplacesABuiltinKind(t *testing.T) {
	src := newFakeSource(t)
	l := dockersave.NewLoader(openStore(t), dockersave.WithSource(dockersave.SourceDockerArchive, src))
	img, release, err := l.Load(t.Context(), "docker-archive:/nowhere.tar", nil)
	if err != nil {
		t.Fatal(err)
	}
	release()
	if len(src.asked) != 1 || src.asked[0].Name != "/nowhere.tar" || img.Source != dockersave.SourceDockerArchive {
		t.Errorf("asked %+v, image from %s", src.asked, img.Source)
	}
}

// TestLoadRefusesAnImageWithoutBlobs: an image nothing can open the blobs
// of is an error, and its release is called.
func TestLoadRefusesAnImageWithoutBlobs(t *testing.T) {
	released := false
	broken := dockersave.SourceFunc(func(context.Context, dockersave.Request) (dockersave.Image, func(), error) {
		return dockersave.Image{}, func() { released = true }, nil
	})
	l := dockersave.NewLoader(openStore(t), dockersave.WithSource("broken", broken))
	if _, _, err := l.Load(t.Context(), "broken:x", nil); err == nil || !released {
		t.Errorf("got %v (released %v), want an error", err, released)
	}
}

// TestLoadWithoutASourceOfTheKind: a kind imageref.Parse knows that no
// source reads (containerd: in a Loader without WithSource) is an error,
// not a crash, and its image is parsed all the same.
func TestLoadWithoutASourceOfTheKind(t *testing.T) {
	l := dockersave.NewLoader(openStore(t))
	_, _, err := l.Load(t.Context(), "containerd:alpine:3.11", nil)
	if !errors.Is(err, dockersave.ErrNoSource) || !strings.Contains(err.Error(), "containerd") {
		t.Errorf("got %v, want ErrNoSource naming containerd", err)
	}
}

// TestMeasureAndVerify: the rules a source that keeps its blobs elsewhere
// applies (Measure each blob, Verify the image) accept a sound image and
// refuse each kind of lie, as the built-in sources do.
func TestMeasureAndVerify(t *testing.T) {
	layer := []byte("uncompressed layer bytes")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(layer)
	zw.Close()
	config, _ := json.Marshal(ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(layer)}},
	})
	m := ocispec.Manifest{
		Config: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(config), Size: int64(len(config))},
		Layers: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(gz.Bytes()), Size: int64(gz.Len())}},
	}
	measure := func(b []byte, d ocispec.Descriptor) dockersave.Blob {
		t.Helper()
		got, err := dockersave.Measure(bytes.NewReader(b), d.Size, d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	cfgBlob, layerBlob := measure(config, m.Config), measure(gz.Bytes(), m.Layers[0])
	if layerBlob.DiffID != digest.FromBytes(layer) || layerBlob.Size != int64(gz.Len()) {
		t.Fatalf("measured %+v", layerBlob)
	}
	var img ocispec.Image
	json.Unmarshal(config, &img)
	if err := dockersave.Verify("test:x", m, img, cfgBlob, []dockersave.Blob{layerBlob}); err != nil {
		t.Fatalf("sound image refused: %v", err)
	}

	if _, err := dockersave.Measure(bytes.NewReader(gz.Bytes()), m.Layers[0].Size, digest.FromString("other")); !errors.Is(err, dockersave.ErrDigestMismatch) {
		t.Errorf("content under another name: %v", err)
	}
	if _, err := dockersave.Measure(bytes.NewReader(gz.Bytes()[:10]), m.Layers[0].Size, m.Layers[0].Digest); !errors.Is(err, dockersave.ErrTruncated) {
		t.Errorf("short blob: %v", err)
	}
	lying := img
	lying.RootFS.DiffIDs = []digest.Digest{digest.FromString("other")}
	if err := dockersave.Verify("test:x", m, lying, cfgBlob, []dockersave.Blob{layerBlob}); !errors.Is(err, dockersave.ErrDiffIDMismatch) {
		t.Errorf("wrong diff id: %v", err)
	}
	short := m
	short.Layers = []ocispec.Descriptor{m.Layers[0]}
	short.Layers[0].Size--
	if err := dockersave.Verify("test:x", short, img, cfgBlob, []dockersave.Blob{layerBlob}); !errors.Is(err, dockersave.ErrSizeMismatch) {
		t.Errorf("manifest with a wrong size: %v", err)
	}
	if err := dockersave.Verify("test:x", m, img, cfgBlob, nil); !errors.Is(err, dockersave.ErrLayerCount) {
		t.Errorf("missing layer: %v", err)
	}
	noOS := img
	noOS.OS = ""
	if err := dockersave.Verify("test:x", m, noOS, cfgBlob, []dockersave.Blob{layerBlob}); !errors.Is(err, dockersave.ErrMalformedJSON) {
		t.Errorf("config without os: %v", err)
	}
}
