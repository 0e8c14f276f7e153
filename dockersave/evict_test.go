package dockersave

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/internal/testwait"
	"github.com/layerbridge/layerbridge/store"
)

// tickingClock makes a store mark uses at distinct, increasing times, so
// usage order does not depend on the filesystem's timestamp granularity.
func tickingClock() store.Option {
	var n atomic.Int64
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	return store.WithClock(func() time.Time { return start.Add(time.Duration(n.Add(1)) * time.Second) })
}

// pin pins img in s and returns the pin's release.
func pin(ctx context.Context, s *store.Store, img Image) (func(), error) {
	p, err := s.Pin(ctx, img.record())
	if err != nil {
		return nil, err
	}
	return p.Release, nil
}

// loadEngine loads f's image (tagged tag) through a daemon Loader.
func loadEngine(t *testing.T, s *store.Store, f *fakeEngine) Image {
	t.Helper()
	img, err := daemonLoader(s, f).loadReleased(t.Context(), f.inspect.RepoTags[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// imageBlobs are the descriptors of every blob an image needs.
func imageBlobs(img Image) []ocispec.Descriptor {
	return append([]ocispec.Descriptor{img.ManifestDescriptor(), img.Manifest.Config}, img.Manifest.Layers...)
}

func hasAllBlobs(s *store.Store, img Image) bool {
	for _, d := range imageBlobs(img) {
		if !hasBlob(s, d.Digest, d.Size) {
			return false
		}
	}
	return true
}

func usageOrder(t *testing.T, s *store.Store) []string {
	t.Helper()
	u, err := s.Usage()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range u {
		out = append(out, e.Record.RepoTags[0])
	}
	return out
}

// TestUsageTracksLoads: every Load, cache hits included, makes the image the
// most recently used, without rewriting index.json.
func TestUsageTracksLoads(t *testing.T) {
	s := openTestStore(t, tickingClock())
	engines, _ := threeImages(t, s)
	if got := usageOrder(t, s); !slices.Equal(got, []string{"a:1", "b:1", "c:1"}) {
		t.Fatalf("usage order %v after loading a, b, c", got)
	}
	indexPath := filepath.Join(s.Dir(), indexFile)
	before, err := os.Stat(indexPath)
	if err != nil {
		t.Fatal(err)
	}
	if img := loadEngine(t, s, engines["a:1"]); !img.CacheHit {
		t.Fatal("second load of a:1 exported again")
	}
	if got := usageOrder(t, s); !slices.Equal(got, []string{"b:1", "c:1", "a:1"}) {
		t.Fatalf("usage order %v after using a again", got)
	}
	after, err := os.Stat(indexPath)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) || !before.ModTime().Equal(after.ModTime()) {
		t.Fatal("a cache hit rewrote index.json")
	}
	u, _ := s.Usage()
	for i := 1; i < len(u); i++ {
		if !u[i-1].LastUsed.Before(u[i].LastUsed) {
			t.Fatalf("last use not increasing: %v", u)
		}
	}
	for _, e := range u {
		if !e.Complete || e.Size == 0 || e.Unique != e.Size {
			t.Errorf("%s: %+v", e.Record.RepoTags[0], e)
		}
	}
}

// TestLoadAfterEviction: an evicted daemon image is exported again, and a
// pin on the stale Image fails with store.ErrNotStored.
func TestLoadAfterEviction(t *testing.T) {
	s := openTestStore(t)
	f := newFakeEngine(t)
	first := loadEngine(t, s, f)
	mustPrune(t, s, 0)
	if _, err := pin(t.Context(), s, first); !errors.Is(err, store.ErrNotStored) {
		t.Fatalf("pin of an evicted image: %v, want store.ErrNotStored", err)
	}
	again := loadEngine(t, s, f)
	if again.CacheHit || f.saves.Load() != 2 || again.ManifestDigest != first.ManifestDigest {
		t.Fatalf("reload: hit %v, %d exports", again.CacheHit, f.saves.Load())
	}
	checkImage(t, s, again)
	img, release, err := daemonLoader(s, f).Load(t.Context(), "app:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if res := mustPrune(t, s, 0); len(res.Evicted) != 0 {
		t.Fatalf("evicted %v while pinned", evictedTags(res))
	}
	checkImage(t, s, img)
}

// ociArchive is an OCI layout archive of one linux/amd64 image with
// uncompressed layers, written in layer order first.
func ociArchive(t *testing.T, layers [][]byte) []byte {
	t.Helper()
	cfg := configFor(t, linuxAMD64, layers...)
	mts := make([]string, len(layers))
	var entries []tarEntry
	for i, l := range layers {
		mts[i] = ocispec.MediaTypeImageLayer
		entries = append(entries, blobEntry(l))
	}
	m := ociManifest(t, cfg, layers, mts)
	return buildTar(t, append(entries, blobEntry(cfg), blobEntry(m),
		tarEntry{name: "index.json", body: mustJSON(t, ocispec.Index{Manifests: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(m), Size: int64(len(m))}}})},
		tarEntry{name: "oci-layout", body: []byte(`{"imageLayoutVersion":"1.0.0"}`)}))
}

