package bridge

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/layerbridge/layerbridge/blobs"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// recordingBlobs is a blobs.Opener that remembers every digest it was asked
// for: a request outside the registered blobs must never reach the store.
type recordingBlobs struct {
	dirBlobs
	mu     sync.Mutex
	opened []digest.Digest
}

func (r *recordingBlobs) Blob(ctx context.Context, d digest.Digest) (blobs.Blob, error) {
	r.mu.Lock()
	r.opened = append(r.opened, d)
	r.mu.Unlock()
	return r.dirBlobs.Blob(ctx, d)
}

func (r *recordingBlobs) asked() []digest.Digest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]digest.Digest(nil), r.opened...)
}

// rawRequest answers the request line "METHOD target HTTP/1.1" as the
// server would: parsed by net/http from the bytes, then handled. path is
// the request's decoded path; ok is false when net/http itself refuses the
// request (it answers 400 then).
func rawRequest(h http.Handler, method, target string, header http.Header) (rec *httptest.ResponseRecorder, path string, ok bool) {
	var b strings.Builder
	b.WriteString(method + " " + target + " HTTP/1.1\r\nHost: bridge\r\n")
	for k, vs := range header {
		for _, v := range vs {
			b.WriteString(k + ": " + v + "\r\n")
		}
	}
	b.WriteString("\r\n")
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(b.String())))
	if err != nil {
		return nil, "", false
	}
	req.RemoteAddr = "192.0.2.20:40000"
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec, req.URL.Path, true
}

// layerAccess is a server with one live grant (tar, gz registered), a
// revoked one, and a blob stored but never registered.
type layerAccess struct {
	srv        *Server
	blobs      *recordingBlobs
	live       *Grant
	registered map[digest.Digest][]byte // under the live grant
	other      ocispec.Descriptor       // stored, registered by nobody
	revoked    ocispec.Descriptor       // registered only under the revoked grant
	livePath   string                   // of the tar blob
	deadPath   string
	capability string
}

func newLayerAccess(t testing.TB) *layerAccess {
	dir := t.TempDir()
	tarDesc := writeBlobTB(t, dir, bytes.Repeat([]byte("layer tar bytes "), 256))
	gzDesc := writeBlobTB(t, dir, []byte{0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0})
	a := &layerAccess{
		blobs:      &recordingBlobs{dirBlobs: dirBlobs(dir)},
		registered: map[digest.Digest][]byte{},
		other:      writeBlobTB(t, dir, []byte("not for clair")),
		revoked:    writeBlobTB(t, dir, []byte("scan over")),
	}
	a.srv = New()
	base, _ := url.Parse("http://192.0.2.10:4000")
	var err error
	if a.live, err = a.srv.Register(base, "live", a.blobs, []ocispec.Descriptor{tarDesc, gzDesc}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []ocispec.Descriptor{tarDesc, gzDesc} {
		b, _ := os.ReadFile(dir + "/" + d.Digest.Encoded())
		a.registered[d.Digest] = b
	}
	dead, err := a.srv.Register(base, "dead", a.blobs, []ocispec.Descriptor{a.revoked})
	if err != nil {
		t.Fatal(err)
	}
	a.livePath = pathOf(t, a.live, tarDesc.Digest)
	a.deadPath = pathOf(t, dead, a.revoked.Digest)
	dead.Revoke()
	a.capability = strings.Split(a.livePath, "/")[2]
	return a
}

func writeBlobTB(t testing.TB, dir string, content []byte) ocispec.Descriptor {
	d := digest.FromBytes(content)
	if err := os.WriteFile(dir+"/"+d.Encoded(), content, 0o644); err != nil {
		t.Fatal(err)
	}
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d, Size: int64(len(content))}
}

func pathOf(t testing.TB, g *Grant, d digest.Digest) string {
	u, err := g.URL(d)
	if err != nil {
		t.Fatal(err)
	}
	pu, _ := url.Parse(u)
	return pu.Path
}

