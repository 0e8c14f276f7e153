package integration_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/dockersave"
	"github.com/layerbridge/layerbridge/engine"
	"github.com/layerbridge/layerbridge/integration/harness"
	"github.com/layerbridge/layerbridge/internal/testwait"
	"github.com/layerbridge/layerbridge/platforms"
	"github.com/layerbridge/layerbridge/store"
)

// countingEngine is the real client with ImageSave calls counted.
type countingEngine struct {
	*client.Client
	saves atomic.Int32
}

func (c *countingEngine) ImageSave(ctx context.Context, ids []string, opts ...client.ImageSaveOption) (client.ImageSaveResult, error) {
	c.saves.Add(1)
	return c.Client.ImageSave(ctx, ids, opts...)
}

// dockersaveEngine resolves the daemon the way layerbridge does
// (engine.ResolveEndpoint + engine.NewClient) and probes it; an unreachable daemon
// fails the test under CI=true.
func dockersaveEngine(t *testing.T) (*countingEngine, engine.Endpoint) {
	t.Helper()
	home, _ := os.UserHomeDir()
	ep, err := engine.ResolveEndpoint("", os.Getenv, engine.DockerConfigDir(os.Getenv, home))
	if err != nil {
		harness.Unavailable(t, err)
	}
	c, err := engine.NewClient(ep)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	info, err := engine.Probe(t.Context(), c, ep)
	if err != nil {
		harness.Unavailable(t, fmt.Errorf("docker daemon at %s (%s): %w", ep.Host, ep.Source, err))
	}
	t.Logf("docker %s, api %s, driver %s, containerd cache %v, endpoint %s from %s",
		info.ServerVersion, info.APIVersion, info.Driver, info.ContainerdStore, ep.Host, ep.Source)
	return &countingEngine{Client: c}, ep
}

