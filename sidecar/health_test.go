package sidecar_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/layerbridge/layerbridge/containerdsource"
	"github.com/layerbridge/layerbridge/engine"
	"github.com/layerbridge/layerbridge/internal/fakeclair"
	"github.com/layerbridge/layerbridge/internal/testwait"
	"github.com/layerbridge/layerbridge/report"
	"github.com/layerbridge/layerbridge/scan"
	"github.com/layerbridge/layerbridge/sidecar"
)

// fakeDocker answers the two Engine API calls engine.Probe makes, so
// that the real Docker client is tested against it.
func fakeDocker(t *testing.T) engine.Endpoint {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/_ping"):
			w.Header().Set("Api-Version", "1.47")
			w.Header().Set("Ostype", "linux")
			io.WriteString(w, "OK")
		case strings.HasSuffix(r.URL.Path, "/info"):
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"ServerVersion":"27.5.1","Driver":"overlay2","OSType":"linux"}`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(ts.Close)
	return engine.Endpoint{Host: "tcp://" + ts.Listener.Addr().String(), Source: "test"}
}

func engineAt(ep engine.Endpoint) func() (engine.Client, engine.Endpoint, error) {
	return func() (engine.Client, engine.Endpoint, error) {
		c, err := engine.NewClient(ep)
		if err != nil {
			return nil, ep, err
		}
		return c, ep, nil
	}
}

func TestReadyz(t *testing.T) {
	up := fakeDocker(t)
	down := engine.Endpoint{Host: "unix://" + filepath.Join(t.TempDir(), "no-docker.sock"), Source: "test"}
	closed := httptest.NewServer(nil)
	clairDown, _ := url.Parse(closed.URL)
	closed.Close()

	tests := []struct {
		name      string
		docker    engine.Endpoint
		clairDown bool
		want      int
		failing   map[string]string // check name -> part of its detail
	}{
		{"all up", up, false, 200, nil},
		{"docker down", down, false, 503, map[string]string{"docker": "no-docker.sock"}},
		{"clair down", up, true, 503, map[string]string{"clair": "cannot reach clair at " + clairDown.String()}},
		{"both down", down, true, 503, map[string]string{"docker": "no-docker.sock", "clair": "cannot reach clair"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, withConfig(func(c *sidecar.Config) {
				c.Engine = engineAt(tt.docker)
				if tt.clairDown {
					c.Clair = scan.NewClair(clairDown, scan.APIAuto, scan.ClairOptions{})
				}
			}))
			resp, body := e.do(t, "GET", "/readyz", "")
			if resp.StatusCode != tt.want {
				t.Fatalf("/readyz: %d, want %d\n%s", resp.StatusCode, tt.want, body)
			}
			var r sidecar.Readiness
			if err := json.Unmarshal(body, &r); err != nil {
				t.Fatal(err)
			}
			if r.Ready != (tt.want == 200) || len(r.Checks) != 4 {
				t.Fatalf("readiness = %+v", r)
			}
			for _, c := range r.Checks {
				want, failing := tt.failing[c.Name]
				if c.OK == failing {
					t.Errorf("check %s: ok = %v (%s)", c.Name, c.OK, c.Detail)
				}
				if failing && !strings.Contains(c.Detail, want) {
					t.Errorf("check %s: detail %q, want it to contain %q", c.Name, c.Detail, want)
				}
			}
			// /healthz only says the process is alive.
			if resp, _ := e.do(t, "GET", "/healthz", ""); resp.StatusCode != 200 {
				t.Errorf("/healthz: %d", resp.StatusCode)
			}
		})
	}
}

// /readyz tells everyone whether the sidecar is ready, and only the callers
// the API lets in (and loopback callers) why: its checks name the Docker
// version and socket, the store and Clair's URL.
func TestReadyzDetailsForAllowedCallersOnly(t *testing.T) {
	for _, tc := range []struct {
		name    string
		token   bool
		remote  string
		auth    string
		details bool
	}{
		{"no token, loopback", false, "127.0.0.1:5000", "", true},
		{"no token, elsewhere", false, "192.0.2.7:40000", "", false},
		{"token, elsewhere, with it", true, "192.0.2.7:40000", "Bearer " + testToken, true},
		{"token, elsewhere, without it", true, "192.0.2.7:40000", "", false},
		{"token, elsewhere, a wrong one", true, "192.0.2.7:40000", "Bearer not-the-token-at-all", false},
		{"token, loopback, without it", true, "[::1]:5000", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts []option
			if tc.token {
				opts = append(opts, withToken(t))
			}
			e := newEnv(t, append(opts, withConfig(func(c *sidecar.Config) { c.Engine = engineAt(fakeDocker(t)) }))...)
			rec := serveFrom(e, "GET", "/readyz", tc.remote, tc.auth)
			var r sidecar.Readiness
			if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil || rec.Code != 200 || !r.Ready {
				t.Fatalf("/readyz: %d %s (%v), want 200 ready", rec.Code, rec.Body, err)
			}
			if got := len(r.Checks) > 0; got != tc.details {
				t.Errorf("details shown: %v, want %v:\n%s", got, tc.details, rec.Body)
			}
			if !tc.details && strings.Contains(rec.Body.String(), "checks") {
				t.Errorf("the answer to an anonymous caller names its checks:\n%s", rec.Body)
			}
		})
	}
}

// countRequests counts the requests h answers.
func countRequests(n *atomic.Int64, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h.ServeHTTP(w, r)
	})
}

// Probes are shared: however often /readyz is asked, Clair and Docker are
// asked once per cache period.
func TestReadyzProbesAreCached(t *testing.T) {
	var clairRequests, dockerRequests atomic.Int64
	clair := httptest.NewServer(countRequests(&clairRequests, &fakeclair.V4{Samples: samples}))
	t.Cleanup(clair.Close)
	docker := httptest.NewServer(countRequests(&dockerRequests, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.47")
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ServerVersion":"27.5.1","OSType":"linux"}`)
	})))
	t.Cleanup(docker.Close)
	clock := &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	e := newEnv(t, withConfig(func(c *sidecar.Config) {
		c.Clair = scan.NewClair(mustURL(t, clair.URL), scan.APIAuto, scan.ClairOptions{})
		c.Engine = engineAt(engine.Endpoint{Host: "tcp://" + docker.Listener.Addr().String(), Source: "test"})
		c.Now = clock.Now
	}))

	ready := func() {
		resp, body := e.do(t, "GET", "/readyz", "")
		if resp.StatusCode != 200 {
			t.Fatalf("/readyz: %d %s", resp.StatusCode, body)
		}
	}
	for range 100 {
		ready()
	}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for range 100 {
		wg.Go(func() {
			r := e.svc.Ready(t.Context())
			if !r.Ready {
				errs <- fmt.Errorf("not ready: %+v", r.Checks)
			}
		})
	}
	testwait.Wait(t, &wg, "100 concurrent readiness checks")
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	clairOnce, dockerOnce := clairRequests.Load(), dockerRequests.Load()
	if clairOnce != 1 || dockerOnce == 0 || dockerOnce > 2 {
		t.Errorf("200 readiness checks made %d requests to Clair and %d to Docker, want 1 and 1 or 2 (ping, info)", clairOnce, dockerOnce)
	}

	// Once the cache period is over, the next check probes again.
	clock.advance(6 * time.Second)
	ready()
	ready()
	if got := clairRequests.Load(); got != 2 {
		t.Errorf("%d requests to Clair after the cache period, want 2", got)
	}
}

