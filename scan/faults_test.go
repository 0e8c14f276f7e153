package scan

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/layerbridge/layerbridge/bridge"
	"github.com/layerbridge/layerbridge/clairv4"
	"github.com/layerbridge/layerbridge/internal/fakeclair"
	"github.com/layerbridge/layerbridge/internal/testwait"
)

// Routes of Clair v4 that faultyClair can break, as "METHOD path prefix".
const (
	routeIndexState = "GET /indexer/api/v1/index_state"
	routeIndex      = "POST /indexer/api/v1/index_report"
	routeReport     = "GET /matcher/api/v1/vulnerability_report/"
	routeUpdates    = "GET /matcher/api/v1/internal/update_operation"
)

// faultyClair is fakeclair.V4 with faults injected in front of it.
type faultyClair struct {
	next http.Handler

	// fail answers a route with a status (and Clair's JSON error) for its
	// first times requests; times < 0: every request.
	fail map[string]failure
	// stall holds every request of this route until the client goes away
	// (its context ends), reporting on stalling when it starts and on
	// stalled when it is over.
	stall    string
	stalling chan struct{}
	stalled  chan struct{}
	// abortAfter, when set, makes Clair's first download of each layer of
	// an index request stop after that many bytes and drop the connection.
	// Then with retry it downloads the layer again (the fake's own full
	// download, re-hashed); without, the index fails as Clair's fetcher
	// reports it.
	abortAfter int64
	retry      bool

	mu    sync.Mutex
	calls map[string]int
	uris  []string // every layer URI posted for indexing
}

type failure struct {
	status int
	times  int
	msg    string
}

func (f *faultyClair) count(route string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[route]
}

func (f *faultyClair) layerURIs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.uris)
}

func (f *faultyClair) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	route := ""
	for _, rt := range []string{routeIndexState, routeIndex, routeReport, routeUpdates} {
		method, prefix, _ := strings.Cut(rt, " ")
		if r.Method == method && strings.HasPrefix(r.URL.Path, prefix) {
			route = rt
		}
	}
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[route]++
	n := f.calls[route]
	fl, failing := f.fail[route]
	f.mu.Unlock()
	var m struct{ Layers []struct{ URI string } }
	if route == routeIndex {
		body, _ := io.ReadAll(r.Body)
		json.Unmarshal(body, &m)
		r.Body = io.NopCloser(bytes.NewReader(body))
		f.mu.Lock()
		for _, l := range m.Layers {
			f.uris = append(f.uris, l.URI)
		}
		f.mu.Unlock()
	}
	switch {
	case failing && (fl.times < 0 || n <= fl.times):
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(fl.status)
		msg, _ := json.Marshal(fl.msg)
		fmt.Fprintf(w, `{"code":"injected","message":%s}`, msg)
		return
	case route != "" && route == f.stall:
		// Read the request first, as Clair does: net/http notices the
		// client going away only once the body is consumed.
		io.Copy(io.Discard, r.Body)
		f.stalling <- struct{}{}
		<-r.Context().Done()
		f.stalled <- struct{}{}
		return
	case route == routeIndex && f.abortAfter > 0:
		var errs []string
		for _, l := range m.Layers {
			if err := abortedDownload(l.URI, f.abortAfter); err != nil {
				errs = append(errs, err.Error())
			}
		}
		if !f.retry {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(500)
			msg, _ := json.Marshal("failed to start scan: failed to fetch layers: fetcher: encountered errors: " + strings.Join(append(errs, "unexpected EOF"), "; "))
			fmt.Fprintf(w, `{"code":"internal-error","message":%s}`, msg)
			return
		}
	}
	f.next.ServeHTTP(w, r)
}

// manualDeadline is a context whose deadline passes when expire is called.
type manualDeadline struct {
	context.Context
	done chan struct{}
	once sync.Once
}

func (c *manualDeadline) Done() <-chan struct{} { return c.done }

func (c *manualDeadline) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

func (c *manualDeadline) expire() { c.once.Do(func() { close(c.done) }) }

