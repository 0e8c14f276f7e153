package clairv2

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

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

// jsonExchange is an answer shaped like Clair v2's writeResponse
// (api/v1/routes.go): application/json;charset=utf-8, Server: clair, the
// encoder's trailing newline.
func jsonExchange(status int, body string) exchange {
	return exchange{status: status, header: http.Header{
		"Content-Type": {"application/json;charset=utf-8"},
		"Server":       {"clair"},
	}, body: []byte(body + "\n")}
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

// fakeClair records requests and routes them; unregistered paths get Go's
// http.NotFound, as Clair v2's router (api/router.go, httprouter) gives.
type fakeClair struct {
	mux *http.ServeMux

	mu   sync.Mutex
	seen []seenRequest
}

func newFakeClair(t testing.TB) (*fakeClair, *httptest.Server) {
	f := &fakeClair{mux: http.NewServeMux()}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeClair) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.seen = append(f.seen, seenRequest{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), body})
	f.mu.Unlock()
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
