package scan

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/layerbridge/layerbridge/bridge"
)

// APIMismatchError means Clair speaks the other API generation than the one
// asked for: the cause of the classic "receiving http error: 404".
type APIMismatchError struct {
	URL   string
	Want  string // "v4" or "v2"
	Found string
}

func (e *APIMismatchError) Error() string {
	return fmt.Sprintf("clair at %s speaks the %s API (%s), not %s (%s): a %s client against it gets 404 for every call",
		e.URL, e.Found, apiRoutes(e.Found), e.Want, apiRoutes(e.Want), e.Want)
}

func apiRoutes(api string) string {
	if api == "v2" {
		return "/v1/layers"
	}
	return "/indexer/api/v1, /matcher/api/v1"
}

// NoClairError means nothing at Clair's URL answered like either Clair API.
type NoClairError struct {
	URL string
	Err error // the last probe's error
}

func (e *NoClairError) Error() string {
	return fmt.Sprintf("no clair api at %s: %v", e.URL, e.Err)
}

func (e *NoClairError) Unwrap() error { return e.Err }

// ClairUnreachableError means the connection to Clair itself failed.
type ClairUnreachableError struct {
	URL string
	Err error
}

func (e *ClairUnreachableError) Error() string {
	return fmt.Sprintf("cannot reach clair at %s: %v", e.URL, e.Err)
}

func (e *ClairUnreachableError) Unwrap() error { return e.Err }

// AuthError means Clair requires authentication, or rejected ours.
type AuthError struct {
	URL      string
	Rejected bool // a token was sent and refused
	Err      error
}

func (e *AuthError) Error() string {
	if e.Rejected {
		return fmt.Sprintf("clair at %s rejected the pre-shared-key token (401): %v", e.URL, e.Err)
	}
	return fmt.Sprintf("clair at %s requires authentication (401) and no pre-shared key was given", e.URL)
}

func (e *AuthError) Unwrap() error { return e.Err }

// LayerFetchError means Clair could not download a layer from the bridge.
// Fetches says what the bridge saw: none at all means Clair never reached the
// advertised address.
type LayerFetchError struct {
	Advertised string // the base URL handed to Clair
	Reason     string // why that address was chosen
	Fetches    []bridge.Fetch
	Err        error // Clair's own error
}

func (e *LayerFetchError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "clair could not download the layers from %s", e.Advertised)
	switch n := len(e.Fetches); n {
	case 0:
		b.WriteString(" (no request from clair reached layerbridge)")
	default:
		var bad []string
		for _, f := range e.Fetches {
			switch {
			case f.Status != 200:
				bad = append(bad, fmt.Sprintf("%s answered %d", short(f.Digest.String()), f.Status))
			case errors.Is(f.Err, bridge.ErrInterrupted):
				bad = append(bad, fmt.Sprintf("%s interrupted after %d bytes", short(f.Digest.String()), f.Bytes))
			}
		}
		fmt.Fprintf(&b, " (clair made %d layer request(s)", n)
		if len(bad) > 0 {
			b.WriteString("; " + strings.Join(bad, ", "))
		}
		b.WriteString(")")
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

func (e *LayerFetchError) Unwrap() error { return e.Err }

// NeverReached reports whether no request from Clair arrived at all.
func (e *LayerFetchError) NeverReached() bool { return len(e.Fetches) == 0 }

func short(d string) string {
	if i := strings.IndexByte(d, ':'); i >= 0 && len(d) > i+13 {
		return d[:i+13]
	}
	return d
}

// ErrNoVulnerabilityData is wrapped when Clair 4 never produced a report
// because its vulnerability database is still empty.
var ErrNoVulnerabilityData = errors.New("clair has no vulnerability data yet")

func redact(u *url.URL) string {
	if u == nil {
		return ""
	}
	return u.Redacted()
}
