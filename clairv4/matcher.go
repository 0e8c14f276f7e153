package clairv4

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// VulnerabilityReport fetches the matcher's report for an indexed manifest
// and converts it (see Report). Check Index's result first: Clair 4.2–4.7
// answer 200 with an empty report for a manifest whose index failed.
//
// While the matcher answers 202 (its vulnerability store is still empty) it
// waits with the backoff and asks again until ctx ends, then returns an error
// matching both ErrNoVulnerabilityData and ctx's error: give ctx a deadline.
// A manifest Clair has not indexed (on 4.8+: not finished) matches
// ErrNotFound.
func (c *Client) VulnerabilityReport(ctx context.Context, d digest.Digest) (*Report, error) {
	if c.err != nil {
		return nil, c.err
	}
	if err := validDigest(d); err != nil {
		return nil, fmt.Errorf("vulnerability report: %w", err)
	}
	u := c.endpoint("matcher", "api", "v1", "vulnerability_report", d.String())
	for waits := 0; ; {
		r, err := c.send(ctx, c.http, http.MethodGet, u, nil)
		if err != nil {
			if waits > 0 && ctx.Err() != nil {
				return nil, noDataError(d, waits, ctx.Err())
			}
			return nil, err
		}
		switch r.Status {
		case http.StatusOK:
			rep, err := decodeVulnerabilityReport(r.Body)
			if err != nil {
				return nil, fmt.Errorf("GET %s: %w", u.Redacted(), err)
			}
			return rep, nil
		case http.StatusAccepted:
			waits++
			c.log.DebugContext(ctx, "clair has no vulnerability data yet, waiting", "manifest", d, "attempt", waits)
			if err := c.backoff(ctx, waits); err != nil {
				return nil, noDataError(d, waits, err)
			}
		default:
			return nil, newAPIError(http.MethodGet, u.Redacted(), r)
		}
	}
}

func noDataError(d digest.Digest, waits int, cause error) error {
	return fmt.Errorf("vulnerability report for %s: %w (the matcher answered 202 %d times): %w", d, ErrNoVulnerabilityData, waits, cause)
}

// UpdateOperation is the latest run of one of Clair's vulnerability
// updaters that wrote to the matcher's database.
type UpdateOperation struct {
	Updater     string    // e.g. "alpine-main-v3.11-updater"
	Ref         string    // the operation's UUID
	Fingerprint string    // the updater's opaque fingerprint of its feed
	Date        time.Time // when the operation was recorded
}

// LatestUpdateOperations lists the latest vulnerability update operation of
// every updater, sorted by updater, from
// GET /matcher/api/v1/internal/update_operation?kind=vulnerability&latest=true
// (Clair 4.2–4.4 register the route with a trailing slash and redirect to it;
// the default HTTP client follows, keeping the token). An empty list means no
// updater has ever written to the matcher's database.
func (c *Client) LatestUpdateOperations(ctx context.Context) ([]UpdateOperation, error) {
	if c.err != nil {
		return nil, c.err
	}
	u := c.endpoint("matcher", "api", "v1", "internal", "update_operation")
	u.RawQuery = "kind=vulnerability&latest=true"
	r, err := c.send(ctx, c.http, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if r.Status != http.StatusOK {
		return nil, newAPIError(http.MethodGet, u.Redacted(), r)
	}
	var w map[string][]wireUpdateOperation
	if err := json.Unmarshal(r.Body, &w); err != nil {
		return nil, fmt.Errorf("GET %s: decode update operations: %w", u.Redacted(), err)
	}
	var ops []UpdateOperation
	for updater, list := range w {
		for _, o := range list {
			if o.Updater == "" {
				o.Updater = updater
			}
			ops = append(ops, UpdateOperation{Updater: o.Updater, Ref: o.Ref, Fingerprint: o.Fingerprint, Date: o.Date})
		}
	}
	slices.SortFunc(ops, func(a, b UpdateOperation) int {
		if n := strings.Compare(a.Updater, b.Updater); n != 0 {
			return n
		}
		return b.Date.Compare(a.Date)
	})
	return ops, nil
}

// VulnerabilityDataPresent reports whether any updater has ever written
// vulnerabilities to Clair's matcher (LatestUpdateOperations is not empty).
// false means every report will look clean: warn loudly instead of
// reporting a clean image.
//
// true is not a guarantee: an updater that ran but found nothing also
// records an operation; VulnerabilityReport's ErrNoVulnerabilityData (the
// matcher's 202) covers that case. An error means the question could not be
// answered (route not exposed, credentials): fall back to that 202 signal.
func (c *Client) VulnerabilityDataPresent(ctx context.Context) (bool, error) {
	ops, err := c.LatestUpdateOperations(ctx)
	if err != nil {
		return false, err
	}
	return len(ops) > 0, nil
}
