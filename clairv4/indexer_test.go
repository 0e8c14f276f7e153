package clairv4

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/layerbridge/layerbridge/internal/testwait"
)

const sampleManifest = digest.Digest("sha256:b405b26c31194489ba0b8cb27061fe75a963223bf924dd3998c975ac6fef347a")

// recordedManifest is the manifest whose POST produced the v4.9 samples,
// rebuilt from manifest-request.json.
func recordedManifest(t *testing.T) (Manifest, []byte) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(samples, "v4.9/manifest-request.json"))
	if err != nil {
		t.Fatal(err)
	}
	var w wireManifest
	if err := json.Unmarshal(raw, &w); err != nil {
		t.Fatal(err)
	}
	m := Manifest{Hash: digest.Digest(w.Hash)}
	for _, l := range w.Layers {
		m.Layers = append(m.Layers, Layer{Hash: digest.Digest(l.Hash), URI: l.URI, Headers: l.Headers})
	}
	return m, raw
}

func jsonEqual(t *testing.T, got, want []byte) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("got invalid json %q: %v", got, err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("json differs:\n got %s\nwant %s", got, want)
	}
}

func TestIndexRecorded(t *testing.T) {
	f, srv := newFakeClair(t)
	answer := loadExchange(t, "v4.9/POST-index_report.http")
	f.mux.Handle("/indexer/api/v1/index_report", answer)
	m, wantBody := recordedManifest(t)

	ir, err := newTestClient(t, srv).Index(t.Context(), m)
	if err != nil {
		t.Fatal(err)
	}

	reqs := f.requests()
	if len(reqs) != 1 || reqs[0].method != http.MethodPost {
		t.Fatalf("requests = %+v, want one POST", reqs)
	}
	jsonEqual(t, reqs[0].body, wantBody)
	if ct := reqs[0].header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if ir.State != StateIndexFinished || !ir.Success || ir.Message != "" {
		t.Errorf("state %q success %v message %q", ir.State, ir.Success, ir.Message)
	}
	if ir.Manifest != sampleManifest {
		t.Errorf("manifest = %s", ir.Manifest)
	}
	if ir.Packages != 14 {
		t.Errorf("packages = %d, want 14", ir.Packages)
	}
	if !reflect.DeepEqual(ir.Distributions, []string{"Alpine Linux v3.11"}) {
		t.Errorf("distributions = %q", ir.Distributions)
	}
	if !bytes.Equal(ir.Raw, answer.body) {
		t.Error("Raw is not Clair's body unchanged")
	}
}