// abortedDownload starts a download of uri like Clair's fetcher, reads n
// bytes of it and drops the connection.
func abortedDownload(uri string, n int64) error {
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(uri)
	if err != nil {
		return err
	}
	got, _ := io.CopyN(io.Discard, resp.Body, n)
	resp.Body.Close() // before the end: the connection is closed
	if got != n {
		return fmt.Errorf("aborted download of %s: only %d bytes came", uri, got)
	}
	return nil
}

// bigLayerArchive writes a docker save archive of one image whose single
// layer holds size random bytes (larger than the socket buffers, so that a
// client dropping the download is noticed by the server while it writes).
func bigLayerArchive(t *testing.T, size int) (ref string, layerSize int64) {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	tw.WriteHeader(&tar.Header{Name: "data.bin", Mode: 0o644, Size: int64(size)})
	tw.Write(data)
	tw.Close()
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["` + digest.FromBytes(layer.Bytes()).String() + `"]}}`)
	cfgName := digest.FromBytes(cfg).Encoded() + ".json"
	layerName := digest.FromString("big").Encoded() + "/layer.tar"
	manifest := []byte(`[{"Config":"` + cfgName + `","RepoTags":["big:1"],"Layers":["` + layerName + `"]}]`)
	var out bytes.Buffer
	aw := tar.NewWriter(&out)
	for _, e := range []struct {
		name string
		body []byte
	}{{layerName, layer.Bytes()}, {cfgName, cfg}, {"manifest.json", manifest}} {
		aw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body))})
		aw.Write(e.body)
	}
	if err := aw.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "big.tar")
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return "docker-archive:" + path, int64(layer.Len())
}

// TestClairFaults injects Clair's failures into whole scans on a shared
// layer server: each ends with an error naming the cause (or succeeds
// after bounded retries), and whatever happened, the scan's layer URLs
// answer 404 once Run has returned.
func TestClairFaults(t *testing.T) {
	bigRef, bigSize := bigLayerArchive(t, 24<<20)
	cases := []struct {
		name  string
		clair *faultyClair
		image string
		// ctxTimeout bounds the whole scan (0: none)
		ctxTimeout   time.Duration
		probeTimeout time.Duration
		// expireOnStall: the scan's deadline passes once Clair stalls
		// (whenever that is, however slow the machine).
		expireOnStall bool
		check         func(t *testing.T, fc *faultyClair, res *Result, err error, waits []int)
	}{
		{name: "probe answered 503 twice, then ok",
			clair: &faultyClair{fail: map[string]failure{routeIndexState: {503, 2, "loading"}}},
			check: func(t *testing.T, fc *faultyClair, res *Result, err error, waits []int) {
				if err != nil {
					t.Fatal(err)
				}
				if n := fc.count(routeIndexState); n != 3 || !slices.Equal(waits[:2], []int{1, 2}) {
					t.Errorf("%d probes after waits %v, want 3 probes after backoff 1, 2", n, waits)
				}
			}},
		{name: "probe answered 503 every time",
			clair: &faultyClair{fail: map[string]failure{routeIndexState: {503, -1, "overloaded"}}},
			check: func(t *testing.T, fc *faultyClair, res *Result, err error, waits []int) {
				if err == nil || !strings.Contains(err.Error(), "503") {
					t.Fatalf("err = %v, want one naming Clair's 503", err)
				}
				// One request, then a bounded number of retries.
				if n := fc.count(routeIndexState); n != 6 {
					t.Errorf("%d probes of a Clair answering 503, want 1 + 5 retries", n)
				}
			}},
		{name: "vulnerability report answered 502 three times, then ok",
			clair: &faultyClair{fail: map[string]failure{routeReport: {502, 3, "bad gateway"}}},
			check: func(t *testing.T, fc *faultyClair, res *Result, err error, waits []int) {
				if err != nil {
					t.Fatal(err)
				}
				if fc.count(routeReport) != 4 {
					t.Errorf("%d report requests, want 4", fc.count(routeReport))
				}
			}},
		{name: "index answered 500",
			clair: &faultyClair{fail: map[string]failure{routeIndex: {500, -1, "failed to start scan: database is locked"}}},
			check: func(t *testing.T, fc *faultyClair, res *Result, err error, waits []int) {
				var ie *clairv4.IndexError
				if !errors.As(err, &ie) || !strings.Contains(err.Error(), "database is locked") {
					t.Fatalf("err = %v, want Clair's index error", err)
				}
				if n := fc.count(routeIndex); n != 1 {
					t.Errorf("%d index requests, want 1: an index is never repeated", n)
				}
			}},
		{name: "clair stalls on the probe",
			clair:        &faultyClair{stall: routeIndexState},
			ctxTimeout:   time.Minute,
			probeTimeout: 100 * time.Millisecond,
			check: func(t *testing.T, fc *faultyClair, res *Result, err error, waits []int) {
				var ue *ClairUnreachableError
				if !errors.As(err, &ue) || !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("err = %v, want a ClairUnreachableError from the probe's deadline", err)
				}
				testwait.Recv(t, fc.stalled, "the stalled request to be abandoned")
			}},
		{name: "clair stalls on the index request",
			clair:         &faultyClair{stall: routeIndex},
			expireOnStall: true,
			check: func(t *testing.T, fc *faultyClair, res *Result, err error, waits []int) {
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("err = %v, want the scan's deadline", err)
				}
				testwait.Recv(t, fc.stalled, "the index request's connection to close") // Clair cancels the index
			}},
		{name: "clair drops a layer download and fetches it again",
			clair: &faultyClair{abortAfter: 64 << 10, retry: true},
			image: bigRef,
			check: func(t *testing.T, fc *faultyClair, res *Result, err error, waits []int) {
				if err != nil {
					t.Fatal(err)
				}
				fe := res.Fetches
				if len(fe) != 2 || !errors.Is(fe[0].Err, bridge.ErrInterrupted) || fe[0].Bytes >= bigSize {
					t.Fatalf("fetches %+v: want an interrupted download first", fe)
				}
				if fe[1].Err != nil || fe[1].Status != 200 || fe[1].Bytes != bigSize {
					t.Fatalf("fetches %+v: want a complete download second", fe)
				}
			}},
		{name: "clair drops a layer download and gives up",
			clair: &faultyClair{abortAfter: 64 << 10},
			image: bigRef,
			check: func(t *testing.T, fc *faultyClair, res *Result, err error, waits []int) {
				var le *LayerFetchError
				if !errors.As(err, &le) || le.NeverReached() || !strings.Contains(err.Error(), "interrupted after") {
					t.Fatalf("err = %v, want a LayerFetchError saying the download was interrupted", err)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fc := tc.clair
			fc.next = &fakeclair.V4{Samples: samples}
			fc.stalled = make(chan struct{}, 4)
			fc.stalling = make(chan struct{}, 4)
			clair := httptest.NewServer(fc)
			defer clair.Close()
			var mu sync.Mutex
			var waits []int
			cfg := newConfig(t, clair.URL, func(o *ClairOptions) {
				o.Backoff = func(ctx context.Context, attempt int) error {
					mu.Lock()
					waits = append(waits, attempt)
					mu.Unlock()
					return ctx.Err()
				}
			})
			if tc.image != "" {
				cfg.Image = tc.image
			}
			cfg.ProbeTimeout = tc.probeTimeout
			ctx := testwait.Context(t)
			if tc.ctxTimeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.ctxTimeout)
				defer cancel()
			}
			if tc.expireOnStall {
				dl := &manualDeadline{Context: ctx, done: make(chan struct{})}
				parent := ctx
				go func() {
					select {
					case <-fc.stalling:
						dl.expire()
					case <-parent.Done():
					}
				}()
				ctx = dl
			}
			res, err := Run(ctx, cfg)
			if tc.probeTimeout > 0 && ctx.Err() != nil {
				t.Errorf("the scan's own deadline ended it, not the probe's")
			}
			tc.check(t, fc, res, err, waits)
			for _, u := range fc.layerURIs() {
				resp, err := http.Get(u)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 404 {
					t.Errorf("GET %s after the scan: %d, want 404", u, resp.StatusCode)
				}
			}
		})
	}
}
