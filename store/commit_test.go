package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/internal/fulldisk"
)

// TestFailedCommitLeavesNothing: a Commit that fails after publishing
// (index.json or the manifest cannot be written: a full disk, a read-only
// store root) removes the blobs it published, keeps the blob it shares with
// an image already stored, and leaves the store as it was: same blobs, same
// size, same records.
func TestFailedCommitLeavesNothing(t *testing.T) {
	cases := []struct {
		name           string
		fail           func(rec Record) string // the store-relative file whose write fails
		manifestStaged bool
	}{
		{"index.json", func(Record) string { return indexFile }, false},
		{"index.json, manifest staged", func(Record) string { return indexFile }, true},
		{"manifest", func(rec Record) string { return blobPath(rec.ManifestDigest) }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := openTestStore(t)
			base := randomLayer(t, 16<<10)
			a := commitImage(t, s, "a:1", base, randomLayer(t, 4<<10))
			blobsBefore, sizeBefore := storeBlobs(t, s), mustSize(t, s)
			indexBefore, err := os.ReadFile(filepath.Join(s.Dir(), indexFile))
			if err != nil {
				t.Fatal(err)
			}

			rec, mb, blobs := stageImage(t, s, "b:1", base, randomLayer(t, 8<<10))
			if tc.manifestStaged {
				blobs = append(blobs, stage(t, s, mb))
			}
			failing := tc.fail(rec)
			s.beforeReplace = func(name string) error {
				if name == failing {
					return syscall.ENOSPC
				}
				return nil
			}
			pin, err := s.Commit(t.Context(), rec, mb, blobs, nil)
			if !errors.Is(err, syscall.ENOSPC) {
				pin.Release()
				t.Fatalf("Commit = %v, want the write's ENOSPC", err)
			}
			t.Log(err)

			if got := storeBlobs(t, s); !slices.Equal(got, blobsBefore) {
				t.Errorf("blobs after the failed commit: %v, before: %v", got, blobsBefore)
			}
			if got := mustSize(t, s); got != sizeBefore {
				t.Errorf("size after the failed commit %d, before %d", got, sizeBefore)
			}
			if got, _ := os.ReadFile(filepath.Join(s.Dir(), indexFile)); string(got) != string(indexBefore) {
				t.Errorf("index.json changed:\n%s\nwas:\n%s", got, indexBefore)
			}
			checkStored(t, s, a)
			if _, ok, _ := s.Lookup(rec.ID, rec.Platform); ok {
				t.Error("the failed image is found")
			}
			if left, _ := filepath.Glob(filepath.Join(s.Dir(), "*", ".*.tmp-*")); len(left) != 0 {
				t.Errorf("temp files left: %v", left)
			}

			// The store works on: the same image commits once the write
			// succeeds.
			s.beforeReplace = nil
			rec, mb, blobs = stageImage(t, s, "b:1", base, randomLayer(t, 8<<10))
			pin, err = s.Commit(t.Context(), rec, mb, blobs, nil)
			if err != nil {
				t.Fatal(err)
			}
			pin.Release()
			checkStored(t, s, rec)
			checkStored(t, s, a)
		})
	}
}

// TestFailedCommitCollectsOrphans: after a failure, a Commit also removes
// the blobs an earlier crash left unreferenced.
func TestFailedCommitCollectsOrphans(t *testing.T) {
	s := openTestStore(t)
	a := commitImage(t, s, "a:1", randomLayer(t, 4<<10))
	blobsBefore := storeBlobs(t, s)
	crashedCommit(t, s, "crashed:1")
	if len(storeBlobs(t, s)) == len(blobsBefore) {
		t.Fatal("the crashed commit left nothing to collect")
	}
	rec, mb, blobs := stageImage(t, s, "b:1", randomLayer(t, 4<<10))
	s.beforeReplace = func(name string) error {
		if name == indexFile {
			return syscall.EROFS
		}
		return nil
	}
	if _, err := s.Commit(t.Context(), rec, mb, blobs, nil); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("Commit = %v, want EROFS", err)
	}
	if got := storeBlobs(t, s); !slices.Equal(got, blobsBefore) {
		t.Errorf("blobs after the failed commit: %v, want those of a:1 only: %v", got, blobsBefore)
	}
	checkStored(t, s, a)
}

