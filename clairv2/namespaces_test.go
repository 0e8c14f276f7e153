package clairv2

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/layerbridge/layerbridge/internal/clairhttp"
)

// noVulns is Clair v2's answer for a namespace without vulnerabilities
// (getVulnerabilities encodes a nil slice).
const noVulns = `{"Vulnerabilities":null}`

const oneVuln = `{"Vulnerabilities":[{"Name":"CVE-2021-30139","NamespaceName":"alpine:v3.11","Link":"https://cve.mitre.org/cgi-bin/cvename.cgi?name=CVE-2021-30139","Severity":"Unknown"}],"NextPage":"gAAAAABh"}`

func TestNamespacesRecorded(t *testing.T) {
	f, srv := newFakeClair(t)
	f.mux.Handle("/v1/namespaces", loadExchange(t, "v2.1.7/GET-v1-namespaces.http"))
	c := newTestClient(t, srv)

	nss, err := c.Namespaces(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := []Namespace{{"alpine:v3.11", "dpkg"}, {"alpine:v3.10", "dpkg"}}
	if !reflect.DeepEqual(nss, want) {
		t.Errorf("namespaces = %+v", nss)
	}
	if err := c.Probe(t.Context()); err != nil {
		t.Errorf("probe: %v", err)
	}
}

func TestVulnerabilityDataPresent(t *testing.T) {
	tests := []struct {
		name      string
		routes    map[string]http.Handler
		want      bool
		wantErr   bool
		wantPaths []string
	}{
		{
			name: "second namespace has data",
			routes: map[string]http.Handler{
				"/v1/namespaces/alpine:v3.11/vulnerabilities": jsonExchange(200, noVulns),
				"/v1/namespaces/alpine:v3.10/vulnerabilities": jsonExchange(200, oneVuln),
			},
			want:      true,
			wantPaths: []string{"/v1/namespaces", "/v1/namespaces/alpine:v3.11/vulnerabilities", "/v1/namespaces/alpine:v3.10/vulnerabilities"},
		},
		{
			name: "stops at the first namespace with data",
			routes: map[string]http.Handler{
				"/v1/namespaces/alpine:v3.11/vulnerabilities": jsonExchange(200, oneVuln),
			},
			want:      true,
			wantPaths: []string{"/v1/namespaces", "/v1/namespaces/alpine:v3.11/vulnerabilities"},
		},
		{
			name: "namespaces from analysed layers only, no vulnerabilities",
			routes: map[string]http.Handler{
				"/v1/namespaces/alpine:v3.11/vulnerabilities": jsonExchange(200, noVulns),
				"/v1/namespaces/alpine:v3.10/vulnerabilities": jsonExchange(200, noVulns),
			},
		},
		{
			name:    "a namespace query fails",
			routes:  map[string]http.Handler{"/v1/namespaces/alpine:v3.11/vulnerabilities": jsonExchange(500, `{"Error":{"Message":"database: connection refused"}}`)},
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, srv := newFakeClair(t)
			f.mux.Handle("/v1/namespaces", loadExchange(t, "v2.1.7/GET-v1-namespaces.http"))
			for p, h := range tt.routes {
				f.mux.Handle(p, h)
			}
			got, err := newTestClient(t, srv).VulnerabilityDataPresent(t.Context())
			if got != tt.want || (err != nil) != tt.wantErr {
				t.Fatalf("got %v, %v; want %v, error %v", got, err, tt.want, tt.wantErr)
			}
			if tt.wantPaths == nil {
				return
			}
			var paths []string
			for i, r := range f.requests() {
				paths = append(paths, r.path)
				if i > 0 && r.rawQuery != "limit=1" {
					t.Errorf("query %q, want limit=1 (clair v2 requires a limit)", r.rawQuery)
				}
			}
			if !reflect.DeepEqual(paths, tt.wantPaths) {
				t.Errorf("paths %q, want %q", paths, tt.wantPaths)
			}
		})
	}
}

func TestVulnerabilityDataAbsentWithoutNamespaces(t *testing.T) {
	f, srv := newFakeClair(t)
	// getNamespaces encodes a nil slice when the database is empty.
	f.mux.Handle("/v1/namespaces", jsonExchange(200, `{"Namespaces":null}`))
	c := newTestClient(t, srv)
	got, err := c.VulnerabilityDataPresent(t.Context())
	if err != nil || got {
		t.Errorf("got %v, %v; want false", got, err)
	}
	if err := c.Probe(t.Context()); err != nil {
		t.Errorf("an empty clair v2 is still clair v2: %v", err)
	}
}

