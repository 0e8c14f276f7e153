package dockersave

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/store"
)

// loadIsolated loads data from a file inside a fresh sandbox directory that
// also holds the store, and checks that the failed load left nothing new
// anywhere in the sandbox: no file outside the store, no blob in blobs/, no
// staging file.
func loadIsolated(t *testing.T, kind SourceKind, data []byte, p *ocispec.Platform) error {
	t.Helper()
	sandbox := t.TempDir()
	s, err := store.Open(filepath.Join(sandbox, "cache", "store"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	archivePath := writeFile(t, sandbox, "image.tar", data)
	before := snapshotTree(t, sandbox)
	_, loadErr := NewLoader(s, WithHostPlatform(linuxAMD64)).loadReleased(t.Context(), string(kind)+":"+archivePath, p)
	after := snapshotTree(t, sandbox)
	for path := range after {
		if before[path] {
			continue
		}
		inStore := strings.HasPrefix(path, filepath.Join("cache", "store")+string(filepath.Separator))
		if inStore && (loadErr == nil || strings.HasPrefix(path, filepath.Join("cache", "store", locksDir))) {
			continue
		}
		t.Errorf("new path after load (error %v): %s", loadErr, path)
	}
	if loadErr != nil {
		if blobs := storeBlobs(t, s); len(blobs) != 0 {
			t.Errorf("blobs visible after a failed load: %v", blobs)
		}
		if images, _ := s.Images(); len(images) != 0 {
			t.Errorf("index has %d images after a failed load", len(images))
		}
	}
	return loadErr
}

func wantArchiveErr(t *testing.T, err, sentinel error, entry string) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("got %v, want %v", err, sentinel)
	}
	var ae *ArchiveError
	if !errors.As(err, &ae) {
		t.Fatalf("%v is not an *ArchiveError", err)
	}
	if !strings.HasPrefix(ae.Image, "docker-archive:") && !strings.HasPrefix(ae.Image, "oci-archive:") {
		t.Errorf("error names image %q", ae.Image)
	}
	if entry != "" && ae.Entry != entry {
		t.Errorf("error names entry %q, want %q", ae.Entry, entry)
	}
}

// validLegacyEntries is a well-formed legacy archive as entries, so a test
// can add, drop or replace one.
func validLegacyEntries(t *testing.T) (entries []tarEntry, layerPath string) {
	t.Helper()
	layer := layerTar(t, map[string]string{"f": "x"})
	cfg := configFor(t, linuxAMD64, layer)
	id := hexOf([]byte("layer-id"))
	layerPath = id + "/layer.tar"
	return []tarEntry{
		{name: id + "/", typ: tar.TypeDir},
		{name: layerPath, body: layer},
		{name: hexOf(cfg) + ".json", body: cfg},
		{name: "manifest.json", body: mustJSON(t, []map[string]any{{"Config": hexOf(cfg) + ".json", "Layers": []string{layerPath}}})},
	}, layerPath
}

