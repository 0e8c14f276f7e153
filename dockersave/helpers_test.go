package dockersave

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/store"
)

const fixturesDir = "../testdata/fixtures"

var linuxAMD64 = ocispec.Platform{OS: "linux", Architecture: "amd64"}

// tarEntry is one entry of an archive built by a test.
type tarEntry struct {
	name string
	typ  byte // tar.TypeReg when zero
	body []byte
	link string
	// pax, when set, is written as a PAX extended header of its own in
	// front of the entry, whose own header is then plain USTAR: records
	// such as "path" or "linkpath" override what the USTAR header says.
	pax map[string]string
	// declared, when set, is the size the entry's header claims; no
	// content follows and the archive ends there (a layout directory gets
	// a sparse file of that size).
	declared int64
}

func buildTar(t testing.TB, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: 0o644, Format: tar.FormatPAX}
		if e.pax != nil {
			if err := tw.Flush(); err != nil {
				t.Fatal(err)
			}
			writePAXHeader(&buf, e.pax)
			h.Format = tar.FormatUSTAR
		}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if e.declared > 0 {
			h.Size = e.declared
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			return buf.Bytes()
		}
		if h.Typeflag == tar.TypeDir {
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("write header %s: %v", e.name, err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// writePAXHeader writes a PAX extended header (type 'x') holding records,
// as a hostile archive would: archive/tar's Writer only emits the records it
// needs for the header that follows, never a contradicting one.
func writePAXHeader(buf *bytes.Buffer, records map[string]string) {
	keys := make([]string, 0, len(records))
	for k := range records {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var body []byte
	for _, k := range keys {
		rec := " " + k + "=" + records[k] + "\n"
		// The length prefix counts itself.
		n := len(rec) + 1
		for len(strconv.Itoa(n))+len(rec) != n {
			n++
		}
		body = append(body, strconv.Itoa(n)+rec...)
	}
	hdr := make([]byte, 512)
	copy(hdr[0:], "PaxHeaders/entry")
	copy(hdr[100:], "0000644\x00")
	copy(hdr[108:], "0000000\x00")
	copy(hdr[116:], "0000000\x00")
	copy(hdr[124:], fmt.Sprintf("%011o\x00", len(body)))
	copy(hdr[136:], "00000000000\x00")
	hdr[156] = tar.TypeXHeader
	copy(hdr[257:], "ustar\x0000")
	copy(hdr[148:], "        ")
	sum := 0
	for _, c := range hdr {
		sum += int(c)
	}
	copy(hdr[148:], fmt.Sprintf("%06o\x00 ", sum))
	buf.Write(hdr)
	buf.Write(body)
	if pad := len(body) % 512; pad != 0 {
		buf.Write(make([]byte, 512-pad))
	}
}

// layerTar builds a filesystem layer holding the given files.
func layerTar(t testing.TB, files map[string]string) []byte {
	t.Helper()
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	var entries []tarEntry
	for _, n := range names {
		entries = append(entries, tarEntry{name: n, body: []byte(files[n])})
	}
	return buildTar(t, entries)
}

// randomLayer is an incompressible layer of about n bytes.
func randomLayer(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return buildTar(t, []tarEntry{{name: "data.bin", body: b}})
}

func gzipBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// zstdEncoder is shared by the tests: making one costs more than
// compressing a small layer, and EncodeAll may be called concurrently.
var zstdEncoder = sync.OnceValues(func() (*zstd.Encoder, error) { return zstd.NewWriter(nil) })

func zstdBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	enc, err := zstdEncoder()
	if err != nil {
		t.Fatal(err)
	}
	return enc.EncodeAll(b, nil)
}

func hexOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// configFor is an image config over uncompressed layers.
func configFor(t testing.TB, p ocispec.Platform, layers ...[]byte) []byte {
	t.Helper()
	img := ocispec.Image{Platform: p, RootFS: ocispec.RootFS{Type: "layers"}}
	for _, l := range layers {
		img.RootFS.DiffIDs = append(img.RootFS.DiffIDs, digest.FromBytes(l))
	}
	return mustJSON(t, img)
}

// legacyArchive is a Docker <= 24 save of one image; when dupSymlink is set
// the last layer repeats the first and is stored as a symlink to it.
func legacyArchive(t testing.TB, tags []string, layers [][]byte, dupSymlink bool) (archive []byte, configHex string) {
	t.Helper()
	all := layers
	if dupSymlink {
		all = append(slices.Clone(layers), layers[0])
	}
	cfg := configFor(t, linuxAMD64, all...)
	configHex = hexOf(cfg)
	var entries []tarEntry
	var paths []string
	for i, l := range all {
		id := hexOf([]byte{byte(i), 'v', '1'})
		entries = append(entries,
			tarEntry{name: id + "/", typ: tar.TypeDir},
			tarEntry{name: id + "/VERSION", body: []byte("1.0")},
			tarEntry{name: id + "/json", body: []byte(`{"id":"` + id + `"}`)})
		if dupSymlink && i == len(all)-1 {
			entries = append(entries, tarEntry{name: id + "/layer.tar", typ: tar.TypeSymlink, link: "../" + strings.TrimSuffix(paths[0], "/layer.tar") + "/layer.tar"})
		} else {
			entries = append(entries, tarEntry{name: id + "/layer.tar", body: l})
		}
		paths = append(paths, id+"/layer.tar")
	}
	entries = append(entries, tarEntry{name: configHex + ".json", body: cfg})
	entries = append(entries, tarEntry{name: "manifest.json", body: mustJSON(t, []map[string]any{{"Config": configHex + ".json", "RepoTags": tags, "Layers": paths}})})
	entries = append(entries, tarEntry{name: "repositories", body: []byte(`{}`)})
	return buildTar(t, entries), configHex
}

func ociManifest(t testing.TB, cfg []byte, layerBlobs [][]byte, mediaTypes []string) []byte {
	t.Helper()
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))},
	}
	for i, b := range layerBlobs {
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: mediaTypes[i], Digest: digest.FromBytes(b), Size: int64(len(b))})
	}
	return mustJSON(t, m)
}

