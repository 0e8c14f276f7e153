package clairv2

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

// Client talks to one Clair v2.1.x API (the port of api.port, 6060 by
// default; not the health port). It is safe for concurrent use.
type Client struct {
	base    *url.URL
	http    *http.Client
	log     *slog.Logger
	backoff Backoff
	err     error // a configuration error, returned by every call
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the HTTP client (default: a new &http.Client{}). Its
// Timeout applies to PostLayer too, which lasts as long as Clair takes to
// download and analyse the layer: prefer a context deadline.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		if hc != nil {
			c.http = hc
		}
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

// WithBackoff sets how the client waits between retries of a GET (default
// ExponentialBackoff(500ms, 10s)).
func WithBackoff(b Backoff) Option {
	return func(c *Client) {
		if b != nil {
			c.backoff = b
		}
	}
}

// New returns a client for the Clair v2 at base (e.g. http://clair:6060/; a
// path prefix is kept). New never fails: a base URL that is not absolute
// http(s) is returned by every call, so call Probe first.
func New(base *url.URL, opts ...Option) *Client {
	c := &Client{
		http:    &http.Client{},
		log:     slog.New(slog.DiscardHandler),
		backoff: defaultBackoff(),
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

// maxTransientRetries bounds retries of 429/502/503/504 answers to a GET.
const maxTransientRetries = 5

func retryable(method string, status int) bool {
	if method != http.MethodGet {
		return false
	}
	switch status {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// send performs one request, repeating a GET (after the backoff) while the
// answer is retryable. A transport failure is returned as net/http reports
// it (a *url.Error naming method and URL).
func (c *Client) send(ctx context.Context, method string, u *url.URL, body []byte) (*response, error) {
	for attempt := 1; ; attempt++ {
		r, err := c.roundTrip(ctx, method, u, body)
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

func (c *Client) roundTrip(ctx context.Context, method string, u *url.URL, body []byte) (*response, error) {
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
	start := time.Now()
	resp, err := c.http.Do(req)
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
	return &response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}