// TestExportSurvivesEvictionOfReusedBlob: a load that found a blob (named by
// its digest in the archive) already stored does not lose it when Prune
// deletes the stored copy before the load commits.
func TestExportSurvivesEvictionOfReusedBlob(t *testing.T) {
	s := openTestStore(t)
	base := randomLayer(t, 32<<10)
	a := loadEngine(t, s, benchEngine(t, "a:1", [][]byte{base, randomLayer(t, 4<<10)}))
	shared := a.Manifest.Layers[0].Digest
	ref := "oci-archive:" + writeFile(t, t.TempDir(), "b.tar", ociArchive(t, [][]byte{base, randomLayer(t, 4<<10)}))

	var once sync.Once
	var pruned store.PruneResult
	var pruneErr error
	// The base layer is the first blob of b's archive: once the next one is
	// being read (base was found in the store), evict everything.
	l := NewLoader(s, WithProgress(func(n int64) {
		if n > int64(len(base)) {
			once.Do(func() { pruned, pruneErr = s.Prune(context.Background(), 0) })
		}
	}))
	b, err := l.loadReleased(t.Context(), ref, nil)
	if err != nil || pruneErr != nil {
		t.Fatalf("load: %v; prune: %v", err, pruneErr)
	}
	if got := evictedTags(pruned); !slices.Equal(got, []string{"a:1"}) || pruned.BlobsRemoved != len(imageBlobs(a)) {
		t.Fatalf("prune during the load evicted %v, %d blobs: the race was not exercised", got, pruned.BlobsRemoved)
	}
	if b.Manifest.Layers[0].Digest != shared {
		t.Fatal("b does not reuse a's layer")
	}
	checkImage(t, s, b)
}

// TestPinDoesNotBlockArchiveReload: loading another manifest of a pinned
// image (same config, other compression) is not blocked and keeps the
// pinned manifest's record and blobs until the pin ends. Without a pin the
// new manifest replaces the old record.
func TestPinDoesNotBlockArchiveReload(t *testing.T) {
	layer := layerTar(t, map[string]string{"etc/os-release": "ID=test\n"})
	dir := t.TempDir()
	legacy, _ := legacyArchive(t, []string{"app:1"}, [][]byte{layer}, false)
	legacyRef := "docker-archive:" + writeFile(t, dir, "legacy.tar", legacy)
	gz := gzipBytes(t, layer)
	cfg := configFor(t, linuxAMD64, layer)
	m := ociManifest(t, cfg, [][]byte{gz}, []string{ocispec.MediaTypeImageLayerGzip})
	oci := buildTar(t, []tarEntry{blobEntry(gz), blobEntry(cfg), blobEntry(m),
		{name: "index.json", body: mustJSON(t, ocispec.Index{Manifests: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(m), Size: int64(len(m))}}})},
		{name: "oci-layout", body: []byte(`{"imageLayoutVersion":"1.0.0"}`)}})
	ociRef := "oci-archive:" + writeFile(t, dir, "oci.tar", oci)

	for _, pinned := range []bool{false, true} {
		t.Run(fmt.Sprintf("pinned=%v", pinned), func(t *testing.T) {
			s := openTestStore(t, tickingClock())
			l := NewLoader(s, WithHostPlatform(linuxAMD64))
			old, err := l.loadReleased(t.Context(), legacyRef, nil)
			if err != nil {
				t.Fatal(err)
			}
			release := func() {}
			if pinned {
				if release, err = pin(t.Context(), s, old); err != nil {
					t.Fatal(err)
				}
			}
			newer, err := l.loadReleased(t.Context(), ociRef, nil)
			if err != nil {
				t.Fatal(err)
			}
			if newer.ID != old.ID || newer.ManifestDigest == old.ManifestDigest {
				t.Fatalf("test images: ids %s %s, manifests %s %s", old.ID, newer.ID, old.ManifestDigest, newer.ManifestDigest)
			}
			if got, ok, _ := s.Lookup(old.ID, linuxAMD64); !ok || got.ManifestDigest != newer.ManifestDigest {
				t.Fatal("lookup does not return the newest manifest")
			}
			images, _ := s.Images()
			if !pinned {
				if len(images) != 1 {
					t.Fatalf("%d records, want the new one only", len(images))
				}
				return
			}
			if len(images) != 2 {
				t.Fatalf("%d records, want the pinned and the new one", len(images))
			}
			if res := mustPrune(t, s, 0); len(res.Evicted) != 0 || res.InUse != 1 {
				t.Fatalf("pruned while pinned: %+v", res)
			}
			// The pinned manifest is still recorded with all its blobs.
			again, err := pin(t.Context(), s, old)
			if err != nil || !hasAllBlobs(s, old) {
				t.Fatalf("pinned manifest lost: %v", err)
			}
			again()
			release()
			res := mustPrune(t, s, 0)
			if len(res.Evicted) != 2 || res.Evicted[0].ManifestDigest != old.ManifestDigest || res.After != 0 {
				t.Fatalf("after release: %+v", res)
			}
		})
	}
}

