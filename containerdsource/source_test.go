package containerdsource

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/dockersave"
	"github.com/layerbridge/layerbridge/platforms"
	"github.com/layerbridge/layerbridge/store"
)

var (
	amd64 = ocispec.Platform{OS: "linux", Architecture: "amd64"}
	arm64 = ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
)

// layerBytes is a small uncompressed layer (its content does not matter
// to the source: it is hashed, never unpacked).
func layerBytes(s string) []byte { return bytes.Repeat([]byte(s), 4096) }

// TestLoadReadsNoLayerItKnows: an image whose layers containerd has
// unpacked (the uncompressed label) or that are uncompressed loads without
// a byte of its layers read, verified (its diff IDs, sizes and metadata
// digests), pinned by a lease holding every blob until release, and its
// blobs are served from containerd: the store holds none.
func TestLoadReadsNoLayerItKnows(t *testing.T) {
	f := newFakeContainerd()
	m := putManifest(t, f, "k8s.io", amd64,
		testLayer{tar: layerBytes("base"), gzip: true, label: true},
		testLayer{tar: layerBytes("app")})
	f.tag("k8s.io", "docker.io/library/app:1", m)
	f.tag("k8s.io", "docker.io/library/app:latest", m)
	f.tag("k8s.io", "docker.io/library/app@"+m.Digest.String(), m)
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := testSource(t, f, "k8s.io", st)

	img, release, err := load(t, s, "app:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if img.ID != m.Digest || img.ManifestDigest != m.Digest || img.Source != Kind || platforms.Format(img.Platform) != "linux/amd64" || len(img.DiffIDs) != 2 {
		t.Errorf("image %+v", img)
	}
	if !slices.Equal(img.RepoTags, []string{"docker.io/library/app:1", "docker.io/library/app:latest"}) {
		t.Errorf("tags %q, want the image's two tagged names", img.RepoTags)
	}
	for _, l := range img.Manifest.Layers {
		if n := f.bytesRead(l.Digest); n != 0 {
			t.Errorf("layer %s: %d bytes read to load it", l.Digest, n)
		}
	}
	ls := f.leases("k8s.io")
	if len(ls) != 1 {
		t.Fatalf("%d leases while the image is loaded, want 1", len(ls))
	}
	var held []string
	for _, r := range ls[0].resources {
		held = append(held, r.ID)
	}
	for _, d := range append([]ocispec.Descriptor{m, img.Manifest.Config}, img.Manifest.Layers...) {
		if !slices.Contains(held, d.Digest.String()) {
			t.Errorf("the lease does not hold %s", d.Digest)
		}
	}
	if ls[0].lease.Labels["containerd.io/gc.expire"] == "" || ls[0].lease.Labels[LabelLeaseRef] != "containerd:app:1" {
		t.Errorf("lease labels %v: want an expiry and the reference", ls[0].lease.Labels)
	}
	gz := img.Manifest.Layers[0]
	if got := readAll(t, img.Blobs.(*Source), gz.Digest); digest.FromBytes(got) != gz.Digest {
		t.Error("the served layer is not the stored one")
	}
	release()
	release()
	if ls := f.leases("k8s.io"); len(ls) != 0 {
		t.Errorf("%d leases after release", len(ls))
	}
	entries, _ := os.ReadDir(filepath.Join(st.Dir(), "blobs", "sha256"))
	if len(entries) != 0 {
		t.Errorf("the store holds %d blobs, want none", len(entries))
	}
}

