package clairv2

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// samples holds real exchanges recorded from Clair v4.9 and v2.1.7; each
// .http file is a raw response (status line, headers, body; Date elided and
// chunked bodies stored de-chunked).
const samples = "../../shared/clair-samples"

// exchange is one recorded (or, for Clair 4.2, reconstructed) response.
type exchange struct {
	status int
	header http.Header
	body   []byte
}

// loadExchange reads a recorded .http file in place.
func loadExchange(t testing.TB, name string) exchange {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(samples, name))
	if err != nil {
		t.Fatal(err)
	}
	e, err := parseExchange(b)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return e
}

// parseExchange splits a raw response. The recordings end header lines with
// CRLF except the elided Date line (LF only); the body is everything after
// the first empty line, unchanged.
func parseExchange(b []byte) (exchange, error) {
	var lines []string
	rest := b
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			return exchange{}, fmt.Errorf("no end of headers")
		}
		line := strings.TrimSuffix(string(rest[:i]), "\r")
		rest = rest[i+1:]
		if line == "" {
			break
		}
		lines = append(lines, line)
	}
	if len(lines) == 0 {
		return exchange{}, fmt.Errorf("no status line")
	}
	f := strings.Fields(lines[0])
	if len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/") {
		return exchange{}, fmt.Errorf("bad status line %q", lines[0])
	}
	status, err := strconv.Atoi(f[1])
	if err != nil {
		return exchange{}, fmt.Errorf("bad status line %q", lines[0])
	}
	h := http.Header{}
	for _, l := range lines[1:] {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			return exchange{}, fmt.Errorf("bad header line %q", l)
		}
		h.Add(k, strings.TrimSpace(v))
	}
	return exchange{status: status, header: h, body: rest}, nil
}

// ServeHTTP replays the exchange: same status, headers (Go's server sets the
// framing ones itself) and body bytes.
func (e exchange) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	for k, vs := range e.header {
		switch http.CanonicalHeaderKey(k) {
		case "Date", "Content-Length", "Transfer-Encoding":
			continue
		}
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(e.status)
	w.Write(e.body)
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
