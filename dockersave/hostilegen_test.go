package dockersave

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/layerbridge/layerbridge/store"
)

// This file is the hostile-archive generator: every archive format
// dockersave reads, built from one description of an image (genImage), and
// a table of attacks applied to each. Every load happens in a sandbox that
// checks nothing appeared or changed outside the store, and that a failed
// load left no blob, record or staging file behind.

// genImage is the image a format lays out.
type genImage struct {
	layers [][]byte // uncompressed layer tars, oldest first
	// diffIDs are the config's rootfs.diff_ids; nil: those of layers.
	diffIDs []digest.Digest
	// layerSize, when set, is written as the size of every layer
	// descriptor of the OCI manifest the format stores (formats that
	// have none, or whose manifest is replaced by a synthesized one,
	// ignore it).
	layerSize *int64
}

func (g genImage) config(t testing.TB) []byte {
	ids := g.diffIDs
	if ids == nil {
		for _, l := range g.layers {
			ids = append(ids, digest.FromBytes(l))
		}
	}
	return mustJSON(t, ocispec.Image{Platform: linuxAMD64, RootFS: ocispec.RootFS{Type: "layers", DiffIDs: ids}})
}

// manifest is an OCI image manifest over cfg and the stored layer blobs.
func (g genImage) manifest(t testing.TB, cfg []byte, blobs [][]byte, mediaType string) []byte {
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))},
	}
	for _, b := range blobs {
		size := int64(len(b))
		if g.layerSize != nil {
			size = *g.layerSize
		}
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: size})
	}
	return mustJSON(t, m)
}

// genArchive is what a format built: its entries, and which of them hold
// the first layer, the config and the top-level metadata file.
type genArchive struct {
	entries []tarEntry
	layer   string // the first layer's blob (a regular file)
	config  string
	meta    string // manifest.json or index.json: what the reader starts from
}

func (a *genArchive) index(name string) int {
	return slices.IndexFunc(a.entries, func(e tarEntry) bool { return e.name == name })
}

func (a *genArchive) entry(t testing.TB, name string) *tarEntry {
	t.Helper()
	i := a.index(name)
	if i < 0 {
		t.Fatalf("generator: no entry %q", name)
	}
	return &a.entries[i]
}

// replace puts e in the place of the entry called name.
func (a *genArchive) replace(t testing.TB, name string, e tarEntry) {
	t.Helper()
	*a.entry(t, name) = e
}

// remove drops the entry called name and every symbolic link to it.
func (a *genArchive) remove(name string) {
	a.entries = slices.DeleteFunc(a.entries, func(e tarEntry) bool {
		return e.name == name || (e.typ == tar.TypeSymlink && path.Join(path.Dir(e.name), e.link) == name)
	})
}

// relLink is the symbolic link text that leads from entry from to to.
func relLink(t testing.TB, from, to string) string {
	t.Helper()
	rel, err := filepath.Rel(path.Dir(from), to)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.ToSlash(rel)
}

// archiveFormat is one way an image archive is laid out.
type archiveFormat struct {
	name string
	kind SourceKind
	// dir: an oci: layout directory, not a tar.
	dir bool
	// wrap compresses the whole archive (docker save | gzip); nil: none.
	wrap func(testing.TB, []byte) []byte
	// layerNamedByDigest: the layer's entry name is its digest, so other
	// bytes under it are a digest mismatch rather than a diff ID one.
	layerNamedByDigest bool
	// keepsManifest: the format's own OCI manifest is what gets stored,
	// so its descriptor sizes are checked.
	keepsManifest bool
	build         func(testing.TB, genImage) genArchive
}

func (f archiveFormat) String() string { return f.name }