// crashedCommit leaves in s what a process killed in Commit between
// publishing an image's blobs and writing index.json leaves: the blobs and
// the manifest in blobs/, no record.
func crashedCommit(t *testing.T, s *Store, tag string) Record {
	t.Helper()
	rec, mb, blobs := stageImage(t, s, tag, randomLayer(t, 8<<10), randomLayer(t, 4<<10))
	blobs = append(blobs, stage(t, s, mb))
	l, err := s.lock(t.Context(), indexLock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.unlock()
	for _, b := range blobs {
		if _, err := s.publish(b); err != nil {
			t.Fatal(err)
		}
	}
	return rec
}

// TestOpenCollectsOrphans: blobs no record references (a crash between
// publishing and writing index.json) are removed by the next Open, unless
// another holds the index lock then (Open does not wait for it). Blobs that
// records written by other tools reference stay.
func TestOpenCollectsOrphans(t *testing.T) {
	s := openTestStore(t)
	a := commitImage(t, s, "a:1", randomLayer(t, 4<<10))
	foreign := addForeignRecord(t, s)
	blobsBefore, sizeBefore := storeBlobs(t, s), mustSize(t, s)
	crashed := crashedCommit(t, s, "crashed:1")
	if got := mustSize(t, s); got <= sizeBefore {
		t.Fatalf("size %d after the crashed commit, %d before", got, sizeBefore)
	}

	// A Commit or Prune in progress elsewhere: Open leaves the blobs.
	held, err := s.lock(t.Context(), indexLock)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := Open(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
	held.unlock()
	if !s.hasBlob(crashed.ManifestDigest, -1) {
		t.Fatal("Open collected blobs while the index lock was held")
	}

	s3, err := Open(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	s3.Close()
	if got := storeBlobs(t, s); !slices.Equal(got, blobsBefore) {
		t.Errorf("blobs after Open: %v, want %v", got, blobsBefore)
	}
	if got := mustSize(t, s); got != sizeBefore {
		t.Errorf("size after Open %d, before the crash %d", got, sizeBefore)
	}
	checkStored(t, s, a)
	for _, d := range foreign {
		if !s.hasBlob(d, -1) {
			t.Errorf("blob %s of another tool's record removed", d)
		}
	}
}

// addForeignRecord stores an image the way another tool writing the OCI
// layout would (no layerbridge annotations) and returns its blobs.
func addForeignRecord(t *testing.T, s *Store) []digest.Digest {
	t.Helper()
	layer, cfg := randomLayer(t, 4<<10), []byte(`{"architecture":"amd64","os":"linux"}`)
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))},
		Layers:    []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromBytes(layer), Size: int64(len(layer))}},
	}
	mb := mustJSON(t, m)
	for _, b := range [][]byte{layer, cfg, mb} {
		writeFile(t, filepath.Join(s.Dir(), blobsDir), hexOf(b), b)
	}
	mustDo(t, s.updateIndex(t.Context(), func(idx *ocispec.Index) {
		idx.Manifests = append(idx.Manifests, ocispec.Descriptor{
			MediaType:   ocispec.MediaTypeImageManifest,
			Digest:      digest.FromBytes(mb),
			Size:        int64(len(mb)),
			Annotations: map[string]string{ocispec.AnnotationRefName: "other-tool"},
		})
	}))
	return []digest.Digest{digest.FromBytes(layer), digest.FromBytes(cfg), digest.FromBytes(mb)}
}

const crashHelperEnv = "LAYERBRIDGE_TEST_COMMIT_CRASH"

