package dockersave

import (
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/engine"
	"github.com/layerbridge/layerbridge/internal/fakeengine"
)

// progressLog records what WithLoadProgress reports.
type progressLog struct{ calls []Progress }

func (p *progressLog) last() Progress {
	if len(p.calls) == 0 {
		return Progress{}
	}
	return p.calls[len(p.calls)-1]
}

// TestLoadProgressExpected: the expected total of a daemon export is the
// inspected size on a graphdriver daemon, and the platform manifest's
// content size on Docker 29's containerd store, where it is exactly what
// the export reads; a cache hit reads nothing.
func TestLoadProgressExpected(t *testing.T) {
	t.Run("graphdriver", func(t *testing.T) {
		f := newFakeEngine(t)
		f.inspect.Size = 4242
		var got progressLog
		s := openTestStore(t)
		l := NewLoader(s, WithEngine(f, testEndpoint), WithHostPlatform(linuxAMD64), WithLoadProgress(func(p Progress) { got.calls = append(got.calls, p) }))
		if _, err := l.loadReleased(t.Context(), "app:1", nil); err != nil {
			t.Fatal(err)
		}
		if last := got.last(); last.Expected != 4242 || last.Bytes == 0 {
			t.Errorf("last progress %+v, want the inspected size 4242 expected and bytes read", last)
		}
		got.calls = nil
		if img, err := l.loadReleased(t.Context(), "app:1", nil); err != nil || !img.CacheHit || len(got.calls) != 0 {
			t.Errorf("cache hit: %v, %d progress calls, want none", err, len(got.calls))
		}
	})
	t.Run("containerd store", func(t *testing.T) {
		ep := engine.Endpoint{Host: fakeengine.Start(t, (&docker29{}).handler(t)).Host, Source: "--docker-host"}
		c, err := engine.NewClient(ep)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		for _, arch := range []string{"amd64", "arm64"} {
			var got progressLog
			l := NewLoader(openTestStore(t), WithEngine(c, ep), WithHostPlatform(ocispec.Platform{OS: "linux", Architecture: "amd64"}),
				WithLoadProgress(func(p Progress) { got.calls = append(got.calls, p) }))
			if _, err := l.loadReleased(t.Context(), docker29Tag, &ocispec.Platform{OS: "linux", Architecture: arch}); err != nil {
				t.Fatal(err)
			}
			// inspect.json lists 1736 bytes of content for each platform
			// manifest: manifest, config and layer blobs of save-ARCH.tar.
			if last := got.last(); last.Expected != 1736 || last.Bytes != last.Expected {
				t.Errorf("%s: last progress %+v, want 1736 bytes expected and read", arch, last)
			}
		}
	})
}
