package clairv2

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestConfigErrorsComeFromEveryCall(t *testing.T) {
	rel, _ := url.Parse("clair:6060")
	for name, c := range map[string]*Client{"nil url": New(nil), "relative url": New(rel)} {
		if err := c.Probe(context.Background()); err == nil {
			t.Errorf("%s: Probe succeeded", name)
		}
		if err := c.PostLayer(context.Background(), Layer{Name: "a", Path: samplePath}); err == nil {
			t.Errorf("%s: PostLayer succeeded", name)
		}
		if _, err := c.LayerReport(context.Background(), "a"); err == nil {
			t.Errorf("%s: LayerReport succeeded", name)
		}
	}
}

func TestLoggerRecordsEveryRequest(t *testing.T) {
	f, srv := newFakeClair(t)
	f.mux.Handle("/v1/namespaces", loadExchange(t, "v2.1.7/GET-v1-namespaces.http"))
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if err := newTestClient(t, srv, WithLogger(log)).Probe(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"level=DEBUG", "method=GET", "url=" + srv.URL + "/v1/namespaces", "status=200", "duration="} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log %q lacks %q", buf.String(), want)
		}
	}
}

func TestAPIErrorRedactsAndCaps(t *testing.T) {
	f, srv := newFakeClair(t)
	f.mux.Handle("/v1/layers/a", exchange{500, http.Header{"Content-Type": {"text/plain"}}, bytes.Repeat([]byte("y"), 100<<10)})
	u, _ := url.Parse(srv.URL)
	u.User = url.UserPassword("admin", "s3cret")
	_, err := New(u, WithHTTPClient(srv.Client())).LayerReport(t.Context(), "a")
	var ae *APIError
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("password leaked: %v", err)
	}
	if len(ae.Body) != 64<<10 || len(ae.Message) != 256 {
		t.Errorf("body %d bytes, message %d bytes", len(ae.Body), len(ae.Message))
	}
}

func TestBasePathPrefixIsKept(t *testing.T) {
	f, srv := newFakeClair(t)
	f.mux.Handle("/clair/v1/namespaces", loadExchange(t, "v2.1.7/GET-v1-namespaces.http"))
	u, _ := url.Parse(srv.URL + "/clair")
	if err := New(u, WithHTTPClient(srv.Client())).Probe(t.Context()); err != nil {
		t.Fatal(err)
	}
}
