// Package clairhttp is the HTTP plumbing both Clair clients share: the base
// URL rules, bounded retries with an injectable backoff, reading answers to
// the end, and the helpers that recognise Go's bare 404 and short plain-text
// errors. The API generations differ in everything else, which stays in
// clairv4 and clairv2.
//
// It imports nothing of the project.
package clairhttp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"time"
	"unicode/utf8"
)

// Backoff waits before retry number attempt (1 for the first retry). It
// must return promptly with a non-nil error (normally ctx.Err()) once ctx is
// done: callers stop retrying when it returns an error, and never sleep on
// their own. Tests inject one that returns nil at once.
type Backoff func(ctx context.Context, attempt int) error

// Exponential waits first, then twice as long at every attempt, never longer
// than most. It returns ctx.Err() as soon as ctx is done, without waiting.
func Exponential(first, most time.Duration) Backoff {
	return func(ctx context.Context, attempt int) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		d := most
		if attempt >= 1 && attempt < 32 {
			if step := first << (attempt - 1); step > 0 && step < most {
				d = step
			}
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		}
	}
}

// DefaultBackoff is 0.5 s, 1 s, 2 s … up to 10 s between attempts.
func DefaultBackoff() Backoff { return Exponential(500*time.Millisecond, 10*time.Second) }

// BaseURL checks that base is an absolute http(s) URL and returns a copy
// without query or fragment; a path prefix (a reverse proxy) is kept.
func BaseURL(base *url.URL) (*url.URL, error) {
	switch {
	case base == nil:
		return nil, errors.New("clair url is missing")
	case (base.Scheme != "http" && base.Scheme != "https") || base.Host == "":
		return nil, fmt.Errorf("clair url %q must be an absolute http or https url", base.Redacted())
	}
	u := *base
	u.RawQuery, u.Fragment = "", ""
	return &u, nil
}

// Endpoint returns base joined with the path segments, each escaped.
func Endpoint(base *url.URL, segments ...string) *url.URL {
	escaped := make([]string, len(segments))
	for i, s := range segments {
		escaped[i] = url.PathEscape(s)
	}
	return base.JoinPath(escaped...)
}

// Response is an answer read to the end.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// MaxRetries bounds the repetitions of a retryable answer.
const MaxRetries = 5

// Requester sends requests to one Clair.
type Requester struct {
	Log     *slog.Logger
	Backoff Backoff
	// Retryable says which answers are worth repeating (after Backoff).
	Retryable func(method string, status int) bool
	// Authorize, when set, adds credentials to every request.
	Authorize func(*http.Request) error
	// ErrorTrailer names a trailer in which the server reports a failure
	// after the status line was sent ("" for none).
	ErrorTrailer string
}

// Send performs the request with hc, repeating it while the answer is
// retryable, at most MaxRetries times. When Backoff gives up, the error
// wraps giveUp(last answer) and Backoff's error. A transport failure is
// returned as net/http reports it (a *url.Error naming method and URL).
func (rq Requester) Send(ctx context.Context, hc *http.Client, method string, u *url.URL, body []byte, giveUp func(*Response) error) (*Response, error) {
	for attempt := 1; ; attempt++ {
		r, err := rq.roundTrip(ctx, hc, method, u, body)
		if err != nil {
			return nil, err
		}
		if rq.Retryable == nil || !rq.Retryable(method, r.Status) || attempt > MaxRetries {
			return r, nil
		}
		rq.Log.DebugContext(ctx, "clair busy, retrying", "method", method, "url", u.Redacted(), "status", r.Status, "attempt", attempt)
		if err := rq.Backoff(ctx, attempt); err != nil {
			return nil, fmt.Errorf("%w; gave up waiting: %w", giveUp(r), err)
		}
	}
}

func (rq Requester) roundTrip(ctx context.Context, hc *http.Client, method string, u *url.URL, body []byte) (*Response, error) {
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
	if rq.Authorize != nil {
		if err := rq.Authorize(req); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		rq.Log.DebugContext(ctx, "clair request", "method", method, "url", u.Redacted(), "duration", time.Since(start), "err", err)
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	rq.Log.DebugContext(ctx, "clair request", "method", method, "url", u.Redacted(), "status", resp.StatusCode, "duration", time.Since(start), "bytes", len(b))
	if err != nil {
		return nil, fmt.Errorf("read answer to %s %s: %w", method, u.Redacted(), err)
	}
	if rq.ErrorTrailer != "" {
		if msg := resp.Trailer.Get(rq.ErrorTrailer); msg != "" {
			return nil, fmt.Errorf("clair failed while answering %s %s: %s", method, u.Redacted(), msg)
		}
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// MaxErrorBody caps the raw body an API error keeps.
const MaxErrorBody = 64 << 10

// CapBody returns at most MaxErrorBody bytes of b.
func CapBody(b []byte) []byte {
	if len(b) > MaxErrorBody {
		return b[:MaxErrorBody:MaxErrorBody]
	}
	return b
}

// IsBareNotFound reports Go's http.NotFound answer, which both Clair
// generations give for routes they do not have.
func IsBareNotFound(contentType string, body []byte) bool {
	mt, _, _ := mime.ParseMediaType(contentType)
	return (mt == "" || mt == "text/plain") && string(bytes.TrimSpace(body)) == "404 page not found"
}

// PlainMessage returns the first line of a short plain-text body (at most
// 256 bytes), or "" for anything else (HTML pages, binary).
func PlainMessage(contentType string, body []byte) string {
	if mt, _, _ := mime.ParseMediaType(contentType); mt != "" && mt != "text/plain" {
		return ""
	}
	line, _, _ := bytes.Cut(bytes.TrimSpace(body), []byte("\n"))
	if len(line) > 256 {
		line = line[:256]
	}
	if !utf8.Valid(line) || bytes.HasPrefix(line, []byte("<")) {
		return ""
	}
	return string(bytes.TrimSpace(line))
}