// archiveFormats are every archive shape dockersave reads.
var archiveFormats = []archiveFormat{
	{name: "legacy docker save", kind: SourceDockerArchive, build: buildLegacy},
	{name: "docker 25 oci+manifest.json", kind: SourceDockerArchive, layerNamedByDigest: true, build: buildDocker25},
	{name: "containerd export", kind: SourceDockerArchive, layerNamedByDigest: true, keepsManifest: true, build: buildContainerd},
	{name: "podman", kind: SourceDockerArchive, layerNamedByDigest: true, build: buildPodman},
	{name: "kaniko", kind: SourceDockerArchive, layerNamedByDigest: true, build: buildKaniko},
	{name: "oci-archive", kind: SourceOCIArchive, layerNamedByDigest: true, keepsManifest: true, build: buildOCI(zstdBytes, ocispec.MediaTypeImageLayerZstd)},
	{name: "oci layout dir", kind: SourceOCILayout, dir: true, layerNamedByDigest: true, keepsManifest: true, build: buildOCI(nil, ocispec.MediaTypeImageLayer)},
	{name: "gzip docker-archive", kind: SourceDockerArchive, wrap: gzipBytes, build: buildLegacy},
	{name: "zstd docker-archive", kind: SourceDockerArchive, wrap: zstdBytes, build: buildLegacy},
}

func buildLegacy(t testing.TB, g genImage) genArchive {
	cfg := g.config(t)
	var a genArchive
	var paths []string
	for i, l := range g.layers {
		id := hexOf([]byte{byte(i), 'g', 'e', 'n'})
		a.entries = append(a.entries,
			tarEntry{name: id + "/", typ: tar.TypeDir},
			tarEntry{name: id + "/VERSION", body: []byte("1.0")},
			tarEntry{name: id + "/json", body: []byte(`{"id":"` + id + `"}`)},
			tarEntry{name: id + "/layer.tar", body: l})
		paths = append(paths, id+"/layer.tar")
	}
	a.layer, a.config, a.meta = paths[0], hexOf(cfg)+".json", "manifest.json"
	a.entries = append(a.entries,
		tarEntry{name: a.config, body: cfg},
		tarEntry{name: "manifest.json", body: mustJSON(t, []map[string]any{{"Config": a.config, "RepoTags": []string{"gen:1"}, "Layers": paths}})},
		tarEntry{name: "repositories", body: []byte(`{"gen":{"1":"x"}}`)})
	return a
}

func buildDocker25(t testing.TB, g genImage) genArchive {
	cfg := g.config(t)
	man := g.manifest(t, cfg, g.layers, ocispec.MediaTypeImageLayer)
	a := genArchive{entries: []tarEntry{{name: "blobs/", typ: tar.TypeDir}, {name: "blobs/sha256/", typ: tar.TypeDir}}}
	sources := map[string]any{}
	var paths []string
	for _, l := range g.layers {
		a.entries = append(a.entries, blobEntry(l))
		paths = append(paths, blobEntry(l).name)
		sources[digest.FromBytes(l).String()] = map[string]any{"mediaType": ocispec.MediaTypeImageLayer, "digest": digest.FromBytes(l), "size": len(l)}
	}
	a.layer, a.config, a.meta = paths[0], blobEntry(cfg).name, "manifest.json"
	a.entries = append(a.entries, blobEntry(cfg), blobEntry(man),
		tarEntry{name: "index.json", body: mustJSON(t, ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2},
			Manifests: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(man), Size: int64(len(man))}}})},
		tarEntry{name: "manifest.json", body: mustJSON(t, []map[string]any{{"Config": a.config, "RepoTags": []string{"gen:1"}, "Layers": paths, "LayerSources": sources}})},
		tarEntry{name: "oci-layout", body: []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		tarEntry{name: "repositories", body: []byte(`{}`)})
	return a
}

func buildContainerd(t testing.TB, g genImage) genArchive {
	cfg := g.config(t)
	var blobs [][]byte
	for _, l := range g.layers {
		blobs = append(blobs, gzipBytes(t, l))
	}
	man := g.manifest(t, cfg, blobs, ocispec.MediaTypeImageLayerGzip)
	a := genArchive{entries: []tarEntry{{name: "blobs/", typ: tar.TypeDir}, {name: "blobs/sha256/", typ: tar.TypeDir}}}
	var paths []string
	for _, b := range blobs {
		a.entries = append(a.entries, blobEntry(b))
		paths = append(paths, blobEntry(b).name)
	}
	a.layer, a.config, a.meta = paths[0], blobEntry(cfg).name, "manifest.json"
	a.entries = append(a.entries, blobEntry(cfg), blobEntry(man),
		tarEntry{name: "index.json", body: mustJSON(t, ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2},
			Manifests: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(man), Size: int64(len(man)), Platform: &linuxAMD64}}})},
		tarEntry{name: "manifest.json", body: mustJSON(t, []map[string]any{{"Config": a.config, "RepoTags": []string{"gen:1"}, "Layers": paths}})},
		tarEntry{name: "oci-layout", body: []byte(`{"imageLayoutVersion":"1.0.0"}`)})
	return a
}