// TestCommitCrashHelper is not a test: TestCommitKilledBeforeIndex runs the
// test binary again with it, to commit an image into the store its
// environment names and stop just before index.json is written, blobs
// published, until it is killed.
func TestCommitCrashHelper(t *testing.T) {
	dir := os.Getenv(crashHelperEnv)
	if dir == "" {
		t.Skip("helper process for TestCommitKilledBeforeIndex")
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.beforeReplace = func(name string) error {
		if name != indexFile {
			return nil
		}
		fmt.Println("published")
		io.Copy(io.Discard, os.Stdin) // until killed
		return errors.New("not killed")
	}
	rec, mb, blobs := stageImage(t, s, "crashed:1", randomLayer(t, 64<<10), randomLayer(t, 8<<10))
	_, err = s.Commit(t.Context(), rec, mb, blobs, nil)
	t.Fatalf("the commit was meant to be killed, it ended: %v", err)
}

// TestCommitKilledBeforeIndex kills (SIGKILL) a process in Commit between
// publishing its blobs and writing index.json: its blobs are visible and
// counted then, and the next Open removes them, leaving the store as it was.
func TestCommitKilledBeforeIndex(t *testing.T) {
	s := openTestStore(t)
	a := commitImage(t, s, "a:1", randomLayer(t, 4<<10))
	blobsBefore, sizeBefore := storeBlobs(t, s), mustSize(t, s)

	h := startHelper(t, "TestCommitCrashHelper", crashHelperEnv+"="+s.Dir())
	if got := h.line(t); got != "published" {
		t.Fatalf("helper said %q", got)
	}
	if got := mustSize(t, s); got <= sizeBefore {
		t.Fatalf("size %d with the helper's blobs published, %d before", got, sizeBefore)
	}
	h.kill(t)

	s2, err := Open(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
	if got := storeBlobs(t, s); !slices.Equal(got, blobsBefore) {
		t.Errorf("blobs after Open: %v, want %v", got, blobsBefore)
	}
	if got := mustSize(t, s); got != sizeBefore {
		t.Errorf("size after Open %d, before the crash %d", got, sizeBefore)
	}
	checkStored(t, s, a)
	if images, err := s.Images(); err != nil || len(images) != 1 {
		t.Errorf("images %v, %v; want a:1 only", images, err)
	}
}

// TestCommitDiskFullHelper is not a test: TestCommitDiskFull runs the test
// binary again with it (fulldisk.Run), where it mounts a small tmpfs, fills
// it once an image is staged, and commits the image.
func TestCommitDiskFullHelper(t *testing.T) {
	dir := fulldisk.Dir(t, "1m")
	s, err := Open(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := randomLayer(t, 64<<10)
	a := commitImage(t, s, "a:1", base, randomLayer(t, 16<<10))
	blobsBefore, sizeBefore := storeBlobs(t, s), mustSize(t, s)

	rec, mb, blobs := stageImage(t, s, "b:1", base, randomLayer(t, 256<<10))
	// As a load does, the layer already stored is staged as a link (a
	// copy would be freed by Commit, making room), and the manifest is
	// staged too: index.json is the first write that needs space.
	for i, b := range blobs {
		if b.Digest == digest.FromBytes(base) {
			s.RemoveStaging(b.Name)
			if blobs[i].Name = s.LinkStaging(b.Digest, b.Size); blobs[i].Name == "" {
				t.Fatal("no link to the stored base layer")
			}
		}
	}
	blobs = append(blobs, stage(t, s, mb))
	filler, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	for chunk := make([]byte, 4<<10); err == nil; {
		_, err = filler.Write(chunk)
	}
	filler.Close()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the disk: %v", err)
	}

	_, err = s.Commit(t.Context(), rec, mb, blobs, nil)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Commit on a full disk = %v, want ENOSPC", err)
	}
	fmt.Println(err)
	if got := storeBlobs(t, s); !slices.Equal(got, blobsBefore) {
		t.Errorf("blobs after the failed commit: %v, before: %v", got, blobsBefore)
	}
	if got := mustSize(t, s); got != sizeBefore {
		t.Errorf("size after the failed commit %d, before %d", got, sizeBefore)
	}
	checkStored(t, s, a)

	mustDo(t, os.Remove(filepath.Join(dir, "filler")))
	rec, mb, blobs = stageImage(t, s, "b:1", base, randomLayer(t, 256<<10))
	pin, err := s.Commit(t.Context(), rec, mb, blobs, nil)
	if err != nil {
		t.Fatalf("a commit once there is space: %v", err)
	}
	pin.Release()
	checkStored(t, s, rec)
}

// TestCommitDiskFull fails a Commit on a full disk (a tmpfs of its own,
// see fulldisk): index.json cannot be written once the blobs are published,
// and the store is left as it was.
func TestCommitDiskFull(t *testing.T) {
	fulldisk.Run(t, "TestCommitDiskFullHelper")
}
