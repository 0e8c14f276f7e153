package bridge

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/layerbridge/layerbridge/blobs"

	"github.com/gorilla/mux"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Fetch describes one request for a layer, as the server answered it.
type Fetch struct {
	Grant    string        // the grant's label (for example the image reference)
	Digest   digest.Digest // the requested digest ("" when the path named none)
	Remote   string        // client address
	Method   string
	Path     string // request path; it holds the capability, so never log it
	Status   int
	Bytes    int64 // body bytes written
	Duration time.Duration
	Err      error // why the request failed, nil on success
}

// Server serves registered blobs. Create it with New; it is an http.Handler
// and is safe for concurrent use.
type Server struct {
	log     *slog.Logger
	observe func(Fetch)
	router  *mux.Router
	now     func() time.Time
	mu      sync.RWMutex
	grants  map[string]*Grant // by capability
}

// Option configures a Server.
type Option func(*Server)

// WithLogger sets the logger that records every fetch. The default discards.
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// WithFetchObserver calls fn after every layer request, successful or not.
// fn runs on the request's goroutine and must not block.
func WithFetchObserver(fn func(Fetch)) Option { return func(s *Server) { s.observe = fn } }

// New returns a layer server. It serves nothing until Register is called.
func New(opts ...Option) *Server {
	s := &Server{
		log:    slog.New(slog.DiscardHandler),
		router: newRouter(),
		now:    time.Now,
		grants: make(map[string]*Grant),
	}
	for _, o := range opts {
		o(s)
	}
	s.router.Get(RouteLayer).Handler(http.HandlerFunc(s.serveLayer))
	s.router.Get(RouteHealthz).HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	s.router.NotFoundHandler = http.HandlerFunc(notFound)
	s.router.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	})
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.router.ServeHTTP(w, r) }

// Router exposes the server's router so that other handlers (the sidecar
// API, the registry view) can share its listener.
func (s *Server) Router() *mux.Router { return s.router }

// Grant is a capability to download a fixed set of blobs. Its URLs stop
// working when it is revoked.
type Grant struct {
	label      string
	capability string
	opener     blobs.Opener
	blobs      map[digest.Digest]ocispec.Descriptor
	server     *Server
	urls       urlBuilder

	mu       sync.Mutex
	fetches  []Fetch
	revoked  bool
	inFlight int
	idle     chan struct{} // closed when revoked and no request is in flight
}

// Register grants access to descs (by digest), opened with opener, under a
// new unguessable capability, with URLs rooted at base (the advertised
// address). label names the grant in logs. Call Revoke when the scan ends.
func (s *Server) Register(base *url.URL, label string, opener blobs.Opener, descs []ocispec.Descriptor) (*Grant, error) {
	if base == nil || base.Scheme == "" || base.Host == "" {
		return nil, fmt.Errorf("register %s: advertised url %q is not absolute", label, base)
	}
	if opener == nil {
		return nil, fmt.Errorf("register %s: nothing to open the blobs with", label)
	}
	capability, err := newCapability()
	if err != nil {
		return nil, fmt.Errorf("register %s: %w", label, err)
	}
	g := &Grant{
		label:      label,
		capability: capability,
		opener:     opener,
		blobs:      make(map[digest.Digest]ocispec.Descriptor, len(descs)),
		server:     s,
		urls:       urlBuilder{base: base, router: s.router},
		idle:       make(chan struct{}),
	}
	for _, d := range descs {
		if err := d.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("register %s: %w", label, err)
		}
		if d.Digest.Algorithm() != digest.SHA256 {
			return nil, fmt.Errorf("register %s: blob %s: only sha256 blobs can be served", label, d.Digest)
		}
		g.blobs[d.Digest] = d
	}
	s.mu.Lock()
	s.grants[capability] = g
	s.mu.Unlock()
	s.log.Debug("registered blobs", "grant", label, "blobs", len(descs), "base", base.String())
	return g, nil
}

