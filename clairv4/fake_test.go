package clairv4

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/layerbridge/layerbridge/internal/httprec"
)

// samples holds real exchanges recorded from Clair v4.9 and v2.1.7; each
// .http file is a raw response (status line, headers, body; Date elided and
// chunked bodies stored de-chunked).
const samples = "../testdata/clair-samples"

// exchange is one recorded (or, for Clair 4.2, reconstructed) response.
type exchange struct {
	status int
	header http.Header
	body   []byte
}

// loadExchange reads a recorded .http file in place.
func loadExchange(t testing.TB, name string) exchange {
	t.Helper()
	r, err := httprec.Load(filepath.Join(samples, name))
	if err != nil {
		t.Fatal(err)
	}
	return exchange{status: r.Status, header: r.Header, body: r.Body}
}

// ServeHTTP replays the exchange: same status, headers (Go's server sets the
// framing ones itself) and body bytes.
func (e exchange) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	httprec.Response{Status: e.status, Header: e.header, Body: e.body}.ServeHTTP(w, r)
}

// jsonExchange is an answer shaped like Clair 4.4+'s apiError (also 4.2's
// jsonerr): application/json, nosniff, {"code","message"}.
func jsonExchange(status int, body string) exchange {
	return exchange{status: status, header: http.Header{
		"Content-Type":           {"application/json"},
		"X-Content-Type-Options": {"nosniff"},
	}, body: []byte(body)}
}

// sequence answers the i-th request with the i-th handler, repeating the
// last one.
func sequence(hs ...http.Handler) http.Handler {
	var n atomic.Int64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := min(int(n.Add(1))-1, len(hs)-1)
		hs[i].ServeHTTP(w, r)
	})
}

type seenRequest struct {
	method   string
	path     string
	rawQuery string
	header   http.Header
	body     []byte
}

// fakeClair routes like Clair v4 (a plain ServeMux) and records requests.
// Unregistered paths replay the recorded bare 404 Clair 4.9 gives for routes
// it does not have.
type fakeClair struct {
	mux  *http.ServeMux
	auth func(*http.Request) bool // nil: no auth configured

	mu   sync.Mutex
	seen []seenRequest
}

func newFakeClair(t testing.TB) (*fakeClair, *httptest.Server) {
	f := &fakeClair{mux: http.NewServeMux()}
	f.mux.Handle("/", loadExchange(t, "v4.9/POST-v1-layers-on-clair4.http"))
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeClair) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.seen = append(f.seen, seenRequest{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), body})
	f.mu.Unlock()
	if f.auth != nil && !f.auth(r) {
		// middleware/auth/handler.go: a bare 401, empty body.
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	f.mux.ServeHTTP(w, r)
}

func (f *fakeClair) requests() []seenRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.seen)
}

// noWait is a Backoff that never waits but honours cancellation.
func noWait(ctx context.Context, _ int) error { return ctx.Err() }

// newTestClient returns a client for srv that never sleeps.
func newTestClient(t testing.TB, srv *httptest.Server, opts ...Option) *Client {
	t.Helper()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return New(u, append([]Option{WithHTTPClient(srv.Client()), WithBackoff(noWait)}, opts...)...)
}

// clairPSK mirrors Clair's PSK check exactly: middleware/auth/handler.go
// fromHeader (first Authorization value starting with the case-sensitive
// "Bearer "), httpauth_psk.go Check (HMAC-signed JWS with the decoded key,
// go-jose ValidateWithLeeway with 15 s for nbf, exp and iat when present,
// issuer in clair-intraservice plus auth.psk.iss).
type clairPSK struct {
	key     []byte
	issuers []string
	now     func() time.Time
}

func (p clairPSK) check(r *http.Request) bool {
	var tok string
	found := false
	for _, h := range r.Header["Authorization"] {
		if strings.HasPrefix(h, "Bearer ") {
			tok, found = strings.TrimPrefix(h, "Bearer "), true
			break
		}
	}
	if !found {
		return false
	}
	return p.verify(tok) == nil
}

func (p clairPSK) verify(tok string) error {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return fmt.Errorf("not a compact jws")
	}
	enc := base64.RawURLEncoding
	hb, err := enc.DecodeString(parts[0])
	if err != nil {
		return err
	}
	var header struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(hb, &header); err != nil {
		return err
	}
	var h func() hash.Hash
	switch header.Alg {
	case "HS256":
		h = sha256.New
	case "HS384":
		h = sha512.New384
	case "HS512":
		h = sha512.New
	default:
		return fmt.Errorf("alg %q does not fit a symmetric key", header.Alg)
	}
	sig, err := enc.DecodeString(parts[2])
	if err != nil {
		return err
	}
	mac := hmac.New(h, p.key)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if !hmac.Equal(sig, mac.Sum(nil)) {
		return fmt.Errorf("bad signature")
	}
	cb, err := enc.DecodeString(parts[1])
	if err != nil {
		return err
	}
	var cl struct {
		Issuer    string `json:"iss"`
		Expiry    *int64 `json:"exp"`
		NotBefore *int64 `json:"nbf"`
		IssuedAt  *int64 `json:"iat"`
	}
	if err := json.Unmarshal(cb, &cl); err != nil {
		return err
	}
	const leeway = 15 * time.Second
	now := p.now()
	if cl.NotBefore != nil && now.Add(leeway).Before(time.Unix(*cl.NotBefore, 0)) {
		return fmt.Errorf("not valid yet")
	}
	if cl.Expiry != nil && now.Add(-leeway).After(time.Unix(*cl.Expiry, 0)) {
		return fmt.Errorf("expired")
	}
	if cl.IssuedAt != nil && now.Add(leeway).Before(time.Unix(*cl.IssuedAt, 0)) {
		return fmt.Errorf("issued in the future")
	}
	if !slices.Contains(append([]string{"clair-intraservice"}, p.issuers...), cl.Issuer) {
		return fmt.Errorf("issuer %q not accepted", cl.Issuer)
	}
	return nil
}
