package containerdsource

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/dockersave"
	"github.com/layerbridge/layerbridge/store"
)

// fakeContainerd is containerd's image, content and lease stores in memory,
// per namespace, counting the bytes read of each blob.
type fakeContainerd struct {
	mu      sync.Mutex
	ns      map[string]*fakeNamespace
	read    map[digest.Digest]int64 // bytes read through ReaderAt
	version client.Version
	closed  bool
}

type fakeNamespace struct {
	images  map[string]images.Image
	content map[digest.Digest]fakeBlob
	leases  map[string]*fakeLease
}

type fakeBlob struct {
	data   []byte
	labels map[string]string
}

type fakeLease struct {
	lease     leases.Lease
	resources []leases.Resource
}

func newFakeContainerd() *fakeContainerd {
	return &fakeContainerd{ns: map[string]*fakeNamespace{}, read: map[digest.Digest]int64{}, version: client.Version{Version: "v2.4.2", Revision: "fake"}}
}

func (f *fakeContainerd) namespace(name string) *fakeNamespace {
	n := f.ns[name]
	if n == nil {
		n = &fakeNamespace{images: map[string]images.Image{}, content: map[digest.Digest]fakeBlob{}, leases: map[string]*fakeLease{}}
		f.ns[name] = n
	}
	return n
}

func (f *fakeContainerd) of(ctx context.Context) (*fakeNamespace, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	return f.namespace(ns), nil
}

// put stores data in namespace ns under its digest.
func (f *fakeContainerd) put(ns string, data []byte, labels map[string]string) digest.Digest {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := digest.FromBytes(data)
	f.namespace(ns).content[d] = fakeBlob{data: data, labels: labels}
	return d
}

func (f *fakeContainerd) remove(ns string, d digest.Digest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.namespace(ns).content, d)
}

func (f *fakeContainerd) tag(ns, name string, target ocispec.Descriptor) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.namespace(ns).images[name] = images.Image{Name: name, Target: target}
}

func (f *fakeContainerd) bytesRead(d digest.Digest) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.read[d]
}

// leases returns the leases of namespace ns.
func (f *fakeContainerd) leases(ns string) []fakeLease {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []fakeLease
	for _, l := range f.namespace(ns).leases {
		out = append(out, fakeLease{lease: l.lease, resources: slices.Clone(l.resources)})
	}
	return out
}

func (f *fakeContainerd) GetImage(ctx context.Context, name string) (images.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.of(ctx)
	if err != nil {
		return images.Image{}, err
	}
	img, ok := n.images[name]
	if !ok {
		return images.Image{}, fmt.Errorf("image %q: %w", name, errdefs.ErrNotFound)
	}
	return img, nil
}

func (f *fakeContainerd) ListImages(ctx context.Context, filters ...string) ([]images.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.of(ctx)
	if err != nil {
		return nil, err
	}
	var out []images.Image
	for _, img := range n.images {
		ok := true
		for _, flt := range filters {
			if want, isTarget := strings.CutPrefix(flt, "target.digest=="); isTarget && img.Target.Digest.String() != want {
				ok = false
			}
		}
		if ok {
			out = append(out, img)
		}
	}
	slices.SortFunc(out, func(a, b images.Image) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func (f *fakeContainerd) Info(ctx context.Context, d digest.Digest) (content.Info, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.of(ctx)
	if err != nil {
		return content.Info{}, err
	}
	b, ok := n.content[d]
	if !ok {
		return content.Info{}, fmt.Errorf("content %s: %w", d, errdefs.ErrNotFound)
	}
	return content.Info{Digest: d, Size: int64(len(b.data)), Labels: maps.Clone(b.labels)}, nil
}

func (f *fakeContainerd) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.of(ctx)
	if err != nil {
		return nil, err
	}
	b, ok := n.content[desc.Digest]
	if !ok {
		return nil, fmt.Errorf("content %s: %w", desc.Digest, errdefs.ErrNotFound)
	}
	return &fakeReaderAt{f: f, d: desc.Digest, r: bytes.NewReader(b.data)}, nil
}

type fakeReaderAt struct {
	f *fakeContainerd
	d digest.Digest
	r *bytes.Reader
}

func (r *fakeReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := r.r.ReadAt(p, off)
	r.f.mu.Lock()
	r.f.read[r.d] += int64(n)
	r.f.mu.Unlock()
	return n, err
}

func (r *fakeReaderAt) Size() int64  { return r.r.Size() }
func (r *fakeReaderAt) Close() error { return nil }

func (f *fakeContainerd) CreateLease(ctx context.Context, opts ...leases.Opt) (leases.Lease, error) {
	var l leases.Lease
	for _, o := range opts {
		if err := o(&l); err != nil {
			return leases.Lease{}, err
		}
	}
	l.CreatedAt = time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.of(ctx)
	if err != nil {
		return leases.Lease{}, err
	}
	if _, dup := n.leases[l.ID]; dup || l.ID == "" {
		return leases.Lease{}, fmt.Errorf("lease %q: %w", l.ID, errdefs.ErrAlreadyExists)
	}
	n.leases[l.ID] = &fakeLease{lease: l}
	return l, nil
}

func (f *fakeContainerd) AddResource(ctx context.Context, l leases.Lease, r leases.Resource) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.of(ctx)
	if err != nil {
		return err
	}
	fl, ok := n.leases[l.ID]
	if !ok {
		return fmt.Errorf("lease %q: %w", l.ID, errdefs.ErrNotFound)
	}
	fl.resources = append(fl.resources, r)
	return nil
}