// TestDiffIDReadOnceThenNoted: a compressed layer without containerd's
// label is read (hashed and decompressed) once; the diff ID is noted in the
// store, and the next load, by another process with the same store, reads
// no byte of it.
func TestDiffIDReadOnceThenNoted(t *testing.T) {
	f := newFakeContainerd()
	m := putManifest(t, f, "k8s.io", amd64, testLayer{tar: layerBytes("imported, never unpacked"), gzip: true})
	f.tag("k8s.io", "docker.io/library/app:1", m)
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	img, release, err := load(t, testSource(t, f, "k8s.io", st), "docker.io/library/app:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	release()
	layer := img.Manifest.Layers[0]
	if n := f.bytesRead(layer.Digest); n != layer.Size {
		t.Fatalf("first load read %d bytes of the layer, want all %d", n, layer.Size)
	}
	_, release, err = load(t, testSource(t, f, "k8s.io", st), "docker.io/library/app:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	release()
	if n := f.bytesRead(layer.Digest); n != layer.Size {
		t.Errorf("second load read the layer again (%d bytes in all)", n)
	}
}

// TestLoadRefusesWhatDoesNotVerify: the rules of dockersave's verify.go
// hold for containerd images: a label, a note or a config that lies about
// a diff ID, a manifest that lies about a size, metadata whose bytes do
// not match their digest, and a layer whose bytes do not are all refused
// with the sentinel of the rule, and no lease is left behind.
func TestLoadRefusesWhatDoesNotVerify(t *testing.T) {
	other := digest.FromString("another layer")
	tests := []struct {
		name  string
		setup func(t *testing.T, f *fakeContainerd, st *store.Store) ocispec.Descriptor
		want  error
	}{
		{"the config's diff id is another", func(t *testing.T, f *fakeContainerd, _ *store.Store) ocispec.Descriptor {
			return putManifest(t, f, "ns", amd64, testLayer{tar: layerBytes("x"), gzip: true, label: true, diffID: other})
		}, dockersave.ErrDiffIDMismatch},
		{"an uncompressed layer's diff id is another", func(t *testing.T, f *fakeContainerd, _ *store.Store) ocispec.Descriptor {
			return putManifest(t, f, "ns", amd64, testLayer{tar: layerBytes("x"), diffID: other})
		}, dockersave.ErrDiffIDMismatch},
		{"decompressed, the diff id is another", func(t *testing.T, f *fakeContainerd, _ *store.Store) ocispec.Descriptor {
			return putManifest(t, f, "ns", amd64, testLayer{tar: layerBytes("x"), gzip: true, diffID: other})
		}, dockersave.ErrDiffIDMismatch},
		{"a planted note lies", func(t *testing.T, f *fakeContainerd, st *store.Store) ocispec.Descriptor {
			m := putManifest(t, f, "ns", amd64, testLayer{tar: layerBytes("x"), gzip: true})
			layer := layerOf(t, f, m, 0)
			note := mustJSON(t, diffIDNote{Digest: layer.Digest, Size: layer.Size, DiffID: other})
			if err := st.PutNote(noteDiffID, layer.Digest.Encoded(), note); err != nil {
				t.Fatal(err)
			}
			return m
		}, dockersave.ErrDiffIDMismatch},
		{"the manifest lies about a layer's size", func(t *testing.T, f *fakeContainerd, _ *store.Store) ocispec.Descriptor {
			m := putManifest(t, f, "ns", amd64, testLayer{tar: layerBytes("x")})
			return rewriteManifest(t, f, m, func(m *ocispec.Manifest) { m.Layers[0].Size++ })
		}, dockersave.ErrSizeMismatch},
		{"the config's bytes are not its digest's", func(t *testing.T, f *fakeContainerd, _ *store.Store) ocispec.Descriptor {
			m := putManifest(t, f, "ns", amd64, testLayer{tar: layerBytes("x")})
			cfg := configOf(t, f, m)
			corrupt(f, "ns", cfg.Digest)
			return m
		}, dockersave.ErrDigestMismatch},
		{"a layer's bytes are not its digest's", func(t *testing.T, f *fakeContainerd, _ *store.Store) ocispec.Descriptor {
			m := putManifest(t, f, "ns", amd64, testLayer{tar: layerBytes("x"), gzip: true})
			corrupt(f, "ns", layerOf(t, f, m, 0).Digest)
			return m
		}, dockersave.ErrDigestMismatch},
		{"the config has fewer diff ids than layers", func(t *testing.T, f *fakeContainerd, _ *store.Store) ocispec.Descriptor {
			m := putManifest(t, f, "ns", amd64, testLayer{tar: layerBytes("x")})
			return rewriteManifest(t, f, m, func(mm *ocispec.Manifest) { mm.Layers = append(mm.Layers, mm.Layers[0]) })
		}, dockersave.ErrLayerCount},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeContainerd()
			st, err := store.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			f.tag("ns", "docker.io/library/x:1", tt.setup(t, f, st))
			_, _, err = load(t, testSource(t, f, "ns", st), "x:1", nil)
			var ae *dockersave.ArchiveError
			if !errors.Is(err, tt.want) || !errors.As(err, &ae) {
				t.Errorf("got %v, want an *ArchiveError wrapping %v", err, tt.want)
			}
			if ls := f.leases("ns"); len(ls) != 0 {
				t.Errorf("%d leases left after a failed load", len(ls))
			}
		})
	}
}

