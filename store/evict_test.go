package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/layerbridge/layerbridge/internal/testwait"
)

// TestPruneEvictsLeastRecentlyUsed: only as many images as needed go,
// least recently used first; the others stay intact.
func TestPruneEvictsLeastRecentlyUsed(t *testing.T) {
	s := openTestStore(t)
	tickingClock(s)
	imgs := threeImages(t, s)
	mustDo(t, s.Touch(imgs["a:1"])) // a is now the most recently used, as a load makes it
	total := mustSize(t, s)

	res := mustPrune(t, s, total-1)
	if got := evictedTags(res); !slices.Equal(got, []string{"b:1"}) {
		t.Fatalf("evicted %v, want [b:1]", got)
	}
	if res.Before != total || res.BlobsRemoved != len(recordBlobs(imgs["b:1"])) || !hasNoBlobOf(s, imgs["b:1"]) {
		t.Fatalf("result %+v; b's blobs left: %v", res, !hasNoBlobOf(s, imgs["b:1"]))
	}
	if _, ok, _ := s.Lookup(imgs["b:1"].ID, linuxAMD64); ok {
		t.Fatal("b:1 still found")
	}
	for _, tag := range []string{"a:1", "c:1"} {
		checkStored(t, s, imgs[tag])
	}
	// Within the limit nothing happens.
	if res := mustPrune(t, s, res.After); len(res.Evicted) != 0 || res.BlobsRemoved != 0 {
		t.Fatalf("prune within the limit: %+v", res)
	}
	res = mustPrune(t, s, res.After-1)
	if got := evictedTags(res); !slices.Equal(got, []string{"c:1"}) {
		t.Fatalf("then evicted %v, want [c:1]", got)
	}
	checkStored(t, s, imgs["a:1"])
}

// TestPruneKeepsSharedBlobs: evicting an image leaves the layers another
// stored image still uses.
func TestPruneKeepsSharedBlobs(t *testing.T) {
	s := openTestStore(t)
	tickingClock(s)
	base := randomLayer(t, 16<<10)
	a := commitImage(t, s, "a:1", base, randomLayer(t, 4<<10))
	b := commitImage(t, s, "b:1", base, randomLayer(t, 4<<10))
	shared := a.Manifest.Layers[0]
	if b.Manifest.Layers[0].Digest != shared.Digest {
		t.Fatal("test images do not share their base layer")
	}
	u, _ := s.Usage()
	if u[0].Size-u[0].Unique != shared.Size {
		t.Fatalf("a: size %d, unique %d; shared layer is %d bytes", u[0].Size, u[0].Unique, shared.Size)
	}
	res := mustPrune(t, s, mustSize(t, s)-1)
	if got := evictedTags(res); !slices.Equal(got, []string{"a:1"}) {
		t.Fatalf("evicted %v, want [a:1]", got)
	}
	if !hasNoBlobOf(s, a, shared.Digest) {
		t.Fatal("a's own blobs survived")
	}
	checkStored(t, s, b)
	if res.BytesFreed != u[0].Unique {
		t.Fatalf("freed %d bytes, a alone had %d", res.BytesFreed, u[0].Unique)
	}
}

// TestPruneZeroEmptiesStore: maxBytes 0 removes every image, orphan, stale
// staging file, interrupted write and unused lock file.
func TestPruneZeroEmptiesStore(t *testing.T) {
	s := openTestStore(t)
	threeImages(t, s)
	orphan := []byte("left by a crash")
	writeFile(t, filepath.Join(s.Dir(), blobsDir), hexOf(orphan), orphan)
	interrupted := writeFile(t, filepath.Join(s.Dir(), blobsDir), "."+hexOf(nil)+".tmp-0123", []byte("x"))
	stale := writeFile(t, filepath.Join(s.Dir(), stagingDir), "blob-stale", []byte("x"))
	old := time.Now().Add(-48 * time.Hour)
	os.Chtimes(stale, old, old)
	writeFile(t, filepath.Join(s.Dir(), locksDir), imageLockName(digest.FromString("gone"), linuxAMD64), nil)
	before := len(storeBlobs(t, s)) - 1 // the interrupted write is not a blob

	res := mustPrune(t, s, 0)
	if len(res.Evicted) != 3 || res.BlobsRemoved != before || res.After != 0 || res.BytesFreed != res.Before {
		t.Fatalf("result %+v, %d blobs before", res, before)
	}
	if b := storeBlobs(t, s); len(b) != 0 {
		t.Fatalf("blobs left: %v", b)
	}
	if images, err := s.Images(); err != nil || len(images) != 0 {
		t.Fatalf("images left: %v, %v", images, err)
	}
	for _, p := range []string{interrupted, stale} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s kept", p)
		}
	}
	locks, _ := filepath.Glob(filepath.Join(s.Dir(), locksDir, "image-*"))
	if len(locks) != 0 {
		t.Errorf("lock files left: %v", locks)
	}
}

