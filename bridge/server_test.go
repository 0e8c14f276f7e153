package bridge

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/layerbridge/layerbridge/blobs"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/internal/testwait"
)

// dirBlobs is a blobs.Opener over a directory of files named by hex digest.
type dirBlobs string

func (d dirBlobs) Blob(_ context.Context, dg digest.Digest) (blobs.Blob, error) {
	if err := dg.Validate(); err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(string(d), dg.Encoded()))
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", dg, err)
	}
	return blobs.FromFile(f)
}

func writeBlob(t *testing.T, dir string, content []byte) ocispec.Descriptor {
	t.Helper()
	d := digest.FromBytes(content)
	if err := os.WriteFile(filepath.Join(dir, d.Encoded()), content, 0o644); err != nil {
		t.Fatal(err)
	}
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d, Size: int64(len(content))}
}

func gzipBytes(t *testing.T, p []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(p)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

type fixture struct {
	srv      *Server
	blobs    dirBlobs
	grant    *Grant
	tar, gz  ocispec.Descriptor
	zst      ocispec.Descriptor
	other    ocispec.Descriptor // stored, but not registered
	base     *url.URL
	fetches  []Fetch
	fetchesM sync.Mutex
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{}
	f.tar = writeBlob(t, dir, bytes.Repeat([]byte("layer tar bytes "), 4096))
	f.gz = writeBlob(t, dir, gzipBytes(t, []byte("gzipped layer")))
	f.zst = writeBlob(t, dir, append([]byte{0x28, 0xb5, 0x2f, 0xfd}, "zstd-ish payload"...))
	f.other = writeBlob(t, dir, []byte("not for clair"))
	f.blobs = dirBlobs(dir)
	f.srv = New(WithFetchObserver(func(fe Fetch) {
		f.fetchesM.Lock()
		f.fetches = append(f.fetches, fe)
		f.fetchesM.Unlock()
	}))
	f.base, _ = url.Parse("http://192.0.2.10:4000")
	g, err := f.srv.Register(f.base, "test", f.blobs, []ocispec.Descriptor{f.tar, f.gz, f.zst})
	if err != nil {
		t.Fatal(err)
	}
	f.grant = g
	return f
}

func (f *fixture) path(t *testing.T, d digest.Digest) string {
	t.Helper()
	u, err := f.grant.URL(d)
	if err != nil {
		t.Fatal(err)
	}
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return pu.Path
}

func TestServeRegisteredLayer(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name       string
		method     string
		desc       func() ocispec.Descriptor
		header     http.Header
		wantStatus int
		wantType   string
		wantBody   func(full []byte) []byte
	}{
		{"get tar", "GET", func() ocispec.Descriptor { return f.tar }, nil, 200, MediaTypeLayerTar, func(b []byte) []byte { return b }},
		{"get gzip", "GET", func() ocispec.Descriptor { return f.gz }, nil, 200, MediaTypeLayerGzip, func(b []byte) []byte { return b }},
		{"get zstd", "GET", func() ocispec.Descriptor { return f.zst }, nil, 200, MediaTypeLayerZstd, func(b []byte) []byte { return b }},
		{"head", "HEAD", func() ocispec.Descriptor { return f.tar }, nil, 200, MediaTypeLayerTar, func([]byte) []byte { return nil }},
		{"range", "GET", func() ocispec.Descriptor { return f.tar }, http.Header{"Range": {"bytes=16-31"}}, 206, MediaTypeLayerTar, func(b []byte) []byte { return b[16:32] }},
		{"if-none-match", "GET", func() ocispec.Descriptor { return f.tar }, http.Header{"If-None-Match": {`"` + f.tar.Digest.String() + `"`}}, 304, "", func([]byte) []byte { return nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			desc := tt.desc()
			req := httptest.NewRequest(tt.method, f.path(t, desc.Digest), nil)
			for k, v := range tt.header {
				req.Header[k] = v
			}
			rec := httptest.NewRecorder()
			f.srv.ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %q)", rec.Code, tt.wantStatus, rec.Body.String())
			}
			full := readStored(t, f, desc)
			if want := tt.wantBody(full); !bytes.Equal(rec.Body.Bytes(), want) {
				t.Errorf("body = %d bytes, want %d", rec.Body.Len(), len(want))
			}
			h := rec.Result().Header
			if tt.wantType != "" && h.Get("Content-Type") != tt.wantType {
				t.Errorf("Content-Type = %q, want %q", h.Get("Content-Type"), tt.wantType)
			}
			if h.Get("Content-Encoding") != "" {
				t.Errorf("Content-Encoding = %q, want none: clair re-hashes the bytes it receives", h.Get("Content-Encoding"))
			}
			if got := h.Get("ETag"); got != `"`+desc.Digest.String()+`"` {
				t.Errorf("ETag = %q", got)
			}
			if tt.wantStatus == 200 {
				if got := h.Get("Content-Length"); got != fmt.Sprint(desc.Size) {
					t.Errorf("Content-Length = %q, want %d", got, desc.Size)
				}
			}
		})
	}
}

