package clairv2

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/layerbridge/layerbridge/internal/testwait"
	"github.com/layerbridge/layerbridge/report"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -run %s -update to accept):\n%s", path, t.Name(), got)
	}
}

func jsonEqual(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("got invalid json %q: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("json differs:\n got %s\nwant %s", got, want)
	}
}

// The layer of the recordings: its name was its digest, as older clients do.
const (
	sampleLayer = "sha256:beee9f30bc1f711043e78d4a2be0668955d4b761d587d6f60c2c8dc081efb203"
	samplePath  = "http://127.0.0.1:8901/sha256-beee9f30bc1f711043e78d4a2be0668955d4b761d587d6f60c2c8dc081efb203"
)

func TestPostLayerRecorded(t *testing.T) {
	f, srv := newFakeClair(t)
	f.mux.Handle("/v1/layers", loadExchange(t, "v2.1.7/POST-v1-layers.http"))
	c := newTestClient(t, srv)

	if err := c.PostLayer(t.Context(), Layer{Name: sampleLayer, Path: samplePath}); err != nil {
		t.Fatal(err)
	}
	err := c.PostLayer(t.Context(), Layer{Name: "child", Path: samplePath, ParentName: sampleLayer,
		Headers: map[string]string{"X-Layerbridge-Token": "abc"}, Format: "docker"})
	if err != nil {
		t.Fatal(err)
	}

	reqs := f.requests()
	if len(reqs) != 2 || reqs[0].method != http.MethodPost || reqs[0].path != "/v1/layers" {
		t.Fatalf("requests %+v", reqs)
	}
	jsonEqual(t, reqs[0].body, `{"Layer":{"Name":"`+sampleLayer+`","Path":"`+samplePath+`","Format":"Docker"}}`)
	jsonEqual(t, reqs[1].body, `{"Layer":{"Name":"child","Path":"`+samplePath+`","Headers":{"X-Layerbridge-Token":"abc"},"ParentName":"`+sampleLayer+`","Format":"docker"}}`)
}

func TestPostLayerErrors(t *testing.T) {
	type want struct{ fetch, parent, unsupported, notFound, wrongAPI, unauthorized bool }
	tests := []struct {
		name    string
		answer  func(t *testing.T) exchange
		want    want
		message string
	}{
		{"recorded: layer url answered 404", func(t *testing.T) exchange { return loadExchange(t, "v2.1.7/POST-v1-layers-layer-404.http") },
			want{fetch: true}, "could not find layer"},
		{"recorded: clair v4 has no /v1/layers", func(t *testing.T) exchange { return loadExchange(t, "v4.9/POST-v1-layers-on-clair4.http") },
			want{wrongAPI: true}, "404 page not found"},
		{"parent not posted", func(*testing.T) exchange {
			return jsonExchange(400, `{"Error":{"Message":"worker: parent layer is unknown, it must be processed first"}}`)
		}, want{parent: true}, "worker: parent layer is unknown, it must be processed first"},
		{"zstd layer", func(*testing.T) exchange {
			return jsonExchange(422, `{"Error":{"Message":"tarutil: could not extract the archive"}}`)
		}, want{unsupported: true}, "tarutil: could not extract the archive"},
		{"unknown os", func(*testing.T) exchange {
			return jsonExchange(422, `{"Error":{"Message":"worker: OS and/or package manager are not supported"}}`)
		}, want{unsupported: true}, "worker: OS and/or package manager are not supported"},
		{"clair v4 with psk", func(*testing.T) exchange { return exchange{401, http.Header{}, nil} },
			want{unauthorized: true}, ""},
		{"bad format", func(*testing.T) exchange {
			return jsonExchange(400, `{"Error":{"Message":"unsupported image format 'OCI'"}}`)
		}, want{}, "unsupported image format 'OCI'"},
		{"database error", func(*testing.T) exchange {
			return jsonExchange(500, `{"Error":{"Message":"database: an error occurred when querying the backend"}}`)
		}, want{}, "database: an error occurred when querying the backend"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, srv := newFakeClair(t)
			answer := tt.answer(t)
			f.mux.Handle("/v1/layers", answer)

			err := newTestClient(t, srv).PostLayer(t.Context(), Layer{Name: "l", Path: samplePath})
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v, want *APIError", err)
			}
			got := want{IsLayerFetchError(err), IsParentUnknown(err), IsUnsupportedLayer(err), IsNotFound(err), IsWrongAPI(err), IsUnauthorized(err)}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if ae.Message != tt.message || ae.StatusCode != answer.status || ae.Method != http.MethodPost || !bytes.Equal(ae.Body, answer.body) {
				t.Errorf("api error %+v", ae)
			}
			if n := len(f.requests()); n != 1 {
				t.Errorf("%d POSTs, want 1", n)
			}
		})
	}
}