// TestPruneRemovesOrphansFirst: blobs no record references go before any
// image is evicted.
func TestPruneRemovesOrphansFirst(t *testing.T) {
	s := openTestStore(t)
	img := commitImage(t, s, "a:1", randomLayer(t, 4<<10))
	orphan := randomLayer(t, 8<<10)
	writeFile(t, filepath.Join(s.Dir(), blobsDir), hexOf(orphan), orphan)
	res := mustPrune(t, s, mustSize(t, s)-1)
	if len(res.Evicted) != 0 || res.BlobsRemoved != 1 || res.BytesFreed != int64(len(orphan)) {
		t.Fatalf("result %+v", res)
	}
	checkStored(t, s, img)
}

// TestPinnedImageNeverEvicted: a pin held through this Store, through a
// second Store on the directory (as another process would) or twice keeps
// the image and all its blobs; once released, it can go.
func TestPinnedImageNeverEvicted(t *testing.T) {
	for _, how := range []string{"same store", "second store", "nested"} {
		t.Run(how, func(t *testing.T) {
			s := openTestStore(t)
			imgs := threeImages(t, s)
			pinner := s
			if how == "second store" {
				s2, err := Open(s.Dir())
				if err != nil {
					t.Fatal(err)
				}
				defer s2.Close()
				pinner = s2
			}
			a := imgs["a:1"]
			release, err := pin(t.Context(), pinner, a)
			if err != nil {
				t.Fatal(err)
			}
			if how == "nested" {
				release2, err := pin(t.Context(), s, a)
				if err != nil {
					t.Fatal(err)
				}
				release2()
				release2() // harmless
			}
			res := mustPrune(t, s, 0)
			if got := evictedTags(res); !slices.Equal(got, []string{"b:1", "c:1"}) || res.InUse != 1 {
				t.Fatalf("evicted %v, %d in use; want [b:1 c:1], 1", got, res.InUse)
			}
			checkStored(t, s, a)
			if got, ok, _ := s.Lookup(a.ID, a.Platform); !ok || got.ManifestDigest != a.ManifestDigest {
				t.Fatal("pinned image's record dropped")
			}
			release()
			res = mustPrune(t, s, 0)
			if got := evictedTags(res); !slices.Equal(got, []string{"a:1"}) || res.After != 0 {
				t.Fatalf("after release: evicted %v, %d bytes left", got, res.After)
			}
		})
	}
}

const pinHelperEnv = "LAYERBRIDGE_TEST_PIN_HELPER"

// TestPinHelperProcess is not a test: TestPinInAnotherProcess runs the test
// binary again with it, to hold a pin from a separate process. It pins the
// image named by its environment, says "pinned", and releases the pin when
// its stdin closes.
func TestPinHelperProcess(t *testing.T) {
	spec := os.Getenv(pinHelperEnv)
	if spec == "" {
		t.Skip("helper process for TestPinInAnotherProcess")
	}
	dir, id, _ := strings.Cut(spec, "\n")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	img, ok, err := s.Lookup(digest.Digest(id), linuxAMD64)
	if !ok || err != nil {
		t.Fatalf("lookup %s: %v %v", id, ok, err)
	}
	release, err := pin(context.Background(), s, img)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("pinned")
	io.Copy(io.Discard, os.Stdin)
	release()
}