// While the store cannot be written, no scan of a new image can succeed:
// the sidecar is not ready, and says why.
func TestReadyzStoreNotWritable(t *testing.T) {
	e := newEnv(t)
	tmp := filepath.Join(e.store.Dir(), "tmp")
	if err := os.Remove(tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tmp, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	resp, body := e.do(t, "GET", "/readyz", "")
	var r sidecar.Readiness
	json.Unmarshal(body, &r)
	if resp.StatusCode != 503 || r.Ready {
		t.Fatalf("/readyz with an unwritable store: %d %s, want 503", resp.StatusCode, body)
	}
	for _, c := range r.Checks {
		if c.OK != (c.Name != "store") {
			t.Errorf("check %s: ok %v (%s)", c.Name, c.OK, c.Detail)
		}
		if c.Name == "store" && !strings.Contains(c.Detail, "not writable") {
			t.Errorf("store check: %q, want the reason", c.Detail)
		}
	}
}

// scrape reads /metrics and parses it with Prometheus's own text parser:
// anything it rejects fails the test.
func scrape(t *testing.T, e *env) map[string]*dto.MetricFamily {
	t.Helper()
	resp, body := e.do(t, "GET", "/metrics", "")
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("/metrics Content-Type = %q, want the text exposition format", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	m, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return m
}

// value returns the value of the series of family name whose labels
// include labels: a counter's or gauge's value, a histogram's count.
func value(t *testing.T, m map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	f, ok := m[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
next:
	for _, s := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range s.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			return s.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			return s.GetGauge().GetValue()
		case dto.MetricType_HISTOGRAM:
			return float64(s.GetHistogram().GetSampleCount())
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	m := scrape(t, e)
	for _, outcome := range []string{"done", "failed", "cancelled"} {
		if got := value(t, m, "layerbridge_scans_total", map[string]string{"outcome": outcome}); got != 0 {
			t.Errorf("scans_total{%s} = %v before any scan", outcome, got)
		}
	}
	if _, ok := m["layerbridge_cache_max_size_bytes"]; ok {
		t.Error("cache_max_size_bytes exposed without a cache limit")
	}

	e.wait(t, e.post(t, "alpine:3.11").ID) // exports: cache miss
	e.wait(t, e.post(t, "alpine:3.11").ID) // already stored: cache hit
	e.wait(t, e.post(t, "nosuch:image").ID)

	m = scrape(t, e)
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"layerbridge_scans_total", map[string]string{"outcome": "done"}, 2},
		{"layerbridge_scans_total", map[string]string{"outcome": "failed"}, 1},
		{"layerbridge_scans_total", map[string]string{"outcome": "cancelled"}, 0},
		{"layerbridge_scans_active", map[string]string{"state": "queued"}, 0},
		{"layerbridge_export_duration_seconds", map[string]string{"cache": "miss"}, 1},
		{"layerbridge_export_duration_seconds", map[string]string{"cache": "hit"}, 1},
		{"layerbridge_index_duration_seconds", nil, 2},
		{"layerbridge_match_duration_seconds", nil, 2},
		{"layerbridge_layer_bytes_served_total", nil, 2 * alpineLayerSize},
		{"layerbridge_layer_requests_total", map[string]string{"code": "200"}, 2},
	}
	for _, c := range checks {
		if got := value(t, m, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if _, ok := m["go_goroutines"]; !ok {
		t.Error("the Go runtime collector is missing")
	}
}

func TestDeduplicationIsCounted(t *testing.T) {
	e := newEnv(t, gateLoads())
	a := e.post(t, "alpine:3.11")
	e.exporting(t)
	e.post(t, "alpine:3.11")
	e.post(t, "alpine")
	e.exporting(t) // alpine (alpine:latest) is exporting too
	m := scrape(t, e)
	if got := value(t, m, "layerbridge_scans_deduplicated_total", nil); got != 1 {
		t.Errorf("deduplicated = %v, want 1 (alpine is alpine:latest, another image)", got)
	}
	if got := value(t, m, "layerbridge_scans_active", map[string]string{"state": "exporting"}); got != 2 {
		t.Errorf("scans_active{exporting} = %v, want 2", got)
	}
	close(e.loader.gate)
	e.wait(t, a.ID)
}

// The sidecar asks Clair which API it speaks once, not per scan: three
// scans in a row send one probe; a readiness probe's answer is kept too.
func TestClairAPIDetectedOnce(t *testing.T) {
	var probes atomic.Int64
	fake := &fakeclair.V4{Samples: samples}
	clair := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/indexer/api/v1/index_state" {
			probes.Add(1)
		}
		fake.ServeHTTP(w, r)
	}))
	t.Cleanup(clair.Close)
	e := newEnv(t, withConfig(func(c *sidecar.Config) {
		c.Clair = scan.NewClair(mustURL(t, clair.URL), scan.APIAuto, scan.ClairOptions{Backoff: noWait})
	}))
	for _, image := range []string{"alpine:3.11", "alpine:copy", "alpine:3.11"} {
		if st := e.wait(t, e.post(t, image).ID); st.State != sidecar.StateDone {
			t.Fatalf("scan of %s ended %s: %s", image, st.State, st.Error)
		}
	}
	if n := probes.Load(); n != 1 {
		t.Errorf("three scans probed Clair %d times, want once", n)
	}
}

