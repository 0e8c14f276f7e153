package clairv4

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Index report states a caller may see in IndexReport.State. Any other value
// is an intermediate state (CheckManifest, FetchLayers, ScanLayers, Coalesce,
// IndexManifest) of an index still running.
const (
	StateIndexFinished = "IndexFinished"
	StateIndexError    = "IndexError"
)

// IndexReport summarises Clair's index report for one manifest.
type IndexReport struct {
	Manifest digest.Digest // manifest_hash
	State    string        // StateIndexFinished, StateIndexError or an intermediate state
	Success  bool          // Clair's "success"
	Message  string        // Clair's "err": why the index failed, "" on success
	// Packages is how many packages Clair found. Zero on a finished index
	// means every vulnerability report will be empty, whatever the feeds hold
	// (distroless or scratch images, or a layer Clair could not read).
	Packages int
	// Distributions are the distributions Clair detected (pretty names,
	// sorted). Empty means no distribution matcher applies.
	Distributions []string
	Raw           json.RawMessage // Clair's body, unchanged
}

// Probe checks that base serves the Clair v4 indexer API with these
// credentials, by asking for the index state. It returns nil, or an error
// matching ErrWrongAPI (any 404, or a 200 that is not an index state: a Clair
// v2 or another server), ErrUnauthorized, or a transport error
// (IsUnreachable).
func (c *Client) Probe(ctx context.Context) error {
	_, err := c.IndexState(ctx)
	return err
}

// IndexState returns Clair's indexer state, an opaque string that changes
// when Clair's scanners change (and with it every cached index). Errors as
// for Probe.
func (c *Client) IndexState(ctx context.Context) (string, error) {
	if c.err != nil {
		return "", c.err
	}
	u := c.endpoint("indexer", "api", "v1", "index_state")
	r, err := c.send(ctx, c.http, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	if r.Status != http.StatusOK {
		e := newAPIError(http.MethodGet, u.Redacted(), r)
		// Every Clair v4 indexer serves this route: any 404 means the URL
		// points at something else.
		e.wrongAPI = e.wrongAPI || r.Status == http.StatusNotFound
		return "", e
	}
	var s wireIndexState
	if err := json.Unmarshal(r.Body, &s); err != nil || s.State == "" {
		return "", fmt.Errorf("GET %s answered 200 without an index state: %w", u.Redacted(), ErrWrongAPI)
	}
	return s.State, nil
}

// Index posts m and returns the finished index report. The POST is
// synchronous: Clair answers once it has fetched and scanned every layer, so
// the URIs must stay servable until Index returns, and the call is bounded
// only by ctx (the HTTP client's Timeout is ignored). Cancelling ctx closes
// the connection, which cancels Clair's index.
//
// A failed index returns an *IndexError carrying Clair's own message, from
// Clair 4.2 (201 with state IndexError) and from 4.3+ (500/400) alike; test
// it with IsLayerFetchError. A report in an intermediate state (another
// request indexing the same manifest) is polled with the backoff until it is
// final.
func (c *Client) Index(ctx context.Context, m Manifest) (*IndexReport, error) {
	if c.err != nil {
		return nil, c.err
	}
	body, err := m.marshal()
	if err != nil {
		return nil, fmt.Errorf("index manifest %s: %w", m.Hash, err)
	}
	u := c.endpoint("indexer", "api", "v1", "index_report")
	post := *c.http
	post.Timeout = 0
	r, err := c.send(ctx, &post, http.MethodPost, u, body)
	if err != nil {
		return nil, err
	}
	if r.Status < 200 || r.Status > 299 {
		e := newAPIError(http.MethodPost, u.Redacted(), r)
		// 4.3+: the index failed ("failed to start scan: <cause>"), as
		// opposed to a request Clair refused (bogus manifest, 429).
		if strings.HasPrefix(e.Message, "failed to start scan") {
			return nil, &IndexError{Manifest: m.Hash, Message: e.Message, API: e}
		}
		return nil, e
	}
	ir, err := decodeIndexReport(r.Body)
	if err != nil {
		return nil, fmt.Errorf("index manifest %s: POST %s: %w", m.Hash, u.Redacted(), err)
	}
	for attempt := 1; !isFinal(ir.State); attempt++ {
		c.log.DebugContext(ctx, "index not final, polling", "manifest", m.Hash, "state", ir.State, "attempt", attempt)
		if err := c.backoff(ctx, attempt); err != nil {
			return nil, fmt.Errorf("index manifest %s: still in state %s: %w", m.Hash, ir.State, err)
		}
		if ir, err = c.IndexReport(ctx, m.Hash); err != nil {
			return nil, err
		}
	}
	if ir.State == StateIndexError || !ir.Success {
		msg := ir.Message
		if msg == "" {
			msg = "index ended in state " + ir.State + " without a message"
		}
		return nil, &IndexError{Manifest: m.Hash, Message: msg}
	}
	return ir, nil
}

// isFinal reports states after which the report no longer changes.
// "Terminal" is the FSM's halt state; a report should never show it, but if
// one does, Success decides.
func isFinal(state string) bool {
	return state == StateIndexFinished || state == StateIndexError || state == "Terminal"
}

// IndexReport fetches the stored index report for d, in whatever state it is
// (IndexError included: that is not an error here). An unknown manifest
// matches ErrNotFound.
func (c *Client) IndexReport(ctx context.Context, d digest.Digest) (*IndexReport, error) {
	if c.err != nil {
		return nil, c.err
	}
	if err := validDigest(d); err != nil {
		return nil, fmt.Errorf("index report: %w", err)
	}
	u := c.endpoint("indexer", "api", "v1", "index_report", d.String())
	r, err := c.send(ctx, c.http, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if r.Status != http.StatusOK {
		return nil, newAPIError(http.MethodGet, u.Redacted(), r)
	}
	ir, err := decodeIndexReport(r.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u.Redacted(), err)
	}
	return ir, nil
}

func decodeIndexReport(body []byte) (*IndexReport, error) {
	var w wireIndexReport
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, fmt.Errorf("decode index report: %w", err)
	}
	if w.State == "" {
		return nil, fmt.Errorf("decode index report: no state in %.64q", body)
	}
	ir := &IndexReport{
		Manifest: digest.Digest(w.ManifestHash),
		State:    w.State,
		Success:  w.Success,
		Message:  w.Err,
		Packages: len(w.Packages),
		Raw:      json.RawMessage(body),
	}
	for _, d := range w.Distributions {
		name := d.PrettyName
		if name == "" {
			name = strings.TrimSpace(d.Name + " " + d.Version + d.VersionID)
		}
		if name != "" && !slices.Contains(ir.Distributions, name) {
			ir.Distributions = append(ir.Distributions, name)
		}
	}
	slices.Sort(ir.Distributions)
	return ir, nil
}
