package harness

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// Layer is one layer file served by a LayerServer.
type Layer struct {
	// Digest is the sha256 of the file's bytes, exactly as served: the
	// hash Clair v4 checks them against.
	Digest digest.Digest
	// URL is where the file is served.
	URL string
	// Path is the file on disk.
	Path string
}

// LayerServer is a plain static file server for layer files on loopback (or
// the address given to ServeLayersOn), the reference that layerbridge's
// bridge is compared with: GET and HEAD of /sha256-<hex> answer the file
// through http.ServeContent with Content-Type application/octet-stream
// (never sniffed, never compressed on the fly).
type LayerServer struct {
	// URL is the base URL, without a trailing slash.
	URL string

	srv    *loopbackServer
	layers []Layer
	byPath map[string]Layer

	mu   sync.Mutex
	gets map[digest.Digest]int
}

// ServeLayers hashes each file (in order: base layer first) and serves them
// until Close or the end of ctx. Files are opened per request, so they must
// stay in place while served.
func ServeLayers(ctx context.Context, files ...string) (*LayerServer, error) {
	return ServeLayersOn(ctx, netip.AddrFrom4([4]byte{127, 0, 0, 1}), files...)
}

// ServeLayersOn is ServeLayers on a free port of addr instead of loopback:
// the gateway of a Network, for a Clair in a container on it.
func ServeLayersOn(ctx context.Context, addr netip.Addr, files ...string) (*LayerServer, error) {
	s := &LayerServer{byPath: map[string]Layer{}, gets: map[digest.Digest]int{}}
	for _, f := range files {
		d, err := digestFile(f)
		if err != nil {
			return nil, fmt.Errorf("serve layers: %w", err)
		}
		l := Layer{Digest: d, Path: f}
		s.layers = append(s.layers, l)
		s.byPath["/sha256-"+d.Encoded()] = l
	}
	srv, err := serveOn(ctx, addr, http.HandlerFunc(s.serve))
	if err != nil {
		return nil, fmt.Errorf("serve layers: %w", err)
	}
	s.srv, s.URL = srv, srv.url
	for i := range s.layers {
		s.layers[i].URL = s.URL + "/sha256-" + s.layers[i].Digest.Encoded()
	}
	return s, nil
}

func digestFile(path string) (digest.Digest, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	d, err := digest.SHA256.FromReader(f)
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return d, nil
}

func (s *LayerServer) serve(w http.ResponseWriter, r *http.Request) {
	l, ok := s.byPath[r.URL.Path]
	if !ok || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		http.NotFound(w, r)
		return
	}
	if r.Method == http.MethodGet {
		s.mu.Lock()
		s.gets[l.Digest]++
		s.mu.Unlock()
	}
	f, err := os.Open(l.Path)
	if err != nil {
		http.Error(w, "layer file vanished", http.StatusInternalServerError)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "", time.Time{}, f)
}

// Layers returns the served layers in the order given to ServeLayers.
func (s *LayerServer) Layers() []Layer { return append([]Layer(nil), s.layers...) }

// Gets returns how many GET requests the layer with digest d received.
func (s *LayerServer) Gets(d digest.Digest) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gets[d]
}

// Close stops serving, cutting off downloads in progress.
func (s *LayerServer) Close() error { return s.srv.close() }