func TestIndexNilHeadersSentAsEmptyObject(t *testing.T) {
	f, srv := newFakeClair(t)
	f.mux.Handle("/indexer/api/v1/index_report", loadExchange(t, "v4.9/POST-index_report.http"))
	m, _ := recordedManifest(t)
	m.Layers[0].Headers = nil
	if _, err := newTestClient(t, srv).Index(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	if body := string(f.requests()[0].body); !strings.Contains(body, `"headers":{}`) {
		t.Errorf("body %s: want headers {}", body)
	}
}

// clair42IndexError is Clair 4.2.0's answer to an index whose layer URL
// answered 404: 201 with the stored report in state IndexError (research
// clair-api.md A.5 and the run log; message format from claircore v0.5.2
// internal/indexer/fetcher/fetcher.go and controller/fetchlayers.go; headers
// from httptransport/indexhandler.go: Link, Location, Etag, no explicit
// Content-Type, so Go sniffs text/plain).
func clair42IndexError() exchange {
	body := `{"manifest_hash":"sha256:b405b26c31194489ba0b8cb27061fe75a963223bf924dd3998c975ac6fef347a","state":"IndexError","packages":{},"distributions":{},"repository":{},"environments":{},"success":false,"err":"failed to fetch layers: encountered error while fetching a layer: fetcher: unexpected status code: 404 Not Found (body starts: \"404 page not found\\n\")"}` + "\n"
	return exchange{status: http.StatusCreated, header: http.Header{
		"Link": {
			`</indexer/api/v1/index_report/sha256:b405b26c31194489ba0b8cb27061fe75a963223bf924dd3998c975ac6fef347a>; rel="https://projectquay.io/clair/v1/index_report"`,
			`</matcher/api/v1/vulnerability_report/sha256:b405b26c31194489ba0b8cb27061fe75a963223bf924dd3998c975ac6fef347a>; rel="https://projectquay.io/clair/v1/vulnerability_report"`,
		},
		"Etag":         {`"cb31df8269833698891b35a63251a81a"`},
		"Location":     {"/indexer/api/v1/index_report/sha256:b405b26c31194489ba0b8cb27061fe75a963223bf924dd3998c975ac6fef347a"},
		"Content-Type": {"text/plain; charset=utf-8"},
	}, body: []byte(body)}
}

func TestIndexFailures(t *testing.T) {
	tests := []struct {
		name       string
		answer     func(t *testing.T) exchange
		wantIndex  bool   // an *IndexError
		wantFetch  bool   // IsLayerFetchError
		wantStatus int    // the *APIError's status, 0 for none
		wantInMsg  string // in the error text
	}{
		{
			name:      "4.9 layer url answered 404",
			answer:    func(t *testing.T) exchange { return loadExchange(t, "v4.9/POST-index_report-layer-404.http") },
			wantIndex: true, wantFetch: true, wantStatus: 500,
			wantInMsg: "failed to fetch layers: fetcher: encountered errors: unexpected status code: 404 File not found",
		},
		{
			name:      "4.9 digest mismatch",
			answer:    func(t *testing.T) exchange { return loadExchange(t, "v4.9/POST-index_report-digest-mismatch.http") },
			wantIndex: true, wantFetch: true, wantStatus: 500,
			wantInMsg: `validation failed: got "beee9f30bc1f711043e78d4a2be0668955d4b761d587d6f60c2c8dc081efb203"`,
		},
		{
			name:      "4.2 answers 201 with state IndexError",
			answer:    func(*testing.T) exchange { return clair42IndexError() },
			wantIndex: true, wantFetch: true,
			wantInMsg: "unexpected status code: 404 Not Found",
		},
		{
			name: "4.5+ layer is not a tar: 400, not a fetch error",
			answer: func(*testing.T) exchange {
				return jsonExchange(400, `{"code":"bad-request","message":"failed to start scan: unable to create fs.FS: tarfs: unable to read tar: archive/tar: invalid tar header"}`)
			},
			wantIndex: true, wantStatus: 400, wantInMsg: "tarfs",
		},
		{
			name: "4.9 connection refused from Clair to the layer",
			answer: func(*testing.T) exchange {
				return jsonExchange(500, `{"code":"internal-error","message":"failed to start scan: failed to fetch layers: fetcher: encountered errors: Get \"http://172.17.0.1:39111/l/x\": dial tcp 172.17.0.1:39111: connect: connection refused"}`)
			},
			wantIndex: true, wantFetch: true, wantStatus: 500, wantInMsg: "connection refused",
		},
		{
			name: "bogus manifest is a request error, not an index error",
			answer: func(*testing.T) exchange {
				return jsonExchange(400, `{"code":"bad-request","message":"bogus manifest"}`)
			},
			wantStatus: 400, wantInMsg: "bogus manifest",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, srv := newFakeClair(t)
			f.mux.Handle("/indexer/api/v1/index_report", tt.answer(t))
			m, _ := recordedManifest(t)

			ir, err := newTestClient(t, srv).Index(t.Context(), m)
			if err == nil {
				t.Fatalf("no error, report %+v", ir)
			}
			var ie *IndexError
			if got := errors.As(err, &ie); got != tt.wantIndex {
				t.Errorf("IndexError = %v, want %v (%v)", got, tt.wantIndex, err)
			}
			if ie != nil && ie.Manifest != m.Hash {
				t.Errorf("IndexError.Manifest = %s", ie.Manifest)
			}
			if got := IsLayerFetchError(err); got != tt.wantFetch {
				t.Errorf("IsLayerFetchError = %v, want %v (%v)", got, tt.wantFetch, err)
			}
			var ae *APIError
			switch {
			case errors.As(err, &ae) && ae.StatusCode != tt.wantStatus:
				t.Errorf("status = %d, want %d", ae.StatusCode, tt.wantStatus)
			case ae == nil && tt.wantStatus != 0:
				t.Errorf("no *APIError, want status %d", tt.wantStatus)
			}
			if !strings.Contains(err.Error(), tt.wantInMsg) {
				t.Errorf("error %q does not contain %q", err, tt.wantInMsg)
			}
		})
	}
}

