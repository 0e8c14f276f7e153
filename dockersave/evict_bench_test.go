package dockersave

import (
	"fmt"
	"testing"

	"github.com/moby/moby/api/types/image"
	digest "github.com/opencontainers/go-digest"
)

// benchEngine is a fake daemon holding one legacy-format image of the given
// layers, tagged tag.
func benchEngine(tb testing.TB, tag string, layers [][]byte) *fakeEngine {
	tb.Helper()
	data, configHex := legacyArchive(tb, []string{tag}, layers, false)
	var diffIDs []string
	for _, l := range layers {
		diffIDs = append(diffIDs, digest.FromBytes(l).String())
	}
	return &fakeEngine{
		api:     "1.41",
		archive: data,
		inspect: image.InspectResponse{
			ID: "sha256:" + configHex, RepoTags: []string{tag}, Os: "linux", Architecture: "amd64",
			RootFS: image.RootFS{Type: "layers", Layers: diffIDs},
		},
	}
}

// BenchmarkLoadWarm measures Load of a daemon image the store already holds
// (the cache-hit path: inspect, index lookup by stat, usage mark). It must
// not grow with the image's bytes; it grows with index.json's size.
func BenchmarkLoadWarm(b *testing.B) {
	cases := []struct {
		name    string
		layers  int
		size    int
		records int
	}{
		{"1x64MiB", 1, 64 << 20, 0},
		{"100x64KiB", 100, 64 << 10, 0},
		{"1x64KiB+200records", 1, 64 << 10, 200},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			s := openTestStore(b)
			for i := range c.records {
				f := benchEngine(b, fmt.Sprintf("other:%d", i), [][]byte{layerTar(b, map[string]string{"f": fmt.Sprint(i)})})
				if _, err := daemonLoader(s, f).loadReleased(b.Context(), fmt.Sprintf("other:%d", i), nil); err != nil {
					b.Fatal(err)
				}
			}
			var layers [][]byte
			for range c.layers {
				layers = append(layers, randomLayer(b, c.size))
			}
			f := benchEngine(b, "app:1", layers)
			l := daemonLoader(s, f)
			if _, err := l.loadReleased(b.Context(), "app:1", nil); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				img, err := l.loadReleased(b.Context(), "app:1", nil)
				if err != nil || !img.CacheHit {
					b.Fatalf("warm load: hit %v, %v", img.CacheHit, err)
				}
			}
			if n := f.saves.Load(); n != 1 {
				b.Fatalf("%d exports, want 1", n)
			}
		})
	}
}
