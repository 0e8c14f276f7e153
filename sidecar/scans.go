package sidecar

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/imageref"
	"github.com/layerbridge/layerbridge/platforms"
	"github.com/layerbridge/layerbridge/report"
	"github.com/layerbridge/layerbridge/scan"
)

// State is where a scan is. A scan goes queued, exporting, indexing,
// matching, then done or failed; it may fail from any state. The middle
// three are scan.Stage's.
type State string

// The states of a scan.
const (
	StateQueued    State = "queued"    // accepted, waiting for a free slot (Config.MaxConcurrent)
	StateExporting State = "exporting" // loading the image into the store
	StateIndexing  State = "indexing"  // Clair downloads and indexes the layers
	StateMatching  State = "matching"  // Clair matches vulnerabilities
	StateDone      State = "done"      // the report is ready
	StateFailed    State = "failed"    // Status.Error says why
)

// Finished reports whether s is done or failed: the state no longer changes.
func (s State) Finished() bool { return s == StateDone || s == StateFailed }

// Request is the body of POST /api/v1/scans.
type Request struct {
	// Image is a Docker daemon reference or image ID (alpine:3.11,
	// sha256:…): the sidecar scans its own daemon's images only.
	Image string `json:"image"`
	// Platform is "os/arch[/variant]" of a multi-platform image; "" is the
	// daemon's default.
	Platform string `json:"platform,omitempty"`
}

// Transition is the moment a scan entered a state.
type Transition struct {
	State State     `json:"state"`
	At    time.Time `json:"at"`
}

// Status is a scan as the API shows it (GET /api/v1/scans/{id}, and the
// answer to POST). Report holds the report in the report package's json
// format, with the image's packages (report.Options.Packages), once State
// is done; decode it with report.Decode.
type Status struct {
	ID       string `json:"id"`
	State    State  `json:"state"`
	Image    string `json:"image"`
	Platform string `json:"platform"` // normalised, "" when none was asked for
	// Error says why the scan failed; only in state failed.
	Error     string       `json:"error,omitempty"`
	CreatedAt time.Time    `json:"created_at"`
	UpdatedAt time.Time    `json:"updated_at"`
	History   []Transition `json:"history"` // every state entered, oldest first
	// Report is the json report, only in state done.
	Report json.RawMessage `json:"report,omitempty"`
}

// record is one scan. Every field after cancel is guarded by Service.mu.
type record struct {
	id       string
	key      string
	image    string
	platform *ocispec.Platform
	cancel   context.CancelCauseFunc

	state    State
	history  []Transition
	err      string
	finished time.Time
	report   *report.Report
	json     []byte // report rendered in the json format
}

func (r *record) status() Status {
	st := Status{
		ID:        r.id,
		State:     r.state,
		Image:     r.image,
		Error:     r.err,
		CreatedAt: r.history[0].At,
		UpdatedAt: r.history[len(r.history)-1].At,
		History:   append([]Transition(nil), r.history...),
	}
	if r.platform != nil {
		st.Platform = platforms.Format(*r.platform)
	}
	if r.state == StateDone {
		st.Report = r.json
	}
	return st
}

// requestKey identifies identical requests: the image reference
// normalised (alpine, alpine:latest and docker.io/library/alpine:latest are
// one image) and the normalised platform.
func requestKey(ref imageref.Ref, platform *ocispec.Platform) string {
	p := ""
	if platform != nil {
		p = platforms.Format(*platform)
	}
	return ref.Normalized() + "\n" + p
}

// errBadRequest marks a request the client must change.
type errBadRequest struct{ msg string }

func (e *errBadRequest) Error() string { return e.msg }

// scanRequest is a checked Request.
type scanRequest struct {
	image    string       // as asked for, trimmed
	ref      imageref.Ref // image, parsed: a daemon or containerd: reference
	platform *ocispec.Platform
}

