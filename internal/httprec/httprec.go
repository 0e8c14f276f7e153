// Package httprec reads the raw HTTP responses recorded from real Clair
// servers (../../testdata/clair-samples: status line, headers, a blank line, the
// body) and replays them, so that test fakes answer exactly as Clair did.
//
// It is for tests only and imports nothing of the project.
package httprec

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
)

// Response is one recorded response.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Load reads a recorded response from a file.
func Load(path string) (Response, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Response{}, err
	}
	r, err := Parse(b)
	if err != nil {
		return Response{}, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// Parse splits a raw response. Header lines may end in CRLF or LF; the body
// is everything after the first empty line, unchanged (recordings store
// chunked bodies de-chunked).
func Parse(b []byte) (Response, error) {
	var lines []string
	rest := b
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			return Response{}, fmt.Errorf("no end of headers")
		}
		line := strings.TrimSuffix(string(rest[:i]), "\r")
		rest = rest[i+1:]
		if line == "" {
			break
		}
		lines = append(lines, line)
	}
	if len(lines) == 0 {
		return Response{}, fmt.Errorf("no status line")
	}
	f := strings.Fields(lines[0])
	if len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/") {
		return Response{}, fmt.Errorf("bad status line %q", lines[0])
	}
	status, err := strconv.Atoi(f[1])
	if err != nil {
		return Response{}, fmt.Errorf("bad status line %q", lines[0])
	}
	h := http.Header{}
	for _, l := range lines[1:] {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			return Response{}, fmt.Errorf("bad header line %q", l)
		}
		h.Add(k, strings.TrimSpace(v))
	}
	return Response{Status: status, Header: h, Body: rest}, nil
}

// ServeHTTP replays the response: same status, headers (but the framing and
// date headers, which the server writes itself) and body bytes.
func (r Response) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	for k, vs := range r.Header {
		switch http.CanonicalHeaderKey(k) {
		case "Date", "Content-Length", "Transfer-Encoding":
			continue
		}
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(r.Status)
	w.Write(r.Body)
}