func TestIndexPollsIntermediateState(t *testing.T) {
	f, srv := newFakeClair(t)
	inProgress := func(status int, state string) exchange {
		return exchange{status: status, header: http.Header{}, body: []byte(`{"manifest_hash":"` + string(sampleManifest) + `","state":"` + state + `","packages":{},"distributions":{},"repository":{},"environments":{},"success":false,"err":""}`)}
	}
	f.mux.Handle("/indexer/api/v1/index_report", inProgress(201, "FetchLayers"))
	stored := loadExchange(t, "v4.9/GET-index_report.http")
	f.mux.Handle("/indexer/api/v1/index_report/"+string(sampleManifest), sequence(inProgress(200, "ScanLayers"), stored))
	var waits []int
	c := newTestClient(t, srv, WithBackoff(func(ctx context.Context, attempt int) error {
		waits = append(waits, attempt)
		return ctx.Err()
	}))
	m, _ := recordedManifest(t)

	ir, err := c.Index(t.Context(), m)
	if err != nil {
		t.Fatal(err)
	}
	if ir.State != StateIndexFinished || !bytes.Equal(ir.Raw, stored.body) {
		t.Errorf("state %q, raw from the stored report: %v", ir.State, bytes.Equal(ir.Raw, stored.body))
	}
	if !reflect.DeepEqual(waits, []int{1, 2}) {
		t.Errorf("backoff attempts = %v, want [1 2]", waits)
	}
	if n := len(f.requests()); n != 3 {
		t.Errorf("%d requests, want POST + 2 GETs", n)
	}
}

func TestIndexIgnoresClientTimeout(t *testing.T) {
	f, srv := newFakeClair(t)
	f.mux.Handle("/indexer/api/v1/index_report", loadExchange(t, "v4.9/POST-index_report.http"))
	f.mux.Handle("/indexer/api/v1/index_state", loadExchange(t, "v4.9/GET-index_state.http"))
	hc := srv.Client()
	hc.Timeout = 1 // 1ns: expires before any answer can arrive
	c := newTestClient(t, srv, WithHTTPClient(hc))
	m, _ := recordedManifest(t)

	if _, err := c.Index(t.Context(), m); err != nil {
		t.Errorf("Index with a 1ns client timeout: %v", err)
	}
	// The same client's timeout does apply to other calls.
	if _, err := c.IndexState(t.Context()); err == nil {
		t.Error("IndexState succeeded despite a 1ns client timeout")
	}
}

func TestIndexContextCancelClosesConnection(t *testing.T) {
	f, srv := newFakeClair(t)
	started := make(chan struct{})
	disconnected := make(chan struct{})
	f.mux.HandleFunc("/indexer/api/v1/index_report", func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done() // Clair indexing until the client goes away
		close(disconnected)
	})
	ctx, cancel := context.WithCancel(testwait.Context(t))
	go func() {
		select {
		case <-started:
		case <-ctx.Done():
		}
		cancel()
	}()
	m, _ := recordedManifest(t)

	_, err := newTestClient(t, srv).Index(ctx, m)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	testwait.Recv(t, disconnected, "the fake to see the connection close") // Clair would cancel the index
}

