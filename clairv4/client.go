package clairv4

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"
)

// Client talks to one Clair v4 (combo mode, or an indexer and matcher behind
// one address). It is safe for concurrent use.
type Client struct {
	base    *url.URL
	http    *http.Client
	log     *slog.Logger
	backoff Backoff
	psk     *psk
	now     func() time.Time
	err     error // a configuration error, returned by every call
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the HTTP client (default: a new &http.Client{}, which
// uses http.DefaultTransport). Its Timeout applies to every request except
// Index, whose POST lasts as long as Clair takes to fetch and scan the layers
// and is bounded only by the context.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		if hc != nil {
			c.http = hc
		}
	}
}

// WithPSK signs every request with a fresh HS256 JWT, as Clair's auth.psk
// expects. base64Key is auth.psk.key copied from Clair's config (standard,
// padded base64 of the secret; the secret itself is rejected by Clair).
// issuer must be listed in auth.psk.iss; "" means IntraserviceIssuer, which
// Clair always accepts. A malformed key is reported by the first call.
func WithPSK(base64Key, issuer string) Option {
	return func(c *Client) {
		p, err := newPSK(base64Key, issuer)
		if err != nil {
			c.err = fmt.Errorf("clair psk: %w", err)
			return
		}
		c.psk = p
	}
}

// WithLogger logs every request at debug level (method, URL, status,
// duration) and every retry. The default discards.
func WithLogger(l *slog.Logger) Option {
	return func(c *Client) {
		if l != nil {
			c.log = l
		}
	}
}

// WithBackoff sets how the client waits between retries (default
// ExponentialBackoff(500ms, 10s)).
func WithBackoff(b Backoff) Option {
	return func(c *Client) {
		if b != nil {
			c.backoff = b
		}
	}
}

// New returns a client for the Clair v4 at base (e.g. http://clair:6060/; a
// path prefix is kept, for a Clair behind a reverse proxy). New never fails:
// a base URL that is not absolute http(s), or a bad PSK key, is returned by
// every call, so call Probe first.
func New(base *url.URL, opts ...Option) *Client {
	c := &Client{
		http:    &http.Client{},
		log:     slog.New(slog.DiscardHandler),
		backoff: defaultBackoff(),
		now:     time.Now,
	}
	switch {
	case base == nil:
		c.err = errors.New("clair url is missing")
	case (base.Scheme != "http" && base.Scheme != "https") || base.Host == "":
		c.err = fmt.Errorf("clair url %q must be an absolute http or https url", base.Redacted())
	default:
		u := *base
		u.RawQuery, u.Fragment = "", ""
		c.base = &u
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// endpoint returns base joined with the path segments, each escaped.
func (c *Client) endpoint(segments ...string) *url.URL {
	escaped := make([]string, len(segments))
	for i, s := range segments {
		escaped[i] = url.PathEscape(s)
	}
	return c.base.JoinPath(escaped...)
}

// response is an answer read to the end.
type response struct {
	status int
	header http.Header
	body   []byte
}

// maxTransientRetries bounds retries of 429/502/503/504 answers.
const maxTransientRetries = 5

// retryable reports answers worth repeating: Clair's concurrency limit (429,
// sent before any work is done) for any method, gateway trouble only for GET.
func retryable(method string, status int) bool {
	switch status {
	case http.StatusTooManyRequests:
		return true
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return method == http.MethodGet
	}
	return false
}

// send performs one request with hc, repeating it (after the backoff) while
// Clair answers with a retryable status. A transport failure is returned as
// net/http reports it (a *url.Error naming method and URL).
func (c *Client) send(ctx context.Context, hc *http.Client, method string, u *url.URL, body []byte) (*response, error) {
	for attempt := 1; ; attempt++ {
		r, err := c.roundTrip(ctx, hc, method, u, body)
		if err != nil {
			return nil, err
		}
		if !retryable(method, r.status) || attempt > maxTransientRetries {
			return r, nil
		}
		c.log.DebugContext(ctx, "clair busy, retrying", "method", method, "url", u.Redacted(), "status", r.status, "attempt", attempt)
		if err := c.backoff(ctx, attempt); err != nil {
			return nil, fmt.Errorf("%w; gave up waiting: %w", newAPIError(method, u.Redacted(), r), err)
		}
	}
}

func (c *Client) roundTrip(ctx context.Context, hc *http.Client, method string, u *url.URL, body []byte) (*response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("build request %s %s: %w", method, u.Redacted(), err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.psk != nil {
		tok, err := c.psk.token(c.now())
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		c.log.DebugContext(ctx, "clair request", "method", method, "url", u.Redacted(), "duration", time.Since(start), "err", err)
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	c.log.DebugContext(ctx, "clair request", "method", method, "url", u.Redacted(), "status", resp.StatusCode, "duration", time.Since(start), "bytes", len(b))
	if err != nil {
		return nil, fmt.Errorf("read answer to %s %s: %w", method, u.Redacted(), err)
	}
	// Clair reports a failure after the status line was sent in this trailer
	// (httptransport.writerError): the body is then incomplete.
	if msg := resp.Trailer.Get("Clair-Error"); msg != "" {
		return nil, fmt.Errorf("clair failed while answering %s %s: %s", method, u.Redacted(), msg)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}
