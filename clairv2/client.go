package clairv2

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/layerbridge/layerbridge/internal/clairhttp"
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
	c.base, c.err = clairhttp.BaseURL(base)
	for _, o := range opts {
		o(c)
	}
	return c
}

// endpoint returns base joined with the path segments, each escaped.
func (c *Client) endpoint(segments ...string) *url.URL {
	return clairhttp.Endpoint(c.base, segments...)
}

// response is an answer read to the end.
type response = clairhttp.Response

// retryable reports answers worth repeating: only GETs, since Clair may
// still be processing a POST /v1/layers.
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
// answer is retryable (at most clairhttp.MaxRetries times). A transport
// failure is returned as net/http reports it.
func (c *Client) send(ctx context.Context, method string, u *url.URL, body []byte) (*response, error) {
	rq := clairhttp.Requester{Log: c.log, Backoff: clairhttp.Backoff(c.backoff), Retryable: retryable}
	return rq.Send(ctx, c.http, method, u, body, func(r *response) error { return newAPIError(method, u.Redacted(), r) })
}