func TestHostileArchives(t *testing.T) {
	hexA, hexB := hexOf([]byte("a")), hexOf([]byte("b"))
	cases := []struct {
		name     string
		extra    []tarEntry // added before the valid entries
		sentinel error
		entry    string
	}{
		{"dotdot name", []tarEntry{{name: "../evil", body: []byte("x")}}, ErrUnsafeEntry, "../evil"},
		{"nested dotdot name", []tarEntry{{name: "blobs/../../evil", body: []byte("x")}}, ErrUnsafeEntry, "blobs/../../evil"},
		{"absolute name", []tarEntry{{name: "/tmp/evil", body: []byte("x")}}, ErrUnsafeEntry, "/tmp/evil"},
		{"backslash name", []tarEntry{{name: `..\evil`, body: []byte("x")}}, ErrUnsafeEntry, `..\evil`},
		{"unknown name", []tarEntry{{name: "etc/passwd", body: []byte("x")}}, ErrUnexpectedEntry, "etc/passwd"},
		{"symlink escape", []tarEntry{{name: hexA + "/layer.tar", typ: tar.TypeSymlink, link: "../../../etc/passwd"}}, ErrUnsafeEntry, hexA + "/layer.tar"},
		{"absolute symlink", []tarEntry{{name: hexA + "/layer.tar", typ: tar.TypeSymlink, link: "/etc/passwd"}}, ErrUnsafeEntry, hexA + "/layer.tar"},
		{"hardlink escape", []tarEntry{{name: hexA + "/layer.tar", typ: tar.TypeLink, link: "../etc/passwd"}}, ErrUnsafeEntry, hexA + "/layer.tar"},
		{"hardlink to nowhere", []tarEntry{{name: hexA + "/layer.tar", typ: tar.TypeLink, link: hexB + "/layer.tar"}}, ErrDanglingLink, hexA + "/layer.tar"},
		{"dangling symlink", []tarEntry{{name: hexA + "/layer.tar", typ: tar.TypeSymlink, link: "../" + hexB + "/layer.tar"}}, ErrDanglingLink, hexA + "/layer.tar"},
		{"link cycle", []tarEntry{
			{name: hexA + "/layer.tar", typ: tar.TypeSymlink, link: "../" + hexB + "/layer.tar"},
			{name: hexB + "/layer.tar", typ: tar.TypeSymlink, link: "../" + hexA + "/layer.tar"},
		}, ErrLinkCycle, ""},
		{"self link", []tarEntry{{name: hexA + "/layer.tar", typ: tar.TypeSymlink, link: "layer.tar"}}, ErrLinkCycle, hexA + "/layer.tar"},
		{"char device", []tarEntry{{name: hexA + "/layer.tar", typ: tar.TypeChar}}, ErrUnsafeEntry, hexA + "/layer.tar"},
		{"block device", []tarEntry{{name: "blobs/sha256/" + hexA, typ: tar.TypeBlock}}, ErrUnsafeEntry, "blobs/sha256/" + hexA},
		{"fifo", []tarEntry{{name: hexA + "/layer.tar", typ: tar.TypeFifo}}, ErrUnsafeEntry, hexA + "/layer.tar"},
		{"blob named for another digest", []tarEntry{{name: "blobs/sha256/" + hexA, body: []byte("b")}}, ErrDigestMismatch, "blobs/sha256/" + hexA},
		{"config named for another digest", []tarEntry{{name: hexA + ".json", body: []byte("{}")}}, ErrDigestMismatch, hexA + ".json"},
		{"metadata as symlink", []tarEntry{{name: "index.json", typ: tar.TypeSymlink, link: "manifest.json"}}, ErrUnexpectedEntry, "index.json"},
		{"oversized json", []tarEntry{{name: "repositories", body: bytes.Repeat([]byte(" "), maxMetadataSize+1)}}, ErrTooLarge, "repositories"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			valid, _ := validLegacyEntries(t)
			err := loadIsolated(t, SourceDockerArchive, buildTar(t, append(tc.extra, valid...)), nil)
			wantArchiveErr(t, err, tc.sentinel, tc.entry)
		})
	}
}

