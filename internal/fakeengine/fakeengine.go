package fakeengine

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// APIVersion is the Engine API version the default handler's /_ping
// announces (Docker 20.10's).
const APIVersion = "1.41"

// Engine is a running fake Engine API.
type Engine struct {
	// Host is its address for DOCKER_HOST or --docker-host:
	// unix:///tmp/…/docker.sock.
	Host string

	mu       sync.Mutex
	requests []string
}

// Start serves h on a fresh unix socket until the test ends, recording each
// request first. A nil h answers /_ping as a Docker daemon speaking
// APIVersion and every other path 404 with the daemon's JSON error body.
func Start(t testing.TB, h http.Handler) *Engine {
	t.Helper()
	if h == nil {
		h = http.HandlerFunc(pingOnly)
	}
	// A unix socket path is short (108 bytes): t.TempDir's can be longer.
	dir, err := os.MkdirTemp("", "fakeengine")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	e := &Engine{Host: "unix://" + sock}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			e.mu.Lock()
			e.requests = append(e.requests, r.Method+" "+r.RequestURI)
			e.mu.Unlock()
			h.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return e
}

// Requests returns "METHOD REQUEST-URI" of every request received so far,
// in order, with the request URI exactly as the client sent it
// ("GET /v1.41/images/alpine:3.11/json").
func (e *Engine) Requests() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.requests)
}

func pingOnly(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/_ping" {
		w.Header().Set("Api-Version", APIVersion)
		w.Header().Set("Ostype", "linux")
		io.WriteString(w, "OK")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNotFound)
	io.WriteString(w, `{"message":"page not found"}`)
}