func blobEntry(b []byte) tarEntry { return tarEntry{name: "blobs/sha256/" + hexOf(b), body: b} }

// The store's layout, as tests look into it (see package store).
const (
	blobsDir   = "blobs/sha256"
	stagingDir = "tmp"
	locksDir   = "locks"
	indexFile  = "index.json"
)

// openTestStore opens a store in a fresh directory.
func openTestStore(t testing.TB, opts ...store.Option) *store.Store {
	t.Helper()
	s, err := store.Open(filepath.Join(t.TempDir(), "store"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// storeBlobs lists blobs/sha256 of a store.
func storeBlobs(t testing.TB, s *store.Store) []string {
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

// snapshotTree records every path under dir (relative) except lock files.
func snapshotTree(t testing.TB, dir string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// untarInto extracts a trusted fixture tar into dir (test helper only).
func untarInto(t testing.TB, r io.Reader, dir string) {
	t.Helper()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			os.MkdirAll(p, 0o755)
		case tar.TypeReg:
			os.MkdirAll(filepath.Dir(p), 0o755)
			b, _ := io.ReadAll(tr)
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// loadReleased is Load for a test that needs no pin: it releases the pin
// at once.
func (l *Loader) loadReleased(ctx context.Context, ref string, platform *ocispec.Platform) (Image, error) {
	img, release, err := l.Load(ctx, ref, platform)
	if err != nil {
		return Image{}, err
	}
	release()
	return img, nil
}

// hasBlob reports whether s holds blob d with size bytes (any size if
// size < 0).
func hasBlob(s *store.Store, d digest.Digest, size int64) bool {
	fi, err := os.Lstat(filepath.Join(s.Dir(), blobPath(d)))
	return err == nil && fi.Mode().IsRegular() && (size < 0 || fi.Size() == size)
}

// onImageLockWait returns a store option, and a channel it closes the first
// time the store waits for an image's lock.
func onImageLockWait() (store.Option, <-chan struct{}) {
	waiting := make(chan struct{})
	var once sync.Once
	return store.WithLockWait(func(path string) {
		if strings.Contains(filepath.Base(path), "image-") {
			once.Do(func() { close(waiting) })
		}
	}), waiting
}

// doneContext is a context that has ended: a lock taken under it is taken
// only if it is free.
func doneContext() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func digestOfBytes(b []byte) digest.Digest { return digest.FromBytes(b) }
