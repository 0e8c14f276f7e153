package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// fakeCatalog is an in-memory Catalog over the blobs of a directory. It is
// filled before the server serves and only read afterwards.
type fakeCatalog struct {
	dirBlobs
	repos map[string]*fakeRepo
	fail  map[string]error // by repository name: every call fails with it
	calls atomic.Int64
}

type fakeRepo struct {
	tags  map[string]ocispec.Descriptor
	blobs map[digest.Digest]ocispec.Descriptor
}

func (c *fakeCatalog) repo(name string) (*fakeRepo, error) {
	c.calls.Add(1)
	if err := c.fail[name]; err != nil {
		return nil, err
	}
	r, ok := c.repos[name]
	if !ok {
		return nil, fmt.Errorf("repository %s: %w", name, ErrRepositoryUnknown)
	}
	return r, nil
}

func (c *fakeCatalog) ResolveTag(_ context.Context, name, tag string) (ocispec.Descriptor, error) {
	r, err := c.repo(name)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	d, ok := r.tags[tag]
	if !ok {
		return ocispec.Descriptor{}, fmt.Errorf("tag %s: %w", tag, ErrNotInRepository)
	}
	return d, nil
}

func (c *fakeCatalog) Lookup(_ context.Context, name string, dg digest.Digest) (ocispec.Descriptor, error) {
	r, err := c.repo(name)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	d, ok := r.blobs[dg]
	if !ok {
		return ocispec.Descriptor{}, fmt.Errorf("blob %s: %w", dg, ErrNotInRepository)
	}
	return d, nil
}

func (c *fakeCatalog) Tags(_ context.Context, name string) ([]string, error) {
	r, err := c.repo(name)
	if err != nil {
		return nil, err
	}
	tags := []string{}
	for t := range r.tags {
		tags = append(tags, t)
	}
	return tags, nil
}

// registryFixture is a store directory and a catalog over random images:
//
//	app        Docker schema 2 image, tags latest and v1
//	team/oci   OCI image, tag 1.0
//	multi      OCI index of two Docker images, tag latest
//	many       app's image under tags in scrambled order
//	empty      a repository without tags
type registryFixture struct {
	dir   string
	cat   *fakeCatalog
	app   v1.Image
	oci   v1.Image
	index v1.ImageIndex
}

const testSecret = "s3cret-token-for-tests"

func newRegistryFixture(t testing.TB) *registryFixture {
	t.Helper()
	dir := t.TempDir()
	f := &registryFixture{dir: dir, cat: &fakeCatalog{dirBlobs: dirBlobs(dir), repos: map[string]*fakeRepo{}, fail: map[string]error{}}}
	var err error
	if f.app, err = random.Image(2048, 3); err != nil {
		t.Fatal(err)
	}
	f.addImage(t, "app", f.app, "latest", "v1")

	oci, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	f.oci = mutate.ConfigMediaType(mutate.MediaType(oci, types.OCIManifestSchema1), types.OCIConfigJSON)
	f.addImage(t, "team/oci", f.oci, "1.0")

	if f.index, err = random.Index(512, 1, 2); err != nil {
		t.Fatal(err)
	}
	f.addIndex(t, "multi", f.index, "latest")

	f.addImage(t, "many", f.app, "v2", "latest", "v10", "V1", "_x")
	f.cat.repos["empty"] = &fakeRepo{tags: map[string]ocispec.Descriptor{}, blobs: map[digest.Digest]ocispec.Descriptor{}}
	return f
}

func (f *registryFixture) server(tok Token) *Server {
	return New(WithRegistry(f.cat, tok))
}

func (f *registryFixture) repo(name string) *fakeRepo {
	r, ok := f.cat.repos[name]
	if !ok {
		r = &fakeRepo{tags: map[string]ocispec.Descriptor{}, blobs: map[digest.Digest]ocispec.Descriptor{}}
		f.cat.repos[name] = r
	}
	return r
}

func (f *registryFixture) put(t testing.TB, repo string, mt types.MediaType, b []byte) ocispec.Descriptor {
	t.Helper()
	d := digest.FromBytes(b)
	if err := os.WriteFile(filepath.Join(f.dir, d.Encoded()), b, 0o644); err != nil {
		t.Fatal(err)
	}
	desc := ocispec.Descriptor{MediaType: string(mt), Digest: d, Size: int64(len(b))}
	f.repo(repo).blobs[d] = desc
	return desc
}