// TestPinBlocksDaemonReexport: a daemon image with a blob deleted by hand is
// exported again only once its pins are released.
func TestPinBlocksDaemonReexport(t *testing.T) {
	waitOpt, waiting := onImageLockWait()
	s := openTestStore(t, waitOpt)
	f := newFakeEngine(t)
	img := loadEngine(t, s, f)
	release, err := pin(t.Context(), s, img)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(s.Dir(), blobPath(img.Manifest.Layers[0].Digest))); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	ctx := testwait.Context(t)
	go func() {
		_, err := daemonLoader(s, f).loadReleased(ctx, "app:1", nil)
		done <- err
	}()
	select {
	case <-waiting:
	case err := <-done:
		t.Fatalf("export went ahead while pinned: %v", err)
	case <-ctx.Done():
		t.Fatalf("the export never waited for the pinned image: %v", context.Cause(ctx))
	}
	release()
	if err := testwait.Recv(t, done, "the export once the pin was released"); err != nil {
		t.Fatal(err)
	}
	if f.saves.Load() != 2 {
		t.Fatalf("%d exports, want 2", f.saves.Load())
	}
	checkImage(t, s, img)
}

// TestConcurrentLoadPruneServe: scans (load, pin, read every blob as a layer
// server would, release) run beside loads of archives sharing their layers
// and Prunes to zero from two Stores on one directory. No operation fails,
// every blob of a pinned image is present and intact for the whole pin, and
// no file descriptor (lock or blob) is left open. Run with -race.
func TestConcurrentLoadPruneServe(t *testing.T) {
	s := openTestStore(t)
	s2, err := store.Open(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	base := randomLayer(t, 64<<10)
	var engines []*fakeEngine
	for i := range 4 {
		engines = append(engines, benchEngine(t, fmt.Sprintf("img:%d", i), [][]byte{base, randomLayer(t, 16<<10)}))
	}
	archiveRef := "oci-archive:" + writeFile(t, t.TempDir(), "a.tar", ociArchive(t, [][]byte{base, randomLayer(t, 8<<10)}))

	openFDs := func() int {
		fds, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip("no /proc/self/fd")
		}
		return len(fds)
	}
	fdsBefore := openFDs()
	ctx := testwait.Context(t)
	stop := make(chan struct{})
	var evictions, prunes atomic.Int64
	var bg sync.WaitGroup
	for _, ps := range []*store.Store{s, s2} {
		bg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				res, err := ps.Prune(ctx, 0)
				if err != nil {
					t.Errorf("prune: %v", err)
					return
				}
				prunes.Add(1)
				evictions.Add(int64(len(res.Evicted)))
				if _, err := ps.Usage(); err != nil {
					t.Errorf("usage: %v", err)
					return
				}
			}
		})
	}
	serve := func(img Image) error {
		for _, d := range imageBlobs(img) {
			f, err := s.OpenBlob(d.Digest)
			if err != nil {
				return err
			}
			data, err := io.ReadAll(f)
			f.Close()
			if err != nil {
				return err
			}
			if digest.FromBytes(data) != d.Digest {
				return fmt.Errorf("blob %s: served content is %s", d.Digest, digest.FromBytes(data))
			}
		}
		if !hasAllBlobs(s, img) {
			return fmt.Errorf("a blob of pinned %s vanished", img.ManifestDigest)
		}
		return nil
	}
	var workers sync.WaitGroup
	for w := range 8 {
		workers.Go(func() {
			for i := range 15 {
				var l *Loader
				ref := archiveRef
				if w%4 == 3 {
					l = NewLoader(s2, WithHostPlatform(linuxAMD64))
				} else {
					f := engines[(w+i)%len(engines)]
					ref = f.inspect.RepoTags[0]
					l = daemonLoader(s, f)
				}
				img, release, err := l.Load(ctx, ref, nil)
				if err != nil {
					t.Errorf("load %s: %v", ref, err)
					return
				}
				err = serve(img)
				release()
				if err != nil {
					t.Errorf("serve %s: %v", ref, err)
					return
				}
			}
		})
	}
	testwait.Wait(t, &workers, "the loading workers")
	close(stop)
	testwait.Wait(t, &bg, "the pruners")
	t.Logf("%d prunes evicted %d images", prunes.Load(), evictions.Load())
	if evictions.Load() == 0 {
		t.Fatal("no eviction happened during the loads")
	}
	if res := mustPrune(t, s, 0); res.After != 0 {
		t.Fatalf("%d bytes left once every pin was released", res.After)
	}
	if staged, _ := os.ReadDir(filepath.Join(s.Dir(), stagingDir)); len(staged) != 0 {
		t.Fatalf("staging files left: %d", len(staged))
	}
	if n := openFDs(); n != fdsBefore {
		t.Fatalf("%d file descriptors open, %d before: leaked locks or blobs", n, fdsBefore)
	}
}

