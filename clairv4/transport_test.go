package clairv4

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"testing"
)

// fakeTransportClient answers in-process, without sockets, for tests that
// run inside a synctest bubble.
type fakeTransportClient struct {
	answer func() exchange
}

func (f *fakeTransportClient) RoundTrip(r *http.Request) (*http.Response, error) {
	e := f.answer()
	h := e.header
	if h == nil {
		h = http.Header{}
	}
	return &http.Response{
		StatusCode: e.status,
		Header:     h,
		Body:       io.NopCloser(bytes.NewReader(e.body)),
		Request:    r,
	}, nil
}

func (f *fakeTransportClient) client() *http.Client { return &http.Client{Transport: f} }

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