// loadFixture runs `docker load` of a fixture archive and returns the
// image it loaded (by its first tag, else its ID). A gzip-compressed
// archive is sent decompressed: Podman loads only plain tars.
func loadFixture(t *testing.T, c *client.Client, name string) (ref string) {
	t.Helper()
	f, err := os.Open(filepath.Join("../testdata/fixtures", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var archive io.Reader = br
	if magic, _ := br.Peek(2); bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		gz, err := gzip.NewReader(br)
		if err != nil {
			t.Fatal(err)
		}
		archive = gz
	}
	res, err := c.ImageLoad(t.Context(), archive)
	if err != nil {
		t.Fatalf("docker load %s: %v", name, err)
	}
	defer res.Close()
	err = harness.ReadJSONMessages(res, func(m jsonstream.Message) {
		line := strings.TrimSpace(m.Stream)
		if s, ok := strings.CutPrefix(line, "Loaded image: "); ok && ref == "" {
			ref = s
		}
		if s, ok := strings.CutPrefix(line, "Loaded image ID: "); ok && ref == "" {
			ref = s
		}
	})
	if err != nil {
		t.Fatalf("docker load %s: %v", name, err)
	}
	if ref == "" {
		t.Fatalf("docker load %s: no image reported", name)
	}
	return ref
}

// checkAgainstDaemon compares a stored image with the daemon's inspect:
// same ID, platform and diff IDs, and every blob in the store.
func checkAgainstDaemon(t *testing.T, c *client.Client, s *store.Store, ref string, img dockersave.Image) {
	t.Helper()
	ins, err := c.ImageInspect(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if img.ID.String() != ins.ID {
		t.Errorf("id %s, daemon says %s", img.ID, ins.ID)
	}
	if img.Platform.OS != ins.Os || img.Platform.Architecture != ins.Architecture {
		t.Errorf("platform %s, daemon says %s/%s", platforms.Format(img.Platform), ins.Os, ins.Architecture)
	}
	var want []digest.Digest
	for _, l := range ins.RootFS.Layers {
		want = append(want, digest.Digest(l))
	}
	if !slices.Equal(img.DiffIDs, want) {
		t.Errorf("diff ids %v, daemon says %v", img.DiffIDs, want)
	}
	if len(img.Manifest.Layers) != len(want) {
		t.Errorf("%d layers, daemon says %d", len(img.Manifest.Layers), len(want))
	}
	for _, d := range append([]ocispec.Descriptor{img.ManifestDescriptor(), img.Manifest.Config}, img.Manifest.Layers...) {
		f, err := s.OpenBlob(d.Digest)
		if err != nil {
			t.Fatalf("blob %s: %v", d.Digest, err)
		}
		got, err := digest.FromReader(f)
		f.Close()
		if err != nil || got != d.Digest {
			t.Fatalf("blob %s reads as %s (%v)", d.Digest, got, err)
		}
	}
}

func openStore(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(filepath.Join(t.TempDir(), "cache"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestDockersaveFixturesThroughDaemon: `docker load` each docker-save
// fixture, then read it back through ImageSave into a fresh store; the result
// matches ImageInspect and the same fixture read as a docker-archive, and a
// second load is a cache hit that does not export.
func TestDockersaveFixturesThroughDaemon(t *testing.T) {
	eng, ep := dockersaveEngine(t)
	for _, fixture := range []string{"alpine-3.11-docker-save.tar.gz", "dive-test-docker-image.tar", "dive-test-kaniko-image.tar"} {
		t.Run(fixture, func(t *testing.T) {
			ref := loadFixture(t, eng.Client, fixture)
			s := openStore(t)
			l := dockersave.NewLoader(s, dockersave.WithEngine(eng, ep))
			saves := eng.saves.Load()
			img, err := loadReleased(t.Context(), l, ref, nil)
			if err != nil {
				t.Fatal(err)
			}
			if img.CacheHit || eng.saves.Load() != saves+1 {
				t.Fatalf("first load: cache hit %v, %d exports", img.CacheHit, eng.saves.Load()-saves)
			}
			checkAgainstDaemon(t, eng.Client, s, ref, img)

			fromArchive, err := loadReleased(t.Context(), dockersave.NewLoader(openStore(t)), "docker-archive:../testdata/fixtures/"+fixture, nil)
			if err != nil {
				t.Fatal(err)
			}
			if fromArchive.ID != img.ID || !slices.Equal(fromArchive.DiffIDs, img.DiffIDs) {
				t.Errorf("archive gave %s %v, daemon %s %v", fromArchive.ID, fromArchive.DiffIDs, img.ID, img.DiffIDs)
			}
			// A graphdriver daemon exports uncompressed layers: for the
			// uncompressed fixtures the synthesized manifest is identical.
			if fixture != "dive-test-kaniko-image.tar" && fromArchive.ManifestDigest != img.ManifestDigest {
				t.Errorf("manifest from the archive %s, from the daemon %s", fromArchive.ManifestDigest, img.ManifestDigest)
			}

			start := time.Now()
			again, err := loadReleased(t.Context(), dockersave.NewLoader(s, dockersave.WithEngine(eng, ep)), ref, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("cache hit (ping, inspect, index lookup) took %v", time.Since(start))
			if !again.CacheHit || again.ManifestDigest != img.ManifestDigest || eng.saves.Load() != saves+1 {
				t.Fatalf("second load: cache hit %v, manifest %s, %d exports", again.CacheHit, again.ManifestDigest, eng.saves.Load()-saves)
			}
		})
	}
}

// TestDockersaveScratchBuild: an image built FROM scratch through the API,
// loaded twice in parallel, is exported once.
func TestDockersaveScratchBuild(t *testing.T) {
	eng, ep := dockersaveEngine(t)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "etc"), 0o755)
	os.WriteFile(filepath.Join(dir, "etc", "hello.txt"), []byte("hello from layerbridge\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "data.bin"), []byte(strings.Repeat("layerbridge", 10000)), 0o644)
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY etc/ /etc/\nCOPY data.bin /data.bin\n"), 0o644)
	tag := fmt.Sprintf("layerbridge-dockersave-test:%d", os.Getpid())
	id, err := harness.BuildImage(t.Context(), eng.Client, dir, tag, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = eng.Client.ImageRemove(context.Background(), tag, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	})
	s := openStore(t)
	l := dockersave.NewLoader(s, dockersave.WithEngine(eng, ep))
	var wg sync.WaitGroup
	imgs := make([]dockersave.Image, 2)
	errs := make([]error, 2)
	ctx := testwait.Context(t)
	for i := range 2 {
		wg.Go(func() { imgs[i], errs[i] = loadReleased(ctx, l, tag, nil) })
	}
	testwait.Wait(t, &wg, "two concurrent loads")
	if errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	if eng.saves.Load() != 1 {
		t.Fatalf("%d exports for two concurrent loads", eng.saves.Load())
	}
	if imgs[0].CacheHit == imgs[1].CacheHit {
		t.Errorf("cache hits %v, %v: want exactly one", imgs[0].CacheHit, imgs[1].CacheHit)
	}
	if imgs[0].ID.String() != id || len(imgs[0].Manifest.Layers) != 2 {
		t.Errorf("id %s (built %s), %d layers", imgs[0].ID, id, len(imgs[0].Manifest.Layers))
	}
	checkAgainstDaemon(t, eng.Client, s, tag, imgs[0])
}

// TestDockersaveDaemonErrors: missing images and platforms are typed errors.
func TestDockersaveDaemonErrors(t *testing.T) {
	eng, ep := dockersaveEngine(t)
	l := dockersave.NewLoader(openStore(t), dockersave.WithEngine(eng, ep))
	_, err := loadReleased(t.Context(), l, "layerbridge-no-such-image:never", nil)
	var nf *engine.NotFoundError
	if !errors.As(err, &nf) || nf.Ref != "layerbridge-no-such-image:never" {
		t.Errorf("got %v, want *NotFoundError", err)
	}
	ref := loadFixture(t, eng.Client, "alpine-3.11-docker-save.tar.gz")
	s390x := ocispec.Platform{OS: "linux", Architecture: "s390x"}
	_, err = loadReleased(t.Context(), l, ref, &s390x)
	var pe *dockersave.PlatformError
	if !errors.As(err, &pe) {
		t.Errorf("got %v, want *PlatformError", err)
	}
	missing := engine.Endpoint{Host: "unix://" + filepath.Join(t.TempDir(), "no.sock"), Source: "--docker-host"}
	c, err := engine.NewClient(missing)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = loadReleased(t.Context(), dockersave.NewLoader(openStore(t), dockersave.WithEngine(c, missing)), ref, nil)
	var ue *engine.UnreachableError
	if !errors.As(err, &ue) {
		t.Errorf("got %v, want *UnreachableError", err)
	}
}

// loadReleased is Loader.Load for a test that needs no pin: it releases the
// pin at once.
func loadReleased(ctx context.Context, l *dockersave.Loader, ref string, p *ocispec.Platform) (dockersave.Image, error) {
	img, release, err := l.Load(ctx, ref, p)
	if err != nil {
		return dockersave.Image{}, err
	}
	release()
	return img, nil
}
