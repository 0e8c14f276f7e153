package store

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/internal/testwait"
)

var linuxAMD64 = ocispec.Platform{OS: "linux", Architecture: "amd64"}

// openTestStore opens a store in a fresh directory.
func openTestStore(t testing.TB, opts ...Option) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "store"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// tickingClock makes s mark uses at distinct, increasing times, so usage
// order does not depend on the filesystem's timestamp granularity.
func tickingClock(s *Store) {
	var n atomic.Int64
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return start.Add(time.Duration(n.Add(1)) * time.Second) }
}

func randomLayer(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func hexOf(b []byte) string { return digest.FromBytes(b).Encoded() }

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// stage writes b to a new staging file of s, as a load does.
func stage(t testing.TB, s *Store, b []byte) Staged {
	t.Helper()
	f, name, err := s.CreateStaging()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return Staged{Digest: digest.FromBytes(b), Size: int64(len(b)), Name: name}
}

// commitImage stores a linux/amd64 image of the given layers (uncompressed:
// each is its own diff ID), tagged tag, as a loader does: every blob staged,
// then committed. The image is left unpinned.
func commitImage(t testing.TB, s *Store, tag string, layers ...[]byte) Record {
	t.Helper()
	rec, mb, blobs := stageImage(t, s, tag, layers...)
	pin, err := s.Commit(context.Background(), rec, mb, blobs, nil)
	if err != nil {
		t.Fatal(err)
	}
	pin.Release()
	return rec
}

// stageImage stages an image as commitImage does, without committing it:
// its record, manifest and staged blobs (the manifest is not among them).
func stageImage(t testing.TB, s *Store, tag string, layers ...[]byte) (Record, []byte, []Staged) {
	t.Helper()
	diffIDs := make([]digest.Digest, len(layers))
	for i, l := range layers {
		diffIDs[i] = digest.FromBytes(l)
	}
	cfg := mustJSON(t, ocispec.Image{Platform: linuxAMD64, RootFS: ocispec.RootFS{Type: "layers", DiffIDs: diffIDs}})
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))},
	}
	blobs := []Staged{stage(t, s, cfg)}
	for _, l := range layers {
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromBytes(l), Size: int64(len(l))})
		blobs = append(blobs, stage(t, s, l))
	}
	mb := mustJSON(t, m)
	rec := Record{
		Ref:            tag,
		Source:         "test",
		ID:             m.Config.Digest,
		Platform:       linuxAMD64,
		RepoTags:       []string{tag},
		ManifestDigest: digest.FromBytes(mb),
		ManifestSize:   int64(len(mb)),
		Manifest:       m,
		DiffIDs:        diffIDs,
	}
	return rec, mb, blobs
}

// recordBlobs are the descriptors of every blob an image needs.
func recordBlobs(rec Record) []ocispec.Descriptor {
	return append([]ocispec.Descriptor{rec.ManifestDescriptor(), rec.Manifest.Config}, rec.Manifest.Layers...)
}

// checkStored fails unless every blob of rec is in s with its digest and
// size, and Lookup finds rec.
func checkStored(t *testing.T, s *Store, rec Record) {
	t.Helper()
	for _, d := range recordBlobs(rec) {
		f, err := s.OpenBlob(d.Digest)
		if err != nil {
			t.Fatalf("open blob %s: %v", d.Digest, err)
		}
		b, err := io.ReadAll(f)
		f.Close()
		if err != nil || digest.FromBytes(b) != d.Digest || int64(len(b)) != d.Size {
			t.Fatalf("blob %s: content is %s, %d bytes; descriptor says %d bytes (%v)", d.Digest, digest.FromBytes(b), len(b), d.Size, err)
		}
	}
	got, ok, err := s.Lookup(rec.ID, rec.Platform)
	if err != nil || !ok || got.ManifestDigest != rec.ManifestDigest || !slices.Equal(got.DiffIDs, rec.DiffIDs) {
		t.Fatalf("Lookup = %v, %v, %v; want manifest %s", got.ManifestDigest, ok, err, rec.ManifestDigest)
	}
}

// storeBlobs lists blobs/sha256 of a store.
func storeBlobs(t testing.TB, s *Store) []string {
	t.Helper()
	var out []string
	entries, err := os.ReadDir(filepath.Join(s.Dir(), blobsDir))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// pin pins rec in s and returns the pin's release.
func pin(ctx context.Context, s *Store, rec Record) (func(), error) {
	p, err := s.Pin(ctx, rec)
	if err != nil {
		return nil, err
	}
	return p.Release, nil
}

// helperProcess is the test binary run again to run one helper test (a
// Test...Helper that skips unless its environment variable is set), as
// another process using the same store would.
type helperProcess struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

// startHelper starts helper test name with env (NAME=value) added. It is
// killed at the test's wait bound, and when the test ends.
func startHelper(t *testing.T, name, env string) *helperProcess {
	t.Helper()
	cmd := exec.CommandContext(testwait.Context(t), os.Args[0], "-test.run=^"+name+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return &helperProcess{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
}

// line reads the helper's next line of output, without its newline. The
// read ends with the helper (killed at the test's bound at the latest).
func (h *helperProcess) line(t *testing.T) string {
	t.Helper()
	line, err := h.out.ReadString('\n')
	if err != nil {
		t.Fatalf("helper said %q, then %v", line, err)
	}
	return line[:len(line)-1]
}

// kill ends the helper with SIGKILL, as kill -9 does, and waits for it.
func (h *helperProcess) kill(t *testing.T) {
	t.Helper()
	if err := h.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, h.out)
	if err := h.cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("helper: %v, want killed", err)
	}
}

// finish closes the helper's stdin, which tells it to end, and waits for
// it to exit successfully.
func (h *helperProcess) finish(t *testing.T) {
	t.Helper()
	h.stdin.Close()
	go io.Copy(io.Discard, h.out)
	if err := h.cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
}
