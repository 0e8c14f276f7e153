package dockersave

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/moby/moby/client"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/blobs"
	"github.com/layerbridge/layerbridge/internal/testwait"
)

// recordingWatcher records what a load told it.
type recordingWatcher struct {
	mu         sync.Mutex
	identity   *Identity
	stop       error // returned by Identified
	layers     []ocispec.Descriptor
	opener     blobs.Opener
	layersSeen chan struct{} // closed by Layers
}

func newRecordingWatcher() *recordingWatcher {
	return &recordingWatcher{layersSeen: make(chan struct{})}
}

func (w *recordingWatcher) Identified(_ context.Context, id Identity) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.identity = &id
	return w.stop
}

func (w *recordingWatcher) Layers(_ context.Context, layers []ocispec.Descriptor, opener blobs.Opener) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.layers, w.opener = layers, opener
	close(w.layersSeen)
}

// pipeEngine is a fakeEngine whose export the test writes as it likes.
type pipeEngine struct {
	*fakeEngine
	pr *io.PipeReader
}

func (p *pipeEngine) ImageSave(ctx context.Context, ids []string, opts ...client.ImageSaveOption) (client.ImageSaveResult, error) {
	if _, err := p.fakeEngine.ImageSave(ctx, ids, opts...); err != nil {
		return nil, err
	}
	return p.pr, nil
}

func newPipeEngine(t *testing.T) (*pipeEngine, *io.PipeWriter) {
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() })
	return &pipeEngine{fakeEngine: newFakeEngine(t), pr: pr}, pw
}

// endOfEntry is the offset in a tar archive just after the content of the
// first entry whose name ends with suffix.
func endOfEntry(t *testing.T, archive []byte, suffix string) int64 {
	t.Helper()
	r := bytes.NewReader(archive)
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatalf("no entry ending with %q: %v", suffix, err)
		}
		if strings.HasSuffix(hdr.Name, suffix) {
			pos := int64(len(archive)) - int64(r.Len())
			return pos + (hdr.Size+511)/512*512
		}
	}
}

