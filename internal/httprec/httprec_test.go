package httprec

import (
	"net/http/httptest"
	"path/filepath"
	"testing"
)

func TestLoadEveryRecording(t *testing.T) {
	files, err := filepath.Glob("../../testdata/clair-samples/*/*.http")
	if err != nil || len(files) < 10 {
		t.Fatalf("found %d recordings (%v): is testdata/clair-samples in the repository?", len(files), err)
	}
	for _, f := range files {
		r, err := Load(f)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status < 200 || r.Status > 599 || len(r.Header) == 0 {
			t.Errorf("%s: status %d, %d headers", f, r.Status, len(r.Header))
		}
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		if rec.Code != r.Status || rec.Body.String() != string(r.Body) {
			t.Errorf("%s: replayed %d with %d bytes, recorded %d with %d", f, rec.Code, rec.Body.Len(), r.Status, len(r.Body))
		}
	}
}

func TestParseRejectsGarbage(t *testing.T) {
	for _, in := range []string{"", "HTTP/1.1 200 OK\r\n", "garbage\r\n\r\n", "HTTP/1.1 abc\r\n\r\n", "HTTP/1.1 200 OK\r\nnocolon\r\n\r\n"} {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("Parse(%q) succeeded", in)
		}
	}
}
