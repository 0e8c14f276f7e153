package bridge

import (
	"bufio"
	"cmp"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/internal/testwait"
)

// shortLimits are limits short enough that a test can wait for them to
// pass, and long enough that a client that does its part is never cut.
var shortLimits = Limits{HeaderTimeout: 100 * time.Millisecond, BodyTimeout: 100 * time.Millisecond, IdleTimeout: 100 * time.Millisecond}

// startHTTP serves h with NewHTTPServer on a loopback port until the test
// ends and returns the address.
func startHTTP(t *testing.T, h http.Handler, l Limits) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewHTTPServer(h, nil, l)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := testwait.Recv(t, served, "the server to stop"); !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// rawConn opens a connection whose reads and writes give up at the test's
// wait bound.
func rawConn(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(testwait.Deadline(t))
	return c
}

// readToClose reads what the server sends until it closes the connection.
// A read that ends for any other reason (the test's bound) fails the test:
// the server held the connection.
func readToClose(t *testing.T, c net.Conn) string {
	t.Helper()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("the server kept the connection open (read: %v); it sent %q", err, b)
	}
	return string(b)
}

// bodyEcho reads the whole body and says how much it read; a failed read is
// answered 400, a body over the limit 413.
var bodyEcho = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
	case err != nil:
		http.Error(w, err.Error(), http.StatusBadRequest)
	default:
		fmt.Fprintf(w, "read %d bytes", len(b))
	}
})

// A client that declares a body and never sends it is cut off once
// BodyTimeout has passed: the server does not wait for it forever.
func TestBodyNeverSentClosesTheConnection(t *testing.T) {
	addr := startHTTP(t, bodyEcho, shortLimits)
	c := rawConn(t, addr)
	io.WriteString(c, "POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
	got := readToClose(t, c)
	if !strings.HasPrefix(got, "HTTP/1.1 400 ") || !strings.Contains(got, "timeout") {
		t.Errorf("answer to a body that never came:\n%s", got)
	}
}

// A handler that refuses a request before reading its body (no token, a
// read-only route) answers at once and the body is never read: the client
// has its answer without sending a byte of it.
func TestRefusedBodyIsNotRead(t *testing.T) {
	refuse := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no", http.StatusUnauthorized)
	})
	// The default BodyTimeout (30 s): the answer must not wait for it.
	addr := startHTTP(t, refuse, Limits{})
	c := rawConn(t, addr)
	io.WriteString(c, "POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer before the body was sent: %v", err)
	}
	if resp.StatusCode != http.StatusUnauthorized || !resp.Close {
		t.Errorf("answer: %d, close %v; want 401 and the connection closed", resp.StatusCode, resp.Close)
	}
	readToClose(t, c)
}

// A handler that writes nothing is answered 200 by net/http, which must
// not read an unread body first either.
func TestSilentHandlerDoesNotReadTheBody(t *testing.T) {
	addr := startHTTP(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), Limits{})
	c := rawConn(t, addr)
	io.WriteString(c, "PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
	if got := readToClose(t, c); !strings.HasPrefix(got, "HTTP/1.1 200 ") {
		t.Errorf("answer:\n%s", got)
	}
}

func TestOversizedBody(t *testing.T) {
	addr := startHTTP(t, bodyEcho, Limits{MaxBody: 1000})

	// Declared: refused from the headers, without reading a byte.
	c := rawConn(t, addr)
	io.WriteString(c, "POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n")
	got := readToClose(t, c)
	if !strings.HasPrefix(got, "HTTP/1.1 413 ") || !strings.Contains(got, `"code":"TOO_LARGE"`) || !strings.Contains(got, "at most 1000") {
		t.Errorf("declared 1001 bytes:\n%s", got)
	}

	// Chunked: cut at the limit.
	c = rawConn(t, addr)
	chunk := strings.Repeat("a", 600)
	fmt.Fprintf(c, "POST /api HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n", len(chunk), chunk, len(chunk), chunk)
	if got := readToClose(t, c); !strings.HasPrefix(got, "HTTP/1.1 413 ") {
		t.Errorf("1200 chunked bytes:\n%s", got)
	}

	// At the limit: read, and the connection is kept for the next request.
	c = rawConn(t, addr)
	br := bufio.NewReader(c)
	for i := range 2 {
		fmt.Fprintf(c, "POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n%s", strings.Repeat("b", 1000))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d on one connection: %v", i+1, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != "read 1000 bytes" || resp.Close {
			t.Errorf("request %d: %d %q, close %v", i+1, resp.StatusCode, b, resp.Close)
		}
	}
}

