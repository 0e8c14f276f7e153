package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

func TestOpenStoreLayout(t *testing.T) {
	s := openTestStore(t)
	var layout ocispec.ImageLayout
	b, err := os.ReadFile(filepath.Join(s.Dir(), "oci-layout"))
	if err != nil || json.Unmarshal(b, &layout) != nil || layout.Version != ocispec.ImageLayoutVersion {
		t.Fatalf("oci-layout %q, %v", b, err)
	}
	var idx ocispec.Index
	b, err = os.ReadFile(filepath.Join(s.Dir(), "index.json"))
	if err != nil || json.Unmarshal(b, &idx) != nil || idx.SchemaVersion != 2 || idx.Manifests == nil {
		t.Fatalf("index.json %q, %v", b, err)
	}
	// Reopening keeps what is there.
	img := commitImage(t, s, "alpine:3.11", randomLayer(t, 4<<10))
	s2, err := Open(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got, ok, err := s2.Lookup(img.ID, img.Platform); !ok || err != nil || got.ManifestDigest != img.ManifestDigest {
		t.Fatalf("reopened store lost the image: %v %v", ok, err)
	}
}

func TestOpenBlob(t *testing.T) {
	s := openTestStore(t)
	img := commitImage(t, s, "app:1", randomLayer(t, 4<<10), randomLayer(t, 8<<10))
	f, err := s.OpenBlob(img.Manifest.Layers[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	if digest.FromBytes(b) != img.Manifest.Layers[0].Digest {
		t.Fatal("wrong content")
	}
	if _, err := s.OpenBlob(digest.FromString("absent")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("absent blob: %v", err)
	}
	for _, bad := range []digest.Digest{"sha256:../../index.json", "sha512:" + digest.Digest(hexOf(nil)+hexOf(nil)), "", "sha256:ABC"} {
		if _, err := s.OpenBlob(bad); err == nil || errors.Is(err, fs.ErrNotExist) {
			t.Errorf("OpenBlob(%q) = %v, want a validation error", bad, err)
		}
	}
}

// TestLookupReadsNoBlob: a cache hit is decided from index.json and stat
// alone, so a stored blob's content may be unreadable.
func TestLookupReadsNoBlob(t *testing.T) {
	s := openTestStore(t)
	var layers [][]byte
	for range 14 {
		layers = append(layers, randomLayer(t, 4<<10))
	}
	img := commitImage(t, s, "app:1", layers...)
	// Overwrite every blob with zeros of the same length: a lookup that
	// read (or hashed) any of them would notice.
	for _, l := range append(img.Manifest.Layers, img.Manifest.Config, img.ManifestDescriptor()) {
		p := filepath.Join(s.Dir(), blobPath(l.Digest))
		os.Chmod(p, 0o644)
		if err := os.Truncate(p, 0); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, l.Size); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	got, ok, err := s.Lookup(img.ID, img.Platform)
	if err != nil || !ok || got.ManifestDigest != img.ManifestDigest || len(got.Manifest.Layers) != 14 {
		t.Fatalf("Lookup = %v, %v, %v", got.ManifestDigest, ok, err)
	}
	t.Logf("lookup took %v", time.Since(start))
	if _, ok, _ := s.Lookup(img.ID, ocispec.Platform{OS: "linux", Architecture: "arm64"}); ok {
		t.Fatal("found for another platform")
	}
}

func TestStaleStagingRemoved(t *testing.T) {
	s := openTestStore(t)
	stale := filepath.Join(s.Dir(), stagingDir, "blob-stale")
	fresh := filepath.Join(s.Dir(), stagingDir, "blob-fresh")
	writeFile(t, filepath.Dir(stale), filepath.Base(stale), []byte("x"))
	writeFile(t, filepath.Dir(fresh), filepath.Base(fresh), []byte("x"))
	old := time.Now().Add(-48 * time.Hour)
	os.Chtimes(stale, old, old)
	s2, err := Open(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Error("stale staging file kept")
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Error("fresh staging file (maybe another process's) removed")
	}
}

const stagingHelperEnv = "LAYERBRIDGE_TEST_STAGING_HELPER"

// TestStagingHelperProcess is not a test: TestStagingOfDeadProcess runs
// the test binary again with it, as a load in another process. In the
// store its environment names, it stages part of a layer (the file left
// open, as mid-load) and links a stored blob (the digest after the
// directory), prints both staging names, and closes the store when its
// stdin closes.
func TestStagingHelperProcess(t *testing.T) {
	spec := os.Getenv(stagingHelperEnv)
	if spec == "" {
		t.Skip("helper process for TestStagingOfDeadProcess")
	}
	dir, stored, _ := strings.Cut(spec, "\n")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	f, name, err := s.CreateStaging()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(randomLayer(t, 1<<20)); err != nil {
		t.Fatal(err)
	}
	link := s.LinkStaging(digest.Digest(stored), -1)
	if link == "" {
		t.Fatal("no link to", stored)
	}
	fmt.Println(name, link)
	io.Copy(io.Discard, os.Stdin)
	f.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestStagingOfDeadProcess: the staging files of a process killed
// (SIGKILL) mid-load are removed by the next Open, or Prune, of any Store
// on the directory, not a day later; those of a live process (another one,
// or a Store of this process) are never touched, and a Store removes its
// own when it is closed.
func TestStagingOfDeadProcess(t *testing.T) {
	for _, sweep := range []string{"Open", "Prune"} {
		t.Run(sweep, func(t *testing.T) {
			s := openTestStore(t)
			img := commitImage(t, s, "a:1", randomLayer(t, 4<<10))
			env := stagingHelperEnv + "=" + s.Dir() + "\n" + img.Manifest.Layers[0].Digest.String()
			killed, live := startHelper(t, "TestStagingHelperProcess", env), startHelper(t, "TestStagingHelperProcess", env)
			killedFiles, liveFiles := strings.Fields(killed.line(t)), strings.Fields(live.line(t))
			own := stage(t, s, []byte("this process's load"))
			staged := func(names []string) (n int) {
				for _, name := range names {
					if _, err := os.Lstat(filepath.Join(s.Dir(), name)); err == nil {
						n++
					}
				}
				return n
			}
			all := append(append(append([]string(nil), killedFiles...), liveFiles...), own.Name)
			if n := staged(all); n != 5 {
				t.Fatalf("%d of the staging files %v exist, want 5", n, all)
			}
			sweepNow := func() {
				t.Helper()
				if sweep == "Prune" {
					mustPrune(t, s, 1<<40)
					return
				}
				s2, err := Open(s.Dir())
				if err != nil {
					t.Fatal(err)
				}
				s2.Close()
			}

			// While all live, nothing goes.
			sweepNow()
			if n := staged(all); n != 5 {
				t.Fatalf("%d of the live processes' 5 staging files left", n)
			}

			killed.kill(t)
			sweepNow()
			if n := staged(killedFiles); n != 0 {
				t.Errorf("%d staging files of the killed process left", n)
			}
			if n := staged(liveFiles) + staged([]string{own.Name}); n != 3 {
				t.Errorf("%d of the live processes' 3 staging files left", n)
			}
			if owners, _ := filepath.Glob(filepath.Join(s.Dir(), locksDir, ownerLockPrefix+"*")); len(owners) != 2 {
				t.Errorf("owner lock files %v, want the two live ones", owners)
			}

			// Closing removes a Store's own staging files and owner.
			live.finish(t)
			mustDo(t, s.Close())
			if left, _ := os.ReadDir(filepath.Join(s.Dir(), stagingDir)); len(left) != 0 {
				t.Errorf("staging files left after every Store closed: %v", left)
			}
			if owners, _ := filepath.Glob(filepath.Join(s.Dir(), locksDir, ownerLockPrefix+"*")); len(owners) != 0 {
				t.Errorf("owner lock files left after every Store closed: %v", owners)
			}
		})
	}
}

// TestStagingWithoutOwnerFile: a staging file whose owner lock file is
// missing (deleted by hand) is treated as one without an owner: kept
// until a day old.
func TestStagingWithoutOwnerFile(t *testing.T) {
	s := openTestStore(t)
	b := stage(t, s, []byte("x"))
	owners, _ := filepath.Glob(filepath.Join(s.Dir(), locksDir, ownerLockPrefix+"*"))
	if len(owners) != 1 {
		t.Fatalf("owner lock files %v, want one", owners)
	}
	mustDo(t, os.Remove(owners[0]))
	s2, err := Open(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
	if _, err := os.Stat(filepath.Join(s.Dir(), b.Name)); err != nil {
		t.Fatalf("a fresh staging file without its owner file removed: %v", err)
	}
	later, err := Open(s.Dir(), WithClock(func() time.Time { return time.Now().Add(25 * time.Hour) }))
	if err != nil {
		t.Fatal(err)
	}
	later.Close()
	if _, err := os.Stat(filepath.Join(s.Dir(), b.Name)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a day-old staging file without its owner file kept: %v", err)
	}
}

// TestOpenBlobRefusesPlantedFiles: whatever someone with write access plants
// in blobs/ under a stored blob's name, OpenBlob opens only a regular file
// the store wrote there: links (inside or outside the store), fifos (without
// waiting for a writer), directories and devices are reported missing.
func TestOpenBlobRefusesPlantedFiles(t *testing.T) {
	outside := writeFile(t, t.TempDir(), "secret", []byte("outside the store"))
	cases := []struct {
		name  string
		plant func(t *testing.T, s *Store, path string, other string)
	}{
		{"symlink to index.json", func(t *testing.T, s *Store, p, _ string) { mustDo(t, os.Symlink("../../index.json", p)) }},
		{"symlink to another blob", func(t *testing.T, s *Store, p, other string) { mustDo(t, os.Symlink(filepath.Base(other), p)) }},
		{"symlink leaving the store", func(t *testing.T, s *Store, p, _ string) { mustDo(t, os.Symlink("../../../../../../../.."+outside, p)) }},
		{"absolute symlink", func(t *testing.T, s *Store, p, _ string) { mustDo(t, os.Symlink(outside, p)) }},
		{"fifo", func(t *testing.T, s *Store, p, _ string) { mustDo(t, unix.Mkfifo(p, 0o644)) }},
		{"directory", func(t *testing.T, s *Store, p, _ string) { mustDo(t, os.Mkdir(p, 0o755)) }},
		{"character device", func(t *testing.T, s *Store, p, _ string) {
			mustDo(t, unix.Mknod(p, unix.S_IFCHR|0o644, int(unix.Mkdev(1, 3))))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := openTestStore(t)
			img := commitImage(t, s, "app:1", randomLayer(t, 4<<10))
			d := img.Manifest.Layers[0].Digest
			p := filepath.Join(s.Dir(), blobPath(d))
			mustDo(t, os.Remove(p))
			tc.plant(t, s, p, filepath.Join(s.Dir(), blobPath(img.Manifest.Config.Digest)))
			f, err := s.OpenBlob(d)
			if err == nil {
				f.Close()
				t.Fatalf("OpenBlob opened a planted %s", tc.name)
			}
			if !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("got %v, want an error wrapping fs.ErrNotExist (the blob is not there)", err)
			}
			// The image is no longer complete: the next load would
			// export or read it again.
			if _, ok, _ := s.Lookup(img.ID, img.Platform); ok {
				t.Errorf("Lookup still finds the image")
			}
		})
	}
}

// TestLockWaitHonoursContext: a load waiting for another's export gives up
// when its context ends.
func TestLockWaitHonoursContext(t *testing.T) {
	s := openTestStore(t)
	id := digest.FromString("x")
	held, err := s.LockImage(t.Context(), id, linuxAMD64)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Unlock()
	ctx, cancel := context.WithCancel(t.Context())
	s.onLockWait = func(string) { cancel() }
	if _, err := s.LockImage(ctx, id, linuxAMD64); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

// CheckWritable is what /readyz asks: can an image be stored now? It leaves
// nothing behind when it can, and says why when it cannot (here: tmp/ is
// not a directory any more; a read-only file system fails the same create).
func TestCheckWritable(t *testing.T) {
	s := openTestStore(t)
	if err := s.CheckWritable(); err != nil {
		t.Fatalf("CheckWritable on a fresh store: %v", err)
	}
	if entries, err := os.ReadDir(filepath.Join(s.Dir(), "tmp")); err != nil || len(entries) != 0 {
		t.Errorf("CheckWritable left %v in tmp/ (%v)", entries, err)
	}
	tmp := filepath.Join(s.Dir(), "tmp")
	if err := os.Remove(tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tmp, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckWritable(); err == nil || !errors.Is(err, syscall.ENOTDIR) {
		t.Errorf("CheckWritable with tmp/ a file: %v, want ENOTDIR", err)
	}
}
