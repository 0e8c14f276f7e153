package clairv2standin

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

const (
	sharedDir   = "../../testdata"
	fixtureHex  = "beee9f30bc1f711043e78d4a2be0668955d4b761d587d6f60c2c8dc081efb203"
	fixtureName = "sha256:" + fixtureHex
	// recordedLayerURL is where the recordings' layer server listened.
	recordedLayerURL = "http://127.0.0.1:8901"
)

// recording is one raw HTTP response from ../../testdata/clair-samples.
type recording struct {
	status int
	header http.Header
	body   []byte
}

func readRecording(t *testing.T, name string) recording {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(sharedDir, "clair-samples", "v2.1.7", name))
	if err != nil {
		t.Fatal(err)
	}
	head, body, ok := bytes.Cut(b, []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("%s: no blank line after the headers", name)
	}
	lines := strings.Split(string(head), "\r\n")
	var rec recording
	f := strings.Fields(lines[0])
	if len(f) < 2 {
		t.Fatalf("%s: status line %q", name, lines[0])
	}
	rec.status, err = strconv.Atoi(f[1])
	if err != nil {
		t.Fatalf("%s: status line %q: %v", name, lines[0], err)
	}
	rec.header = http.Header{}
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(l, ": ")
		rec.header.Add(k, v)
	}
	rec.body = body
	return rec
}

// fixtureLayer extracts the one layer.tar of the alpine 3.11 docker save.
func fixtureLayer(t *testing.T) string {
	t.Helper()
	f, err := os.Open(filepath.Join(sharedDir, "fixtures", "alpine-3.11-docker-save.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no layer.tar in the fixture: %v", err)
		}
		if strings.HasSuffix(h.Name, "/layer.tar") {
			out := filepath.Join(t.TempDir(), "layer.tar")
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(out, b, 0o644); err != nil {
				t.Fatal(err)
			}
			return out
		}
	}
}

// layerServer serves files at /<name> like a plain static file server and
// counts the GETs per name.
type layerServer struct {
	*httptest.Server
	mu    sync.Mutex
	files map[string][]byte
	gets  map[string]int
}

func newLayerServer(t *testing.T) *layerServer {
	t.Helper()
	ls := &layerServer{files: map[string][]byte{}, gets: map[string]int{}}
	ls.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/")
		ls.mu.Lock()
		b, ok := ls.files[name]
		ls.gets[name]++
		ls.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
	}))
	t.Cleanup(ls.Close)
	return ls
}

func (ls *layerServer) add(name string, b []byte) string {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.files[name] = b
	return ls.URL + "/" + name
}

func (ls *layerServer) count(name string) int {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.gets[name]
}

func newStandin(t *testing.T) *httptest.Server {
	t.Helper()
	s, err := New(os.DirFS(filepath.Join(sharedDir, "secdb")))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv
}

