package bridge

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"
)

// Limits bound what one client can hold on a layerbridge listener: the
// sidecar's (API, registry view, layer URLs), the one-shot layer server of
// `layerbridge scan` and doctor's canary server. A field left at zero takes
// the value of DefaultLimits.
//
// There is deliberately no bound on writing a response: Clair downloads
// layers of several GB over slow links, and a client that stops reading is
// already cut off by the kernel's TCP timeouts. A response is never cut
// because its request's body took long to arrive: the body deadline is
// lifted once the body has been read.
type Limits struct {
	// HeaderTimeout bounds reading a request's headers
	// (http.Server.ReadHeaderTimeout).
	HeaderTimeout time.Duration
	// BodyTimeout bounds reading a request's body, from the end of its
	// headers. A client that declares a body and does not send it in time
	// gets its connection closed.
	BodyTimeout time.Duration
	// MaxBody is the largest request body read, in bytes. A larger
	// declared Content-Length is answered 413 at once, without reading it;
	// a chunked body fails at this size (the sidecar API answers 413).
	MaxBody int64
	// MaxHeaderBytes bounds the request line and headers
	// (http.Server.MaxHeaderBytes).
	MaxHeaderBytes int
	// IdleTimeout closes a kept-alive connection that sends no new request
	// for this long (http.Server.IdleTimeout).
	IdleTimeout time.Duration
}

// DefaultLimits are the limits of every layerbridge listener. The bodies
// layerbridge reads at all are the sidecar API's scan requests (a few
// hundred bytes); nothing else it serves takes one.
var DefaultLimits = Limits{
	HeaderTimeout:  10 * time.Second,
	BodyTimeout:    30 * time.Second,
	MaxBody:        64 << 10,
	MaxHeaderBytes: 64 << 10,
	IdleTimeout:    2 * time.Minute,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.HeaderTimeout > 0 {
		d.HeaderTimeout = l.HeaderTimeout
	}
	if l.BodyTimeout > 0 {
		d.BodyTimeout = l.BodyTimeout
	}
	if l.MaxBody > 0 {
		d.MaxBody = l.MaxBody
	}
	if l.MaxHeaderBytes > 0 {
		d.MaxHeaderBytes = l.MaxHeaderBytes
	}
	if l.IdleTimeout > 0 {
		d.IdleTimeout = l.IdleTimeout
	}
	return d
}

// NewHTTPServer returns the http.Server that serves h on every layerbridge
// listener, bounded by limits (see Limits; the zero Limits is
// DefaultLimits). Its errors (TLS handshakes, malformed requests) go to log
// at debug level; nil discards them.
//
// On top of the http.Server's own timeouts it bounds request bodies, which
// net/http leaves unbounded once the headers are in:
//
//   - a declared Content-Length above MaxBody is answered 413 without
//     reading the body;
//   - the body must arrive within BodyTimeout of the headers, and is cut at
//     MaxBody bytes (http.MaxBytesReader);
//   - when a handler answers without having read the whole body (it refused
//     the request before reading it: no token, a read-only route, a 404),
//     the rest of the body is not read either: the answer carries
//     "Connection: close" and the connection is closed after it. Without
//     this, net/http would read up to 256 KiB of the body, unbounded,
//     before sending the answer, so that a client declaring a body it never
//     sends would hold the connection, and get no answer, forever.
//
// The caller owns the server: it calls Serve and Shutdown.
func NewHTTPServer(h http.Handler, log *slog.Logger, limits Limits) *http.Server {
	l := limits.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &http.Server{
		Handler:           l.boundBodies(h),
		ReadHeaderTimeout: l.HeaderTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		IdleTimeout:       l.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// boundBodies applies the body rules of NewHTTPServer to next. A request
// without a body (every GET and HEAD of a layer download) passes through
// untouched, so that the layer server keeps its sendfile path.
func (l Limits) boundBodies(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		bw := &bodyBoundWriter{ResponseWriter: w, rc: rc}
		if r.ContentLength > l.MaxBody {
			writeRegistryError(bw, r, &registryError{
				status: http.StatusRequestEntityTooLarge, code: "TOO_LARGE",
				message: fmt.Sprintf("request body of %d bytes: at most %d are read", r.ContentLength, l.MaxBody),
			})
			return
		}
		// Errors: a ResponseWriter that cannot set deadlines (not a
		// connection of an http.Server) is not bounded in time.
		_ = rc.SetReadDeadline(time.Now().Add(l.BodyTimeout))
		bw.body = &boundedBody{ReadCloser: http.MaxBytesReader(w, r.Body, l.MaxBody), rc: rc}
		r.Body = bw.body
		next.ServeHTTP(bw, r)
		// A handler that wrote nothing is answered 200 by net/http, which
		// would then read the rest of the body first.
		bw.settle()
	})
}

// boundedBody lifts the body's read deadline once the body has been read
// whole, so that the deadline does not reach into the response (net/http
// watches the connection for the client going away once the body is read).
type boundedBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	read atomic.Bool // the body was read to its end
}

func (b *boundedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && b.read.CompareAndSwap(false, true) {
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// bodyBoundWriter settles the connection's fate before the first byte of
// the answer: a body the handler did not read whole is never read.
type bodyBoundWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	body    *boundedBody // nil when the body was refused unread
	settled atomic.Bool
}

// aLongTimeAgo is a read deadline in the past: reads fail at once.
var aLongTimeAgo = time.Unix(1, 0)

func (w *bodyBoundWriter) settle() {
	if !w.settled.CompareAndSwap(false, true) {
		return
	}
	if w.body != nil && w.body.read.Load() {
		return
	}
	w.Header().Set("Connection", "close")
	_ = w.rc.SetReadDeadline(aLongTimeAgo)
}

func (w *bodyBoundWriter) WriteHeader(code int) {
	if code >= 200 {
		w.settle()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *bodyBoundWriter) Write(p []byte) (int, error) {
	w.settle()
	return w.ResponseWriter.Write(p)
}

// ReadFrom keeps the underlying writer's ReadFrom (sendfile) reachable.
func (w *bodyBoundWriter) ReadFrom(r io.Reader) (int64, error) {
	w.settle()
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *bodyBoundWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