// The body deadline ends with the body: a response that takes longer than
// BodyTimeout to write (a slow reader of a big answer) is not cut.
func TestBodyDeadlineDoesNotReachTheResponse(t *testing.T) {
	big := strings.Repeat("x", 8<<20)
	probe := make(chan string, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		io.WriteString(w, big)
	})
	addr := startHTTP(t, withProbe(h), shortLimits)
	c := rawConn(t, addr)
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 1024)
	if _, err := io.ReadFull(resp.Body, head); err != nil {
		t.Fatal(err)
	}
	go func() { probe <- bodyTimeoutPassed(addr) }()
	if err := testwait.Recv(t, probe, "the body timeout to pass"); err != "" {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(resp.Body)
	if err != nil || len(head)+len(rest) != len(big) {
		t.Errorf("response cut: %d of %d bytes, %v", len(head)+len(rest), len(big), err)
	}
}

// smallBufferClient is an HTTP client whose connections receive into a
// 64 KiB socket buffer, so that a server writing a big response blocks
// until the client reads (the kernel's autotuning would otherwise buffer
// tens of MB on loopback).
func smallBufferClient() *http.Client {
	d := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 64<<10)
		})
		return cmp.Or(err, serr)
	}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

// withProbe serves bodyEcho at /probe, for bodyTimeoutPassed, and h
// everywhere else.
func withProbe(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/probe" {
			bodyEcho.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// bodyTimeoutPassed returns once a server with shortLimits, serving
// withProbe, has cut off a request whose body never comes: then at least
// BodyTimeout (and HeaderTimeout, IdleTimeout, which are as long) has
// passed since it was called. It says what went wrong, "" when nothing did.
func bodyTimeoutPassed(addr string) string {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err.Error()
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testwait.Limit))
	io.WriteString(c, "POST /probe HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
	if _, err := io.ReadAll(c); err != nil {
		return "the probe's connection was not closed: " + err.Error()
	}
	return ""
}

// Clair's downloads are responses: a layer download that lasts much longer
// than every timeout of the server (a slow Clair, a multi-GB layer) ends
// whole. (A WriteTimeout would cut it.)
func TestSlowLayerDownloadCompletes(t *testing.T) {
	dir := t.TempDir()
	content := make([]byte, 16<<20) // far beyond what the socket buffers hold
	rand.Read(content)
	desc := writeBlob(t, dir, content)
	srv := New()
	addr := startHTTP(t, withProbe(srv), shortLimits)
	g, err := srv.Register(&url.URL{Scheme: "http", Host: addr}, "slow", dirBlobs(dir), []ocispec.Descriptor{desc})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := g.URL(desc.Digest)
	req, _ := http.NewRequestWithContext(testwait.Context(t), "GET", u, nil)
	resp, err := smallBufferClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	if _, err := io.CopyN(h, resp.Body, 1<<20); err != nil {
		t.Fatal(err)
	}
	// Clair pauses: twice every timeout of the server passes.
	for range 2 {
		probe := make(chan string, 1)
		go func() { probe <- bodyTimeoutPassed(addr) }()
		if err := testwait.Recv(t, probe, "the server's timeouts to pass"); err != "" {
			t.Fatal(err)
		}
	}
	n, err := io.Copy(h, resp.Body)
	if got := digest.NewDigest(digest.SHA256, h); err != nil || got != desc.Digest {
		t.Errorf("slow download: %d more bytes after the pause, %v; digest %s, want %s", n, err, got, desc.Digest)
	}
	fetches, err := g.Close(testwait.Context(t))
	if err != nil || len(fetches) != 1 || fetches[0].Err != nil || fetches[0].Bytes != desc.Size {
		t.Errorf("fetches = %+v, %v", fetches, err)
	}
}