func newCapability() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("make capability: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// URL returns the URL at which the blob d can be downloaded under g.
func (g *Grant) URL(d digest.Digest) (string, error) {
	if _, ok := g.blobs[d]; !ok {
		return "", fmt.Errorf("blob %s is not registered for %s", d, g.label)
	}
	return g.urls.layerURL(g.capability, d)
}

// Revoke ends the grant: its URLs answer 404 from now on. Requests already
// being answered complete; Close waits for them.
func (g *Grant) Revoke() {
	g.server.mu.Lock()
	delete(g.server.grants, g.capability)
	g.server.mu.Unlock()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.revoked {
		return
	}
	g.revoked = true
	if g.inFlight == 0 {
		close(g.idle)
	}
	g.server.log.Debug("revoked blobs: their urls answer 404 from now on", "grant", g.label)
}

// Close revokes the grant, waits until the requests it was answering have
// finished (or ctx ends), and returns every layer request made under it.
// Unlike Fetches, its answer is complete: a request is recorded when its
// last byte has been written, which can be after the client has it all.
func (g *Grant) Close(ctx context.Context) ([]Fetch, error) {
	g.Revoke()
	select {
	case <-g.idle:
		return g.Fetches(), nil
	case <-ctx.Done():
		return g.Fetches(), fmt.Errorf("wait for layer requests of %s: %w", g.label, context.Cause(ctx))
	}
}

// Fetches returns the layer requests made under g and finished so far,
// oldest first.
func (g *Grant) Fetches() []Fetch {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]Fetch(nil), g.fetches...)
}

// begin admits a request under g unless g was revoked.
func (g *Grant) begin() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.revoked {
		return false
	}
	g.inFlight++
	return true
}

// end records a finished request admitted by begin.
func (g *Grant) end(f Fetch) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.fetches = append(g.fetches, f)
	g.inFlight--
	if g.revoked && g.inFlight == 0 {
		close(g.idle)
	}
}

// ErrInterrupted is the Err of a Fetch whose body was cut short: the client
// stopped reading (Clair aborting or timing out a download) or the
// connection broke. Its Status is what was sent before, usually 200, and
// Bytes how much of the blob got out.
var ErrInterrupted = errors.New("layer download interrupted")

// errNotRegistered is the cause behind every 404: the same answer whether the
// capability is unknown, revoked, or the blob is not part of it, so that a
// client learns nothing about what exists.
var errNotRegistered = errors.New("not registered")

func notFound(w http.ResponseWriter, _ *http.Request) {
	http.Error(w, "not found", http.StatusNotFound)
}