func buildPodman(t testing.TB, g genImage) genArchive {
	cfg := g.config(t)
	var a genArchive
	var paths []string
	for i, l := range g.layers {
		id := hexOf([]byte{byte(i), 'p', 'o', 'd'})
		blob := hexOf(l) + ".tar"
		if i == 0 {
			a.layer = blob
		}
		a.entries = append(a.entries, tarEntry{name: blob, body: l},
			tarEntry{name: id + "/", typ: tar.TypeDir},
			tarEntry{name: id + "/layer.tar", typ: tar.TypeSymlink, link: "../" + blob},
			tarEntry{name: id + "/VERSION", body: []byte("1.0")})
		paths = append(paths, id+"/layer.tar")
	}
	a.config, a.meta = hexOf(cfg)+".json", "manifest.json"
	a.entries = append(a.entries, tarEntry{name: a.config, body: cfg},
		tarEntry{name: "manifest.json", body: mustJSON(t, []map[string]any{{"Config": a.config, "RepoTags": []string{"localhost/gen:1"}, "Layers": paths}})},
		tarEntry{name: "repositories", body: []byte(`{}`)})
	return a
}

func buildKaniko(t testing.TB, g genImage) genArchive {
	cfg := g.config(t)
	var a genArchive
	var paths []string
	for _, l := range g.layers {
		gz := gzipBytes(t, l)
		paths = append(paths, hexOf(gz)+".tar.gz")
		a.entries = append(a.entries, tarEntry{name: paths[len(paths)-1], body: gz})
	}
	a.layer, a.config, a.meta = paths[0], "sha256:"+hexOf(cfg), "manifest.json"
	a.entries = append([]tarEntry{{name: a.config, body: cfg}}, a.entries...)
	a.entries = append(a.entries, tarEntry{name: "manifest.json", body: mustJSON(t, []map[string]any{{"Config": a.config, "RepoTags": []string{"gen:kaniko"}, "Layers": paths}})})
	return a
}

func buildOCI(compress func(testing.TB, []byte) []byte, mediaType string) func(testing.TB, genImage) genArchive {
	return func(t testing.TB, g genImage) genArchive {
		cfg := g.config(t)
		var blobs [][]byte
		for _, l := range g.layers {
			if compress != nil {
				l = compress(t, l)
			}
			blobs = append(blobs, l)
		}
		man := g.manifest(t, cfg, blobs, mediaType)
		a := genArchive{entries: []tarEntry{{name: "blobs/", typ: tar.TypeDir}, {name: "blobs/sha256/", typ: tar.TypeDir}}}
		for _, b := range blobs {
			a.entries = append(a.entries, blobEntry(b))
		}
		a.layer, a.config, a.meta = blobEntry(blobs[0]).name, blobEntry(cfg).name, "index.json"
		a.entries = append(a.entries, blobEntry(cfg), blobEntry(man),
			tarEntry{name: "index.json", body: mustJSON(t, ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2},
				Manifests: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(man), Size: int64(len(man))}}})},
			tarEntry{name: "oci-layout", body: []byte(`{"imageLayoutVersion":"1.0.0"}`)})
		return a
	}
}

// genLayers is the image every hostile case starts from: two small layers.
func genLayers(t testing.TB) [][]byte {
	return [][]byte{
		layerTar(t, map[string]string{"etc/os-release": "ID=gen\n", "bin/sh": "#!"}),
		layerTar(t, map[string]string{"app/main": "hello"}),
	}
}

// sandbox is a directory holding a store (cache/store), an empty sentinel
// directory next to it (cache/sentinel), the inputs (in/) and files outside
// everything an archive may name (outside/). load checks that a load
// changed nothing outside the store, and that a failed one changed nothing
// in it but lock files.
type sandbox struct {
	t     *testing.T
	dir   string
	store *store.Store
}