// A Clair replaced by one of the other API generation fails the next scan
// (its routes answer 404), and the scan after it detects the API again.
func TestClairAPIDetectedAgainAfterAWrongAPI(t *testing.T) {
	var current atomic.Pointer[http.Handler]
	set := func(h http.Handler) { current.Store(&h) }
	set(&fakeclair.V4{Samples: samples})
	clair := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*current.Load()).ServeHTTP(w, r)
	}))
	t.Cleanup(clair.Close)
	e := newEnv(t, withConfig(func(c *sidecar.Config) {
		c.Clair = scan.NewClair(mustURL(t, clair.URL), scan.APIAuto, scan.ClairOptions{Backoff: noWait})
	}))
	if st := e.wait(t, e.post(t, "alpine:3.11").ID); st.State != sidecar.StateDone {
		t.Fatalf("first scan ended %s: %s", st.State, st.Error)
	}
	set(&fakeclair.V2{Samples: samples})
	if st := e.wait(t, e.post(t, "alpine:copy").ID); st.State != sidecar.StateFailed || !strings.Contains(st.Error, "404") {
		t.Fatalf("scan against the replaced Clair ended %s (%q), want failed with Clair's 404", st.State, st.Error)
	}
	st := e.wait(t, e.post(t, "alpine:3.11").ID)
	if st.State != sidecar.StateDone {
		t.Fatalf("third scan ended %s: %s", st.State, st.Error)
	}
	if rep, err := report.Decode(bytes.NewReader(st.Report)); err != nil || rep.Clair.API != "v2" {
		t.Fatalf("third scan's report: %v, clair %+v; want it from the v2 API", err, rep.Clair)
	}
}

