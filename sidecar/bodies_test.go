package sidecar_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/layerbridge/layerbridge/bridge"
	"github.com/layerbridge/layerbridge/internal/testwait"
)

// rawRequest sends head (a request line and headers, without the blank
// line) and then body on a new connection to the sidecar, and returns the
// answer, and whether the sidecar then closed the connection. Every read
// gives up at the test's bound: a sidecar that holds the connection fails
// the test.
func rawRequest(t *testing.T, e *env, head, body string) (*http.Response, []byte, bool) {
	t.Helper()
	c, err := net.Dial("tcp", e.ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(testwait.Deadline(t))
	fmt.Fprintf(c, "%s\r\nHost: sidecar\r\n\r\n%s", head, body)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("%s: no answer: %v", head, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: reading the answer: %v", head, err)
	}
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("%s: the sidecar kept the connection open after its answer: %v", head, err)
	}
	return resp, b, len(rest) == 0
}

// A client without the token gets its refusal at once, and the body it
// declared is never read: it can send it or not, it holds nothing. The
// same for the registry view's routes, which refuse writes to anyone.
func TestUnauthenticatedBodiesAreNotRead(t *testing.T) {
	e := newEnv(t, withToken(t))
	for _, tt := range []struct {
		head string
		want int
	}{
		{"POST /api/v1/scans HTTP/1.1\r\nContent-Length: 10", 401},
		{"POST /api/v1/scans HTTP/1.1\r\nAuthorization: Bearer not-the-token-at-all\r\nContent-Length: 10", 401},
		{"POST /api/v1/scans HTTP/1.1\r\nTransfer-Encoding: chunked", 401},
		{"POST /v2/alpine/blobs/uploads/ HTTP/1.1\r\nContent-Length: 10", 405},
		{"PUT /v2/alpine/manifests/3.11 HTTP/1.1\r\nContent-Length: 10", 405},
		{"POST /api/v1/nothing-here HTTP/1.1\r\nContent-Length: 10", 404},
	} {
		resp, body, closed := rawRequest(t, e, tt.head, "")
		if resp.StatusCode != tt.want || !closed {
			t.Errorf("%q without its body: %d %s, closed %v; want %d and the connection closed", tt.head, resp.StatusCode, body, closed, tt.want)
		}
	}
	if n := e.loader.loads.Load(); n != 0 {
		t.Errorf("%d loads for refused requests", n)
	}
}

// An authenticated client that declares a body and does not send it is cut
// off after the listener's body timeout.
func TestBodyNeverSentIsTimedOut(t *testing.T) {
	e := newEnv(t, withToken(t), withLimits(bridge.Limits{BodyTimeout: 50 * time.Millisecond}))
	resp, body, closed := rawRequest(t, e, "POST /api/v1/scans HTTP/1.1\r\nAuthorization: Bearer "+testToken+"\r\nContent-Length: 30", `{"image":`)
	if resp.StatusCode != 400 || !strings.Contains(string(body), "timeout") || !closed {
		t.Errorf("a body cut short: %d %s, closed %v; want 400 naming the timeout, and the connection closed", resp.StatusCode, body, closed)
	}
	if n := e.loader.loads.Load(); n != 0 {
		t.Errorf("%d loads for a request that never arrived", n)
	}
}

func TestOversizedScanRequest(t *testing.T) {
	e := newEnv(t, withToken(t))
	auth := "Authorization: Bearer " + testToken
	big := `{"image": "alpine:3.11", "platform": "` + strings.Repeat("x", 70<<10) + `"}`

	// Declared: refused from the headers, unread.
	resp, body, closed := rawRequest(t, e, fmt.Sprintf("POST /api/v1/scans HTTP/1.1\r\n%s\r\nContent-Length: %d", auth, len(big)), "")
	if resp.StatusCode != 413 || !strings.Contains(string(body), "TOO_LARGE") || !closed {
		t.Errorf("declared %d bytes: %d %s, closed %v; want 413", len(big), resp.StatusCode, body, closed)
	}
	// Chunked: cut at the API's limit.
	chunked := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(big), big)
	resp, body, closed = rawRequest(t, e, "POST /api/v1/scans HTTP/1.1\r\n"+auth+"\r\nTransfer-Encoding: chunked", chunked)
	if resp.StatusCode != 413 || !strings.Contains(string(body), "at most 65536 bytes") || !closed {
		t.Errorf("%d chunked bytes: %d %s, closed %v; want 413", len(big), resp.StatusCode, body, closed)
	}
	if n := e.loader.loads.Load(); n != 0 {
		t.Errorf("%d loads for refused requests", n)
	}
}