// onMessage is a slog handler calling fn for each record with message msg.
type onMessage struct {
	msg string
	fn  func()
}

func (h onMessage) Enabled(context.Context, slog.Level) bool { return true }
func (h onMessage) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.fn()
	}
	return nil
}
func (h onMessage) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h onMessage) WithGroup(string) slog.Handler      { return h }

// TestLoadPinsWithoutGap: Load pins daemon images (exported or cache hits)
// and archives before a Prune can evict them: a Prune run wherever Load
// would pin after the load (here from another Store on the directory, as
// another process would) evicts nothing it returns, and nothing is exported
// twice.
func TestLoadPinsWithoutGap(t *testing.T) {
	s := openTestStore(t)
	other, err := store.Open(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	var mu sync.Mutex
	var evicted []digest.Digest
	log := slog.New(onMessage{msg: "pinning after load", fn: func() {
		res, err := other.Prune(context.Background(), 0)
		if err != nil {
			t.Error(err)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, img := range res.Evicted {
			evicted = append(evicted, img.ManifestDigest)
		}
	}})
	f := newFakeEngine(t)
	l := NewLoader(s, WithEngine(f, testEndpoint), WithLogger(log))
	archiveRef := "oci-archive:" + writeFile(t, t.TempDir(), "a.tar", ociArchive(t, [][]byte{randomLayer(t, 4<<10)}))
	for _, ref := range []string{"app:1", "app:1", archiveRef} {
		img, release, err := l.Load(t.Context(), ref, nil)
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		if slices.Contains(evicted, img.ManifestDigest) {
			t.Fatalf("%s: evicted between load and pin", ref)
		}
		mu.Unlock()
		checkImage(t, s, img)
		release()
	}
	if f.saves.Load() != 1 {
		t.Fatalf("%d exports of app:1, want 1", f.saves.Load())
	}
}

func mustPrune(t *testing.T, s *store.Store, maxBytes int64) store.PruneResult {
	t.Helper()
	res, err := s.Prune(t.Context(), maxBytes)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustSize(t, s); got != res.After {
		t.Fatalf("Prune reports %d bytes after, Size says %d", res.After, got)
	}
	return res
}

func mustSize(t *testing.T, s *store.Store) int64 {
	t.Helper()
	n, err := s.Size()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func evictedTags(res store.PruneResult) []string {
	var out []string
	for _, img := range res.Evicted {
		out = append(out, img.RepoTags[0])
	}
	return out
}

// threeImages stores a:1, b:1 and c:1 (no shared layers) in that order.
func threeImages(t *testing.T, s *store.Store) (engines map[string]*fakeEngine, imgs map[string]Image) {
	engines, imgs = map[string]*fakeEngine{}, map[string]Image{}
	for _, tag := range []string{"a:1", "b:1", "c:1"} {
		engines[tag] = benchEngine(t, tag, [][]byte{randomLayer(t, 8<<10), randomLayer(t, 4<<10)})
		imgs[tag] = loadEngine(t, s, engines[tag])
	}
	return engines, imgs
}