// TestPinInAnotherProcess: a pin held by another process keeps the image;
// the pin ends with its release or with the process.
func TestPinInAnotherProcess(t *testing.T) {
	for _, end := range []string{"release", "killed"} {
		t.Run(end, func(t *testing.T) {
			s := openTestStore(t)
			imgs := threeImages(t, s)
			a := imgs["a:1"]
			// Killed at the test's wait bound: every read of its output
			// and the wait for it end then.
			cmd := exec.CommandContext(testwait.Context(t), os.Args[0], "-test.run=^TestPinHelperProcess$", "-test.count=1")
			cmd.Env = append(os.Environ(), pinHelperEnv+"="+s.Dir()+"\n"+a.ID.String())
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			line, err := bufio.NewReader(stdout).ReadString('\n')
			if err != nil || line != "pinned\n" {
				t.Fatalf("helper said %q, %v", line, err)
			}
			res := mustPrune(t, s, 0)
			if got := evictedTags(res); !slices.Equal(got, []string{"b:1", "c:1"}) || res.InUse != 1 {
				t.Fatalf("evicted %v, %d in use; want [b:1 c:1], 1", got, res.InUse)
			}
			checkStored(t, s, a)
			if end == "release" {
				stdin.Close()
			} else {
				cmd.Process.Kill()
			}
			go io.Copy(io.Discard, stdout)
			err = cmd.Wait()
			if end == "release" && err != nil {
				t.Fatalf("helper: %v", err)
			}
			res = mustPrune(t, s, 0)
			if got := evictedTags(res); !slices.Equal(got, []string{"a:1"}) || res.After != 0 {
				t.Fatalf("after the helper ended: evicted %v, %d bytes left", got, res.After)
			}
		})
	}
}

// TestLockFollowsRemovedFile: a waiter that gets the lock of a file removed
// meanwhile locks the file now at the path, so it still excludes others.
func TestLockFollowsRemovedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	held, err := lockFile(t.Context(), path, unix.LOCK_EX, nil)
	if err != nil {
		t.Fatal(err)
	}
	waiting := make(chan struct{})
	got := make(chan *fileLock, 1)
	ctx := testwait.Context(t)
	go func() {
		l, err := lockFile(ctx, path, unix.LOCK_SH, func(string) { close(waiting) })
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	testwait.Recv(t, waiting, "the second locker to wait")
	if err := held.removeAndUnlock(); err != nil {
		t.Fatal(err)
	}
	shared := testwait.Recv(t, got, "the second locker to get the lock")
	if shared == nil {
		t.FailNow()
	}
	defer shared.unlock()
	if _, ok, err := tryLockFile(path, unix.LOCK_EX); ok || err != nil {
		t.Fatalf("exclusive lock granted beside a shared one (%v): the waiter locked a removed file", err)
	}
}

// TestUsageWithoutMark: an image whose usage mark is gone (stored before
// tracking existed) counts as least recently used.
func TestUsageWithoutMark(t *testing.T) {
	s := openTestStore(t)
	tickingClock(s)
	imgs := threeImages(t, s)
	if err := os.Remove(filepath.Join(s.Dir(), locksDir, imageLockName(imgs["c:1"].ID, linuxAMD64))); err != nil {
		t.Fatal(err)
	}
	u, err := s.Usage()
	if err != nil || len(u) != 3 || u[0].Record.RepoTags[0] != "c:1" || !u[0].LastUsed.IsZero() {
		t.Fatalf("usage %+v, %v", u, err)
	}
	if err := s.Touch(imgs["c:1"]); err != nil {
		t.Fatal(err)
	}
	if got := usageOrder(t, s); !slices.Equal(got, []string{"a:1", "b:1", "c:1"}) {
		t.Fatalf("order %v after Touch(c)", got)
	}
}

func TestPruneRejectsNegativeLimit(t *testing.T) {
	if _, err := openTestStore(t).Prune(t.Context(), -1); err == nil {
		t.Fatal("negative limit accepted")
	}
}

// threeImages stores a:1, b:1 and c:1 (no shared layers) in that order.
func threeImages(t *testing.T, s *Store) map[string]Record {
	imgs := map[string]Record{}
	for _, tag := range []string{"a:1", "b:1", "c:1"} {
		imgs[tag] = commitImage(t, s, tag, randomLayer(t, 8<<10), randomLayer(t, 4<<10))
	}
	return imgs
}

func mustPrune(t *testing.T, s *Store, maxBytes int64) PruneResult {
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

func mustSize(t *testing.T, s *Store) int64 {
	t.Helper()
	n, err := s.Size()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func hasNoBlobOf(s *Store, img Record, except ...digest.Digest) bool {
	for _, d := range recordBlobs(img) {
		if !slices.Contains(except, d.Digest) && s.hasBlob(d.Digest, -1) {
			return false
		}
	}
	return true
}

func evictedTags(res PruneResult) []string {
	var out []string
	for _, img := range res.Evicted {
		out = append(out, img.RepoTags[0])
	}
	return out
}
func usageOrder(t *testing.T, s *Store) []string {
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