// check is the access invariant for one answered request: a 2xx carries
// exactly a blob registered under the live grant, named by the path, and
// the store was never asked for anything else.
func (a *layerAccess) check(t testing.TB, target, path string, rec *httptest.ResponseRecorder) {
	t.Helper()
	for _, d := range a.blobs.asked() {
		if _, ok := a.registered[d]; !ok {
			t.Fatalf("%q: the store was asked for %s, which no live grant holds", target, d)
		}
	}
	if rec.Code < 200 || rec.Code > 299 || path == "/healthz" {
		return
	}
	d, err := digest.Parse(rec.Header().Get("Docker-Content-Digest"))
	if err != nil {
		t.Fatalf("%q answered %d without a digest header", target, rec.Code)
	}
	want, ok := a.registered[d]
	if !ok {
		t.Fatalf("%q answered %d with %s, which no live grant holds", target, rec.Code, d)
	}
	if body := rec.Body.Bytes(); len(body) > 0 && !bytes.Equal(body, want) {
		t.Fatalf("%q answered %d with %d bytes that are not blob %s", target, rec.Code, len(body), d)
	}
}

// TestLayerRequestPathSpace sends layer requests over every shape of path
// an attacker could try, through net/http's own request parsing: only the
// registered blob under its live capability is ever served, and nothing
// else is even opened.
func TestLayerRequestPathSpace(t *testing.T) {
	a := newLayerAccess(t)
	d := strings.Split(a.livePath, "/")[3]
	hex := strings.TrimPrefix(d, "sha256:")
	c := a.capability
	cases := []struct {
		target string
		status int // 0: any refusal (4xx)
	}{
		{a.livePath, 200},
		// The same URL spelled differently (encoded "/" or ":", absolute
		// form, a query) reaches the same blob: no other.
		{"/layers/" + c + "/sha256%3A" + hex, 200},
		{"/layers/" + c + "%2F" + d, 200},
		{"http://elsewhere.example" + a.livePath, 200},
		{a.livePath + "?path=../../../etc/passwd", 200},
		// Everything else is refused.
		{a.deadPath, 404},
		{"/layers/" + c + "/" + a.other.Digest.String(), 404},
		{"/layers/" + c + "/" + a.revoked.Digest.String(), 404},
		{a.livePath + "/", 404},
		{"/layers/" + c + "//" + d, 404},
		{"//layers/" + c + "/" + d, 404},
		{"/layers/" + c + "/./" + d, 404},
		{"/layers/./" + c + "/" + d, 404},
		{"/layers/" + c + "/x/../" + d, 404},
		{"/layers/" + c + "/" + d + "/../" + a.other.Digest.String(), 404},
		{"/layers/" + c + "%2f..%2f..%2f" + d, 404},
		{"/layers/%2e%2e/%2e%2e/etc/passwd", 404},
		{"/layers/" + c + "/..%2F..%2Fblobs%2Fsha256%2F" + a.other.Digest.Encoded(), 404},
		{"/layers/" + c + "/" + d + "%00", 404},
		{"/layers/" + c + "/" + d + ";.tar", 404},
		{"/layers/" + c + "\\" + d, 404},
		{"/layers/" + strings.ToUpper(c) + "/" + d, 404},
		{"/layers/" + c + "A/" + d, 404},
		{"/layers/" + c[:42] + "/" + d, 404},
		{"/layers/" + c + "/sha256:" + strings.ToUpper(hex), 404},
		{"/layers/" + c + "/" + hex, 404},
		{"/layers/" + c + "/sha512:" + hex + hex, 404},
		{"/layers/" + c + "/sha256:" + hex + "0", 404},
		{"/layers/" + c + "/" + strings.Repeat("a", 64<<10), 404},
		{"/layers/" + c + "/" + d + "/" + strings.Repeat("../", 4096) + "etc/passwd", 404},
		{"/layers/" + c, 404},
		{"/layers/", 404},
		{"/", 404},
		{"/blobs/sha256/" + hex, 404},
		{"/v2/x/blobs/" + d, 404}, // no registry view on this server
	}
	for _, tc := range cases {
		name := tc.target
		if len(name) > 80 {
			name = name[:80] + "..."
		}
		t.Run(name, func(t *testing.T) {
			for _, method := range []string{"GET", "HEAD"} {
				rec, path, ok := rawRequest(a.srv, method, tc.target, nil)
				if !ok {
					t.Fatalf("net/http refused %s %q", method, tc.target)
				}
				if rec.Code != tc.status {
					t.Errorf("%s: status %d, want %d", method, rec.Code, tc.status)
				}
				a.check(t, tc.target, path, rec)
			}
		})
	}
	// Writes are refused on the live path itself.
	for _, method := range []string{"PUT", "POST", "DELETE", "PATCH"} {
		rec, _, _ := rawRequest(a.srv, method, a.livePath, nil)
		if rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("%s %s: %d, want 405", method, a.livePath, rec.Code)
		}
	}
	// A request line too long for net/http never reaches the handler.
	ts := httptest.NewServer(a.srv)
	defer ts.Close()
	resp, err := ts.Client().Get(ts.URL + "/layers/" + c + "/" + strings.Repeat("a", 2<<20))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode < 400 {
		t.Errorf("2 MiB path: status %d", resp.StatusCode)
	}
}