// do sends a request without Go's transparent gzip, so bodies arrive as sent.
func do(t *testing.T, method, url, body string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

func postLayer(name, path, parent string) string {
	b, _ := json.Marshal(map[string]any{"Layer": map[string]any{"Name": name, "Path": path, "ParentName": parent, "Format": "Docker"}})
	return string(b)
}

func checkAgainst(t *testing.T, rec recording, status int, h http.Header, body []byte) {
	t.Helper()
	if status != rec.status {
		t.Errorf("status %d, recorded %d (body %s)", status, rec.status, body)
	}
	for _, k := range []string{"Content-Type", "Server", "Content-Length"} {
		if want := rec.header.Get(k); want != "" && h.Get(k) != want {
			t.Errorf("%s: %q, recorded %q", k, h.Get(k), want)
		}
	}
	if !bytes.Equal(body, rec.body) {
		t.Errorf("body differs from the recording:\n got %s\nwant %s", body, rec.body)
	}
}

// TestRecordedExchanges replays the exchanges recorded from Clair v2.1.7
// with the same layer (served by a plain file server at the same path) and
// the same feed, and compares status, headers and bodies.
func TestRecordedExchanges(t *testing.T) {
	layerBytes, err := os.ReadFile(fixtureLayer(t))
	if err != nil {
		t.Fatal(err)
	}
	ls := newLayerServer(t)
	url := ls.add("sha256-"+fixtureHex, layerBytes)
	v2 := newStandin(t)

	t.Run("POST-v1-layers", func(t *testing.T) {
		status, h, body := do(t, "POST", v2.URL+"/v1/layers", postLayer(fixtureName, url, ""))
		body = bytes.ReplaceAll(body, []byte(ls.URL), []byte(recordedLayerURL))
		rec := readRecording(t, "POST-v1-layers.http")
		// The body's length changes with the port: compare it after the substitution.
		h.Set("Content-Length", rec.header.Get("Content-Length"))
		checkAgainst(t, rec, status, h, body)
		if n := ls.count("sha256-" + fixtureHex); n != 1 {
			t.Errorf("layer downloaded %d times, want 1", n)
		}
	})
	t.Run("GET-v1-layers-features-vulnerabilities", func(t *testing.T) {
		status, h, body := do(t, "GET", v2.URL+"/v1/layers/"+fixtureName+"?features&vulnerabilities", "")
		rec := readRecording(t, "GET-v1-layers-features-vulnerabilities.http")
		if status != rec.status || h.Get("Content-Type") != rec.header.Get("Content-Type") || h.Get("Server") != "clair" {
			t.Errorf("status %d %v, recorded %d %v", status, h, rec.status, rec.header)
		}
		got, want := canonicalLayer(t, body), canonicalLayer(t, rec.body)
		if got != want {
			t.Errorf("features differ from the recording:\n got %s\nwant %s", got, want)
		}
		if pairs := countPairs(t, body); pairs != 3 {
			t.Errorf("%d (package, vulnerability) pairs, want 3", pairs)
		}
	})
	t.Run("GET-v1-layers-unknown", func(t *testing.T) {
		status, h, body := do(t, "GET", v2.URL+"/v1/layers/sha256:0000000000000000000000000000000000000000000000000000000000000000", "")
		checkAgainst(t, readRecording(t, "GET-v1-layers-unknown.http"), status, h, body)
	})
	t.Run("POST-v1-layers-layer-404", func(t *testing.T) {
		status, h, body := do(t, "POST", v2.URL+"/v1/layers", postLayer("missing", ls.URL+"/sha256-missing", ""))
		checkAgainst(t, readRecording(t, "POST-v1-layers-layer-404.http"), status, h, body)
	})
	t.Run("GET-v1-namespaces", func(t *testing.T) {
		status, h, body := do(t, "GET", v2.URL+"/v1/namespaces", "")
		checkAgainst(t, readRecording(t, "GET-v1-namespaces.http"), status, h, body)
	})
	t.Run("known layer is not downloaded again", func(t *testing.T) {
		before := ls.count("sha256-" + fixtureHex)
		status, _, body := do(t, "POST", v2.URL+"/v1/layers", postLayer(fixtureName, url, ""))
		if status != http.StatusCreated {
			t.Fatalf("status %d: %s", status, body)
		}
		if n := ls.count("sha256-"+fixtureHex) - before; n != 0 {
			t.Errorf("known layer downloaded %d more times", n)
		}
	})
}

// canonicalLayer renders a v2 layer envelope with features and their
// vulnerabilities sorted by name, so that order does not matter.
func canonicalLayer(t *testing.T, body []byte) string {
	t.Helper()
	var env wireLayerEnvelope
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if env.Layer == nil {
		t.Fatalf("no Layer in %s", body)
	}
	sort.Slice(env.Layer.Features, func(i, j int) bool { return env.Layer.Features[i].Name < env.Layer.Features[j].Name })
	for _, f := range env.Layer.Features {
		sort.Slice(f.Vulnerabilities, func(i, j int) bool { return f.Vulnerabilities[i].Name < f.Vulnerabilities[j].Name })
	}
	b, err := json.MarshalIndent(env, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func countPairs(t *testing.T, body []byte) int {
	t.Helper()
	var env wireLayerEnvelope
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range env.Layer.Features {
		n += len(f.Vulnerabilities)
	}
	return n
}

// tarOf builds an uncompressed tar with the given regular files.
func tarOf(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[n])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipOf(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstdOf(t *testing.T, b []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(b, nil)
}

const (
	alpine310Release = "3.10.9\n"
	apkBusybox       = "P:busybox\nV:1.30.1-r2\nA:x86_64\n\n"
	apkBusyboxFixed  = "P:busybox\nV:1.30.1-r5\nA:x86_64\n\n"
)

type gotLayer struct {
	features map[string]wireFeature
	ns       string
}

func getLayer(t *testing.T, base, name string) gotLayer {
	t.Helper()
	status, _, body := do(t, "GET", base+"/v1/layers/"+name+"?features&vulnerabilities", "")
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", name, status, body)
	}
	var env wireLayerEnvelope
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatal(err)
	}
	g := gotLayer{features: map[string]wireFeature{}, ns: env.Layer.NamespaceName}
	for _, f := range env.Layer.Features {
		g.features[f.Name] = f
	}
	return g
}

func TestPostLayerErrors(t *testing.T) {
	ls := newLayerServer(t)
	v2 := newStandin(t)
	bz2, err := os.ReadFile("testdata/alpine-3.10.tar.bz2")
	if err != nil {
		t.Fatal(err)
	}
	plain := tarOf(t, map[string]string{"etc/alpine-release": alpine310Release, "lib/apk/db/installed": apkBusybox})
	plainFile := filepath.Join(t.TempDir(), "layer.tar")
	if err := os.WriteFile(plainFile, plain, 0o644); err != nil {
		t.Fatal(err)
	}
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	broken.Close() // a closed port: connection refused
	fiveHundred := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	defer fiveHundred.Close()

	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantMsg    string
	}{
		{"gzip layer", postLayer("gz", ls.add("gz", gzipOf(t, plain)), ""), 201, ""},
		{"bzip2 layer", postLayer("bz2", ls.add("bz2", bz2), ""), 201, ""},
		{"plain tar by file path", postLayer("file", plainFile, ""), 201, ""},
		{"empty body is an empty layer", postLayer("empty", ls.add("empty", nil), ""), 201, ""},
		{"zstd layer", postLayer("zst", ls.add("zst", zstdOf(t, plain)), ""), 422, "tarutil: could not extract the archive"},
		{"random bytes", postLayer("junk", ls.add("junk", bytes.Repeat([]byte("not a tar archive "), 64)), ""), 422, "tarutil: could not extract the archive"},
		{"truncated gzip", postLayer("trunc", ls.add("trunc", gzipOf(t, plain)[:40]), ""), 422, "tarutil: could not extract the archive"},
		{"packages without namespace", postLayer("nons", ls.add("nons", tarOf(t, map[string]string{"lib/apk/db/installed": apkBusybox})), ""), 422, "worker: OS and/or package manager are not supported"},
		{"os-release alone is no namespace", postLayer("osr", ls.add("osr", tarOf(t, map[string]string{
			"etc/os-release": "ID=alpine\nVERSION_ID=3.10.9\n", "lib/apk/db/installed": apkBusybox})), ""), 422, "worker: OS and/or package manager are not supported"},
		{"unknown parent", postLayer("orphan", ls.add("orphan", plain), "nobody"), 400, "worker: parent layer is unknown, it must be processed first"},
		{"layer 404", postLayer("l404", ls.URL+"/absent", ""), 400, "could not find layer"},
		{"layer 500", postLayer("l500", fiveHundred.URL+"/x", ""), 400, "could not find layer"},
		{"connection refused", postLayer("refused", broken.URL+"/x", ""), 400, "could not find layer"},
		{"file URL", postLayer("fileurl", "file://"+plainFile, ""), 400, "could not find layer"},
		{"unsupported format", `{"Layer":{"Name":"oci","Path":"` + ls.add("oci", plain) + `","Format":"OCI"}}`, 400, "unsupported image format 'OCI'"},
		{"no name", `{"Layer":{"Path":"/x","Format":"Docker"}}`, 400, "could not process a layer which does not have a name"},
		{"no path", `{"Layer":{"Name":"n","Format":"Docker"}}`, 400, "could not process a layer which does not have a path"},
		{"no format", `{"Layer":{"Name":"n","Path":"/x"}}`, 400, "could not process a layer which does not have a format"},
		{"no layer", `{}`, 400, "failed to provide layer"},
		{"truncated JSON", `{"Layer":`, 400, "unexpected EOF"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, h, body := do(t, "POST", v2.URL+"/v1/layers", tc.body)
			if status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", status, tc.wantStatus, body)
			}
			if h.Get("Content-Type") != "application/json;charset=utf-8" || h.Get("Server") != "clair" {
				t.Errorf("headers %v", h)
			}
			if tc.wantMsg == "" {
				return
			}
			var env wireLayerEnvelope
			if err := json.Unmarshal(body, &env); err != nil || env.Error == nil {
				t.Fatalf("no error envelope: %s", body)
			}
			if env.Error.Message != tc.wantMsg {
				t.Errorf("message %q, want %q", env.Error.Message, tc.wantMsg)
			}
		})
	}
	// The bzip2 layer's packages are matched against the 3.10 feed.
	got := getLayer(t, v2.URL, "bz2")
	if got.ns != "alpine:v3.10" {
		t.Errorf("namespace %q", got.ns)
	}
	if v := got.features["busybox"].Vulnerabilities; len(v) != 1 || v[0].Name != "CVE-2021-28831" || v[0].FixedBy != "1.30.1-r5" {
		t.Errorf("busybox vulnerabilities %+v", v)
	}
	if v := got.features["musl"].Vulnerabilities; len(v) != 1 || v[0].Name != "CVE-2020-28928" {
		t.Errorf("musl vulnerabilities %+v", v)
	}
}