func newSandbox(t *testing.T) *sandbox {
	t.Helper()
	sb := &sandbox{t: t, dir: fastTempDir(t)}
	for _, d := range []string{"cache/sentinel", "in", "outside"} {
		if err := os.MkdirAll(filepath.Join(sb.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s, err := store.Open(filepath.Join(sb.dir, "cache", "store"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	sb.store = s
	return sb
}

// input writes data as in/name and returns its path.
func (sb *sandbox) input(name string, data []byte) string {
	return writeFile(sb.t, filepath.Join(sb.dir, "in"), name, data)
}

// format lays a out as f says (a tar, wrapped or not, or a directory) in
// in/ and returns the reference to load.
func (sb *sandbox) format(f archiveFormat, a genArchive) string {
	sb.t.Helper()
	if f.dir {
		dir := filepath.Join(sb.dir, "in", "layout")
		writeLayoutDir(sb.t, dir, a.entries)
		return string(f.kind) + ":" + dir
	}
	data := buildTar(sb.t, a.entries)
	if f.wrap != nil {
		data = f.wrap(sb.t, data)
	}
	return string(f.kind) + ":" + sb.input("image.tar", data)
}

// load loads ref into the sandbox's store and checks isolation.
func (sb *sandbox) load(ref string) (Image, error) {
	sb.t.Helper()
	before := fingerprintTree(sb.t, sb.dir)
	imagesBefore, err := sb.store.Images()
	if err != nil {
		sb.t.Fatal(err)
	}
	img, loadErr := NewLoader(sb.store, WithHostPlatform(linuxAMD64)).loadReleased(sb.t.Context(), ref, nil)
	after := fingerprintTree(sb.t, sb.dir)
	store := filepath.Join("cache", "store") + string(filepath.Separator)
	locks := store + locksDir + string(filepath.Separator)
	for p := range mapsUnion(before, after) {
		if before[p] == after[p] {
			continue
		}
		inStore := strings.HasPrefix(p, store)
		if inStore && (loadErr == nil || strings.HasPrefix(p, locks)) {
			continue
		}
		sb.t.Errorf("load of %s (error: %v) changed %s: %q -> %q", ref, loadErr, p, before[p], after[p])
	}
	if left, err := os.ReadDir(filepath.Join(sb.dir, "cache", "sentinel")); err != nil || len(left) != 0 {
		sb.t.Errorf("sentinel directory next to the store: %v, %v", left, err)
	}
	if staged, _ := os.ReadDir(filepath.Join(sb.store.Dir(), stagingDir)); len(staged) != 0 {
		sb.t.Errorf("staging files left by the load of %s: %d", ref, len(staged))
	}
	if loadErr != nil {
		if images, err := sb.store.Images(); err != nil || len(images) != len(imagesBefore) {
			sb.t.Errorf("a failed load changed the stored images: %d before, %d after (%v)", len(imagesBefore), len(images), err)
		}
	}
	return img, loadErr
}

func mapsUnion(a, b map[string]string) map[string]bool {
	out := make(map[string]bool, len(a)+len(b))
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

// fingerprintTree maps every path under dir (relative) to its type, mode,
// size, modification time and, for regular files, content hash; symbolic
// links to their target.
func fingerprintTree(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		fp := fmt.Sprintf("%s %d %d", fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		switch {
		case fi.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			fp += " " + hex.EncodeToString(h.Sum(nil))
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			fp += " -> " + target
		case fi.IsDir():
			fp = fi.Mode().String() // entries are compared one by one
		}
		out[rel] = fp
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// writeLayoutDir materializes entries as an OCI layout directory: links as
// links, devices and fifos as such.
func writeLayoutDir(t testing.TB, dir string, entries []tarEntry) {
	t.Helper()
	for _, e := range entries {
		p := filepath.Join(dir, filepath.FromSlash(e.name))
		if !filepath.IsLocal(e.name) {
			t.Fatalf("generator: %q cannot be laid out in a directory", e.name)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch e.typ {
		case tar.TypeDir:
			err = os.MkdirAll(p, 0o755)
		case 0, tar.TypeReg:
			err = os.WriteFile(p, e.body, 0o644)
			if err == nil && e.declared > 0 {
				err = os.Truncate(p, e.declared)
			}
		case tar.TypeSymlink:
			err = os.Symlink(e.link, p)
		case tar.TypeChar:
			err = unix.Mknod(p, unix.S_IFCHR|0o644, int(unix.Mkdev(1, 3))) // like /dev/null
		case tar.TypeFifo:
			err = unix.Mkfifo(p, 0o644)
		default:
			t.Fatalf("generator: entry type %q in a directory", e.typ)
		}
		if err != nil {
			t.Fatalf("lay out %s: %v", e.name, err)
		}
	}
}

// fastTempDir is a temporary directory on tmpfs (/dev/shm) when there is
// one, where the fsyncs of staging files cost nothing: tests of what is
// rejected load hundreds of archives and do not test durability. Elsewhere
// it is t.TempDir().
func fastTempDir(t testing.TB) string {
	t.Helper()
	var st unix.Statfs_t
	if unix.Statfs("/dev/shm", &st) == nil && st.Type == unix.TMPFS_MAGIC {
		if dir, err := os.MkdirTemp("/dev/shm", "layerbridge-test-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return t.TempDir()
}

// hostileCase is one attack, applied to every format it makes sense for.
type hostileCase struct {
	name string
	// tarOnly: about tar entry names, types or headers, which a layout
	// directory (read by digest, never by listing) cannot carry.
	tarOnly bool
	// only, when set, limits the case to the formats it returns true for.
	only  func(archiveFormat) bool
	image func(*genImage)
	edit  func(t testing.TB, sb *sandbox, f archiveFormat, a *genArchive)
	want  func(archiveFormat) error
}

func always(err error) func(archiveFormat) error { return func(archiveFormat) error { return err } }

// inTar is err for archives; a layout directory is read by digest, and its
// reader takes a blob path that is not a regular file inside the directory
// (a link leaving it, a link loop, a device, a fifo) for an absent blob:
// never opened, never followed.
func inTar(err error) func(archiveFormat) error {
	return func(f archiveFormat) error {
		if f.dir {
			return ErrMissingBlob
		}
		return err
	}
}

func flipLastByte(b []byte) []byte {
	b = slices.Clone(b)
	b[len(b)-1] ^= 0x55
	return b
}

var hostileCases = []hostileCase{
	{name: "dot-dot name", tarOnly: true, want: always(ErrUnsafeEntry),
		edit: func(_ testing.TB, _ *sandbox, _ archiveFormat, a *genArchive) {
			a.entries = append([]tarEntry{{name: "../sentinel/pwned", body: []byte("x")}}, a.entries...)
		}},
	{name: "nested dot-dot name", tarOnly: true, want: always(ErrUnsafeEntry),
		edit: func(_ testing.TB, _ *sandbox, _ archiveFormat, a *genArchive) {
			a.entries = append([]tarEntry{{name: "blobs/sha256/../../../sentinel/pwned", body: []byte("x")}}, a.entries...)
		}},
	{name: "absolute name", tarOnly: true, want: always(ErrUnsafeEntry),
		edit: func(_ testing.TB, _ *sandbox, _ archiveFormat, a *genArchive) {
			a.entries = append(a.entries[:1:1], append([]tarEntry{{name: "/tmp/layerbridge-hostile-pwned", body: []byte("x")}}, a.entries[1:]...)...)
		}},
	{name: "name outside every format", tarOnly: true, want: always(ErrUnexpectedEntry),
		edit: func(_ testing.TB, _ *sandbox, _ archiveFormat, a *genArchive) {
			a.entries = append([]tarEntry{{name: "etc/passwd", body: []byte("root:x:0:0")}}, a.entries...)
		}},
	{name: "duplicate config entry", tarOnly: true, want: always(ErrDuplicateEntry),
		edit: func(t testing.TB, _ *sandbox, _ archiveFormat, a *genArchive) {
			a.entries = append(a.entries, *a.entry(t, a.config))
		}},
	{name: "metadata file as a symlink", tarOnly: true, want: always(ErrUnexpectedEntry),
		edit: func(t testing.TB, _ *sandbox, _ archiveFormat, a *genArchive) {
			a.replace(t, a.meta, tarEntry{name: a.meta, typ: tar.TypeSymlink, link: relLink(t, a.meta, a.config)})
		}},
	{name: "layer as a symlink leaving the archive", want: inTar(ErrUnsafeEntry),
		edit: func(t testing.TB, sb *sandbox, _ archiveFormat, a *genArchive) {
			// The target exists, with the layer's very bytes: only the
			// escape itself may stop the load.
			target := filepath.Join(sb.dir, "outside", "layer")
			if err := os.WriteFile(target, a.entry(t, a.layer).body, 0o644); err != nil {
				t.Fatal(err)
			}
			link, err := filepath.Rel(filepath.Join(sb.dir, "in", "layout", filepath.Dir(a.layer)), target)
			if err != nil {
				t.Fatal(err)
			}
			a.replace(t, a.layer, tarEntry{name: a.layer, typ: tar.TypeSymlink, link: filepath.ToSlash(link)})
		}},
	{name: "layer as an absolute symlink", want: inTar(ErrUnsafeEntry),
		edit: func(t testing.TB, sb *sandbox, _ archiveFormat, a *genArchive) {
			target := filepath.Join(sb.dir, "outside", "layer")
			if err := os.WriteFile(target, a.entry(t, a.layer).body, 0o644); err != nil {
				t.Fatal(err)
			}
			a.replace(t, a.layer, tarEntry{name: a.layer, typ: tar.TypeSymlink, link: target})
		}},
	{name: "symlink loop", want: inTar(ErrLinkCycle),
		edit: func(t testing.TB, _ *sandbox, _ archiveFormat, a *genArchive) {
			other := "blobs/sha256/" + hexOf([]byte("loop"))
			a.replace(t, a.layer, tarEntry{name: a.layer, typ: tar.TypeSymlink, link: relLink(t, a.layer, other)})
			a.entries = append(a.entries, tarEntry{name: other, typ: tar.TypeSymlink, link: relLink(t, other, a.layer)})
		}},
	{name: "hard link to nowhere", tarOnly: true, want: always(ErrDanglingLink),
		edit: func(t testing.TB, _ *sandbox, _ archiveFormat, a *genArchive) {
			a.replace(t, a.layer, tarEntry{name: a.layer, typ: tar.TypeLink, link: "blobs/sha256/" + hexOf([]byte("nowhere"))})
		}},
	{name: "hard link out of the archive", tarOnly: true, want: always(ErrUnsafeEntry),
		edit: func(t testing.TB, _ *sandbox, _ archiveFormat, a *genArchive) {
			a.replace(t, a.layer, tarEntry{name: a.layer, typ: tar.TypeLink, link: "../../etc/passwd"})
		}},
	{name: "layer as a character device", want: always(ErrUnsafeEntry),
		edit: func(t testing.TB, _ *sandbox, _ archiveFormat, a *genArchive) {
			a.replace(t, a.layer, tarEntry{name: a.layer, typ: tar.TypeChar})
		}},
	{name: "layer as a block device", tarOnly: true, want: always(ErrUnsafeEntry),
		edit: func(t testing.TB, _ *sandbox, _ archiveFormat, a *genArchive) {
			a.replace(t, a.layer, tarEntry{name: a.layer, typ: tar.TypeBlock})
		}},
	{name: "layer as a fifo", want: always(ErrUnsafeEntry),
		edit: func(t testing.TB, _ *sandbox, _ archiveFormat, a *genArchive) {
			a.replace(t, a.layer, tarEntry{name: a.layer, typ: tar.TypeFifo})
		}},
	{name: "config named for a digest it does not have", want: always(ErrDigestMismatch),
		edit: func(t testing.TB, _ *sandbox, _ archiveFormat, a *genArchive) {
			e := a.entry(t, a.config)
			e.body = flipLastByte(e.body)
		}},
	{name: "layer holding other bytes than its name or diff id says",
		want: func(f archiveFormat) error {
			if f.layerNamedByDigest {
				return ErrDigestMismatch
			}
			return ErrDiffIDMismatch
		},
		edit: func(t testing.TB, _ *sandbox, _ archiveFormat, a *genArchive) {
			e := a.entry(t, a.layer)
			e.body = flipLastByte(e.body)
		}},
	{name: "diff id of another layer", want: always(ErrDiffIDMismatch),
		image: func(g *genImage) {
			g.diffIDs = []digest.Digest{digest.FromBytes(g.layers[1]), digest.FromBytes(g.layers[0])}
		}},
	{name: "more diff ids than layers", want: always(ErrLayerCount),
		image: func(g *genImage) {
			for _, l := range append(g.layers, g.layers[0]) {
				g.diffIDs = append(g.diffIDs, digest.FromBytes(l))
			}
		}},
	{name: "manifest names an absent layer", want: always(ErrMissingBlob),
		edit: func(_ testing.TB, _ *sandbox, _ archiveFormat, a *genArchive) { a.remove(a.layer) }},
	{name: "manifest names an absent config", want: always(ErrMissingBlob),
		edit: func(_ testing.TB, _ *sandbox, _ archiveFormat, a *genArchive) { a.remove(a.config) }},
	{name: "huge layer size in the manifest", want: always(ErrSizeMismatch),
		only:  func(f archiveFormat) bool { return f.keepsManifest },
		image: func(g *genImage) { g.layerSize = new(int64(1 << 62)) }},
	{name: "negative layer size in the manifest", want: always(ErrSizeMismatch),
		only:  func(f archiveFormat) bool { return f.keepsManifest },
		image: func(g *genImage) { g.layerSize = new(int64(-1)) }},
	{name: "metadata file above the limit", want: always(ErrTooLarge),
		edit: func(t testing.TB, _ *sandbox, _ archiveFormat, a *genArchive) {
			// Refused on its size alone: the header claims it, nothing
			// of it is read.
			a.entry(t, a.meta).declared = maxMetadataSize + 1
		}},
	{name: "pax path moving the layer out", tarOnly: true, want: always(ErrUnsafeEntry),
		edit: func(t testing.TB, _ *sandbox, _ archiveFormat, a *genArchive) {
			a.entry(t, a.layer).pax = map[string]string{"path": "../../sentinel/pwned"}
		}},
	{name: "pax path renaming the layer onto the config", tarOnly: true, want: always(ErrDuplicateEntry),
		edit: func(t testing.TB, _ *sandbox, _ archiveFormat, a *genArchive) {
			a.entry(t, a.layer).pax = map[string]string{"path": a.config}
			// Whichever comes second is the duplicate.
			cfg := *a.entry(t, a.config)
			a.remove(a.config)
			a.entries = append([]tarEntry{cfg}, a.entries...)
		}},
	{name: "pax linkpath leaving the archive", tarOnly: true, want: always(ErrUnsafeEntry),
		edit: func(t testing.TB, _ *sandbox, _ archiveFormat, a *genArchive) {
			a.replace(t, a.layer, tarEntry{name: a.layer, typ: tar.TypeSymlink, link: relLink(t, a.layer, a.config),
				pax: map[string]string{"linkpath": "../../../../etc/shadow"}})
		}},
	// archive/tar refuses a header whose size is negative or does not
	// parse: the stream is unreadable from there on, which dockersave
	// reports as ErrTruncated (the tar stops making sense).
	{name: "pax size negative", tarOnly: true, want: always(ErrTruncated),
		edit: func(t testing.TB, _ *sandbox, _ archiveFormat, a *genArchive) {
			a.entry(t, a.layer).pax = map[string]string{"size": "-1"}
		}},
	{name: "pax size beyond the archive", tarOnly: true, want: always(ErrTruncated),
		edit: func(t testing.TB, _ *sandbox, _ archiveFormat, a *genArchive) {
			a.entry(t, a.layer).pax = map[string]string{"size": "1152921504606846976"}
		}},
}

// TestHostileArchivesEveryFormat applies every hostile case to every format.
func TestHostileArchivesEveryFormat(t *testing.T) {
	for _, f := range archiveFormats {
		t.Run(f.name, func(t *testing.T) {
			// The untouched image loads: every failure below is the
			// attack's.
			sb := newSandbox(t)
			img, err := sb.load(sb.format(f, f.build(t, genImage{layers: genLayers(t)})))
			if err != nil {
				t.Fatalf("valid %s: %v", f, err)
			}
			checkImage(t, sb.store, img)
			for _, tc := range hostileCases {
				if (tc.tarOnly && f.dir) || (tc.only != nil && !tc.only(f)) {
					continue
				}
				t.Run(tc.name, func(t *testing.T) {
					sb := newSandbox(t)
					g := genImage{layers: genLayers(t)}
					if tc.image != nil {
						tc.image(&g)
					}
					a := f.build(t, g)
					if tc.edit != nil {
						tc.edit(t, sb, f, &a)
					}
					_, err := sb.load(sb.format(f, a))
					want := tc.want(f)
					if !errors.Is(err, want) {
						t.Fatalf("got %v, want %v", err, want)
					}
					var ae *ArchiveError
					if !errors.As(err, &ae) || !strings.HasPrefix(ae.Image, string(f.kind)+":") {
						t.Errorf("%v: not an *ArchiveError naming the image", err)
					}
				})
			}
		})
	}
}

// TestTruncatedAtEveryBlock cuts every tar format (and its compressed
// wrapper) at every 512-byte boundary, so at every header and inside every
// entry, and a layout directory's every file in half: each cut is rejected
// and leaves nothing behind.
func TestTruncatedAtEveryBlock(t *testing.T) {
	for _, f := range archiveFormats {
		t.Run(f.name, func(t *testing.T) {
			sb := newSandbox(t)
			a := f.build(t, genImage{layers: genLayers(t)})
			if f.dir {
				for _, e := range a.entries {
					if e.typ != 0 && e.typ != tar.TypeReg || e.name == "oci-layout" {
						continue
					}
					cut := slices.Clone(a.entries)
					i := slices.IndexFunc(cut, func(c tarEntry) bool { return c.name == e.name })
					cut[i].body = e.body[:len(e.body)/2]
					dir := filepath.Join(sb.dir, "in", "layout")
					os.RemoveAll(dir)
					writeLayoutDir(t, dir, cut)
					_, err := sb.load("oci:" + dir)
					if !errors.Is(err, ErrSizeMismatch) && !errors.Is(err, ErrMalformedJSON) {
						t.Errorf("%s cut in half: got %v, want a size mismatch or malformed json", e.name, err)
					}
				}
				return
			}
			tarData := buildTar(t, a.entries)
			cuts := 0
			cut := func(what string, data []byte) {
				t.Helper()
				_, err := sb.load(string(f.kind) + ":" + sb.input("cut.tar", data))
				if !errors.Is(err, ErrTruncated) {
					t.Errorf("%s: got %v, want %v", what, err, ErrTruncated)
				}
				cuts++
			}
			whole := tarData
			if f.wrap == nil {
				for n := 0; n < len(tarData); n += 512 {
					cut(fmt.Sprintf("tar cut at %d of %d", n, len(tarData)), tarData[:n])
				}
			} else {
				// The tar inside is the legacy format's, cut above: here
				// the compressed stream is cut short.
				whole = f.wrap(t, tarData)
				for n := 0; n < len(whole); n += 32 {
					cut(fmt.Sprintf("compressed stream cut at %d of %d", n, len(whole)), whole[:n])
				}
			}
			if _, err := sb.load(string(f.kind) + ":" + sb.input("whole.tar", whole)); err != nil {
				t.Fatalf("after %d cuts, the whole archive: %v", cuts, err)
			}
		})
	}
}

// TestLayoutMetadataFifo: an oci: layout directory whose index.json is a
// fifo must be refused at once, not wait for a writer forever.
func TestLayoutMetadataFifo(t *testing.T) {
	sb := newSandbox(t)
	f := archiveFormats[6]
	a := f.build(t, genImage{layers: genLayers(t)})
	a.replace(t, "index.json", tarEntry{name: "index.json", typ: tar.TypeFifo})
	if _, err := sb.load(sb.format(f, a)); !errors.Is(err, ErrUnsafeEntry) {
		t.Fatalf("got %v, want %v", err, ErrUnsafeEntry)
	}
}
