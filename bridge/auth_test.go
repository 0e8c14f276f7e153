package bridge

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func basic(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

func TestRegistryAccess(t *testing.T) {
	f := newRegistryFixture(t)
	tok, err := NewToken(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	withToken, loopbackOnly := f.server(tok), f.server(Token{})

	const (
		local  = "127.0.0.1:50000"
		remote = "192.0.2.7:50000"
	)
	tests := []struct {
		name   string
		srv    *Server
		remote string
		auth   string // Authorization header, if any
		status int
		code   string
	}{
		{"token: none sent", withToken, remote, "", 401, "UNAUTHORIZED"},
		{"token: none sent from loopback", withToken, local, "", 401, "UNAUTHORIZED"},
		{"token: bearer", withToken, remote, "Bearer " + testSecret, 200, ""},
		{"token: bearer, lower-case scheme", withToken, remote, "bearer " + testSecret, 200, ""},
		{"token: wrong bearer", withToken, remote, "Bearer " + strings.ToUpper(testSecret), 401, "UNAUTHORIZED"},
		{"token: bearer prefix of the token", withToken, remote, "Bearer " + testSecret[:MinTokenLength], 401, "UNAUTHORIZED"},
		{"token: bearer with the token as a prefix", withToken, remote, "Bearer " + testSecret + "x", 401, "UNAUTHORIZED"},
		{"token: empty bearer", withToken, remote, "Bearer ", 401, "UNAUTHORIZED"},
		{"token: basic, any user", withToken, remote, basic("anyone", testSecret), 200, ""},
		{"token: basic, empty user", withToken, remote, basic("", testSecret), 200, ""},
		{"token: basic, wrong password", withToken, remote, basic("anyone", "wrong-password-here"), 401, "UNAUTHORIZED"},
		{"token: basic, token as the user name", withToken, remote, basic(testSecret, ""), 401, "UNAUTHORIZED"},
		{"token: other scheme", withToken, remote, "Digest " + testSecret, 401, "UNAUTHORIZED"},
		{"token: bare token", withToken, remote, testSecret, 401, "UNAUTHORIZED"},

		{"no token: loopback", loopbackOnly, local, "", 200, ""},
		{"no token: other loopback address", loopbackOnly, "127.8.9.10:1", "", 200, ""},
		{"no token: ipv6 loopback", loopbackOnly, "[::1]:50000", "", 200, ""},
		{"no token: ipv4-mapped loopback", loopbackOnly, "[::ffff:127.0.0.1]:50000", "", 200, ""},
		{"no token: loopback with credentials", loopbackOnly, local, "Bearer whatever-they-have", 200, ""},
		{"no token: remote", loopbackOnly, remote, "", 403, "DENIED"},
		{"no token: remote with credentials", loopbackOnly, remote, "Bearer " + testSecret, 403, "DENIED"},
		{"no token: private network", loopbackOnly, "172.18.0.5:40000", "", 403, "DENIED"},
		{"no token: unspecified", loopbackOnly, "0.0.0.0:1", "", 403, "DENIED"},
		{"no token: unix socket", loopbackOnly, "@", "", 403, "DENIED"},
		{"no token: no address", loopbackOnly, "", "", 403, "DENIED"},
	}
	for _, tt := range tests {
		for _, path := range []string{"/v2/", "/v2/app/manifests/latest", "/v2/app/tags/list"} {
			t.Run(tt.name+" "+path, func(t *testing.T) {
				req := httptest.NewRequest("GET", path, nil)
				req.RemoteAddr = tt.remote
				if tt.auth != "" {
					req.Header.Set("Authorization", tt.auth)
				}
				rec := httptest.NewRecorder()
				tt.srv.ServeHTTP(rec, req)
				if rec.Code != tt.status {
					t.Fatalf("status = %d, want %d (body %q)", rec.Code, tt.status, rec.Body.String())
				}
				h := rec.Result().Header
				if got := h.Get("Docker-Distribution-API-Version"); got != "registry/2.0" {
					t.Errorf("Docker-Distribution-API-Version = %q", got)
				}
				wantChallenge := ""
				if tt.status == 401 {
					wantChallenge = `Basic realm="layerbridge"`
				}
				if got := h.Get("WWW-Authenticate"); got != wantChallenge {
					t.Errorf("WWW-Authenticate = %q, want %q", got, wantChallenge)
				}
				if tt.code != "" {
					if got := errorCodes(t, rec.Body.Bytes()); !slices.Equal(got, []string{tt.code}) {
						t.Errorf("error codes = %v, want [%s]", got, tt.code)
					}
					if strings.Contains(rec.Body.String(), "latest") || strings.Contains(rec.Body.String(), testSecret) {
						t.Errorf("refusal tells more than it should: %q", rec.Body.String())
					}
				}
			})
		}
	}
	if n := f.cat.calls.Load(); n == 0 {
		t.Error("no request reached the catalog")
	}
}

func TestRefusedRequestsNeverReachTheCatalog(t *testing.T) {
	f := newRegistryFixture(t)
	tok, err := NewToken(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	for _, srv := range []*Server{f.server(tok), f.server(Token{})} {
		for _, m := range []string{"GET", "HEAD"} {
			req := httptest.NewRequest(m, "/v2/app/manifests/latest", nil)
			req.Header.Set("Authorization", "Bearer wrong-token-0123456789")
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, req)
			if rec.Code != 401 && rec.Code != 403 {
				t.Errorf("%s status = %d, want 401 or 403", m, rec.Code)
			}
			if m == "HEAD" && rec.Body.Len() != 0 {
				t.Errorf("HEAD refusal has a body: %q", rec.Body.String())
			}
		}
	}
	if n := f.cat.calls.Load(); n != 0 {
		t.Errorf("catalog asked %d times by unauthorised requests", n)
	}
}

// TestLayerRoutesNeedNoToken: Clair fetches layers with the capability in
// the URL alone, from another container, whatever protects the registry.
func TestLayerRoutesNeedNoToken(t *testing.T) {
	f := newRegistryFixture(t)
	tok, err := NewToken(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	_, _, layers := imageDigests(t, f.app)
	desc := ocispec.Descriptor{Digest: layers[0], Size: int64(len(f.stored(t, layers[0])))}
	base, _ := url.Parse("http://192.0.2.10:4000")
	for name, srv := range map[string]*Server{"token": f.server(tok), "loopback only": f.server(Token{})} {
		g, err := srv.Register(base, "scan", dirBlobs(f.dir), []ocispec.Descriptor{desc})
		if err != nil {
			t.Fatal(err)
		}
		u, err := g.URL(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{u, "/healthz"} {
			req := httptest.NewRequest("GET", path, nil)
			req.RemoteAddr = "172.18.0.5:40000"
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, req)
			if rec.Code != 200 {
				t.Errorf("%s: GET %s from another host = %d, want 200", name, path, rec.Code)
			}
		}
		// A write is refused as unsupported before any authentication.
		req := httptest.NewRequest("POST", "/v2/app/blobs/uploads/", nil)
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code != 405 || !slices.Equal(errorCodes(t, rec.Body.Bytes()), []string{"UNSUPPORTED"}) {
			t.Errorf("%s: POST upload = %d %q, want 405 UNSUPPORTED", name, rec.Code, rec.Body.String())
		}
	}
}

func TestGuard(t *testing.T) {
	tok, err := NewToken(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	var reached int
	api := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		reached++
		w.WriteHeader(http.StatusNoContent)
	})
	tests := []struct {
		tok    Token
		remote string
		auth   string
		status int
	}{
		{tok, "192.0.2.1:1", "Bearer " + testSecret, 204},
		{tok, "192.0.2.1:1", basic("u", testSecret), 204},
		{tok, "127.0.0.1:1", "", 401},
		{tok, "192.0.2.1:1", "Bearer nope-nope-nope-nope", 401},
		{Token{}, "127.0.0.1:1", "", 204},
		{Token{}, "192.0.2.1:1", "Bearer " + testSecret, 403},
	}
	want := 0
	for i, tt := range tests {
		req := httptest.NewRequest("POST", "/api/v1/scans", nil)
		req.RemoteAddr = tt.remote
		if tt.auth != "" {
			req.Header.Set("Authorization", tt.auth)
		}
		rec := httptest.NewRecorder()
		Guard(tt.tok, api).ServeHTTP(rec, req)
		if rec.Code != tt.status {
			t.Errorf("case %d: status = %d, want %d", i, rec.Code, tt.status)
		}
		if tt.status == 204 {
			want++
		} else if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("case %d: refusal Content-Type = %q", i, ct)
		}
	}
	if reached != want {
		t.Errorf("handler reached %d times, want %d", reached, want)
	}
}

func TestNewToken(t *testing.T) {
	for _, bad := range []string{
		"",
		"short",
		strings.Repeat("a", MinTokenLength-1),
		"has a space in the middle",
		"tab\tseparated-token-here",
		"trailing-newline-token\n",
		"non-ascii-token-ümlaut",
	} {
		if _, err := NewToken(bad); err == nil {
			t.Errorf("NewToken(%q) accepted", bad)
		} else if len(bad) >= MinTokenLength && strings.Contains(err.Error(), bad) {
			t.Errorf("NewToken error repeats the secret: %v", err)
		}
	}
	tok, err := NewToken(strings.Repeat("a", MinTokenLength))
	if err != nil {
		t.Fatal(err)
	}
	if !tok.IsSet() || (Token{}).IsSet() {
		t.Error("IsSet is wrong")
	}
	for _, s := range []string{fmt.Sprint(tok), fmt.Sprintf("%+v", tok), tok.String()} {
		if strings.Contains(s, "aaaa") {
			t.Errorf("formatted token shows the secret: %q", s)
		}
	}
}

func TestLoadToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, perm os.FileMode) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, perm); err != nil { // not subject to the umask
			t.Fatal(err)
		}
		return p
	}
	want, err := NewToken(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	for _, ok := range []struct{ name, content string }{
		{"plain", testSecret},
		{"newline", testSecret + "\n"},
		{"crlf and blanks", "  " + testSecret + " \r\n\n"},
	} {
		p := write(ok.name, ok.content, 0o600)
		got, err := LoadToken(p)
		if err != nil {
			t.Errorf("%s: %v", ok.name, err)
			continue
		}
		if got != want {
			t.Errorf("%s: token differs from NewToken(%q)", ok.name, testSecret)
		}
	}
	if _, err := LoadToken(write("compose-secret", testSecret, 0o444)); err != nil {
		t.Errorf("world-readable secret (docker compose default) refused: %v", err)
	}

	missing := filepath.Join(dir, "missing")
	if _, err := LoadToken(missing); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: err = %v, want fs.ErrNotExist naming the path", err)
	}
	for _, bad := range []struct{ name, path string }{
		{"empty", write("empty", "", 0o600)},
		{"blank", write("blank", " \n\t\n", 0o600)},
		{"too short", write("short", "abc\n", 0o600)},
		{"two lines", write("two-lines", testSecret+"\n"+testSecret+"\n", 0o600)},
		{"world-writable", write("writable", testSecret, 0o666)},
		{"too large", write("large", strings.Repeat("x", maxTokenFile+1), 0o600)},
		{"directory", dir},
	} {
		_, err := LoadToken(bad.path)
		if err == nil {
			t.Errorf("%s: accepted", bad.name)
			continue
		}
		if !strings.Contains(err.Error(), bad.path) {
			t.Errorf("%s: error %q does not name the file", bad.name, err)
		}
		if strings.Contains(err.Error(), testSecret) {
			t.Errorf("%s: error repeats the secret: %v", bad.name, err)
		}
	}
}