func readStored(t *testing.T, f *fixture, d ocispec.Descriptor) []byte {
	t.Helper()
	blob, err := f.blobs.Blob(t.Context(), d.Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer blob.Close()
	b, err := io.ReadAll(blobs.ReadSeeker(blob))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRefusesEverythingElse(t *testing.T) {
	f := newFixture(t)
	otherGrant, err := f.srv.Register(f.base, "other", f.blobs, []ocispec.Descriptor{f.other})
	if err != nil {
		t.Fatal(err)
	}
	otherPath := func() string {
		u, _ := otherGrant.URL(f.other.Digest)
		pu, _ := url.Parse(u)
		return pu.Path
	}()
	tarPath := f.path(t, f.tar.Digest)
	capability := strings.Split(tarPath, "/")[2]
	paths := []struct{ name, method, path string }{
		{"root listing", "GET", "/"},
		{"layers listing", "GET", "/layers/"},
		{"capability listing", "GET", "/layers/" + capability + "/"},
		{"unregistered blob under a live capability", "GET", "/layers/" + capability + "/" + f.other.Digest.String()},
		{"unknown capability", "GET", strings.Replace(tarPath, capability, strings.Repeat("A", 43), 1)},
		{"malformed digest", "GET", "/layers/" + capability + "/sha256:zzzz"},
		{"sha512 digest", "GET", "/layers/" + capability + "/sha512:" + strings.Repeat("a", 128)},
		{"traversal", "GET", "/layers/" + capability + "/../../etc/passwd"},
		{"encoded traversal", "GET", "/layers/" + capability + "/%2e%2e%2f%2e%2e%2fetc%2fpasswd"},
		{"bare hex", "GET", "/layers/" + capability + "/" + f.tar.Digest.Encoded()},
		{"registry-style path", "GET", "/v2/x/blobs/" + f.tar.Digest.String()},
	}
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			f.srv.ServeHTTP(rec, httptest.NewRequest(p.method, "http://bridge"+p.path, nil))
			if rec.Code != http.StatusNotFound {
				t.Fatalf("status = %d, want 404", rec.Code)
			}
			if strings.Contains(rec.Body.String(), f.tar.Digest.Encoded()) {
				t.Errorf("response leaks a stored digest: %q", rec.Body.String())
			}
		})
	}
	t.Run("other grant's blob is served under its own capability only", func(t *testing.T) {
		rec := httptest.NewRecorder()
		f.srv.ServeHTTP(rec, httptest.NewRequest("GET", otherPath, nil))
		if rec.Code != 200 {
			t.Fatalf("status = %d, want 200", rec.Code)
		}
	})
	t.Run("revoked", func(t *testing.T) {
		f.grant.Revoke()
		rec := httptest.NewRecorder()
		f.srv.ServeHTTP(rec, httptest.NewRequest("GET", tarPath, nil))
		if rec.Code != http.StatusNotFound {
			t.Fatalf("status after revoke = %d, want 404", rec.Code)
		}
	})
	t.Run("methods", func(t *testing.T) {
		rec := httptest.NewRecorder()
		f.srv.ServeHTTP(rec, httptest.NewRequest("DELETE", otherPath, nil))
		if rec.Code != http.StatusMethodNotAllowed {
			t.Fatalf("DELETE status = %d, want 405", rec.Code)
		}
	})
}