func readBlob(t *testing.T, b blobs.Blob) []byte {
	t.Helper()
	defer b.Close()
	data, err := io.ReadAll(blobs.ReadSeeker(b))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestWatchGraphdriverExport: a graphdriver export is identified by its
// config digest before anything is exported, its layers (the diff IDs) are
// announced before the export starts, and each is served once the export
// has staged it, while the rest of the export is still to come.
func TestWatchGraphdriverExport(t *testing.T) {
	f, pw := newPipeEngine(t)
	w := newRecordingWatcher()
	l := daemonLoader(openTestStore(t), f)
	type result struct {
		img     Image
		release func()
		err     error
	}
	done := make(chan result, 1)
	go func() {
		img, release, err := l.Load(t.Context(), "app:1", nil, WithWatcher(w))
		done <- result{img, release, err}
	}()
	testwait.Recv(t, w.layersSeen, "the layers announced before the export")
	w.mu.Lock()
	id, layers, opener := *w.identity, w.layers, w.opener
	w.mu.Unlock()
	if id.ID.String() != f.inspect.ID || id.IndexDigest.String() != f.inspect.ID {
		t.Errorf("identity %s, index digest %s; want both the inspected config digest %s", id.ID, id.IndexDigest, f.inspect.ID)
	}
	if len(layers) != 2 || len(id.DiffIDs) != 2 {
		t.Fatalf("layers %v, diff ids %v; want the image's 2", layers, id.DiffIDs)
	}
	for i, d := range layers {
		if d.Digest != id.DiffIDs[i] || d.Digest.String() != f.inspect.RootFS.Layers[i] {
			t.Errorf("layer %d is %s, want diff id %s (graphdriver exports are uncompressed)", i, d.Digest, id.DiffIDs[i])
		}
	}

	// Nothing exported yet: a request for a layer waits, as long as its
	// context allows.
	short, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := opener.Blob(short, layers[0].Digest); !errors.Is(err, context.Canceled) {
		t.Fatalf("blob before the export: %v, want to wait until cancelled", err)
	}

	// The export up to the end of the first layer.tar: that layer is
	// served while the load goes on.
	cut := endOfEntry(t, f.archive, "/layer.tar")
	first := digest.FromBytes(layerBytes(t, f.archive, cut))
	wrote := make(chan error, 1)
	go func() {
		_, err := pw.Write(f.archive[:cut])
		wrote <- err
	}()
	b, err := opener.Blob(testwait.Context(t), first)
	if err != nil {
		t.Fatalf("first layer while the export goes on: %v", err)
	}
	if got := readBlob(t, b); digest.FromBytes(got) != first {
		t.Fatalf("served %d bytes that are not layer %s", len(got), first)
	}
	select {
	case r := <-done:
		t.Fatalf("the load ended (%v) before the rest of the export was sent", r.err)
	default:
	}
	if err := testwait.Recv(t, wrote, "the first part of the export written"); err != nil {
		t.Fatal(err)
	}
	if _, err := pw.Write(f.archive[cut:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	r := testwait.Recv(t, done, "the load")
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.release()
	if r.img.IndexDigest != id.IndexDigest || !r.img.Synthesized {
		t.Errorf("loaded image: index digest %s, synthesized %v; want %s, true", r.img.IndexDigest, r.img.Synthesized, id.IndexDigest)
	}
	// After the load, every layer is served (from the store).
	for _, d := range layers {
		b, err := opener.Blob(t.Context(), d.Digest)
		if err != nil {
			t.Fatalf("layer %s after the load: %v", d.Digest, err)
		}
		if got := readBlob(t, b); digest.FromBytes(got) != d.Digest {
			t.Errorf("layer %s served other bytes", d.Digest)
		}
	}
	// A cache hit announces the stored layers too, and gives the same
	// index digest without exporting.
	w2 := newRecordingWatcher()
	hit, release, err := l.Load(t.Context(), "app:1", nil, WithWatcher(w2))
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	testwait.Recv(t, w2.layersSeen, "the layers of the cache hit")
	if !hit.CacheHit || hit.IndexDigest != id.IndexDigest || f.saves.Load() != 1 {
		t.Errorf("cache hit %v, index digest %s, exports %d", hit.CacheHit, hit.IndexDigest, f.saves.Load())
	}
}

// layerBytes is the content of the tar entry that ends at end.
func layerBytes(t *testing.T, archive []byte, end int64) []byte {
	t.Helper()
	r := bytes.NewReader(archive)
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatal(err)
		}
		pos := int64(len(archive)) - int64(r.Len())
		if pos+(hdr.Size+511)/512*512 == end {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}

// TestWatchStopsBeforeExport: a watcher that has what it needs once the
// image is identified stops the load before anything is exported.
func TestWatchStopsBeforeExport(t *testing.T) {
	f := newFakeEngine(t)
	w := newRecordingWatcher()
	stop := errors.New("clair has indexed it")
	w.stop = stop
	_, _, err := daemonLoader(openTestStore(t), f).Load(t.Context(), "app:1", nil, WithWatcher(w))
	if !errors.Is(err, stop) {
		t.Fatalf("load: %v, want the watcher's error", err)
	}
	if f.saves.Load() != 0 {
		t.Errorf("%d exports, want none", f.saves.Load())
	}
}

// TestWatchFailedExport: when the export fails, a request waiting for a
// layer fails too instead of waiting for bytes that never come.
func TestWatchFailedExport(t *testing.T) {
	f, pw := newPipeEngine(t)
	w := newRecordingWatcher()
	s := openTestStore(t)
	done := make(chan error, 1)
	go func() {
		_, _, err := daemonLoader(s, f).Load(t.Context(), "app:1", nil, WithWatcher(w))
		done <- err
	}()
	testwait.Recv(t, w.layersSeen, "the layers announced")
	w.mu.Lock()
	opener, last := w.opener, w.layers[len(w.layers)-1].Digest
	w.mu.Unlock()
	waited := make(chan error, 1)
	go func() {
		_, err := opener.Blob(testwait.Context(t), last)
		waited <- err
	}()
	pw.Write(f.archive[:len(f.archive)/3])
	pw.CloseWithError(errors.New("daemon went away"))
	if err := testwait.Recv(t, done, "the load"); err == nil {
		t.Fatal("a truncated export loaded")
	}
	if err := testwait.Recv(t, waited, "the waiting request"); !errors.Is(err, errLoadFailed) {
		t.Fatalf("waiting request: %v, want it to fail with the load", err)
	}
}

// TestWatchServesLegacyLayersWhileWritten: in a real legacy docker save
// archive (14 layers, directories named by v1 IDs), a layer is served while
// the export is still writing it: its first bytes are read while the rest
// of the layer has not arrived, and the whole, once it has, is the layer.
func TestWatchServesLegacyLayersWhileWritten(t *testing.T) {
	fixture := filepath.Join(fixturesDir, "dive-test-docker-image.tar")
	saved := readSavedLegacy(t, fixture)
	archive, err := os.ReadFile(fixture)
	if err != nil {
		t.Fatal(err)
	}
	f, pw := newPipeEngine(t)
	f.archive = archive
	f.inspect.ID = "sha256:" + strings.TrimSuffix(saved.config, ".json")
	f.inspect.RootFS.Layers = nil
	for _, d := range saved.diffIDs {
		f.inspect.RootFS.Layers = append(f.inspect.RootFS.Layers, d.String())
	}
	w := newRecordingWatcher()
	l := daemonLoader(openTestStore(t), f)
	done := make(chan error, 1)
	go func() {
		_, release, err := l.Load(t.Context(), "dive-test:latest", nil, WithWatcher(w))
		if err == nil {
			release()
		}
		done <- err
	}()
	testwait.Recv(t, w.layersSeen, "the layers announced before the export")
	w.mu.Lock()
	opener := w.opener
	w.mu.Unlock()

	// The base layer (1.3 MB): the export stops 90% into it.
	base := saved.layers[0]
	end := endOfEntry(t, archive, base+"/layer.tar")
	size := int64(len(layerBytes(t, archive, end)))
	cut := end - (size+511)/512*512 + size*9/10
	if _, err := pw.Write(archive[:cut]); err != nil {
		t.Fatal(err)
	}
	b, err := opener.Blob(testwait.Context(t), saved.diffIDs[0])
	if err != nil {
		t.Fatalf("base layer while the export writes it: %v", err)
	}
	defer b.Close()
	if b.Size() != size {
		t.Errorf("served as %d bytes, the layer has %d", b.Size(), size)
	}
	head := make([]byte, 64<<10)
	if _, err := b.ReadAt(head, 0); err != nil {
		t.Fatalf("first bytes of the base layer while the export writes it: %v", err)
	}
	select {
	case err := <-done:
		t.Fatalf("the load ended (%v) before the rest of the export was sent", err)
	default:
	}
	go func() {
		pw.Write(archive[cut:])
		pw.Close()
	}()
	if got := readBlob(t, b); digest.FromBytes(got) != saved.diffIDs[0] || !bytes.Equal(got[:len(head)], head) {
		t.Fatalf("served %d bytes that are not the base layer", len(got))
	}
	if err := testwait.Recv(t, done, "the load"); err != nil {
		t.Fatal(err)
	}
}