func (s *Server) serveLayer(w http.ResponseWriter, r *http.Request) {
	start := s.now()

	vars := mux.Vars(r)
	f := Fetch{Remote: r.RemoteAddr, Method: r.Method, Path: r.URL.Path}
	cw := &countingWriter{ResponseWriter: w, status: http.StatusOK}
	var grant *Grant // set once the request is admitted under it
	var size int64 = -1
	defer func() {
		f.Status, f.Bytes, f.Duration = cw.status, cw.n, s.now().Sub(start)
		if f.Err == nil && cw.err != nil {
			// The client stopped reading or the connection broke: the
			// status was sent, the body was cut short.
			f.Err = fmt.Errorf("%w after %d of %d bytes: %w", ErrInterrupted, cw.n, size, cw.err)
		}
		if grant != nil {
			f.Grant = grant.label
			grant.end(f)
		}
		s.logFetch(f)
		if s.observe != nil {
			s.observe(f)
		}
	}()

	d, err := digest.Parse(vars["digest"])
	if err != nil {
		f.Err = err
		notFound(cw, r)
		return
	}
	f.Digest = d
	s.mu.RLock()
	g := s.grants[vars["capability"]]
	s.mu.RUnlock()
	if g == nil || !g.begin() {
		f.Err = fmt.Errorf("capability: %w", errNotRegistered)
		notFound(cw, r)
		return
	}
	grant = g
	desc, ok := grant.blobs[d]
	if !ok {
		f.Err = fmt.Errorf("blob: %w", errNotRegistered)
		notFound(cw, r)
		return
	}
	blob, err := grant.opener.Blob(r.Context(), d)
	if err != nil {
		f.Err = err
		if errors.Is(err, fs.ErrNotExist) {
			notFound(cw, r)
			return
		}
		http.Error(cw, "cannot open blob", http.StatusInternalServerError)
		return
	}
	defer blob.Close()
	size = blob.Size()
	if desc.Size > 0 && size != desc.Size {
		// A stored blob of the wrong size is corrupt: serving it would make
		// Clair fail its digest check with a less useful message.
		f.Err = fmt.Errorf("stored blob %s has %d bytes, descriptor says %d", d, size, desc.Size)
		http.Error(cw, "stored blob is corrupt", http.StatusInternalServerError)
		return
	}
	ctype, err := layerContentType(blob)
	if err != nil {
		f.Err = err
		http.Error(cw, "cannot read blob", http.StatusInternalServerError)
		return
	}
	h := cw.Header()
	h.Set("Content-Type", ctype)
	h.Set("ETag", `"`+d.String()+`"`)
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Cache-Control", "private, no-transform")
	h.Set("X-Content-Type-Options", "nosniff")
	// ServeContent handles HEAD, Range and If-* and sends a file with
	// sendfile when the connection allows it. The zero modtime keeps
	// Last-Modified out: the digest is the validator.
	if _, ok := blobs.File(blob); ok {
		http.ServeContent(cw, r, "", time.Time{}, blobs.ReadSeeker(blob))
		return
	}
	// Other blobs may fail while read (a blob still being written that
	// fails its checks): the response is then cut, never completed.
	rs := &readRecorder{ReadSeeker: blobs.ReadSeeker(blob)}
	http.ServeContent(cw, r, "", time.Time{}, rs)
	if rs.err != nil {
		f.Err = fmt.Errorf("%w after %d of %d bytes: %w", ErrInterrupted, cw.n, size, rs.err)
		// Closes the connection without ending the body: the client
		// sees a broken download, not a short one that looks whole.
		panic(http.ErrAbortHandler)
	}
}

// readRecorder keeps the first error other than io.EOF of a read.
type readRecorder struct {
	io.ReadSeeker
	err error
}

func (r *readRecorder) Read(p []byte) (int, error) {
	n, err := r.ReadSeeker.Read(p)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}

func (s *Server) logFetch(f Fetch) {
	attrs := []any{
		"grant", f.Grant, "digest", f.Digest.String(), "client", f.Remote, "method", f.Method,
		"status", f.Status, "bytes", f.Bytes, "duration", f.Duration.Round(time.Microsecond),
	}
	switch {
	case errors.Is(f.Err, ErrInterrupted):
		s.log.Warn("layer download interrupted", append(attrs, "err", f.Err)...)
	case f.Err != nil:
		s.log.Warn("layer request refused", append(attrs, "err", f.Err)...)
	default:
		s.log.Info("layer fetched", attrs...)
	}
}

// countingWriter records the status and body size of a response. It keeps
// io.ReaderFrom reachable so that ServeContent can still use sendfile.
type countingWriter struct {
	http.ResponseWriter
	status      int
	n           int64
	wroteHeader bool
	err         error // the first failed write: the body was cut short
}

func (c *countingWriter) failed(err error) {
	if err != nil && c.err == nil {
		c.err = err
	}
}

func (c *countingWriter) WriteHeader(code int) {
	if !c.wroteHeader {
		c.status, c.wroteHeader = code, true
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.wroteHeader = true
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	c.failed(err)
	return n, err
}

// ReadFrom forwards to the underlying writer's ReadFrom (sendfile on a TCP
// connection) when it has one.
func (c *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	c.wroteHeader = true
	if rf, ok := c.ResponseWriter.(io.ReaderFrom); ok {
		n, err := rf.ReadFrom(r)
		c.n += n
		c.failed(err)
		return n, err
	}
	n, err := io.Copy(struct{ io.Writer }{c.ResponseWriter}, r)
	c.n += n
	c.failed(err)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
