package clairv4

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/layerbridge/layerbridge/internal/clairhttp"
)

// TestStatusToError maps each answer Clair (or a stranger) gives to
// GET vulnerability_report onto what the caller can branch on.
func TestStatusToError(t *testing.T) {
	type want struct {
		notFound, wrongAPI, unauthorized bool
		code, message                    string
	}
	tests := []struct {
		name   string
		answer func(t *testing.T) exchange
		want   want
	}{
		{"401 bare (psk rejected)", func(*testing.T) exchange { return exchange{401, http.Header{}, nil} },
			want{unauthorized: true}},
		{"404 recorded json", func(t *testing.T) exchange { return loadExchange(t, "v4.9/GET-vulnerability_report-unknown.http") },
			want{notFound: true, code: "not-found", message: `index report for manifest "sha256:0000000000000000000000000000000000000000000000000000000000000000" not found`}},
		{"404 recorded bare text (other API generation)", func(t *testing.T) exchange { return loadExchange(t, "v4.9/POST-v1-layers-on-clair4.http") },
			want{wrongAPI: true, message: "404 page not found"}},
		{"400 malformed digest", func(*testing.T) exchange {
			return jsonExchange(400, `{"code":"bad-request","message":"malformed path: unable to decode digest as hex"}`)
		}, want{code: "bad-request", message: "malformed path: unable to decode digest as hex"}},
		{"500 clair 4.2 match error", func(*testing.T) exchange {
			return jsonExchange(500, `{"code":"match-error","message":"failed to start scan: connection reset"}`)
		}, want{code: "match-error", message: "failed to start scan: connection reset"}},
		{"502 html from a proxy", func(*testing.T) exchange {
			return exchange{502, http.Header{"Content-Type": {"text/html"}}, []byte("<html><body>Bad Gateway</body></html>")}
		}, want{}},
		{"405 plain text", func(*testing.T) exchange {
			return exchange{405, http.Header{"Content-Type": {"text/plain; charset=utf-8"}}, []byte("Method Not Allowed\n")}
		}, want{message: "Method Not Allowed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, srv := newFakeClair(t)
			answer := tt.answer(t)
			f.mux.Handle(vulnReportPath+string(sampleManifest), answer)

			_, err := newTestClient(t, srv).VulnerabilityReport(t.Context(), sampleManifest)
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v, want *APIError", err)
			}
			got := want{IsNotFound(err), IsWrongAPI(err), IsUnauthorized(err), ae.Code, ae.Message}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if ae.StatusCode != answer.status || ae.Method != http.MethodGet || !strings.HasSuffix(ae.URL, vulnReportPath+string(sampleManifest)) {
				t.Errorf("api error %+v", ae)
			}
			if !bytes.Equal(ae.Body, answer.body) {
				t.Errorf("body %q, want %q", ae.Body, answer.body)
			}
			if IsLayerFetchError(err) {
				t.Error("a matcher error is never a layer fetch error")
			}
		})
	}
}

func TestAPIErrorRedactsAndCaps(t *testing.T) {
	f, srv := newFakeClair(t)
	big := strings.Repeat("x", 100<<10)
	f.mux.Handle("/indexer/api/v1/index_state", exchange{500, http.Header{"Content-Type": {"text/plain"}}, []byte(big)})
	u, _ := url.Parse(srv.URL)
	u.User = url.UserPassword("admin", "s3cret")
	c := New(u, WithHTTPClient(srv.Client()), WithBackoff(noWait))

	err := c.Probe(t.Context())
	var ae *APIError
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "s3cret") || strings.Contains(ae.URL, "s3cret") {
		t.Errorf("password leaked: %v", err)
	}
	if len(ae.Body) != 64<<10 {
		t.Errorf("body kept %d bytes, want 64 KiB", len(ae.Body))
	}
	if len(ae.Message) != 256 {
		t.Errorf("message is %d bytes, want the first 256", len(ae.Message))
	}
}