func TestPostLayerTimeoutIsNotRepeated(t *testing.T) {
	f, srv := newFakeClair(t)
	f.mux.Handle("/v1/layers", jsonExchange(503, `{"Error":{"Message":"Clair failed to respond within the configured timeout window.","Type":"Timeout"}}`))
	err := newTestClient(t, srv).PostLayer(t.Context(), Layer{Name: "l", Path: samplePath})
	var ae *APIError
	if !errors.As(err, &ae) || ae.Type != "Timeout" {
		t.Fatalf("err = %v", err)
	}
	if n := len(f.requests()); n != 1 {
		t.Errorf("%d POSTs, want 1: Clair may still be processing the first", n)
	}
}

func TestPostLayerRejectsBadInputWithoutRequest(t *testing.T) {
	tests := []struct {
		name string
		l    Layer
		want string
	}{
		{"no name", Layer{Path: samplePath}, "layer name is empty"},
		{"name with slash", Layer{Name: "a/b", Path: samplePath}, "url path"},
		{"dot-dot name", Layer{Name: "..", Path: samplePath}, "url path"},
		{"name too long", Layer{Name: strings.Repeat("x", 129), Path: samplePath}, "128"},
		{"bad parent", Layer{Name: "a", ParentName: "p/q", Path: samplePath}, "parent name"},
		{"file path", Layer{Name: "a", Path: "file:///tmp/layer.tar"}, "http or https"},
		{"local path", Layer{Name: "a", Path: "/var/lib/layer.tar"}, "http or https"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, srv := newFakeClair(t)
			err := newTestClient(t, srv).PostLayer(t.Context(), tt.l)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to mention %q", err, tt.want)
			}
			if n := len(f.requests()); n != 0 {
				t.Errorf("%d requests sent", n)
			}
		})
	}
}

func TestPostLayerContextCancel(t *testing.T) {
	f, srv := newFakeClair(t)
	started := make(chan struct{})
	f.mux.HandleFunc("/v1/layers", func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done() // Clair downloading a slow layer
	})
	ctx, cancel := context.WithCancel(testwait.Context(t))
	go func() {
		select {
		case <-started:
		case <-ctx.Done():
		}
		cancel()
	}()
	err := newTestClient(t, srv).PostLayer(ctx, Layer{Name: "l", Path: samplePath})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

func TestLayerReportRecorded(t *testing.T) {
	f, srv := newFakeClair(t)
	answer := loadExchange(t, "v2.1.7/GET-v1-layers-features-vulnerabilities.http")
	f.mux.Handle("/v1/layers/"+sampleLayer, answer)

	rep, err := newTestClient(t, srv).LayerReport(t.Context(), sampleLayer)
	if err != nil {
		t.Fatal(err)
	}
	if q := f.requests()[0].rawQuery; q != "features&vulnerabilities" {
		t.Errorf("query = %q", q)
	}
	// Real Clair v2.1.7 with the shared SecDB: 3 pairs (it matches binary
	// package names only).
	if len(rep.Findings) != 3 {
		t.Errorf("%d findings, want 3", len(rep.Findings))
	}
	if rep.Name != sampleLayer || rep.Namespace != "alpine:v3.11" {
		t.Errorf("name %q namespace %q", rep.Name, rep.Namespace)
	}
	if !bytes.Equal(rep.Raw, answer.body) {
		t.Error("Raw is not Clair's body unchanged")
	}
	got, err := json.MarshalIndent(rep.Findings, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "layer_report.golden.json", append(got, '\n'))
}

