package scan

import (
	"bytes"
	"io"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/bridge"
	"github.com/layerbridge/layerbridge/dockersave"
	"github.com/layerbridge/layerbridge/store"
)

// TestPlantedLinksAreNotServed: the layer server over the real store, with
// a registered layer's blob replaced by a symbolic link (to a file of the
// store, to another blob, out of the store): the URL answers 404, never the
// link's target, and the other layers are still served intact.
func TestPlantedLinksAreNotServed(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(outside, []byte("a file outside the cache"), 0o600); err != nil {
		t.Fatal(err)
	}
	storeDir := t.TempDir()
	cache, err := store.Open(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	img, release, err := dockersave.NewLoader(cache).Load(t.Context(), "docker-archive:../testdata/fixtures/dive-test-docker-image.tar", nil)
	if err != nil {
		t.Fatal(err)
	}
	release() // the test plants files in the store itself
	srv := bridge.New()
	ts := httptest.NewServer(srv)
	defer ts.Close()
	base, _ := url.Parse(ts.URL)
	layers := img.Manifest.Layers
	g, err := srv.Register(base, "planted", img.Blobs, layers)
	if err != nil {
		t.Fatal(err)
	}
	blob := func(d digest.Digest) string { return filepath.Join(storeDir, "blobs", "sha256", d.Encoded()) }
	targets := []string{
		"../../index.json",
		filepath.Base(blob(layers[len(layers)-1].Digest)),
		"../../../../../../../../.." + outside,
		outside,
	}
	for i, target := range targets {
		d := layers[i].Digest
		if err := os.Remove(blob(d)); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, blob(d)); err != nil {
			t.Fatal(err)
		}
	}
	get := func(d ocispec.Descriptor) (int, []byte) {
		u, err := g.URL(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := ts.Client().Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	index, _ := os.ReadFile(filepath.Join(storeDir, "index.json"))
	for i, d := range layers {
		status, body := get(d)
		if i < len(targets) {
			if status != 404 || bytes.Contains(body, index) || bytes.Contains(body, []byte("outside the cache")) {
				t.Errorf("layer %d, a link to %s: %d, %q", i, targets[i], status, body)
			}
			continue
		}
		if status != 200 || digest.FromBytes(body) != d.Digest {
			t.Errorf("layer %d: %d, %d bytes hashing to %s", i, status, len(body), digest.FromBytes(body))
		}
	}
}