func TestRetriesBusyClair(t *testing.T) {
	f, srv := newFakeClair(t)
	busy := jsonExchange(429, `{"code":"too-many-requests","message":"server handling too many requests"}`)
	f.mux.Handle("/indexer/api/v1/index_report", sequence(busy, busy, loadExchange(t, "v4.9/POST-index_report.http")))
	var waits []int
	c := newTestClient(t, srv, WithBackoff(func(ctx context.Context, attempt int) error {
		waits = append(waits, attempt)
		return nil
	}))
	m, _ := recordedManifest(t)

	if _, err := c.Index(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(waits, []int{1, 2}) {
		t.Errorf("waits = %v", waits)
	}
}

func TestRetriesAreBounded(t *testing.T) {
	f, srv := newFakeClair(t)
	f.mux.Handle("/indexer/api/v1/index_state", exchange{503, http.Header{}, nil})
	err := newTestClient(t, srv).Probe(t.Context())
	var ae *APIError
	if !errors.As(err, &ae) || ae.StatusCode != 503 {
		t.Fatalf("err = %v", err)
	}
	if n := len(f.requests()); n != 1+clairhttp.MaxRetries {
		t.Errorf("%d requests, want %d", n, 1+clairhttp.MaxRetries)
	}
}

func TestPostIsNotRetriedOnGatewayErrors(t *testing.T) {
	f, srv := newFakeClair(t)
	f.mux.Handle("/indexer/api/v1/index_report", exchange{502, http.Header{}, nil})
	m, _ := recordedManifest(t)
	if _, err := newTestClient(t, srv).Index(t.Context(), m); err == nil {
		t.Fatal("no error")
	}
	if n := len(f.requests()); n != 1 {
		t.Errorf("%d POSTs, want 1: Clair may still be indexing", n)
	}
}

func TestClairErrorTrailer(t *testing.T) {
	f, srv := newFakeClair(t)
	f.mux.HandleFunc(vulnReportPath+string(sampleManifest), func(w http.ResponseWriter, r *http.Request) {
		// httptransport.writerError: the encoder failed mid-body.
		w.Header().Set("Trailer", "Clair-Error")
		w.WriteHeader(200)
		w.Write([]byte(`{"manifest_hash":`))
		w.Header().Set("Clair-Error", "write: broken pipe")
	})
	_, err := newTestClient(t, srv).VulnerabilityReport(t.Context(), sampleManifest)
	if err == nil || !strings.Contains(err.Error(), "broken pipe") {
		t.Errorf("err = %v, want Clair's trailer error", err)
	}
}

func TestConfigErrorsComeFromEveryCall(t *testing.T) {
	good, _ := url.Parse("http://clair:6060")
	rel, _ := url.Parse("clair:6060")
	for name, c := range map[string]*Client{
		"nil url":      New(nil),
		"relative url": New(rel),
		"bad psk":      New(good, WithPSK("not base64!", "layerbridge")),
		"empty psk":    New(good, WithPSK("", "layerbridge")),
	} {
		if err := c.Probe(context.Background()); err == nil {
			t.Errorf("%s: Probe succeeded", name)
		}
		if _, err := c.VulnerabilityReport(context.Background(), sampleManifest); err == nil {
			t.Errorf("%s: VulnerabilityReport succeeded", name)
		}
	}
}

func TestLoggerRecordsEveryRequest(t *testing.T) {
	f, srv := newFakeClair(t)
	f.mux.Handle("/indexer/api/v1/index_state", loadExchange(t, "v4.9/GET-index_state.http"))
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))

	if err := newTestClient(t, srv, WithLogger(log)).Probe(t.Context()); err != nil {
		t.Fatal(err)
	}
	line := buf.String()
	for _, want := range []string{"level=DEBUG", "method=GET", "url=" + srv.URL + "/indexer/api/v1/index_state", "status=200", "duration="} {
		if !strings.Contains(line, want) {
			t.Errorf("log %q lacks %q", line, want)
		}
	}
}

func TestBasePathPrefixIsKept(t *testing.T) {
	f, srv := newFakeClair(t)
	f.mux.Handle("/clair/indexer/api/v1/index_state", loadExchange(t, "v4.9/GET-index_state.http"))
	u, _ := url.Parse(srv.URL + "/clair/")
	if err := New(u, WithHTTPClient(srv.Client())).Probe(t.Context()); err != nil {
		t.Fatal(err)
	}
}