// parseRequest checks a request. The image must be a daemon or
// containerd: reference that imageref.Parse accepts: nothing else reaches
// the Docker daemon or containerd, and no file of the sidecar's is read.
func parseRequest(req Request) (scanRequest, error) {
	image := strings.TrimSpace(req.Image)
	if image == "" {
		return scanRequest{}, &errBadRequest{`"image" is required, for example {"image": "alpine:3.11"}`}
	}
	ref, err := imageref.Parse(image)
	if err != nil {
		return scanRequest{}, &errBadRequest{err.Error()}
	}
	if ref.Kind != imageref.Daemon && ref.Kind != imageref.Containerd {
		return scanRequest{}, &errBadRequest{fmt.Sprintf("%q names a file or directory on the sidecar's file system: the sidecar scans images of its Docker daemon and of its containerd only; scan archives with `layerbridge scan` where they are", image)}
	}
	sr := scanRequest{image: image, ref: ref}
	if req.Platform == "" {
		return sr, nil
	}
	p, err := platforms.Parse(req.Platform)
	if err != nil {
		return scanRequest{}, &errBadRequest{err.Error()}
	}
	sr.platform = &p
	return sr, nil
}

// errQueueFull is answered 429.
var errQueueFull = errors.New("too many scans are waiting")

// submit returns the scan for req: the queued or running scan of an
// identical request, or a new one. dedup says which.
func (s *Service) submit(req scanRequest) (st Status, dedup bool, err error) {
	image, platform := req.image, req.platform
	key := requestKey(req.ref, platform)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return Status{}, false, ErrShuttingDown
	}
	s.expireLocked()
	if rec := s.active[key]; rec != nil {
		s.metrics.deduplicated.Inc()
		s.log.Debug("identical scan already queued or running: sharing it", "scan", rec.id, "image", image, "state", rec.state)
		return rec.status(), true, nil
	}
	queued := 0
	for _, rec := range s.active {
		if rec.state == StateQueued {
			queued++
		}
	}
	if queued >= s.cfg.MaxQueued {
		return Status{}, false, fmt.Errorf("%w (%d): try again later", errQueueFull, queued)
	}
	now := s.now()
	rec := &record{
		id:       rand.Text(),
		key:      key,
		image:    image,
		platform: platform,
		state:    StateQueued,
		history:  []Transition{{StateQueued, now}},
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	ctx, cancelTimeout := context.WithTimeoutCause(ctx, s.cfg.ScanTimeout,
		fmt.Errorf("the scan did not finish within %s", s.cfg.ScanTimeout))
	rec.cancel = func(cause error) { cancel(cause); cancelTimeout() }
	s.scans[rec.id] = rec
	s.active[key] = rec
	s.metrics.setActive(s.activeCountsLocked())
	s.wg.Add(1)
	go s.run(ctx, rec)
	s.log.Info("scan queued", "scan", rec.id, "image", image, "platform", platformString(platform))
	return rec.status(), false, nil
}

func platformString(p *ocispec.Platform) string {
	if p == nil {
		return ""
	}
	return platforms.Format(*p)
}

// run is a scan's goroutine: it waits for a slot, runs scan.Run on the
// shared layer server, prunes the cache and records the outcome.
func (s *Service) run(ctx context.Context, rec *record) {
	defer s.wg.Done()
	defer rec.cancel(nil)

	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		s.finish(ctx, rec, nil, ctx.Err())
		return
	}
	slot := true
	release := func() {
		if slot {
			<-s.sem
			slot = false
		}
	}
	defer release()
	if ctx.Err() != nil {
		s.finish(ctx, rec, nil, ctx.Err())
		return
	}

	api, err := s.detect(ctx)
	var res *scan.Result
	if err == nil {
		res, err = scan.Run(ctx, scan.Config{
			Image:    rec.image,
			Platform: rec.platform,
			Loader:   scanLoader{s: s, rec: rec},
			Clair:    s.cfg.Clair,
			Detected: api,
			Server:   s.server,
			Base:     s.cfg.Base,
			Stage:    func(st scan.Stage) { s.enter(rec, State(st)) },
			Logger:   s.log.With("scan", rec.id),
		})
		s.forgetAPIOn(err)
	}
	release()
	var rep *report.Report
	if err == nil {
		rep = res.Report
		s.observeMatch(rec)
	}
	// Prune before the scan is marked finished, so that a client that sees
	// it finished sees the cache within its limit.
	if s.cfg.Cache != nil && s.cfg.CacheMaxSize > 0 {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
		if err := s.PruneCache(pctx); err != nil {
			s.log.Error("cannot prune the image cache", "err", err)
		}
		cancel()
	}
	s.finish(ctx, rec, rep, err)
}

