package clairv4

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

func TestOpenAPIVersion(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		ctype   string
		body    string
		want    string
		wantErr func(error) bool
	}{
		// Clair 4.9 serves application/openapi+json with info.version 1.2.0.
		{"clair 4.9", 200, "application/openapi+json", `{"openapi":"3.1.0","info":{"title":"Clair Container Analyzer","version":"1.2.0"}}`, "1.2.0", nil},
		{"no such route", 404, "text/plain; charset=utf-8", "404 page not found\n", "", IsWrongAPI},
		{"psk required", 401, "", "", "", IsUnauthorized},
		{"not an openapi document", 200, "application/json", `{"Namespaces":[]}`, "", IsWrongAPI},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/openapi/v1" {
					http.NotFound(w, r)
					return
				}
				if tt.ctype != "" {
					w.Header().Set("Content-Type", tt.ctype)
				}
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			u, _ := url.Parse(srv.URL)
			got, err := New(u).OpenAPIVersion(t.Context())
			if tt.wantErr != nil {
				if err == nil || !tt.wantErr(err) {
					t.Fatalf("err = %v, want a matching error", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("OpenAPIVersion = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestReleasesServing(t *testing.T) {
	for v, want := range map[string]string{
		"0.1":   "Clair 4.0 to 4.3",
		"1.1":   "Clair 4.4 to 4.8",
		"1.2.0": "Clair 4.9 or later",
		"9.9":   "",
	} {
		if got := ReleasesServing(v); got != want {
			t.Errorf("ReleasesServing(%q) = %q, want %q", v, got, want)
		}
	}
}
