package sidecar

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client talks to a running sidecar's API, as `layerbridge scan --server`
// does. Create it with NewClient; it is safe for concurrent use.
type Client struct {
	base    *url.URL
	token   string
	hc      *http.Client
	backoff func(ctx context.Context, attempt int) error
}

// ClientOption configures a Client.
type ClientOption func(*Client)

// WithHTTPClient sets the HTTP client. The default has no timeout: bound
// calls with their context.
func WithHTTPClient(hc *http.Client) ClientOption { return func(c *Client) { c.hc = hc } }

// WithPollBackoff replaces Wait's pause between two polls. attempt counts
// from 0; the function returns ctx's error when ctx ends first. The default
// waits 250ms, doubling up to 5s.
func WithPollBackoff(b func(ctx context.Context, attempt int) error) ClientOption {
	return func(c *Client) { c.backoff = b }
}

// NewClient returns a client of the sidecar at base (for example
// http://layerbridge:8080). token is the secret of the sidecar's
// --token-file, sent as a bearer token; "" sends none, which a sidecar
// without a token accepts from loopback only.
func NewClient(base *url.URL, token string, opts ...ClientOption) *Client {
	c := &Client{base: base, token: token, hc: &http.Client{}, backoff: defaultPollBackoff}
	for _, o := range opts {
		o(c)
	}
	return c
}

func defaultPollBackoff(ctx context.Context, attempt int) error {
	d := 250 * time.Millisecond << min(attempt, 5)
	d = min(d, 5*time.Second)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// APIError is an answer of the sidecar other than the one expected. Code
// and Message are from its JSON error body when there was one.
type APIError struct {
	Method  string
	URL     string // without credentials
	Status  int
	Code    string // "UNAUTHORIZED", "DENIED", "SCAN_UNKNOWN", "UNAVAILABLE", ...
	Message string
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	return fmt.Sprintf("%s %s: %d %s: %s", e.Method, e.URL, e.Status, e.Code, msg)
}

// UnreachableError means no HTTP answer came from the sidecar at all.
type UnreachableError struct {
	URL string
	Err error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach the layerbridge sidecar at %s: %v", e.URL, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// FailedError means the sidecar ran the scan and it failed; Status.Error
// says why.
type FailedError struct{ Status Status }

func (e *FailedError) Error() string {
	return fmt.Sprintf("the sidecar's scan %s of %s failed: %s", e.Status.ID, e.Status.Image, e.Status.Error)
}

// maxAnswer bounds what the client reads of one answer (reports included).
const maxAnswer = 256 << 20

func (c *Client) do(ctx context.Context, method, path string, query url.Values, body any, want int) ([]byte, http.Header, error) {
	u := c.base.JoinPath(path)
	u.RawQuery = query.Encode()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, context.Cause(ctx)
		}
		return nil, nil, &UnreachableError{URL: c.base.Redacted(), Err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: read the answer: %w", method, u.Redacted(), err)
	}
	if resp.StatusCode != want {
		ae := &APIError{Method: method, URL: u.Redacted(), Status: resp.StatusCode}
		var eb apiError
		if json.Unmarshal(data, &eb) == nil && len(eb.Errors) > 0 {
			ae.Code, ae.Message = eb.Errors[0].Code, eb.Errors[0].Message
		} else {
			ae.Message = strings.TrimSpace(string(data[:min(len(data), 512)]))
		}
		return nil, nil, ae
	}
	return data, resp.Header, nil
}

func decodeStatus(method, path string, data []byte) (Status, error) {
	var st Status
	if err := json.Unmarshal(data, &st); err != nil {
		return Status{}, fmt.Errorf("%s %s: the answer is not a scan: %w", method, path, err)
	}
	if st.ID == "" || st.State == "" {
		return Status{}, fmt.Errorf("%s %s: the answer is not a scan (no id or state)", method, path)
	}
	return st, nil
}

// Submit asks for a scan of req.Image. The answer may be a scan that an
// identical request started earlier and that is still running.
func (c *Client) Submit(ctx context.Context, req Request) (Status, error) {
	data, _, err := c.do(ctx, http.MethodPost, "/api/v1/scans", nil, req, http.StatusAccepted)
	if err != nil {
		return Status{}, err
	}
	return decodeStatus(http.MethodPost, "/api/v1/scans", data)
}

// Status returns the scan id as it is now.
func (c *Client) Status(ctx context.Context, id string) (Status, error) {
	p := "/api/v1/scans/" + url.PathEscape(id)
	data, _, err := c.do(ctx, http.MethodGet, p, nil, nil, http.StatusOK)
	if err != nil {
		return Status{}, err
	}
	return decodeStatus(http.MethodGet, p, data)
}

// Wait polls scan id until it is done or failed, calling onState (if not
// nil) whenever its state changes. A failed scan is a *FailedError; ctx
// ending is ctx's cause.
func (c *Client) Wait(ctx context.Context, id string, onState func(Status)) (Status, error) {
	var last State
	for attempt := 0; ; attempt++ {
		st, err := c.Status(ctx, id)
		if err != nil {
			return Status{}, err
		}
		if st.State != last && onState != nil {
			onState(st)
		}
		last = st.State
		switch st.State {
		case StateDone:
			return st, nil
		case StateFailed:
			return st, &FailedError{Status: st}
		}
		if err := c.backoff(ctx, attempt); err != nil {
			return st, err
		}
	}
}

// Report returns scan id's report rendered by the sidecar in format (one
// of report.Formats).
func (c *Client) Report(ctx context.Context, id, format string) ([]byte, error) {
	p := "/api/v1/scans/" + url.PathEscape(id) + "/report"
	data, _, err := c.do(ctx, http.MethodGet, p, url.Values{"format": {format}}, nil, http.StatusOK)
	return data, err
}

// IsUnauthorized reports whether err is the sidecar refusing the client's
// credentials: 401 (no or wrong token) or 403 (no token configured, and the
// client is not on loopback).
func IsUnauthorized(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && (ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden)
}
