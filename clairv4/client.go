package clairv4

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/layerbridge/layerbridge/internal/clairhttp"
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
	c.base, c.err = clairhttp.BaseURL(base)
	for _, o := range opts {
		o(c)
	}
	return c
}

// Issuer is the issuer of the tokens the client signs its requests with
// (WithPSK), or "" when it sends none.
func (c *Client) Issuer() string {
	if c.psk == nil {
		return ""
	}
	return c.psk.issuer
}

// endpoint returns base joined with the path segments, each escaped.
func (c *Client) endpoint(segments ...string) *url.URL {
	return clairhttp.Endpoint(c.base, segments...)
}

// response is an answer read to the end.
type response = clairhttp.Response

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
// Clair answers with a retryable status (at most clairhttp.MaxRetries
// times). A transport failure is returned as net/http reports it.
func (c *Client) send(ctx context.Context, hc *http.Client, method string, u *url.URL, body []byte) (*response, error) {
	rq := clairhttp.Requester{
		Log:       c.log,
		Backoff:   clairhttp.Backoff(c.backoff),
		Retryable: retryable,
		// Clair reports a failure after the status line was sent in this
		// trailer (httptransport.writerError): the body is then incomplete.
		ErrorTrailer: "Clair-Error",
	}
	if c.psk != nil {
		rq.Authorize = func(req *http.Request) error {
			tok, err := c.psk.token(c.now())
			if err != nil {
				return err
			}
			req.Header.Set("Authorization", "Bearer "+tok)
			return nil
		}
	}
	return rq.Send(ctx, hc, method, u, body, func(r *response) error { return newAPIError(method, u.Redacted(), r) })
}