func (f *fakeContainerd) DeleteLease(ctx context.Context, l leases.Lease) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.of(ctx)
	if err != nil {
		return err
	}
	if _, ok := n.leases[l.ID]; !ok {
		return fmt.Errorf("lease %q: %w", l.ID, errdefs.ErrNotFound)
	}
	delete(n.leases, l.ID)
	return nil
}

func (f *fakeContainerd) Namespaces(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Sorted(maps.Keys(f.ns)), nil
}

func (f *fakeContainerd) Version(context.Context) (client.Version, error) { return f.version, nil }

func (f *fakeContainerd) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

// testSource is a Source reading f, with its notes in a store of its own
// (or st when given).
func testSource(t *testing.T, f *fakeContainerd, ns string, st *store.Store) *Source {
	t.Helper()
	if st == nil {
		var err error
		if st, err = store.Open(t.TempDir()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
	}
	s := New(Config{Address: "/fake/containerd.sock", Namespace: ns, Store: st})
	s.dial = func(string) (backend, error) { return f, nil }
	return s
}

// load loads ref (containerd:NAME) with s, as dockersave's Loader would ask.
func load(t *testing.T, s *Source, name string, platform *ocispec.Platform) (dockersave.Image, func(), error) {
	t.Helper()
	return s.Load(t.Context(), dockersave.Request{
		Ref: "containerd:" + name, Kind: Kind, Name: name, Platform: platform,
		Host: ocispec.Platform{OS: "linux", Architecture: "amd64"}, Log: slog.New(slog.DiscardHandler),
	})
}

// testLayer is one layer to put in an image.
type testLayer struct {
	tar    []byte // the uncompressed content
	gzip   bool
	label  bool // set containerd.io/uncompressed, as the unpacker does
	diffID digest.Digest
}

func gzipped(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// putManifest puts an image manifest with the layers (and its config) for
// platform p in namespace ns and returns its descriptor; the config's
// diff IDs are the layers' unless a layer's diffID says otherwise.
func putManifest(t *testing.T, f *fakeContainerd, ns string, p ocispec.Platform, layers ...testLayer) ocispec.Descriptor {
	t.Helper()
	var descs []ocispec.Descriptor
	var diffIDs []digest.Digest
	for _, l := range layers {
		diffID := digest.FromBytes(l.tar)
		data, mt := l.tar, ocispec.MediaTypeImageLayer
		var labels map[string]string
		if l.gzip {
			data, mt = gzipped(t, l.tar), ocispec.MediaTypeImageLayerGzip
			if l.label {
				labels = map[string]string{LabelUncompressed: diffID.String()}
			}
		}
		d := f.put(ns, data, labels)
		descs = append(descs, ocispec.Descriptor{MediaType: mt, Digest: d, Size: int64(len(data))})
		if l.diffID != "" {
			diffID = l.diffID
		}
		diffIDs = append(diffIDs, diffID)
	}
	config := mustJSON(t, ocispec.Image{Platform: p, RootFS: ocispec.RootFS{Type: "layers", DiffIDs: diffIDs}})
	cd := f.put(ns, config, nil)
	m := mustJSON(t, ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cd, Size: int64(len(config))},
		Layers:    descs,
	})
	md := f.put(ns, m, nil)
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: md, Size: int64(len(m)), Platform: &p}
}

// putIndex puts an index of the manifests in namespace ns.
func putIndex(t *testing.T, f *fakeContainerd, ns string, manifests ...ocispec.Descriptor) ocispec.Descriptor {
	t.Helper()
	idx := mustJSON(t, ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: manifests})
	d := f.put(ns, idx, nil)
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: d, Size: int64(len(idx))}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readAll(t *testing.T, s *Source, d digest.Digest) []byte {
	t.Helper()
	b, err := s.Blob(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	data, err := io.ReadAll(io.NewSectionReader(b, 0, b.Size()))
	if err != nil {
		t.Fatal(err)
	}
	return data
}