func TestLayerReportConversion(t *testing.T) {
	body := `{"Layer":{"Name":"top","NamespaceName":"debian:12","ParentName":"base","IndexedByVersion":3,"Features":[
	  {"Name":"openssl","NamespaceName":"debian:12","VersionFormat":"dpkg","Version":"3.0.11-1","AddedBy":"base",
	   "Vulnerabilities":[
	     {"Name":"CVE-2","NamespaceName":"debian:12","Severity":"Defcon1","FixedBy":"3.0.13-1","Link":"https://l/2","Description":"two","Metadata":{"NVD":{"CVSSv3":{"Score":9.8}}}},
	     {"Name":"CVE-1","NamespaceName":"debian:12","Severity":"Negligible"}]},
	  {"Name":"openssl","NamespaceName":"debian:12.1","VersionFormat":"dpkg","Version":"3.0.11-1","AddedBy":"base",
	   "Vulnerabilities":[{"Name":"CVE-1","Severity":"High","Link":"https://l/1"}]},
	  {"Name":"zlib","Version":"1.2","AddedBy":"top","Vulnerabilities":[{"Name":"CVE-3","Severity":"bogus"}]},
	  {"Name":"bash","Version":"5.2","AddedBy":"base"}]}}`
	rep, err := decodeLayerReport([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := []report.Finding{
		{Name: "CVE-1", Package: "openssl", Version: "3.0.11-1", Severity: report.High, Layer: "base", Link: "https://l/1"},
		{Name: "CVE-2", Package: "openssl", Version: "3.0.11-1", FixedIn: "3.0.13-1", Severity: report.Defcon1, Layer: "base", Link: "https://l/2", Description: "two"},
		{Name: "CVE-3", Package: "zlib", Version: "1.2", Severity: report.Unknown, Layer: "top"},
	}
	if !reflect.DeepEqual(rep.Findings, want) {
		t.Errorf("findings:\n got %+v\nwant %+v", rep.Findings, want)
	}
}

func TestLayerReportErrors(t *testing.T) {
	f, srv := newFakeClair(t)
	f.mux.Handle("/v1/layers/unknown", loadExchange(t, "v2.1.7/GET-v1-layers-unknown.http"))
	f.mux.Handle("/v1/layers/garbled", exchange{200, http.Header{}, []byte(`{"Error":{"Message":"x"}}`)})
	c := newTestClient(t, srv)

	_, err := c.LayerReport(t.Context(), "unknown")
	var ae *APIError
	if !IsNotFound(err) || IsWrongAPI(err) || !errors.As(err, &ae) || ae.Message != "the resource cannot be found" {
		t.Errorf("unknown layer: err = %v", err)
	}
	if _, err := c.LayerReport(t.Context(), "garbled"); err == nil {
		t.Error("a 200 without a Layer was accepted")
	}
}

func TestLayerNames(t *testing.T) {
	base := digest.Digest(sampleLayer)
	top := digest.FromString("top")
	other := digest.FromString("other base")

	names := LayerNames([]digest.Digest{base, top})
	// Pinned (computed independently with Python's hashlib): Clair v2 keeps
	// these names forever; changing the scheme re-downloads every layer and
	// orphans the old rows.
	want := []string{
		"layerbridge-7467565eef4671b592c8a643cfc5f41e977495fbe05d0b9674202ff9633df36f",
		"layerbridge-e5060ac905257280ad9181d089f43f2bb6436aba76fe479d46c67c8f68d92ff4",
	}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("names = %q, want %q", names, want)
	}
	if again := LayerNames([]digest.Digest{base, top}); !reflect.DeepEqual(again, names) {
		t.Error("names are not deterministic")
	}
	// The same top layer over another base is another chain.
	if LayerNames([]digest.Digest{other, top})[1] == names[1] {
		t.Error("same layer over different parents got the same name")
	}
	// Images sharing a base share its name (Clair skips the download).
	if LayerNames([]digest.Digest{base, other})[0] != names[0] {
		t.Error("shared base got different names")
	}
	// The bare digest, which other clients use as a name, is never produced.
	for _, n := range names {
		if n == sampleLayer || len(n) > maxNameLength || checkName("name", n) != nil {
			t.Errorf("bad name %q", n)
		}
	}
	if len(LayerNames(nil)) != 0 {
		t.Error("names for no layers")
	}
}