func TestCorruptStoredBlobIsNotServed(t *testing.T) {
	dir := t.TempDir()
	desc := writeBlob(t, dir, []byte("original content"))
	srv := New()
	base, _ := url.Parse("http://127.0.0.1:1")
	g, err := srv.Register(base, "t", dirBlobs(dir), []ocispec.Descriptor{desc})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, desc.Digest.Encoded()), []byte("short"), 0o644); err != nil {
		t.Fatal(err)
	}
	u, _ := g.URL(desc.Digest)
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest("GET", u, nil))
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("status = %d, want 500 for a blob whose size disagrees with its descriptor", rec.Code)
	}
	if err := os.Remove(filepath.Join(dir, desc.Digest.Encoded())); err != nil {
		t.Fatal(err)
	}
	rec = httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest("GET", u, nil))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("status = %d, want 404 for a registered blob missing from the store", rec.Code)
	}
	fe := g.Fetches()
	if len(fe) != 2 || !errors.Is(fe[1].Err, fs.ErrNotExist) {
		t.Fatalf("fetches = %+v, want the second to record fs.ErrNotExist", fe)
	}
}

func TestServedBytesMatchTheURLDigest(t *testing.T) {
	f := newFixture(t)
	ts := httptest.NewServer(f.srv)
	defer ts.Close()
	base, _ := url.Parse(ts.URL)
	g, err := f.srv.Register(base, "parallel", f.blobs, []ocispec.Descriptor{f.tar, f.gz, f.zst})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 60)
	ctx := testwait.Context(t)
	for i := range 60 {
		d := []ocispec.Descriptor{f.tar, f.gz, f.zst}[i%3]
		wg.Go(func() {
			u, err := g.URL(d.Digest)
			if err != nil {
				errs <- err
				return
			}
			req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
			resp, err := ts.Client().Do(req)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			h := sha256.New()
			n, err := io.Copy(h, resp.Body)
			if err != nil {
				errs <- err
				return
			}
			if got := digest.NewDigest(digest.SHA256, h); got != d.Digest || n != d.Size || resp.StatusCode != 200 {
				errs <- fmt.Errorf("GET %s: status %d, %d bytes hashing to %s", d.Digest, resp.StatusCode, n, got)
			}
		})
	}
	testwait.Wait(t, &wg, "60 downloads")
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// A request is recorded after its last byte went out, which may be
	// after the client has it all: Close waits for the records.
	fetches, err := g.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(fetches); got != 60 {
		t.Errorf("grant recorded %d fetches, want 60", got)
	}
	for _, fe := range fetches {
		if fe.Status != 200 || fe.Bytes == 0 || fe.Grant != "parallel" {
			t.Errorf("fetch = %+v", fe)
		}
	}
}