// fakeContainerd answers Probe.
type fakeContainerd struct{ err error }

func (f fakeContainerd) Probe(context.Context) (containerdsource.ServerInfo, error) {
	return containerdsource.ServerInfo{Address: "/run/containerd/containerd.sock", Version: "v2.4.2"}, f.err
}

// TestReadyzContainerd: a configured containerd is one more readiness
// check, which fails with its reason while containerd does not answer.
func TestReadyzContainerd(t *testing.T) {
	for _, tc := range []struct {
		err    error
		want   int
		detail string
	}{
		{nil, 200, "containerd v2.4.2 at /run/containerd/containerd.sock"},
		{errors.New("permission denied on containerd socket"), 503, "permission denied"},
	} {
		e := newEnv(t, withConfig(func(c *sidecar.Config) { c.Containerd = fakeContainerd{tc.err} }))
		resp, body := e.do(t, "GET", "/readyz", "")
		var r sidecar.Readiness
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(r.Checks, func(c sidecar.Check) bool { return c.Name == "containerd" })
		if resp.StatusCode != tc.want || i < 0 || !strings.Contains(r.Checks[i].Detail, tc.detail) {
			t.Errorf("/readyz with containerd error %v: %d %s, want %d with %q", tc.err, resp.StatusCode, body, tc.want, tc.detail)
		}
	}
}
