package clairv4

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/layerbridge/layerbridge/internal/clairhttp"
)

// Values to test with errors.Is. They are never returned bare: an *APIError,
// an *IndexError or a wrapped error matches them.
var (
	// ErrNoVulnerabilityData: the matcher answered 202 (its vulnerability
	// store is empty: no updater has ever written a vulnerability) until the
	// context ended. A report fetched now would look clean whatever the image.
	ErrNoVulnerabilityData = errors.New("clair has no vulnerability data yet")

	// ErrNotFound: Clair answered 404 from one of its own routes (unknown
	// manifest, or on Clair 4.8+ a manifest whose index did not finish).
	// It never matches the wrong-API 404, see ErrWrongAPI.
	ErrNotFound = errors.New("not found in clair")

	// ErrWrongAPI: the server has no such route, answering Go's bare
	// "404 page not found": the URL points at a Clair v2 (or something else),
	// not at a Clair v4 indexer and matcher.
	ErrWrongAPI = errors.New("not the clair v4 api")

	// ErrUnauthorized: Clair answered 401: no token, or a token its
	// auth.psk configuration rejects (wrong key, issuer not listed, clock
	// skew beyond 15 s).
	ErrUnauthorized = errors.New("clair rejected the request's credentials")

	// ErrLayerFetch: indexing failed because Clair could not download a
	// layer from the URI it was given (unreachable address, non-200 answer,
	// bytes not matching the layer hash). Matched only by *IndexError.
	ErrLayerFetch = errors.New("clair could not fetch a layer")
)

// APIError is a request Clair answered with an unexpected status. Every
// non-2xx answer becomes one, so errors.As(err, &apiErr) gives the status and
// Clair's own code and message whichever operation failed.
type APIError struct {
	Method     string // request method
	URL        string // request URL, password redacted
	StatusCode int    // HTTP status
	Code       string // Clair's "code" ("not-found", "internal-error", …), "" if the body had none
	Message    string // Clair's "message", or the start of a plain-text body; "" if neither
	Body       []byte // the raw body, at most 64 KiB

	wrongAPI bool
}

// Error reads "clair answered 404 Not Found to GET <url>: <message>".
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "clair answered %d %s to %s %s", e.StatusCode, http.StatusText(e.StatusCode), e.Method, e.URL)
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// Is reports whether e is one of ErrUnauthorized, ErrWrongAPI or
// ErrNotFound.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized
	case ErrWrongAPI:
		return e.wrongAPI
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound && !e.wrongAPI
	}
	return false
}

// newAPIError builds the error for an answer with an unexpected status,
// reading Clair's {"code","message"} body when there is one.
func newAPIError(method, redactedURL string, r *response) *APIError {
	e := &APIError{Method: method, URL: redactedURL, StatusCode: r.Status}
	e.Body = r.Body
	e.Body = clairhttp.CapBody(e.Body)
	var body struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(r.Body, &body) == nil && (body.Code != "" || body.Message != "") {
		e.Code, e.Message = body.Code, body.Message
	} else {
		e.Message = clairhttp.PlainMessage(r.Header.Get("Content-Type"), r.Body)
	}
	e.wrongAPI = r.Status == http.StatusNotFound && clairhttp.IsBareNotFound(r.Header.Get("Content-Type"), r.Body)
	return e
}

// IndexError is an index that ended in state IndexError. Clair 4.2 reports it
// as 201 with the failed report; Clair 4.3 and later as 500 (400 for a layer
// that is not a tar, 4.5+) with "failed to start scan: …". Both give an
// *IndexError, so callers need not know the version.
type IndexError struct {
	Manifest digest.Digest // the manifest hash posted
	Message  string        // Clair's own error text, unchanged
	API      *APIError     // the HTTP error (4.3+); nil when Clair answered 2xx (4.2)
}

// Error reads "clair could not index manifest <digest>: <Clair's message>".
func (e *IndexError) Error() string {
	return fmt.Sprintf("clair could not index manifest %s: %s", e.Manifest, e.Message)
}

// Unwrap returns the HTTP error, if Clair answered with one.
func (e *IndexError) Unwrap() error {
	if e.API == nil {
		return nil
	}
	return e.API
}

// Is reports ErrLayerFetch when Clair's message says it could not download or
// verify a layer.
func (e *IndexError) Is(target error) bool {
	return target == ErrLayerFetch && isFetchMessage(e.Message)
}

// fetchMarkers are the fragments of claircore's fetcher errors (0.5.x for
// Clair 4.2, 1.x for later) and of Go's dial errors inside them.
var fetchMarkers = []string{
	"failed to fetch layers",
	"unexpected status code",
	"validation failed",
	"dial tcp",
	"connection refused",
	"no such host",
	"i/o timeout",
	"unsupported protocol scheme",
}

func isFetchMessage(msg string) bool {
	for _, m := range fetchMarkers {
		if strings.Contains(msg, m) {
			return true
		}
	}
	return false
}

// IsLayerFetchError reports whether indexing failed because Clair could not
// download a layer: the advertised address is not reachable from Clair, or
// what it served was refused.
func IsLayerFetchError(err error) bool { return errors.Is(err, ErrLayerFetch) }

// IsUnauthorized reports a 401 from Clair: missing or rejected PSK token.
func IsUnauthorized(err error) bool { return errors.Is(err, ErrUnauthorized) }

// IsNotFound reports a 404 from one of Clair v4's own routes.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// IsWrongAPI reports that the server is not a Clair v4 (see ErrWrongAPI).
func IsWrongAPI(err error) bool { return errors.Is(err, ErrWrongAPI) }

// IsNoVulnerabilityData reports that the matcher never had vulnerability
// data while the caller waited (see ErrNoVulnerabilityData).
func IsNoVulnerabilityData(err error) bool { return errors.Is(err, ErrNoVulnerabilityData) }

// IsUnreachable reports that the request never got an HTTP answer because
// Clair's address could not be resolved or connected to. It is about this
// client reaching Clair, not Clair reaching a layer (IsLayerFetchError).
func IsUnreachable(err error) bool {
	if _, ok := errors.AsType[*net.DNSError](err); ok {
		return true
	}
	op, ok := errors.AsType[*net.OpError](err)
	return ok && op.Op == "dial"
}