func TestHostileManifests(t *testing.T) {
	layer := layerTar(t, map[string]string{"f": "x"})
	other := layerTar(t, map[string]string{"g": "y"})
	id := hexOf([]byte("layer-id"))
	manifest := func(cfg string, layers ...string) tarEntry {
		return tarEntry{name: "manifest.json", body: mustJSON(t, []map[string]any{{"Config": cfg, "Layers": layers}})}
	}
	goodCfg := configFor(t, linuxAMD64, layer)
	wrongCfg := configFor(t, linuxAMD64, other)
	twoCfg := configFor(t, linuxAMD64, layer, layer)
	cases := []struct {
		name     string
		entries  []tarEntry
		sentinel error
		entry    string
	}{
		{"diff id mismatch", []tarEntry{{name: id + "/layer.tar", body: layer}, {name: hexOf(wrongCfg) + ".json", body: wrongCfg}, manifest(hexOf(wrongCfg)+".json", id+"/layer.tar")}, ErrDiffIDMismatch, id + "/layer.tar"},
		{"layer count mismatch", []tarEntry{{name: id + "/layer.tar", body: layer}, {name: hexOf(twoCfg) + ".json", body: twoCfg}, manifest(hexOf(twoCfg)+".json", id+"/layer.tar")}, ErrLayerCount, hexOf(twoCfg) + ".json"},
		{"manifest names absent layer", []tarEntry{{name: hexOf(goodCfg) + ".json", body: goodCfg}, manifest(hexOf(goodCfg)+".json", id+"/layer.tar")}, ErrMissingBlob, id + "/layer.tar"},
		{"manifest names absent config", []tarEntry{{name: id + "/layer.tar", body: layer}, manifest(hexOf(goodCfg)+".json", id+"/layer.tar")}, ErrMissingBlob, hexOf(goodCfg) + ".json"},
		{"manifest path escapes", []tarEntry{{name: id + "/layer.tar", body: layer}, {name: hexOf(goodCfg) + ".json", body: goodCfg}, manifest("../../etc/passwd", id+"/layer.tar")}, ErrUnsafeEntry, "../../etc/passwd"},
		{"malformed manifest.json", []tarEntry{{name: id + "/layer.tar", body: layer}, {name: "manifest.json", body: []byte(`[{"Config":`)}}, ErrMalformedJSON, "manifest.json"},
		{"malformed config", []tarEntry{{name: id + "/layer.tar", body: layer}, {name: hexOf([]byte("{oops")) + ".json", body: []byte("{oops")}, manifest(hexOf([]byte("{oops"))+".json", id+"/layer.tar")}, ErrMalformedJSON, hexOf([]byte("{oops")) + ".json"},
		{"duplicate entry", []tarEntry{{name: id + "/layer.tar", body: layer}, {name: id + "/layer.tar", body: layer}}, ErrDuplicateEntry, id + "/layer.tar"},
		{"no manifest at all", []tarEntry{{name: id + "/layer.tar", body: layer}}, ErrNoImage, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := loadIsolated(t, SourceDockerArchive, buildTar(t, tc.entries), nil)
			wantArchiveErr(t, err, tc.sentinel, tc.entry)
		})
	}
}

// TestHostileOCIIndex covers manifests reached through index.json.
func TestHostileOCIIndex(t *testing.T) {
	layer := layerTar(t, map[string]string{"f": "x"})
	cfg := configFor(t, linuxAMD64, layer)
	man := ociManifest(t, cfg, [][]byte{layer}, []string{ocispec.MediaTypeImageLayer})
	index := func(d ocispec.Descriptor) tarEntry {
		return tarEntry{name: "index.json", body: mustJSON(t, ocispec.Index{Manifests: []ocispec.Descriptor{d}})}
	}
	good := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(man), Size: int64(len(man))}
	wrongSize := good
	wrongSize.Size++
	cases := []struct {
		name     string
		entries  []tarEntry
		sentinel error
	}{
		{"manifest names absent layer", []tarEntry{blobEntry(cfg), blobEntry(man), index(good)}, ErrMissingBlob},
		{"manifest size differs from descriptor", []tarEntry{blobEntry(layer), blobEntry(cfg), blobEntry(man), index(wrongSize)}, ErrSizeMismatch},
		{"malformed index", []tarEntry{blobEntry(layer), {name: "index.json", body: []byte("{")}}, ErrMalformedJSON},
		{"only absent manifests", []tarEntry{index(good)}, ErrNoImage},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := loadIsolated(t, SourceOCIArchive, buildTar(t, tc.entries), nil)
			wantArchiveErr(t, err, tc.sentinel, "")
		})
	}
}

// TestTruncatedArchives cuts a valid archive at several points.
func TestTruncatedArchives(t *testing.T) {
	valid, _ := validLegacyEntries(t)
	data := buildTar(t, valid)
	cases := map[string]int{
		"inside a header":               700,
		"inside layer data":             512 + 512 + 512 + 100,
		"without end-of-archive":        len(data) - 1024,
		"with one end-of-archive block": len(data) - 512,
	}
	for name, n := range cases {
		t.Run(name, func(t *testing.T) {
			err := loadIsolated(t, SourceDockerArchive, data[:n], nil)
			wantArchiveErr(t, err, ErrTruncated, "")
		})
	}
	t.Run("zero padding after end is fine", func(t *testing.T) {
		padded := append(slices.Clone(data), make([]byte, 10240)...)
		if err := loadIsolated(t, SourceDockerArchive, padded, nil); err != nil {
			t.Fatal(err)
		}
	})
}

const daemonErrJSON = `{"errorDetail":{"message":"write /var/lib/docker/tmp/docker-export-1/layer.tar: no space left on device"},"error":"write /var/lib/docker/tmp/docker-export-1/layer.tar: no space left on device"}` + "\r\n"