// TestPlatforms: a multi-platform image (an index, with an attestation
// manifest) of which containerd has only the amd64 content, as after a
// pull for this platform: the host's platform is chosen, an absent one is a
// *MissingContentError naming the platforms present, and one the index
// does not list a *PlatformError naming those it does.
func TestPlatforms(t *testing.T) {
	f := newFakeContainerd()
	a := putManifest(t, f, "k8s.io", amd64, testLayer{tar: layerBytes("amd64")})
	b := putManifest(t, f, "k8s.io", arm64, testLayer{tar: layerBytes("arm64")})
	att := putManifest(t, f, "k8s.io", ocispec.Platform{OS: "unknown", Architecture: "unknown"}, testLayer{tar: layerBytes("provenance")})
	att.Annotations = map[string]string{"vnd.docker.reference.type": "attestation-manifest"}
	f.remove("k8s.io", b.Digest)
	f.tag("k8s.io", "docker.io/library/multi:1", putIndex(t, f, "k8s.io", a, b, att))
	s := testSource(t, f, "k8s.io", nil)

	img, release, err := load(t, s, "multi:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	release()
	if img.ManifestDigest != a.Digest || platforms.Format(img.Platform) != "linux/amd64" {
		t.Errorf("chose %s (%s), want the amd64 manifest", img.ManifestDigest, platforms.Format(img.Platform))
	}
	if img, release, err = load(t, s, "multi:1", &amd64); err != nil || img.ManifestDigest != a.Digest {
		t.Errorf("--platform linux/amd64: %v, %v", img.ManifestDigest, err)
	} else {
		release()
	}

	_, _, err = load(t, s, "multi:1", &ocispec.Platform{OS: "linux", Architecture: "arm64"})
	var missing *MissingContentError
	if !errors.As(err, &missing) || missing.What != "manifest" || missing.Digest != b.Digest || len(missing.Present) != 1 || platforms.Format(missing.Present[0]) != "linux/amd64" {
		t.Errorf("linux/arm64: %v, want the arm64 manifest missing with linux/amd64 present", err)
	}
	_, _, err = load(t, s, "multi:1", &ocispec.Platform{OS: "linux", Architecture: "s390x"})
	var pe *dockersave.PlatformError
	if !errors.As(err, &pe) || len(pe.Available) != 2 || !strings.Contains(err.Error(), "(available: linux/amd64, linux/arm64)") {
		t.Errorf("linux/s390x: %v, want a PlatformError naming linux/amd64 and linux/arm64", err)
	}
	if ls := f.leases("k8s.io"); len(ls) != 0 {
		t.Errorf("%d leases left", len(ls))
	}

	// On an arm64 host, with nothing asked, the host's content is missing.
	_, _, err = s.Load(t.Context(), dockersave.Request{Ref: "containerd:multi:1", Kind: Kind, Name: "multi:1", Host: arm64, Log: discard})
	if !errors.As(err, &missing) {
		t.Errorf("arm64 host: %v, want a MissingContentError", err)
	}
}

// TestNames: a name is found as given and as containerd tools normalize it;
// an image ID is a target digest; an image in another namespace is named
// in the error, with the namespaces that have it.
func TestNames(t *testing.T) {
	f := newFakeContainerd()
	m := putManifest(t, f, "moby", amd64, testLayer{tar: layerBytes("x")})
	f.tag("moby", "docker.io/library/alpine:3.11", m)
	f.tag("default", "docker.io/library/alpine:3.11", m)
	f.namespace("k8s.io")
	moby := testSource(t, f, "moby", nil)
	for _, name := range []string{"alpine:3.11", "docker.io/library/alpine:3.11", "library/alpine:3.11", m.Digest.String(), m.Digest.Encoded()} {
		img, release, err := load(t, moby, name, nil)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		release()
		if img.ManifestDigest != m.Digest {
			t.Errorf("%s: manifest %s", name, img.ManifestDigest)
		}
	}
	_, _, err := load(t, testSource(t, f, "k8s.io", nil), "alpine:3.11", nil)
	var nf *NotFoundError
	if !errors.As(err, &nf) || !slices.Equal(nf.Elsewhere, []string{"default", "moby"}) || nf.Namespace != "k8s.io" ||
		!strings.Contains(err.Error(), `no image docker.io/library/alpine:3.11 in containerd namespace "k8s.io"`) {
		t.Errorf("got %v, want a NotFoundError naming namespaces default and moby", err)
	}
	if _, _, err := load(t, moby, "alpine:3.12", nil); !errors.As(err, &nf) || len(nf.Elsewhere) != 0 {
		t.Errorf("an image nowhere: %v", err)
	}
}

// TestLeaseRenewedWhileHeld: a lease outlives its expiry only while it is
// held: before it expires a new one holds the same blobs, the old one is
// deleted; release deletes the last.
func TestLeaseRenewedWhileHeld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeContainerd()
		f.tag("k8s.io", "docker.io/library/app:1", putManifest(t, f, "k8s.io", amd64, testLayer{tar: layerBytes("x")}))
		s := testSource(t, f, "k8s.io", nil)
		s.cfg.LeaseTTL = 10 * time.Minute
		_, release, err := load(t, s, "app:1", nil)
		if err != nil {
			t.Fatal(err)
		}
		first := f.leases("k8s.io")
		time.Sleep(26 * time.Minute) // five renewals
		synctest.Wait()
		now := f.leases("k8s.io")
		if len(first) != 1 || len(now) != 1 {
			t.Fatalf("leases %d then %d, want one at a time", len(first), len(now))
		}
		if now[0].lease.ID == first[0].lease.ID {
			t.Error("the lease was not renewed")
		}
		expire, err := time.Parse(time.RFC3339, now[0].lease.Labels["containerd.io/gc.expire"])
		if err != nil || !expire.After(time.Now()) {
			t.Errorf("the held lease expires at %v (now %v, %v)", expire, time.Now(), err)
		}
		if !slices.Equal(now[0].resources, first[0].resources) {
			t.Errorf("renewed lease holds %v, the first %v", now[0].resources, first[0].resources)
		}
		release()
		if ls := f.leases("k8s.io"); len(ls) != 0 {
			t.Errorf("%d leases after release", len(ls))
		}
	})
}