func TestHasVulnerabilitiesUnknownNamespace(t *testing.T) {
	f, srv := newFakeClair(t)
	f.mux.Handle("/v1/namespaces/nope:1/vulnerabilities", jsonExchange(404, `{"Error":{"Message":"the resource cannot be found"}}`))
	_, err := newTestClient(t, srv).HasVulnerabilities(t.Context(), "nope:1")
	if !IsNotFound(err) {
		t.Errorf("err = %v", err)
	}
}

func TestProbe(t *testing.T) {
	tests := []struct {
		name          string
		answer        func(t *testing.T) http.Handler
		wrong, unauth bool
		inError       string
	}{
		{"clair v4 without auth", func(t *testing.T) http.Handler { return loadExchange(t, "v4.9/POST-v1-layers-on-clair4.http") }, true, false, "404 page not found"},
		{"clair v4 with psk", func(*testing.T) http.Handler { return exchange{401, http.Header{}, nil} }, false, true, "401 Unauthorized"},
		{"html 404", func(*testing.T) http.Handler {
			return exchange{404, http.Header{"Content-Type": {"text/html"}}, []byte("<html></html>")}
		}, true, false, "404 Not Found"},
		{"200 that is no namespace list", func(*testing.T) http.Handler {
			return exchange{200, http.Header{"Content-Type": {"text/html"}}, []byte("<html></html>")}
		}, true, false, "without a namespace list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, srv := newFakeClair(t)
			f.mux.Handle("/v1/namespaces", tt.answer(t))
			err := newTestClient(t, srv).Probe(t.Context())
			if err == nil {
				t.Fatal("no error")
			}
			if IsWrongAPI(err) != tt.wrong || IsUnauthorized(err) != tt.unauth {
				t.Errorf("err %v: wrong API %v, unauthorized %v", err, IsWrongAPI(err), IsUnauthorized(err))
			}
			if !strings.Contains(err.Error(), tt.inError) {
				t.Errorf("error %q does not contain %q", err, tt.inError)
			}
		})
	}
}

func TestProbeUnreachable(t *testing.T) {
	_, srv := newFakeClair(t)
	c := newTestClient(t, srv)
	srv.Close()
	if err := c.Probe(t.Context()); !IsUnreachable(err) || IsWrongAPI(err) {
		t.Errorf("err = %v, want unreachable", err)
	}
}

func TestGetRetriesWithBackoff(t *testing.T) {
	f, srv := newFakeClair(t)
	busy := exchange{503, http.Header{}, nil}
	f.mux.Handle("/v1/namespaces", sequence(busy, busy, loadExchange(t, "v2.1.7/GET-v1-namespaces.http")))
	var waits []int
	c := newTestClient(t, srv, WithBackoff(func(ctx context.Context, attempt int) error {
		waits = append(waits, attempt)
		return ctx.Err()
	}))
	if _, err := c.Namespaces(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(waits, []int{1, 2}) {
		t.Errorf("waits = %v", waits)
	}
}

func TestGetRetriesStopWithContext(t *testing.T) {
	f, srv := newFakeClair(t)
	f.mux.Handle("/v1/namespaces", exchange{503, http.Header{}, nil})
	ctx, cancel := context.WithCancel(t.Context())
	c := newTestClient(t, srv, WithBackoff(func(ctx context.Context, attempt int) error {
		cancel()
		return ctx.Err()
	}))
	_, err := c.Namespaces(ctx)
	var ae *APIError
	if !errors.Is(err, context.Canceled) || !errors.As(err, &ae) || ae.StatusCode != 503 {
		t.Errorf("err = %v, want the 503 and context.Canceled", err)
	}
	if n := len(f.requests()); n != 1 {
		t.Errorf("%d requests", n)
	}
}

func TestGetRetriesAreBounded(t *testing.T) {
	f, srv := newFakeClair(t)
	f.mux.Handle("/v1/namespaces", exchange{502, http.Header{}, nil})
	if _, err := newTestClient(t, srv).Namespaces(t.Context()); err == nil {
		t.Fatal("no error")
	}
	if n := len(f.requests()); n != 1+clairhttp.MaxRetries {
		t.Errorf("%d requests, want %d", n, 1+clairhttp.MaxRetries)
	}
}