// TestTrailingDaemonError: the daemon appends its error JSON after (or in
// the middle of) the tar once it has started streaming.
func TestTrailingDaemonError(t *testing.T) {
	valid, _ := validLegacyEntries(t)
	data := buildTar(t, valid)
	for name, stream := range map[string][]byte{
		"after the archive":   append(slices.Clone(data), daemonErrJSON...),
		"inside an entry":     append(slices.Clone(data[:512*3+100]), daemonErrJSON...),
		"instead of a header": append(slices.Clone(data[:512*2]), daemonErrJSON...),
	} {
		t.Run(name, func(t *testing.T) {
			err := loadIsolated(t, SourceDockerArchive, stream, nil)
			var de *DaemonError
			if !errors.As(err, &de) || !strings.Contains(de.Message, "no space left on device") {
				t.Fatalf("got %v, want a *DaemonError with the daemon's message", err)
			}
			if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrTrailingData) {
				t.Fatalf("got %v, want ErrTruncated or ErrTrailingData", err)
			}
		})
	}
	t.Run("other trailing data", func(t *testing.T) {
		err := loadIsolated(t, SourceDockerArchive, append(slices.Clone(data), "garbage"...), nil)
		wantArchiveErr(t, err, ErrTrailingData, "")
	})
}

// TestFailedLoadKeepsExistingImages: a hostile archive sharing blobs with a
// stored image changes nothing that was there.
func TestFailedLoadKeepsExistingImages(t *testing.T) {
	valid, _ := validLegacyEntries(t)
	s := openTestStore(t)
	img, err := loadBytes(t, s, SourceDockerArchive, buildTar(t, valid), nil)
	if err != nil {
		t.Fatal(err)
	}
	blobsBefore := storeBlobs(t, s)
	index, _ := os.ReadFile(filepath.Join(s.Dir(), indexFile))
	bad := slices.Clone(valid)
	bad = append(bad[:1], append([]tarEntry{{name: "blobs/sha256/" + hexOf([]byte("x")), body: []byte("y")}}, bad[1:]...)...)
	if _, err := loadBytes(t, s, SourceDockerArchive, buildTar(t, bad), nil); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("got %v", err)
	}
	if !slices.Equal(storeBlobs(t, s), blobsBefore) {
		t.Error("blobs changed")
	}
	if after, _ := os.ReadFile(filepath.Join(s.Dir(), indexFile)); !bytes.Equal(after, index) {
		t.Error("index.json changed")
	}
	checkImage(t, s, img)
}

// TestNotAnArchive: bytes that are no tar at all (plain or compressed), and
// a directory named as an archive, are ErrNotArchive, not a truncated
// archive; a directory that is no OCI image layout is ErrNotLayout naming
// the missing file.
func TestNotAnArchive(t *testing.T) {
	noise := bytes.Repeat([]byte("not a tar archive, just text\n"), 100)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(noise)
	zw.Close()
	for name, data := range map[string][]byte{"text": noise, "gzip-compressed text": gz.Bytes(), "a few bytes": []byte("hello\n")} {
		t.Run(name, func(t *testing.T) {
			for _, kind := range []SourceKind{SourceDockerArchive, SourceOCIArchive} {
				err := loadIsolated(t, kind, data, nil)
				wantArchiveErr(t, err, ErrNotArchive, "")
				if errors.Is(err, ErrTruncated) {
					t.Errorf("%v is also ErrTruncated", err)
				}
			}
		})
	}
	l := NewLoader(openTestStore(t), WithHostPlatform(linuxAMD64))
	dir := t.TempDir()
	if _, err := l.loadReleased(t.Context(), "docker-archive:"+dir, nil); !errors.Is(err, ErrNotArchive) || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("a directory as docker-archive: got %v, want ErrNotArchive saying it is a directory", err)
	}
	for file, missing := range map[string]string{"": "oci-layout", "oci-layout": "index.json"} {
		dir := t.TempDir()
		if file != "" {
			writeFile(t, dir, file, []byte(`{"imageLayoutVersion":"1.0.0"}`))
		}
		_, err := l.loadReleased(t.Context(), "oci:"+dir, nil)
		if !errors.Is(err, ErrNotLayout) || !strings.Contains(err.Error(), "has no "+missing+" file") {
			t.Errorf("oci: directory without %s: got %v, want ErrNotLayout naming it", missing, err)
		}
	}
}
