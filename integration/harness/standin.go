package harness

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"

	"github.com/layerbridge/layerbridge/integration/clairv2standin"
)

// Standin is the Clair v2.1.7 stand-in (package clairv2standin) served on
// loopback.
type Standin struct {
	// URL is the base URL, without a trailing slash: /v1/layers, ...
	URL string

	srv *loopbackServer
}

// StartStandin serves a Clair v2 stand-in fed the Alpine SecDB directory
// feedDir until Close or the end of ctx. log may be nil.
func StartStandin(ctx context.Context, feedDir string, log *slog.Logger) (*Standin, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h, err := clairv2standin.New(os.DirFS(feedDir), clairv2standin.WithLogger(log))
	if err != nil {
		return nil, fmt.Errorf("start clair v2 stand-in: %w", err)
	}
	srv, err := serveLoopback(ctx, h)
	if err != nil {
		return nil, fmt.Errorf("start clair v2 stand-in: %w", err)
	}
	return &Standin{URL: srv.url, srv: srv}, nil
}

// Reference is ReferenceV2 against this stand-in.
func (s *Standin) Reference(ctx context.Context, layers []Layer) ([]Finding, error) {
	return ReferenceV2(ctx, http.DefaultClient, s.URL, layers)
}

// Close stops serving.
func (s *Standin) Close() error { return s.srv.close() }