func TestLayerChain(t *testing.T) {
	ls := newLayerServer(t)
	v2 := newStandin(t)
	post := func(name, parent string, files map[string]string) {
		t.Helper()
		status, _, body := do(t, "POST", v2.URL+"/v1/layers", postLayer(name, ls.add(name, tarOf(t, files)), parent))
		if status != http.StatusCreated {
			t.Fatalf("POST %s: %d %s", name, status, body)
		}
	}
	post("base", "", map[string]string{"etc/alpine-release": alpine310Release, "lib/apk/db/installed": apkBusybox + "P:zlib\nV:1.2.11-r1\n\n"})
	post("config", "base", map[string]string{"etc/motd": "hello\n"})
	post("upgrade", "config", map[string]string{"lib/apk/db/installed": apkBusyboxFixed + "P:zlib\nV:1.2.11-r1\n\n"})

	t.Run("child without apk database inherits", func(t *testing.T) {
		got := getLayer(t, v2.URL, "config")
		if got.ns != "alpine:v3.10" {
			t.Errorf("namespace %q", got.ns)
		}
		bb := got.features["busybox"]
		if bb.AddedBy != "base" || len(bb.Vulnerabilities) != 1 {
			t.Errorf("busybox %+v", bb)
		}
	})
	t.Run("upgrade in a child", func(t *testing.T) {
		got := getLayer(t, v2.URL, "upgrade")
		if got.ns != "alpine:v3.10" {
			t.Errorf("namespace %q (inherited from the base)", got.ns)
		}
		bb := got.features["busybox"]
		if bb.Version != "1.30.1-r5" || bb.AddedBy != "upgrade" || len(bb.Vulnerabilities) != 0 {
			t.Errorf("busybox %+v", bb)
		}
		if z := got.features["zlib"]; z.AddedBy != "base" {
			t.Errorf("zlib %+v, want added by base", z)
		}
	})
	t.Run("features without vulnerabilities", func(t *testing.T) {
		_, _, body := do(t, "GET", v2.URL+"/v1/layers/base?features", "")
		if bytes.Contains(body, []byte("Vulnerabilities")) || !bytes.Contains(body, []byte(`"Name":"busybox"`)) {
			t.Errorf("body %s", body)
		}
		_, _, body = do(t, "GET", v2.URL+"/v1/layers/base", "")
		if bytes.Contains(body, []byte("Features")) {
			t.Errorf("features without ?features: %s", body)
		}
	})
	t.Run("delete removes descendants", func(t *testing.T) {
		if status, _, body := do(t, "DELETE", v2.URL+"/v1/layers/config", ""); status != http.StatusOK {
			t.Fatalf("DELETE: %d %s", status, body)
		}
		for name, want := range map[string]int{"base": 200, "config": 404, "upgrade": 404} {
			if status, _, _ := do(t, "GET", v2.URL+"/v1/layers/"+name, ""); status != want {
				t.Errorf("GET %s after delete: %d, want %d", name, status, want)
			}
		}
		if status, _, _ := do(t, "DELETE", v2.URL+"/v1/layers/config", ""); status != http.StatusNotFound {
			t.Errorf("second DELETE: %d", status)
		}
	})
}

func TestGzipResponse(t *testing.T) {
	v2 := newStandin(t)
	req, err := http.NewRequest("GET", v2.URL+"/v1/namespaces", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("Content-Encoding %q", resp.Header.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"alpine:v3.11"`)) {
		t.Errorf("body %s", b)
	}
}

func TestUnknownRoute(t *testing.T) {
	v2 := newStandin(t)
	for _, p := range []string{"/v1/ancestry", "/indexer/api/v1/index_report", "/"} {
		if status, _, _ := do(t, "GET", v2.URL+p, ""); status != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, status)
		}
	}
}

func TestNewRejectsEmptyFeed(t *testing.T) {
	if _, err := New(os.DirFS(t.TempDir())); err == nil {
		t.Fatal("New accepted a feed without */main.yaml")
	}
}
