package sidecar

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/layerbridge/layerbridge/bridge"
	"github.com/layerbridge/layerbridge/engine"
	"github.com/layerbridge/layerbridge/report"
	"github.com/layerbridge/layerbridge/scan"
)

// Route names of the paths the Service adds to the bridge's router.
const (
	RouteScans      = "sidecar-scans"       // POST /api/v1/scans
	RouteScan       = "sidecar-scan"        // GET, HEAD /api/v1/scans/{id}
	RouteScanReport = "sidecar-scan-report" // GET, HEAD /api/v1/scans/{id}/report?format=
	RouteReadyz     = "sidecar-readyz"      // GET, HEAD /readyz
	RouteMetrics    = "sidecar-metrics"     // GET /metrics
)

// maxRequestBody bounds the body of POST /api/v1/scans: a larger one is
// answered 413. (The listener's bridge.Limits bound every body too.)
const maxRequestBody = 64 << 10

// readyTimeout bounds the probes of one readiness check.
const readyTimeout = 10 * time.Second

// readyCacheTTL is how long the result of the readiness probes is reused:
// however often /readyz is asked, Clair and Docker are probed at most once
// in this long.
const readyCacheTTL = 5 * time.Second

// reportContentTypes is the Content-Type of each report format.
var reportContentTypes = map[string]string{
	"table": "text/plain; charset=utf-8",
	"json":  "application/json",
	"clair": "application/json",
	"html":  "text/html; charset=utf-8",
	"sarif": "application/sarif+json",
	"junit": "application/xml",
	// The media type CycloneDX registered with IANA, with the version.
	"cyclonedx": "application/vnd.cyclonedx+json; version=1.6",
}

func (s *Service) routes() {
	r := s.server.Router()
	guard := func(h http.HandlerFunc) http.Handler { return bridge.Guard(s.cfg.Token, h) }
	r.Path("/api/v1/scans").Methods("POST").Name(RouteScans).Handler(guard(s.postScan))
	r.Path("/api/v1/scans/{id}").Methods("GET", "HEAD").Name(RouteScan).Handler(guard(s.getScan))
	r.Path("/api/v1/scans/{id}/report").Methods("GET", "HEAD").Name(RouteScanReport).Handler(guard(s.getReport))
	r.Path("/readyz").Methods("GET", "HEAD").Name(RouteReadyz).HandlerFunc(s.readyz)
	r.Path("/metrics").Methods("GET").Name(RouteMetrics).Handler(
		promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{ErrorLog: slogPrinter{s}}))
}

// apiError is the body of every refused API request, in the same shape as
// the registry view's (and bridge.Guard's) errors.
type apiError struct {
	Errors []apiErrorEntry `json:"errors"`
}

type apiErrorEntry struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	body, _ := json.Marshal(apiError{Errors: []apiErrorEntry{{Code: code, Message: msg}}})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

func writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	body, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		writeError(w, r, http.StatusInternalServerError, "UNKNOWN", "cannot encode the answer")
		return
	}
	body = append(body, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

func (s *Service) postScan(w http.ResponseWriter, r *http.Request) {
	var req Request
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(&req)
	if err == nil && dec.More() {
		err = errors.New("more than one JSON value")
	}
	if _, tooBig := errors.AsType[*http.MaxBytesError](err); tooBig {
		writeError(w, r, http.StatusRequestEntityTooLarge, "TOO_LARGE",
			fmt.Sprintf(`the body must be {"image": "...", "platform": "..."}, at most %d bytes`, maxRequestBody))
		return
	}
	if err != nil {
		writeError(w, r, http.StatusBadRequest, "BAD_REQUEST",
			fmt.Sprintf(`the body must be {"image": "...", "platform": "..."}: %v`, err))
		return
	}
	sr, err := parseRequest(req)
	if err != nil {
		writeError(w, r, http.StatusBadRequest, "BAD_REQUEST", err.Error())
		return
	}
	st, dedup, err := s.submit(sr)
	switch {
	case errors.Is(err, ErrShuttingDown):
		w.Header().Set("Retry-After", "30")
		writeError(w, r, http.StatusServiceUnavailable, "UNAVAILABLE", err.Error()+": no new scans are accepted")
		return
	case errors.Is(err, errQueueFull):
		w.Header().Set("Retry-After", "10")
		writeError(w, r, http.StatusTooManyRequests, "TOO_MANY_REQUESTS", err.Error())
		return
	case err != nil:
		writeError(w, r, http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	u, err := s.server.Router().Get(RouteScan).URLPath("id", st.ID)
	if err == nil {
		w.Header().Set("Location", u.Path)
	}
	s.log.Debug("scan requested", "scan", st.ID, "image", sr.image, "client", r.RemoteAddr, "shared", dedup)
	writeJSON(w, r, http.StatusAccepted, st)
}

func (s *Service) getScan(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	st, _, ok := s.lookup(id)
	if !ok {
		writeError(w, r, http.StatusNotFound, "SCAN_UNKNOWN", fmt.Sprintf("no scan %q: unknown, or finished more than %s ago", id, s.cfg.Retention))
		return
	}
	writeJSON(w, r, http.StatusOK, st)
}

// getReport renders a done scan's report in ?format= (default json, with
// the packages: the report the status embeds), with ?fail_on=SEVERITY as
// scan's --fail-on (junit failures, sarif levels). A scan that is not done
// is 409, with its state (and error) in the message.
func (s *Service) getReport(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	format := r.URL.Query().Get("format")
	if format == "" {
		format = "json"
	}
	if err := report.CheckFormat(format); err != nil {
		writeError(w, r, http.StatusBadRequest, "FORMAT_UNKNOWN", err.Error())
		return
	}
	var failOn *report.Severity
	if v := r.URL.Query().Get("fail_on"); v != "" {
		sev, err := report.ParseSeverity(v)
		if err != nil {
			writeError(w, r, http.StatusBadRequest, "FAIL_ON_UNKNOWN", "fail_on: "+err.Error())
			return
		}
		failOn = &sev
	}
	st, rep, ok := s.lookup(id)
	if !ok {
		writeError(w, r, http.StatusNotFound, "SCAN_UNKNOWN", fmt.Sprintf("no scan %q: unknown, or finished more than %s ago", id, s.cfg.Retention))
		return
	}
	if st.State != StateDone {
		msg := fmt.Sprintf("scan %s is %s: its report is not ready", id, st.State)
		if st.State == StateFailed {
			msg = fmt.Sprintf("scan %s failed, so it has no report: %s", id, st.Error)
		}
		writeError(w, r, http.StatusConflict, "REPORT_NOT_READY", msg)
		return
	}
	var b bytes.Buffer
	opts := s.reportOptions(st)
	opts.FailOn = failOn
	if err := opts.Render(&b, format, rep); err != nil {
		writeError(w, r, http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	ct, ok := reportContentTypes[format]
	if !ok {
		ct = "application/octet-stream"
	}
	h := w.Header()
	h.Set("Content-Type", ct)
	h.Set("Content-Length", strconv.Itoa(b.Len()))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(b.Bytes())
	}
}

// reportOptions are how the sidecar renders a scan's report, in every
// format and in the status: json lists the image's packages (so that a
// client can render cyclonedx from the status, as scan --server does), and
// cyclonedx is dated when the scan finished, so that every download of it
// is the same.
func (s *Service) reportOptions(st Status) report.Options {
	return report.Options{ToolVersion: s.cfg.Version, Packages: true, Time: st.UpdatedAt}
}

// Readiness is the body of /readyz. Checks is there only for the callers
// the token lets in and for loopback callers (see Config.Token).
type Readiness struct {
	Ready  bool    `json:"ready"`
	Checks []Check `json:"checks,omitempty"`
}

// Check is one readiness check: Detail is the reason when OK is false.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// readyz answers 200 when Ready says ready, 503 otherwise. The checks,
// which name the Docker version, the socket, the store and Clair's URL, are
// shown to the callers the API would let in (Config.Token) and to loopback
// callers; anyone else learns ready or not.
func (s *Service) readyz(w http.ResponseWriter, r *http.Request) {
	ready := s.Ready(r.Context())
	status := http.StatusOK
	if !ready.Ready {
		status = http.StatusServiceUnavailable
	}
	if !s.cfg.Token.Admits(r) && !bridge.FromLoopback(r) {
		ready.Checks = nil
	}
	writeJSON(w, r, status, ready)
}

// Ready runs the readiness checks: not draining; the store can be written
// (when Config.Store is set); the Docker daemon answers engine.Probe
// (when Config.Engine is set); containerd answers (when Config.Containerd
// is set); Clair answers scan.DetectAPI with the configured API (which
// scans then use without probing again). All but the first are probes, run concurrently, bounded
// by ten seconds, and their result is reused for five seconds: callers
// asking meanwhile, or while they run, share one probe of each.
func (s *Service) Ready(ctx context.Context) Readiness {
	s.mu.Lock()
	draining := s.draining
	s.mu.Unlock()
	checks := []Check{{Name: "accepting", OK: !draining, Detail: "accepting scans"}}
	if draining {
		checks[0].Detail = ErrShuttingDown.Error()
	}
	checks = append(checks, s.probed(ctx)...)
	out := Readiness{Ready: true, Checks: checks}
	for _, c := range checks {
		if !c.OK {
			out.Ready = false
			s.log.Debug("not ready", "check", c.Name, "reason", c.Detail)
		}
	}
	return out
}

// readyProbes is the shared, cached result of the readiness probes.
type readyProbes struct {
	mu      sync.Mutex
	checks  []Check
	at      time.Time     // when checks were taken; zero before the first probe
	running chan struct{} // closed when the probe under way ends; nil when none is
}

// probed returns the probes' checks, from the cache when they are recent
// enough, or waits for the probe under way (starting one if none is).
// When ctx ends first, the probes are reported as not done.
func (s *Service) probed(ctx context.Context) []Check {
	p := &s.probes
	p.mu.Lock()
	if !p.at.IsZero() && s.now().Sub(p.at) < readyCacheTTL {
		checks := p.checks
		p.mu.Unlock()
		return checks
	}
	if p.running == nil {
		done := make(chan struct{})
		p.running = done
		// The probe outlives a caller that goes away: the others wait
		// for it. It is bounded by readyTimeout.
		pctx := context.WithoutCancel(ctx)
		go func() {
			checks := s.probe(pctx)
			p.mu.Lock()
			p.checks, p.at, p.running = checks, s.now(), nil
			p.mu.Unlock()
			close(done)
		}()
	}
	running := p.running
	p.mu.Unlock()
	select {
	case <-running:
	case <-ctx.Done():
		return []Check{{Name: "probes", Detail: fmt.Sprintf("readiness probes not finished: %v", context.Cause(ctx))}}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.checks
}

// probe checks the store, Docker and Clair, concurrently.
func (s *Service) probe(ctx context.Context) []Check {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var wg sync.WaitGroup
	var store, docker, ctr, clair Check
	if s.cfg.Store != nil {
		wg.Go(func() {
			store = Check{Name: "store", OK: true, Detail: "the image store is writable"}
			if err := s.cfg.Store.CheckWritable(); err != nil {
				store.OK, store.Detail = false, err.Error()+": no image can be stored"
			}
		})
	}
	if s.cfg.Engine != nil {
		wg.Go(func() {
			docker = Check{Name: "docker"}
			c, ep, err := s.cfg.Engine()
			var info engine.DaemonInfo
			if err == nil {
				info, err = engine.Probe(ctx, c, ep)
			}
			if err != nil {
				docker.Detail = err.Error()
				return
			}
			docker.OK, docker.Detail = true, fmt.Sprintf("docker %s at %s", info.ServerVersion, info.Endpoint.Host)
		})
	}
	if s.cfg.Containerd != nil {
		wg.Go(func() {
			ctr = Check{Name: "containerd"}
			info, err := s.cfg.Containerd.Probe(ctx)
			if err != nil {
				ctr.Detail = err.Error()
				return
			}
			ctr.OK, ctr.Detail = true, fmt.Sprintf("containerd %s at %s", info.Version, info.Address)
		})
	}
	wg.Go(func() {
		clair = Check{Name: "clair"}
		api, err := scan.DetectAPI(ctx, s.cfg.Clair)
		if err != nil {
			clair.Detail = err.Error()
			return
		}
		s.api.set(api)
		clair.OK, clair.Detail = true, fmt.Sprintf("clair %s API at %s", api, s.cfg.Clair.URL.Redacted())
	})
	wg.Wait()
	var checks []Check
	if s.cfg.Store != nil {
		checks = append(checks, store)
	}
	if s.cfg.Engine != nil {
		checks = append(checks, docker)
	}
	if s.cfg.Containerd != nil {
		checks = append(checks, ctr)
	}
	return append(checks, clair)
}

// slogPrinter adapts the logger to promhttp's error log.
type slogPrinter struct{ s *Service }

func (p slogPrinter) Println(v ...any) {
	p.s.log.Error("metrics", "err", strings.TrimSpace(fmt.Sprintln(v...)))
}