func (f *registryFixture) stored(t *testing.T, d digest.Digest) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.dir, d.Encoded()))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (f *registryFixture) addImage(t testing.TB, repo string, img v1.Image, tags ...string) ocispec.Descriptor {
	t.Helper()
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	mt, err := img.MediaType()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	f.put(t, repo, m.Config.MediaType, cfg)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		lmt, err := l.MediaType()
		if err != nil {
			t.Fatal(err)
		}
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		f.put(t, repo, lmt, b)
	}
	desc := f.put(t, repo, mt, raw)
	for _, tag := range tags {
		f.repo(repo).tags[tag] = desc
	}
	return desc
}

func (f *registryFixture) addIndex(t testing.TB, repo string, idx v1.ImageIndex, tags ...string) {
	t.Helper()
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, child := range im.Manifests {
		img, err := idx.Image(child.Digest)
		if err != nil {
			t.Fatal(err)
		}
		f.addImage(t, repo, img)
	}
	raw, err := idx.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	desc := f.put(t, repo, im.MediaType, raw)
	for _, tag := range tags {
		f.repo(repo).tags[tag] = desc
	}
}

func mustDigest(t *testing.T, h v1.Hash) digest.Digest {
	t.Helper()
	d, err := digest.Parse(h.String())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func imageDigests(t *testing.T, img v1.Image) (manifest, config digest.Digest, layers []digest.Digest) {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range m.Layers {
		layers = append(layers, mustDigest(t, l.Digest))
	}
	return mustDigest(t, h), mustDigest(t, m.Config.Digest), layers
}

// errorCodes decodes a spec error body and returns its codes.
func errorCodes(t *testing.T, body []byte) []string {
	t.Helper()
	var e struct {
		Errors []struct {
			Code    string          `json:"code"`
			Message string          `json:"message"`
			Detail  json.RawMessage `json:"detail"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q is not the spec's JSON: %v", body, err)
	}
	var codes []string
	for _, x := range e.Errors {
		codes = append(codes, x.Code)
	}
	return codes
}

var bearer = http.Header{"Authorization": {"Bearer " + testSecret}}

func TestRegistryRoutes(t *testing.T) {
	f := newRegistryFixture(t)
	tok, err := NewToken(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	srv := f.server(tok)

	appM, appCfg, appLayers := imageDigests(t, f.app)
	ociM, _, ociLayers := imageDigests(t, f.oci)
	appRaw := f.stored(t, appM)
	ociRaw := f.stored(t, ociM)
	layer0 := f.stored(t, appLayers[0])
	im, err := f.index.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	indexD := f.cat.repos["multi"].tags["latest"].Digest
	child := mustDigest(t, im.Manifests[1].Digest)

	// Known to the catalog but absent from the store, and stored with a
	// size the catalog disagrees with.
	absentLayer := digest.FromString("never exported")
	f.repo("app").blobs[absentLayer] = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: absentLayer, Size: 14}
	absentManifest := digest.FromString("child of a containerd index")
	f.repo("app").blobs[absentManifest] = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: absentManifest, Size: 27}
	corrupt := f.put(t, "corrupt", types.DockerLayer, []byte("short blob"))
	corrupt.Size++
	f.repo("corrupt").blobs[corrupt.Digest] = corrupt
	f.cat.fail["broken"] = errors.New("database on fire at /var/lib/store")
	// More tags than one page holds, whatever n asks for.
	var huge []string
	for i := range maxTagsPage + 5 {
		huge = append(huge, fmt.Sprintf("t%04d", i))
		f.repo("huge").tags[huge[i]] = f.cat.repos["app"].tags["latest"]
	}
	hugePage, err := json.Marshal(tagList{Name: "huge", Tags: huge[:maxTagsPage]})
	if err != nil {
		t.Fatal(err)
	}

	mpath := func(repo, ref string) string { return "/v2/" + repo + "/manifests/" + ref }
	bpath := func(repo string, d digest.Digest) string { return "/v2/" + repo + "/blobs/" + d.String() }
	etag := func(d digest.Digest) string { return `"` + d.String() + `"` }

	type hdr = map[string]string
	tests := []struct {
		name   string
		method string
		path   string
		header http.Header
		status int
		want   hdr    // exact header values; "" means absent
		body   []byte // exact body, when not nil
		code   string // spec error code of the body, when set
	}{
		{"base", "GET", "/v2/", nil, 200, hdr{"Docker-Distribution-API-Version": "registry/2.0", "Content-Type": "application/json"}, []byte("{}"), ""},
		{"base head", "HEAD", "/v2/", nil, 200, hdr{"Docker-Distribution-API-Version": "registry/2.0", "Content-Length": "2"}, []byte{}, ""},

		{"manifest by tag", "GET", mpath("app", "latest"), nil, 200, hdr{
			"Content-Type": string(types.DockerManifestSchema2), "Docker-Content-Digest": appM.String(),
			"ETag": etag(appM), "Content-Length": fmt.Sprint(len(appRaw)), "Docker-Distribution-API-Version": "registry/2.0",
			"Cache-Control": "private, no-cache, no-transform", "Content-Encoding": "",
		}, appRaw, ""},
		{"manifest by digest", "GET", mpath("app", appM.String()), nil, 200, hdr{
			"Content-Type": string(types.DockerManifestSchema2), "Docker-Content-Digest": appM.String(), "Cache-Control": "private, no-transform",
		}, appRaw, ""},
		{"manifest head", "HEAD", mpath("app", "v1"), nil, 200, hdr{
			"Content-Type": string(types.DockerManifestSchema2), "Docker-Content-Digest": appM.String(),
			"Content-Length": fmt.Sprint(len(appRaw)), "ETag": etag(appM),
		}, []byte{}, ""},
		{"manifest if-none-match", "GET", mpath("app", "latest"), http.Header{"If-None-Match": {etag(appM)}}, 304, hdr{"ETag": etag(appM)}, []byte{}, ""},
		{"oci manifest", "GET", mpath("team/oci", "1.0"), nil, 200, hdr{"Content-Type": ocispec.MediaTypeImageManifest, "Docker-Content-Digest": ociM.String()}, ociRaw, ""},
		{"oci manifest to a client accepting only docker schema 2", "GET", mpath("team/oci", "1.0"),
			http.Header{"Accept": {string(types.DockerManifestSchema2)}}, 200, hdr{"Content-Type": ocispec.MediaTypeImageManifest}, ociRaw, ""},
		{"index by tag", "GET", mpath("multi", "latest"), nil, 200, hdr{"Content-Type": ocispec.MediaTypeImageIndex, "Docker-Content-Digest": indexD.String()}, f.stored(t, indexD), ""},
		{"index child by digest", "GET", mpath("multi", child.String()), nil, 200, hdr{"Content-Type": string(types.DockerManifestSchema2), "Docker-Content-Digest": child.String()}, f.stored(t, child), ""},
		{"manifest unknown tag", "GET", mpath("app", "nope"), nil, 404, hdr{"Content-Type": "application/json", "ETag": "", "Docker-Content-Digest": ""}, nil, "MANIFEST_UNKNOWN"},
		{"manifest unknown tag head", "HEAD", mpath("app", "nope"), nil, 404, nil, []byte{}, ""},
		{"manifest unknown repository", "GET", mpath("nothere", "latest"), nil, 404, nil, nil, "NAME_UNKNOWN"},
		{"manifest of another repository", "GET", mpath("app", ociM.String()), nil, 404, nil, nil, "MANIFEST_UNKNOWN"},
		{"layer through the manifests route", "GET", mpath("app", appLayers[0].String()), nil, 404, nil, nil, "MANIFEST_UNKNOWN"},
		{"config through the manifests route", "GET", mpath("app", appCfg.String()), nil, 404, nil, nil, "MANIFEST_UNKNOWN"},
		{"manifest listed but not stored", "GET", mpath("app", absentManifest.String()), nil, 404, nil, nil, "MANIFEST_UNKNOWN"},
		{"manifest, catalog fails", "GET", mpath("broken", "latest"), nil, 500, nil, nil, "UNKNOWN"},

		{"blob", "GET", bpath("app", appLayers[0]), nil, 200, hdr{
			"Content-Type": "application/octet-stream", "Docker-Content-Digest": appLayers[0].String(),
			"ETag": etag(appLayers[0]), "Content-Length": fmt.Sprint(len(layer0)), "Content-Encoding": "",
			"Docker-Distribution-API-Version": "registry/2.0",
		}, layer0, ""},
		{"blob head", "HEAD", bpath("app", appLayers[0]), nil, 200, hdr{"Content-Length": fmt.Sprint(len(layer0)), "Docker-Content-Digest": appLayers[0].String()}, []byte{}, ""},
		{"blob range", "GET", bpath("app", appLayers[0]), http.Header{"Range": {"bytes=10-19"}}, 206, hdr{
			"Content-Range": fmt.Sprintf("bytes 10-19/%d", len(layer0)), "Content-Length": "10",
		}, layer0[10:20], ""},
		{"blob range not satisfiable", "GET", bpath("app", appLayers[0]), http.Header{"Range": {"bytes=999999-"}}, 416, nil, nil, ""},
		{"config blob", "GET", bpath("app", appCfg), nil, 200, hdr{"Content-Type": "application/octet-stream"}, f.stored(t, appCfg), ""},
		{"manifest as a blob", "GET", bpath("app", appM), nil, 200, hdr{"Docker-Content-Digest": appM.String()}, appRaw, ""},
		{"blob if-none-match", "GET", bpath("app", appLayers[0]), http.Header{"If-None-Match": {etag(appLayers[0])}}, 304, nil, []byte{}, ""},
		{"blob of another repository", "GET", bpath("team/oci", appLayers[0]), nil, 404, nil, nil, "BLOB_UNKNOWN"},
		{"blob of another repository head", "HEAD", bpath("app", ociLayers[0]), nil, 404, hdr{"Content-Type": "application/json"}, []byte{}, ""},
		{"blob unknown repository", "GET", bpath("nothere", appLayers[0]), nil, 404, nil, nil, "NAME_UNKNOWN"},
		{"blob listed but not stored", "GET", bpath("app", absentLayer), nil, 404, nil, nil, "BLOB_UNKNOWN"},
		{"blob stored with the wrong size", "GET", bpath("corrupt", corrupt.Digest), nil, 500, hdr{"ETag": ""}, nil, "UNKNOWN"},

		{"tags", "GET", "/v2/many/tags/list", nil, 200, hdr{"Content-Type": "application/json", "Link": ""}, []byte(`{"name":"many","tags":["V1","_x","latest","v10","v2"]}`), ""},
		{"tags first page", "GET", "/v2/many/tags/list?n=2", nil, 200, hdr{"Link": `</v2/many/tags/list?last=_x&n=2>; rel="next"`}, []byte(`{"name":"many","tags":["V1","_x"]}`), ""},
		{"tags middle page", "GET", "/v2/many/tags/list?n=2&last=_x", nil, 200, hdr{"Link": `</v2/many/tags/list?last=v10&n=2>; rel="next"`}, []byte(`{"name":"many","tags":["latest","v10"]}`), ""},
		{"tags last page", "GET", "/v2/many/tags/list?n=2&last=v10", nil, 200, hdr{"Link": ""}, []byte(`{"name":"many","tags":["v2"]}`), ""},
		{"tags exact last page", "GET", "/v2/many/tags/list?n=5", nil, 200, hdr{"Link": ""}, []byte(`{"name":"many","tags":["V1","_x","latest","v10","v2"]}`), ""},
		{"tags after a tag that is gone", "GET", "/v2/many/tags/list?last=a", nil, 200, hdr{"Link": ""}, []byte(`{"name":"many","tags":["latest","v10","v2"]}`), ""},
		{"tags beyond the page cap", "GET", "/v2/huge/tags/list?n=5000", nil, 200, hdr{"Link": fmt.Sprintf(`</v2/huge/tags/list?last=%s&n=5000>; rel="next"`, huge[maxTagsPage-1])}, hugePage, ""},
		{"tags n=0", "GET", "/v2/many/tags/list?n=0", nil, 200, hdr{"Link": ""}, []byte(`{"name":"many","tags":[]}`), ""},
		{"tags of a nested name", "GET", "/v2/team/oci/tags/list", nil, 200, nil, []byte(`{"name":"team/oci","tags":["1.0"]}`), ""},
		{"tags of an empty repository", "GET", "/v2/empty/tags/list", nil, 200, nil, []byte(`{"name":"empty","tags":[]}`), ""},
		{"tags negative n", "GET", "/v2/many/tags/list?n=-1", nil, 400, nil, nil, "PAGINATION_NUMBER_INVALID"},
		{"tags non-numeric n", "GET", "/v2/many/tags/list?n=all", nil, 400, nil, nil, "PAGINATION_NUMBER_INVALID"},
		{"tags unknown repository", "GET", "/v2/nothere/tags/list", nil, 404, nil, nil, "NAME_UNKNOWN"},

		{"push manifest", "PUT", mpath("app", "latest"), nil, 405, hdr{"Allow": "GET, HEAD"}, nil, "UNSUPPORTED"},
		{"start upload", "POST", "/v2/app/blobs/uploads/", nil, 405, hdr{"Allow": ""}, nil, "UNSUPPORTED"},
		{"mount", "POST", "/v2/app/blobs/uploads/?mount=" + appLayers[0].String() + "&from=team/oci", nil, 405, nil, nil, "UNSUPPORTED"},
		{"upload chunk", "PATCH", "/v2/app/blobs/uploads/0b7e0f4a", nil, 405, nil, nil, "UNSUPPORTED"},
		{"finish upload", "PUT", "/v2/app/blobs/uploads/0b7e0f4a?digest=" + appLayers[0].String(), nil, 405, nil, nil, "UNSUPPORTED"},
		{"delete manifest", "DELETE", mpath("app", appM.String()), nil, 405, nil, nil, "UNSUPPORTED"},
		{"delete blob", "DELETE", bpath("app", appLayers[0]), nil, 405, hdr{"Allow": "GET, HEAD"}, nil, "UNSUPPORTED"},
		{"delete tag", "DELETE", mpath("app", "latest"), nil, 405, nil, nil, "UNSUPPORTED"},
		{"upload status", "GET", "/v2/app/blobs/uploads/0b7e0f4a", nil, 405, hdr{"Allow": ""}, nil, "UNSUPPORTED"},
		{"cancel upload", "DELETE", "/v2/app/blobs/uploads/0b7e0f4a", nil, 405, nil, nil, "UNSUPPORTED"},
		{"push to a new repository", "POST", "/v2/brand/new/blobs/uploads/", nil, 405, nil, nil, "UNSUPPORTED"},
		{"put on the base", "PUT", "/v2/", nil, 405, nil, nil, ""},
		{"tags head", "HEAD", "/v2/many/tags/list", nil, 405, nil, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.path, nil)
			for k, v := range bearer {
				req.Header[k] = v
			}
			for k, v := range tt.header {
				req.Header[k] = v
			}
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d (body %q)", rec.Code, tt.status, rec.Body.String())
			}
			h := rec.Result().Header
			for k, v := range tt.want {
				if got := h.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if tt.body != nil && !bytes.Equal(rec.Body.Bytes(), tt.body) {
				t.Errorf("body = %q, want %q", trim(rec.Body.Bytes()), trim(tt.body))
			}
			if tt.code != "" {
				if got := errorCodes(t, rec.Body.Bytes()); !slices.Equal(got, []string{tt.code}) {
					t.Errorf("error codes = %v, want [%s]", got, tt.code)
				}
				if ct := h.Get("Content-Type"); ct != "application/json" {
					t.Errorf("error Content-Type = %q", ct)
				}
			}
			if strings.Contains(rec.Body.String(), "/var/lib/store") || strings.Contains(rec.Body.String(), f.dir) {
				t.Errorf("body leaks a store path: %q", rec.Body.String())
			}
		})
	}
}

func trim(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}

// TestRegistryRefusesMalformedInput checks that the route patterns keep
// malformed names, tags and digests away from the handlers: the catalog is
// never asked, and nothing lists a directory.
func TestRegistryRefusesMalformedInput(t *testing.T) {
	f := newRegistryFixture(t)
	srv := f.server(Token{})
	_, _, layers := imageDigests(t, f.app)
	paths := []struct{ name, path string }{
		{"catalog", "/v2/_catalog"},
		{"repository listing", "/v2/app/"},
		{"blobs listing", "/v2/app/blobs/"},
		{"manifests listing", "/v2/app/manifests/"},
		{"upper-case name", "/v2/App/manifests/latest"},
		{"name with a leading separator", "/v2/-app/manifests/latest"},
		{"name with a double slash", "/v2/team//oci/manifests/1.0"},
		{"dot-dot name", "/v2/../app/manifests/latest"},
		{"dot-dot tag", "/v2/app/manifests/.."},
		{"encoded traversal", "/v2/app/blobs/%2e%2e%2f%2e%2e%2fetc%2fpasswd"},
		{"tag too long", "/v2/app/manifests/" + strings.Repeat("a", 129)},
		{"tag with a leading dot", "/v2/app/manifests/.latest"},
		{"blob by tag", "/v2/app/blobs/latest"},
		{"blob by bare hex", "/v2/app/blobs/" + layers[0].Encoded()},
		{"upper-case digest", "/v2/app/blobs/sha256:" + strings.ToUpper(layers[0].Encoded())},
		{"short digest", "/v2/app/blobs/sha256:abc"},
		{"sha512 digest", "/v2/app/blobs/sha512:" + strings.Repeat("a", 128)},
		{"sha512 manifest", "/v2/app/manifests/sha512:" + strings.Repeat("a", 128)},
		{"referrers", "/v2/app/referrers/" + layers[0].String()},
		{"no trailing slash", "/v2"},
	}
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			for _, m := range []string{"GET", "HEAD"} {
				req := httptest.NewRequest(m, "http://bridge"+p.path, nil)
				req.RemoteAddr = "127.0.0.1:40000"
				rec := httptest.NewRecorder()
				srv.ServeHTTP(rec, req)
				if rec.Code != http.StatusNotFound {
					t.Errorf("%s status = %d, want 404", m, rec.Code)
				}
				if strings.Contains(rec.Body.String(), layers[0].Encoded()) {
					t.Errorf("%s response leaks a stored digest: %q", m, rec.Body.String())
				}
			}
		})
	}
	if n := f.cat.calls.Load(); n != 0 {
		t.Errorf("catalog was asked %d times for malformed requests", n)
	}
	// Sanity: the same server answers well-formed requests.
	req := httptest.NewRequest("GET", "/v2/app/manifests/latest", nil)
	req.RemoteAddr = "127.0.0.1:40000"
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("well-formed request: status %d", rec.Code)
	}
}

func TestRegistryIsOffWithoutTheOption(t *testing.T) {
	srv := New()
	for _, path := range []string{"/v2/", "/v2/app/manifests/latest", "/v2/app/tags/list"} {
		req := httptest.NewRequest("GET", path, nil)
		req.RemoteAddr = "127.0.0.1:40000"
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code != http.StatusNotFound {
			t.Errorf("GET %s status = %d, want 404", path, rec.Code)
		}
	}
}

// TestRegistryHeadOverHTTP checks HEAD through a real connection, where the
// client sees Content-Length without a body.
func TestRegistryHeadOverHTTP(t *testing.T) {
	f := newRegistryFixture(t)
	ts := httptest.NewServer(f.server(Token{}))
	defer ts.Close()
	appM, _, layers := imageDigests(t, f.app)
	for _, tt := range []struct {
		path string
		d    digest.Digest
	}{
		{"/v2/app/manifests/latest", appM},
		{"/v2/app/manifests/" + appM.String(), appM},
		{"/v2/app/blobs/" + layers[2].String(), layers[2]},
	} {
		resp, err := ts.Client().Head(ts.URL + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		size := int64(len(f.stored(t, tt.d)))
		if resp.StatusCode != 200 || resp.ContentLength != size || len(body) != 0 {
			t.Errorf("HEAD %s: status %d, Content-Length %d (want %d), %d body bytes", tt.path, resp.StatusCode, resp.ContentLength, size, len(body))
		}
		if got := resp.Header.Get("Docker-Content-Digest"); got != tt.d.String() {
			t.Errorf("HEAD %s: Docker-Content-Digest = %q", tt.path, got)
		}
	}
}

// TestPullWorkflowConformance pulls through go-containerregistry's remote
// package, a real distribution client, and checks what it got against what
// is stored.
func TestPullWorkflowConformance(t *testing.T) {
	f := newRegistryFixture(t)
	tok, err := NewToken(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	withToken := httptest.NewServer(f.server(tok))
	defer withToken.Close()
	loopbackOnly := httptest.NewServer(f.server(Token{}))
	defer loopbackOnly.Close()

	clients := []struct {
		name string
		srv  *httptest.Server
		opts []remote.Option
	}{
		{"anonymous on loopback", loopbackOnly, nil},
		{"basic", withToken, []remote.Option{remote.WithAuth(&authn.Basic{Username: "whoever", Password: testSecret})}},
		{"bearer", withToken, []remote.Option{remote.WithAuth(authn.FromConfig(authn.AuthConfig{RegistryToken: testSecret}))}},
	}
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			host := strings.TrimPrefix(c.srv.URL, "http://")
			ctx := t.Context()
			opts := append([]remote.Option{remote.WithContext(ctx), remote.WithTransport(c.srv.Client().Transport)}, c.opts...)
			ref := func(s string) name.Reference {
				t.Helper()
				r, err := name.ParseReference(host+"/"+s, name.Insecure)
				if err != nil {
					t.Fatal(err)
				}
				return r
			}

			pulled := map[string]v1.Image{}
			appM, _, _ := imageDigests(t, f.app)
			ociM, _, _ := imageDigests(t, f.oci)
			for _, r := range []string{"app:latest", "app@" + appM.String(), "team/oci:1.0", "team/oci@" + ociM.String()} {
				img, err := remote.Image(ref(r), opts...)
				if err != nil {
					t.Fatalf("pull %s: %v", r, err)
				}
				pulled[r] = img
			}
			checkSameImage(t, "app:latest", pulled["app:latest"], f.app)
			checkSameImage(t, "app by digest", pulled["app@"+appM.String()], f.app)
			checkSameImage(t, "team/oci:1.0", pulled["team/oci:1.0"], f.oci)
			checkSameImage(t, "team/oci by digest", pulled["team/oci@"+ociM.String()], f.oci)
			if mt, _ := pulled["team/oci:1.0"].MediaType(); mt != types.OCIManifestSchema1 {
				t.Errorf("team/oci media type = %s", mt)
			}

			idx, err := remote.Index(ref("multi:latest"), opts...)
			if err != nil {
				t.Fatal(err)
			}
			if err := validate.Index(idx); err != nil {
				t.Errorf("validate multi:latest: %v", err)
			}
			wantIdx, _ := f.index.Digest()
			if got, _ := idx.Digest(); got != wantIdx {
				t.Errorf("index digest = %s, want %s", got, wantIdx)
			}

			desc, err := remote.Get(ref("app:v1"), opts...)
			if err != nil {
				t.Fatal(err)
			}
			if desc.Digest.String() != appM.String() || desc.MediaType != types.DockerManifestSchema2 || desc.Size != int64(len(f.stored(t, appM))) {
				t.Errorf("Get app:v1 = %s %s %d", desc.Digest, desc.MediaType, desc.Size)
			}
			head, err := remote.Head(ref("team/oci:1.0"), opts...)
			if err != nil {
				t.Fatal(err)
			}
			if head.Digest.String() != ociM.String() || head.MediaType != types.OCIManifestSchema1 || head.Size != int64(len(f.stored(t, ociM))) {
				t.Errorf("Head team/oci:1.0 = %s %s %d", head.Digest, head.MediaType, head.Size)
			}

			repo, err := name.NewRepository(host+"/many", name.Insecure)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{"V1", "_x", "latest", "v10", "v2"}
			for _, pageSize := range []int{0, 2, 1, 5, 1000} {
				o := opts
				if pageSize > 0 {
					o = append(slices.Clone(opts), remote.WithPageSize(pageSize))
				}
				tags, err := remote.List(repo, o...)
				if err != nil {
					t.Fatalf("list with page size %d: %v", pageSize, err)
				}
				if !slices.Equal(tags, want) {
					t.Errorf("list with page size %d = %v, want %v", pageSize, tags, want)
				}
			}

			// A blob of team/oci is not part of app, and is not served there.
			ociLayers, err := f.oci.Layers()
			if err != nil {
				t.Fatal(err)
			}
			ld, err := ociLayers[0].Digest()
			if err != nil {
				t.Fatal(err)
			}
			l, err := remote.Layer(ref("app@"+ld.String()).(name.Digest), opts...)
			if err != nil {
				t.Fatal(err)
			}
			rc, err := l.Compressed()
			if err == nil {
				_, err = io.ReadAll(rc)
				rc.Close()
			}
			var terr *transport.Error
			if !errors.As(err, &terr) || terr.StatusCode != 404 || len(terr.Errors) != 1 || terr.Errors[0].Code != transport.BlobUnknownErrorCode {
				t.Errorf("cross-repository blob: err = %v, want 404 BLOB_UNKNOWN", err)
			}
		})
	}

	t.Run("refused without the token", func(t *testing.T) {
		host := strings.TrimPrefix(withToken.URL, "http://")
		for _, auth := range []authn.Authenticator{
			authn.Anonymous,
			&authn.Basic{Username: "whoever", Password: testSecret + "x"},
			authn.FromConfig(authn.AuthConfig{RegistryToken: "not-the-token-at-all"}),
		} {
			r, err := name.ParseReference(host+"/app:latest", name.Insecure)
			if err != nil {
				t.Fatal(err)
			}
			_, err = remote.Image(r, remote.WithContext(t.Context()), remote.WithAuth(auth), remote.WithTransport(withToken.Client().Transport))
			var terr *transport.Error
			if !errors.As(err, &terr) || terr.StatusCode != http.StatusUnauthorized {
				t.Errorf("pull with %T: err = %v, want 401", auth, err)
			}
		}
	})
}

// checkSameImage compares a pulled image with the stored one: manifest
// bytes and digest, config, every layer digest in order, and (through
// validate.Image) every layer's bytes against its digest and diffID.
func checkSameImage(t *testing.T, label string, got, want v1.Image) {
	t.Helper()
	if err := validate.Image(got); err != nil {
		t.Errorf("%s: validate: %v", label, err)
	}
	gd, err := got.Digest()
	if err != nil {
		t.Fatalf("%s: %v", label, err)
	}
	wd, _ := want.Digest()
	if gd != wd {
		t.Errorf("%s: manifest digest = %s, want %s", label, gd, wd)
	}
	gm, _ := got.RawManifest()
	wm, _ := want.RawManifest()
	if !bytes.Equal(gm, wm) {
		t.Errorf("%s: manifest bytes differ", label)
	}
	gc, _ := got.ConfigName()
	wc, _ := want.ConfigName()
	if gc != wc {
		t.Errorf("%s: config = %s, want %s", label, gc, wc)
	}
	gl, err := got.Layers()
	if err != nil {
		t.Fatalf("%s: %v", label, err)
	}
	wl, _ := want.Layers()
	if len(gl) != len(wl) {
		t.Fatalf("%s: %d layers, want %d", label, len(gl), len(wl))
	}
	for i := range gl {
		g, err := gl[i].Digest()
		if err != nil {
			t.Fatalf("%s: layer %d: %v", label, i, err)
		}
		w, _ := wl[i].Digest()
		if g != w {
			t.Errorf("%s: layer %d digest = %s, want %s", label, i, g, w)
		}
		rc, err := gl[i].Compressed()
		if err != nil {
			t.Fatalf("%s: layer %d: %v", label, i, err)
		}
		h, n, err := v1.SHA256(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("%s: layer %d: %v", label, i, err)
		}
		ws, _ := wl[i].Size()
		if h != w || n != ws {
			t.Errorf("%s: layer %d served %d bytes hashing to %s, want %d bytes of %s", label, i, n, h, ws, w)
		}
	}
}

func TestRegistryLogsEveryRequest(t *testing.T) {
	f := newRegistryFixture(t)
	f.cat.fail["broken"] = errors.New("database on fire")
	var buf bytes.Buffer
	srv := New(WithRegistry(f.cat, Token{}), WithLogger(slog.New(slog.NewJSONHandler(&buf, nil))))
	for _, path := range []string{"/v2/app/manifests/latest", "/v2/app/manifests/nope", "/v2/broken/tags/list"} {
		req := httptest.NewRequest("GET", path, nil)
		req.RemoteAddr = "127.0.0.1:1"
		srv.ServeHTTP(httptest.NewRecorder(), req)
	}
	type record struct {
		Level, Msg, Repository, Reference, Err string
		Status                                 int
		Bytes                                  int64
	}
	var got []record
	dec := json.NewDecoder(&buf)
	for dec.More() {
		var r record
		if err := dec.Decode(&r); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if len(got) != 3 {
		t.Fatalf("%d log records, want 3: %+v", len(got), got)
	}
	appRaw := f.stored(t, f.cat.repos["app"].tags["latest"].Digest)
	if r := got[0]; r.Level != "INFO" || r.Status != 200 || r.Repository != "app" || r.Reference != "latest" || r.Bytes != int64(len(appRaw)) || r.Err != "" {
		t.Errorf("served manifest logged as %+v", r)
	}
	if r := got[1]; r.Status != 404 || !strings.Contains(r.Err, "MANIFEST_UNKNOWN") || !strings.Contains(r.Err, ErrNotInRepository.Error()) {
		t.Errorf("unknown manifest logged as %+v", r)
	}
	if r := got[2]; r.Level != "ERROR" || r.Status != 500 || !strings.Contains(r.Err, "database on fire") {
		t.Errorf("catalog failure logged as %+v", r)
	}
}