func TestIndexRejectsBadManifestWithoutRequest(t *testing.T) {
	good, _ := recordedManifest(t)
	tests := []struct {
		name string
		edit func(*Manifest)
		want string
	}{
		{"empty hash", func(m *Manifest) { m.Hash = "" }, "manifest hash"},
		{"sha384 hash", func(m *Manifest) { m.Hash = digest.SHA384.FromString("x") }, "only sha256 and sha512"},
		{"no layers", func(m *Manifest) { m.Layers = nil }, "no layers"},
		{"bad layer hash", func(m *Manifest) { m.Layers[0].Hash = "sha256:1234" }, "layer 0 hash"},
		{"file uri", func(m *Manifest) { m.Layers[0].URI = "file:///tmp/layer.tar" }, "http and https"},
		{"relative uri", func(m *Manifest) { m.Layers[0].URI = "/blobs/x" }, "http and https"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, srv := newFakeClair(t)
			m := good
			m.Layers = append([]Layer(nil), good.Layers...)
			tt.edit(&m)
			_, err := newTestClient(t, srv).Index(t.Context(), m)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to mention %q", err, tt.want)
			}
			if n := len(f.requests()); n != 0 {
				t.Errorf("%d requests sent", n)
			}
		})
	}
}

func TestIndexReport(t *testing.T) {
	f, srv := newFakeClair(t)
	stored := loadExchange(t, "v4.9/GET-index_report.http")
	f.mux.Handle("/indexer/api/v1/index_report/"+string(sampleManifest), stored)
	c := newTestClient(t, srv)

	ir, err := c.IndexReport(t.Context(), sampleManifest)
	if err != nil {
		t.Fatal(err)
	}
	if ir.State != StateIndexFinished || ir.Packages != 14 || !bytes.Equal(ir.Raw, stored.body) {
		t.Errorf("report %+v", ir)
	}

	// Clair 4.4+: GET of an unknown manifest.
	unknown := digest.FromString("unknown")
	f.mux.Handle("/indexer/api/v1/index_report/"+string(unknown), jsonExchange(404, `{"code":"not-found","message":"index report not found"}`))
	_, err = c.IndexReport(t.Context(), unknown)
	if !IsNotFound(err) || IsWrongAPI(err) {
		t.Errorf("unknown manifest: err = %v, want not found", err)
	}
}

func TestProbe(t *testing.T) {
	t.Run("clair v4", func(t *testing.T) {
		f, srv := newFakeClair(t)
		f.mux.Handle("/indexer/api/v1/index_state", loadExchange(t, "v4.9/GET-index_state.http"))
		c := newTestClient(t, srv)
		if err := c.Probe(t.Context()); err != nil {
			t.Fatal(err)
		}
		state, err := c.IndexState(t.Context())
		if err != nil || state != "cb31df8269833698891b35a63251a81a" {
			t.Errorf("state = %q, %v", state, err)
		}
	})
	tests := []struct {
		name    string
		answer  http.Handler
		wrong   bool
		unauth  bool
		inError string
	}{
		// Clair v2 routes /indexer/... to http.NotFound (api/router.go).
		{"clair v2", http.HandlerFunc(http.NotFound), true, false, "404 page not found"},
		{"html 404 from a proxy", exchange{404, http.Header{"Content-Type": {"text/html"}}, []byte("<html>nope</html>")}, true, false, "404 Not Found"},
		{"200 that is no index state", exchange{200, http.Header{"Content-Type": {"text/html"}}, []byte("<html>welcome</html>")}, true, false, "without an index state"},
		{"clair v4 with psk, no token", exchange{401, http.Header{}, nil}, false, true, "401 Unauthorized"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, srv := newFakeClair(t)
			f.mux.Handle("/indexer/api/v1/index_state", tt.answer)
			err := newTestClient(t, srv).Probe(t.Context())
			if err == nil {
				t.Fatal("no error")
			}
			if IsWrongAPI(err) != tt.wrong || IsUnauthorized(err) != tt.unauth {
				t.Errorf("err %v: wrong API %v (want %v), unauthorized %v (want %v)", err, IsWrongAPI(err), tt.wrong, IsUnauthorized(err), tt.unauth)
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
	srv.Close() // nothing listens there any more
	err := c.Probe(t.Context())
	if !IsUnreachable(err) {
		t.Errorf("err = %v, want IsUnreachable", err)
	}
	if IsWrongAPI(err) || IsLayerFetchError(err) {
		t.Errorf("err = %v misclassified", err)
	}
}