// observeMatch observes the duration of rec's matching stage, which ends now.
func (s *Service) observeMatch(rec *record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if last := rec.history[len(rec.history)-1]; last.State == StateMatching {
		s.metrics.match.Observe(s.now().Sub(last.At).Seconds())
	}
}

// enter moves rec to state st and observes the duration of the stage it
// leaves.
func (s *Service) enter(rec *record, st State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	prev := rec.history[len(rec.history)-1]
	if prev.State == StateIndexing {
		s.metrics.index.Observe(now.Sub(prev.At).Seconds())
	}
	rec.state = st
	rec.history = append(rec.history, Transition{st, now})
	s.metrics.setActive(s.activeCountsLocked())
	s.log.Debug("scan stage", "scan", rec.id, "state", st)
}

// finish records the outcome of rec. err is nil on success, when rep holds
// the report.
func (s *Service) finish(ctx context.Context, rec *record, rep *report.Report, err error) {
	var js []byte
	if err == nil {
		var b bytes.Buffer
		if rerr := s.reportOptions(Status{}).Render(&b, "json", rep); rerr != nil {
			err = fmt.Errorf("render the report: %w", rerr)
		}
		js = b.Bytes()
	}
	outcome := "done"
	if err != nil {
		outcome = "failed"
		if cause := context.Cause(ctx); ctx.Err() != nil && cause != nil {
			if errors.Is(cause, ErrShuttingDown) {
				outcome = "cancelled"
			}
			if !strings.Contains(err.Error(), cause.Error()) {
				err = fmt.Errorf("%w (%v)", cause, err)
			}
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	switch {
	case err == nil:
		rec.state, rec.report, rec.json = StateDone, rep, js
	default:
		rec.state, rec.err = StateFailed, err.Error()
	}
	rec.history = append(rec.history, Transition{rec.state, now})
	rec.finished = now
	if s.active[rec.key] == rec {
		delete(s.active, rec.key)
	}
	s.finished = append(s.finished, rec)
	s.metrics.scans.WithLabelValues(outcome).Inc()
	s.metrics.setActive(s.activeCountsLocked())
	s.expireLocked()
	if err != nil {
		s.log.Warn("scan failed", "scan", rec.id, "image", rec.image, "outcome", outcome, "err", err)
	} else {
		s.log.Info("scan done", "scan", rec.id, "image", rec.image, "findings", len(rep.Findings),
			"duration", now.Sub(rec.history[0].At).Round(time.Millisecond))
	}
}

// expireLocked forgets finished scans older than Retention, and the oldest
// beyond MaxFinished.
func (s *Service) expireLocked() {
	cutoff := s.now().Add(-s.cfg.Retention)
	n := 0
	for n < len(s.finished) && (s.finished[n].finished.Before(cutoff) || len(s.finished)-n > s.cfg.MaxFinished) {
		delete(s.scans, s.finished[n].id)
		n++
	}
	if n > 0 {
		s.finished = append(s.finished[:0:0], s.finished[n:]...)
		s.log.Debug("forgot finished scans", "scans", n)
	}
}

// lookup returns the status of scan id and, when done, its report.
func (s *Service) lookup(id string) (Status, *report.Report, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked()
	rec, ok := s.scans[id]
	if !ok {
		return Status{}, nil, false
	}
	return rec.status(), rec.report, true
}

func (s *Service) activeCountsLocked() map[State]int {
	counts := map[State]int{StateQueued: 0, StateExporting: 0, StateIndexing: 0, StateMatching: 0}
	for _, rec := range s.active {
		counts[rec.state]++
	}
	return counts
}
