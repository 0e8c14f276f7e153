package scan

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/layerbridge/layerbridge/clairv2"
	"github.com/layerbridge/layerbridge/clairv4"
)

// Clair is one Clair server: its address, the API to speak to it, and the
// clients of both API generations, built once (NewClair) with the HTTP
// client, credentials and logger that every request to it uses. A scan,
// the sidecar's readiness probe and doctor's checks all take it as it is.
// It is safe for concurrent use.
type Clair struct {
	// URL is Clair's address as the user gave it: messages and reports
	// name it.
	URL *url.URL
	// API is APIAuto ("" too), APIv4 or APIv2: which API to expect;
	// DetectAPI checks it.
	API string
	V4  *clairv4.Client
	V2  *clairv2.Client
}

// ClairOptions configure the clients NewClair builds. Every field is
// optional.
type ClairOptions struct {
	// HTTPClient makes every request to Clair (its Transport decides how
	// Clair's host is dialed); nil is a client without timeout on
	// http.DefaultTransport.
	HTTPClient *http.Client
	// PSK is Clair 4's auth.psk.key (base64) and PSKIssuer the issuer of
	// the tokens signed with it; "" sends no token.
	PSK, PSKIssuer string
	// Logger logs every request at debug level; nil discards.
	Logger *slog.Logger
	// Backoff overrides the clients' wait between retries and polls (tests).
	Backoff func(ctx context.Context, attempt int) error
}

// NewClair builds the clients of both API generations for the Clair at u,
// expecting api (APIAuto, APIv4 or APIv2). It never fails: a bad URL or
// key is reported by the first request (DetectAPI).
func NewClair(u *url.URL, api string, o ClairOptions) Clair {
	hc := o.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	o4 := []clairv4.Option{clairv4.WithHTTPClient(hc), clairv4.WithLogger(o.Logger)}
	o2 := []clairv2.Option{clairv2.WithHTTPClient(hc), clairv2.WithLogger(o.Logger)}
	if o.PSK != "" {
		o4 = append(o4, clairv4.WithPSK(o.PSK, o.PSKIssuer))
	}
	if o.Backoff != nil {
		o4 = append(o4, clairv4.WithBackoff(clairv4.Backoff(o.Backoff)))
		o2 = append(o2, clairv2.WithBackoff(clairv2.Backoff(o.Backoff)))
	}
	return Clair{URL: u, API: api, V4: clairv4.New(u, o4...), V2: clairv2.New(u, o2...)}
}

// check says what a Clair built by hand lacks.
func (c Clair) check() error {
	if c.URL == nil || c.V4 == nil || c.V2 == nil {
		return errors.New("clair's URL and clients are required (see NewClair)")
	}
	return nil
}