func TestRegisterRejectsBadInput(t *testing.T) {
	srv := New()
	blobs := dirBlobs(t.TempDir())
	base, _ := url.Parse("http://127.0.0.1:1")
	if _, err := srv.Register(&url.URL{Path: "/relative"}, "x", blobs, nil); err == nil {
		t.Error("relative base accepted")
	}
	if _, err := srv.Register(base, "x", nil, nil); err == nil {
		t.Error("no BlobOpener accepted")
	}
	if _, err := srv.Register(base, "x", blobs, []ocispec.Descriptor{{Digest: "sha256:nothex"}}); err == nil {
		t.Error("malformed digest accepted")
	}
	if _, err := srv.Register(base, "x", blobs, []ocispec.Descriptor{{Digest: digest.SHA512.FromString("x")}}); err == nil {
		t.Error("sha512 digest accepted")
	}
	g, err := srv.Register(base, "x", blobs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.URL(digest.FromString("unregistered")); err == nil {
		t.Error("URL for an unregistered blob")
	}
}

func TestCapabilitiesAreUnique(t *testing.T) {
	srv := New()
	base, _ := url.Parse("http://127.0.0.1:1")
	seen := map[string]bool{}
	for range 100 {
		g, err := srv.Register(base, "x", dirBlobs(t.TempDir()), nil)
		if err != nil {
			t.Fatal(err)
		}
		if seen[g.capability] || len(g.capability) != 43 {
			t.Fatalf("capability %q repeated or of the wrong length", g.capability)
		}
		seen[g.capability] = true
	}
}

// gatedBlobs holds every Blob call until release is closed.
type gatedBlobs struct {
	dirBlobs
	opened  chan struct{}
	release chan struct{}
}

func (g gatedBlobs) Blob(ctx context.Context, d digest.Digest) (blobs.Blob, error) {
	g.opened <- struct{}{}
	<-g.release
	return g.dirBlobs.Blob(ctx, d)
}

func TestCloseWaitsForRequestsInFlight(t *testing.T) {
	dir := t.TempDir()
	desc := writeBlob(t, dir, []byte("layer"))
	blobs := gatedBlobs{dirBlobs(dir), make(chan struct{}), make(chan struct{})}
	srv := New()
	base, _ := url.Parse("http://127.0.0.1:1")
	g, err := srv.Register(base, "t", blobs, []ocispec.Descriptor{desc})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := g.URL(desc.Digest)
	served := make(chan int, 1)
	go func() {
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest("GET", u, nil))
		served <- rec.Code
	}()
	t.Cleanup(func() {
		// A failure before the release would leave the request held.
		select {
		case <-blobs.release:
		default:
			close(blobs.release)
		}
	})
	testwait.Recv(t, blobs.opened, "the request to open its blob") // the request is in flight

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if fe, err := g.Close(ctx); err == nil || len(fe) != 0 {
		t.Fatalf("Close with an ended context = %v, %v; want an error and no finished fetch", fe, err)
	}
	closed := make(chan []Fetch, 1)
	waitCtx := testwait.Context(t)
	go func() {
		fe, err := g.Close(waitCtx)
		if err != nil {
			t.Error(err)
		}
		closed <- fe
	}()
	select {
	case <-closed:
		t.Fatal("Close returned while a request was in flight")
	case <-blobs.opened:
		t.Fatal("unexpected second request")
	default:
	}
	close(blobs.release)
	if code := testwait.Recv(t, served, "the request in flight"); code != 200 {
		t.Fatalf("the request admitted before revocation got %d, want 200", code)
	}
	fe := testwait.Recv(t, closed, "Close")
	if len(fe) != 1 || fe[0].Status != 200 || fe[0].Bytes != desc.Size {
		t.Fatalf("Close returned %+v, want the one finished fetch", fe)
	}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest("GET", u, nil))
	if rec.Code != 404 {
		t.Fatalf("after Close: %d, want 404", rec.Code)
	}
}

// memBlobs holds blobs in memory: an Opener whose blobs are no files, as a
// source that keeps its blobs elsewhere (containerd's content store) has.
type memBlobs map[digest.Digest][]byte

type memBlob struct{ *bytes.Reader }

func (memBlob) Close() error { return nil }

func (m memBlobs) Blob(_ context.Context, d digest.Digest) (blobs.Blob, error) {
	b, ok := m[d]
	if !ok {
		return nil, fmt.Errorf("open blob %s: %w", d, fs.ErrNotExist)
	}
	return memBlob{bytes.NewReader(b)}, nil
}

