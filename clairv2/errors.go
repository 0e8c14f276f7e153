package clairv2

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/layerbridge/layerbridge/internal/clairhttp"
)

// Values to test with errors.Is. They are never returned bare: an *APIError
// or a wrapped error matches them.
var (
	// ErrLayerFetch: Clair answered 400 "could not find layer" to
	// POST /v1/layers: it could not download the layer from Path (address
	// unreachable from Clair, non-2xx answer, or a path it cannot open). Clair
	// v2 says nothing more precise.
	ErrLayerFetch = errors.New("clair could not fetch the layer")

	// ErrParentUnknown: Clair answered 400 "worker: parent layer is unknown,
	// it must be processed first": ParentName names a layer Clair does not
	// have. Post layers in order, oldest first.
	ErrParentUnknown = errors.New("clair does not know the parent layer")

	// ErrUnsupportedLayer: Clair answered 422: the layer is not a tar in a
	// compression it reads (gzip, bzip2, xz or none; zstd is not supported),
	// a file is too big, or it holds packages of an OS Clair v2 cannot
	// identify.
	ErrUnsupportedLayer = errors.New("clair cannot process the layer")

	// ErrNotFound: Clair answered 404 from one of its own routes (unknown
	// layer or namespace). It never matches the wrong-API 404.
	ErrNotFound = errors.New("not found in clair")

	// ErrWrongAPI: the server has no such route, answering Go's bare
	// "404 page not found" (as Clair v4 does for /v1/...): the URL points at
	// a Clair v4 (or something else), not at a Clair v2.
	ErrWrongAPI = errors.New("not the clair v2 api")

	// ErrUnauthorized: the server answered 401. Clair v2 has no
	// authentication: this comes from a proxy in front of it, or from a Clair
	// v4 configured with a pre-shared key (which checks tokens before routes).
	ErrUnauthorized = errors.New("the server rejected the request's credentials")
)

// APIError is a request Clair answered with an unexpected status. Every
// non-2xx answer becomes one, so errors.As(err, &apiErr) gives the status and
// Clair's message whichever operation failed.
type APIError struct {
	Method     string // request method
	URL        string // request URL, password redacted
	StatusCode int    // HTTP status
	Message    string // Clair's Error.Message, or the start of a plain-text body; "" if neither
	Type       string // Clair's Error.Type ("Timeout" for api.timeout), usually ""
	Body       []byte // the raw body, at most 64 KiB

	wrongAPI bool
}

// Error reads "clair answered 400 Bad Request to POST <url>: <message>".
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "clair answered %d %s to %s %s", e.StatusCode, http.StatusText(e.StatusCode), e.Method, e.URL)
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// Is reports whether e is one of the package's error values.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrLayerFetch:
		return e.StatusCode == http.StatusBadRequest && strings.Contains(e.Message, "could not find layer")
	case ErrParentUnknown:
		return e.StatusCode == http.StatusBadRequest && strings.Contains(e.Message, "parent layer is unknown")
	case ErrUnsupportedLayer:
		return e.StatusCode == http.StatusUnprocessableEntity
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound && !e.wrongAPI
	case ErrWrongAPI:
		return e.wrongAPI
	case ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized
	}
	return false
}

// newAPIError builds the error for an answer with an unexpected status,
// reading Clair's {"Error":{"Message","Type"}} body when there is one.
func newAPIError(method, redactedURL string, r *response) *APIError {
	e := &APIError{Method: method, URL: redactedURL, StatusCode: r.Status}
	e.Body = r.Body
	e.Body = clairhttp.CapBody(e.Body)
	var env wireErrorEnvelope
	if json.Unmarshal(r.Body, &env) == nil && env.Error != nil {
		e.Message, e.Type = env.Error.Message, env.Error.Type
	} else {
		e.Message = clairhttp.PlainMessage(r.Header.Get("Content-Type"), r.Body)
	}
	e.wrongAPI = r.Status == http.StatusNotFound && clairhttp.IsBareNotFound(r.Header.Get("Content-Type"), r.Body)
	return e
}

// IsLayerFetchError reports that Clair could not download a layer (see
// ErrLayerFetch): typically the advertised address is not reachable from
// Clair.
func IsLayerFetchError(err error) bool { return errors.Is(err, ErrLayerFetch) }

// IsParentUnknown reports ErrParentUnknown.
func IsParentUnknown(err error) bool { return errors.Is(err, ErrParentUnknown) }

// IsUnsupportedLayer reports a 422 (see ErrUnsupportedLayer).
func IsUnsupportedLayer(err error) bool { return errors.Is(err, ErrUnsupportedLayer) }

// IsNotFound reports a 404 from one of Clair v2's own routes.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// IsWrongAPI reports that the server is not a Clair v2 (see ErrWrongAPI).
func IsWrongAPI(err error) bool { return errors.Is(err, ErrWrongAPI) }

// IsUnauthorized reports a 401 (see ErrUnauthorized).
func IsUnauthorized(err error) bool { return errors.Is(err, ErrUnauthorized) }

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