// TestImagesForTheRegistryView: a loaded image is noted for the registry
// view of sources of the same address and namespace (in any process
// sharing the store), with its tags, and listed by no other.
func TestImagesForTheRegistryView(t *testing.T) {
	f := newFakeContainerd()
	m := putManifest(t, f, "k8s.io", amd64, testLayer{tar: layerBytes("x")})
	f.tag("k8s.io", "docker.io/library/app:1", m)
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, release, err := load(t, testSource(t, f, "k8s.io", st), "app:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	release()
	recs, err := testSource(t, f, "k8s.io", st).Images()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].ManifestDigest != m.Digest || recs[0].Source != "containerd" || !slices.Equal(recs[0].RepoTags, []string{"docker.io/library/app:1"}) || len(recs[0].DiffIDs) != 1 {
		t.Errorf("records %+v", recs)
	}
	if recs, _ := testSource(t, f, "default", st).Images(); len(recs) != 0 {
		t.Errorf("another namespace lists %d images", len(recs))
	}
	if imgs, _ := st.Images(); len(imgs) != 0 {
		t.Errorf("the store records %d images of its own", len(imgs))
	}
}

// TestBlobAbsent: a blob containerd does not have is fs.ErrNotExist, as
// the layer server and the registry view expect.
func TestBlobAbsent(t *testing.T) {
	s := testSource(t, newFakeContainerd(), "k8s.io", nil)
	if _, err := s.Blob(t.Context(), digest.FromString("nothing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("got %v", err)
	}
	if _, err := s.Blob(t.Context(), "sha256:../../x"); err == nil {
		t.Error("an invalid digest was looked up")
	}
}

// TestUnreachable: no socket at the address is an *UnreachableError at
// once, without waiting for the client's dial timeout; a socket nothing
// listens on says so.
func TestUnreachable(t *testing.T) {
	dir := t.TempDir()
	start := time.Now()
	_, _, err := load(t, New(Config{Address: filepath.Join(dir, "none.sock")}), "alpine", nil)
	var ue *UnreachableError
	if !errors.As(err, &ue) || !ue.Missing || !strings.Contains(err.Error(), "no socket there") {
		t.Errorf("missing socket: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v", d)
	}
	_, err = New(Config{Address: filepath.Join(dir, "none.sock")}).Probe(t.Context())
	if !errors.As(err, &ue) {
		t.Errorf("probe: %v", err)
	}

	stale := filepath.Join(dir, "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	s := New(Config{Address: stale})
	defer s.Close()
	_, err = s.Probe(t.Context())
	if !errors.As(err, &ue) || ue.Missing || !strings.Contains(err.Error(), "does not answer") {
		t.Errorf("a socket nothing listens on: %v", err)
	}
}

// TestClassifyPermission: the client's error for a socket this process
// may not open is a *PermissionError describing the socket.
func TestClassifyPermission(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "containerd.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	os.Chmod(sock, 0o660)
	err = classify(sock, errors.New(`rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: dial unix `+sock+`: connect: permission denied"`))
	var pe *PermissionError
	if !errors.As(err, &pe) || pe.Mode != 0o660 || pe.Owner == "" || !strings.Contains(err.Error(), "mode 0660") {
		t.Errorf("got %v", err)
	}
}

var discard = slog.New(slog.DiscardHandler)

func layerOf(t *testing.T, f *fakeContainerd, m ocispec.Descriptor, i int) ocispec.Descriptor {
	t.Helper()
	return manifestOf(t, f, m).Layers[i]
}

func configOf(t *testing.T, f *fakeContainerd, m ocispec.Descriptor) ocispec.Descriptor {
	t.Helper()
	return manifestOf(t, f, m).Config
}

func manifestOf(t *testing.T, f *fakeContainerd, m ocispec.Descriptor) ocispec.Manifest {
	t.Helper()
	var mm ocispec.Manifest
	if err := json.Unmarshal(f.namespace("ns").content[m.Digest].data, &mm); err != nil {
		t.Fatal(err)
	}
	return mm
}

// rewriteManifest stores m changed by edit, as a new manifest.
func rewriteManifest(t *testing.T, f *fakeContainerd, m ocispec.Descriptor, edit func(*ocispec.Manifest)) ocispec.Descriptor {
	t.Helper()
	mm := manifestOf(t, f, m)
	edit(&mm)
	data := mustJSON(t, mm)
	return ocispec.Descriptor{MediaType: m.MediaType, Digest: f.put("ns", data, nil), Size: int64(len(data))}
}

// corrupt flips a byte of blob d, keeping its digest and size.
func corrupt(f *fakeContainerd, ns string, d digest.Digest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b := f.namespace(ns).content[d]
	data := bytes.Clone(b.data)
	data[len(data)/2] ^= 0xff
	f.namespace(ns).content[d] = fakeBlob{data: data, labels: b.labels}
}