// TestServeBlobThatIsNoFile: a blob read through ReadAt is served like a
// file: whole, by range, with its type sniffed and its digest as ETag.
func TestServeBlobThatIsNoFile(t *testing.T) {
	content := gzipBytes(t, bytes.Repeat([]byte("in memory "), 1000))
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(content), Size: int64(len(content))}
	srv := New()
	base, _ := url.Parse("http://192.0.2.10:4000")
	g, err := srv.Register(base, "mem", memBlobs{desc.Digest: content}, []ocispec.Descriptor{desc})
	if err != nil {
		t.Fatal(err)
	}
	u, err := g.URL(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, u, nil))
	if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), content) {
		t.Fatalf("GET: status %d, %d bytes; want 200 and the blob's %d", rec.Code, rec.Body.Len(), len(content))
	}
	if ct, etag := rec.Header().Get("Content-Type"), rec.Header().Get("ETag"); ct != MediaTypeLayerGzip || etag != `"`+desc.Digest.String()+`"` {
		t.Errorf("Content-Type %q, ETag %s", ct, etag)
	}
	req := httptest.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Range", "bytes=10-19")
	rec = httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	if rec.Code != http.StatusPartialContent || !bytes.Equal(rec.Body.Bytes(), content[10:20]) {
		t.Errorf("Range: status %d, body %x; want 206 and bytes 10-19", rec.Code, rec.Body.Bytes())
	}
}

// failingBlob is a blob whose reads fail from byte failAt on, as a blob
// still being written does when it fails its checks.
type failingBlob struct {
	data   []byte
	failAt int64
}

var errBlobFailed = errors.New("blob failed its checks while written")

func (b failingBlob) Size() int64  { return int64(len(b.data)) }
func (b failingBlob) Close() error { return nil }
func (b failingBlob) ReadAt(p []byte, off int64) (int, error) {
	if off >= b.failAt {
		return 0, errBlobFailed
	}
	n := copy(p, b.data[off:min(int64(len(b.data)), b.failAt)])
	if n < len(p) {
		return n, errBlobFailed
	}
	return n, nil
}

type failingBlobs map[digest.Digest]failingBlob

func (m failingBlobs) Blob(_ context.Context, d digest.Digest) (blobs.Blob, error) {
	b, ok := m[d]
	if !ok {
		return nil, fmt.Errorf("open blob %s: %w", d, fs.ErrNotExist)
	}
	return b, nil
}

// TestBlobFailingMidBodyIsABrokenDownload: when a blob's bytes fail to be
// read after the response began (a layer served while it is exported that
// fails verification), the client gets a download that breaks, never a
// body that ends as if whole, and the fetch is recorded as interrupted.
func TestBlobFailingMidBodyIsABrokenDownload(t *testing.T) {
	content := bytes.Repeat([]byte("layer bytes "), 100000)
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromBytes(content), Size: int64(len(content))}
	fetches := make(chan Fetch, 1)
	srv := New(WithFetchObserver(func(f Fetch) { fetches <- f }))
	ts := httptest.NewServer(NewHTTPServer(srv, nil, Limits{}).Handler)
	defer ts.Close()
	base, _ := url.Parse(ts.URL)
	failAt := int64(len(content) / 2)
	g, err := srv.Register(base, "failing", failingBlobs{desc.Digest: {data: content, failAt: failAt}}, []ocispec.Descriptor{desc})
	if err != nil {
		t.Fatal(err)
	}
	u, err := g.URL(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200: the failure comes after the response began", resp.StatusCode)
	}
	got, err := io.ReadAll(resp.Body)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("reading the body: %v after %d bytes, want an unexpected EOF", err, len(got))
	}
	if int64(len(got)) > failAt || !bytes.Equal(got, content[:len(got)]) {
		t.Errorf("got %d bytes, want at most the %d readable, equal to the blob's", len(got), failAt)
	}
	f := testwait.Recv(t, fetches, "the fetch record")
	if !errors.Is(f.Err, ErrInterrupted) || !errors.Is(f.Err, errBlobFailed) || f.Bytes > failAt {
		t.Errorf("fetch recorded as %d bytes, error %v; want interrupted by the blob's failure", f.Bytes, f.Err)
	}
}