// FuzzLayerPaths: whatever the request target, the layer server serves
// only blobs registered under a live capability, and opens nothing else.
func FuzzLayerPaths(f *testing.F) {
	a := newLayerAccess(f)
	d := strings.Split(a.livePath, "/")[3]
	for _, s := range []string{a.livePath, a.deadPath, "/layers/" + a.capability + "/" + a.other.Digest.String(),
		"/layers/" + a.capability + "/../" + d, "/layers/" + a.capability + "%2F" + d, "/healthz", "/v2/"} {
		f.Add("GET", s)
	}
	f.Fuzz(func(t *testing.T, method, target string) {
		rec, path, ok := rawRequest(a.srv, method, target, nil)
		if !ok {
			return
		}
		a.check(t, target, path, rec)
	})
}

// FuzzRegistryPaths: without the token nothing under /v2/ answers 2xx;
// with it, a 2xx is /v2/ itself, a tag list of a repository the catalog
// knows, or exactly a blob the catalog puts in the repository the path
// names. The catalog is never asked without the token.
func FuzzRegistryPaths(f *testing.F) {
	reg := newRegistryFixture(f)
	tok, err := NewToken(testSecret)
	if err != nil {
		f.Fatal(err)
	}
	srv := reg.server(tok)
	for _, s := range []string{"/v2/", "/v2/app/manifests/latest", "/v2/team/oci/tags/list", "/v2/app/blobs/sha256:" + strings.Repeat("a", 64),
		"/v2/multi/manifests/latest", "/v2/../app/manifests/latest", "/v2/app/blobs/uploads/", "/v2/_catalog"} {
		f.Add("GET", s, true)
		f.Add("GET", s, false)
	}
	f.Fuzz(func(t *testing.T, method, target string, withToken bool) {
		h := http.Header{}
		if withToken {
			h.Set("Authorization", "Bearer "+testSecret)
		}
		before := reg.cat.calls.Load()
		rec, p, ok := rawRequest(srv, method, target, h)
		if !ok {
			return
		}
		if !withToken {
			if rec.Code >= 200 && rec.Code < 300 && p != "/healthz" {
				t.Fatalf("%s %q without the token: %d", method, target, rec.Code)
			}
			if reg.cat.calls.Load() != before {
				t.Fatalf("%s %q without the token reached the catalog", method, target)
			}
			return
		}
		if rec.Code < 200 || rec.Code > 299 || method != "GET" {
			return
		}
		switch {
		case p == "/healthz":
		case p == "/v2/":
			if rec.Body.String() != "{}" {
				t.Fatalf("GET /v2/: %q", rec.Body.String())
			}
		case strings.HasSuffix(p, "/tags/list"):
			var tl tagList
			if err := json.Unmarshal(rec.Body.Bytes(), &tl); err != nil || reg.cat.repos[tl.Name] == nil {
				t.Fatalf("GET %q: tag list %q (%v)", target, rec.Body.String(), err)
			}
		default:
			name := p[len("/v2/"):]
			for _, sep := range []string{"/manifests/", "/blobs/"} {
				if i := strings.LastIndex(name, sep); i >= 0 {
					name = name[:i]
				}
			}
			repo := reg.cat.repos[name]
			got := digest.FromBytes(rec.Body.Bytes())
			if repo == nil {
				t.Fatalf("GET %q served %s for unknown repository %q", target, got, name)
			}
			if _, ok := repo.blobs[got]; !ok {
				t.Fatalf("GET %q served %s, not a blob of %s", target, got, name)
			}
		}
	})
}
