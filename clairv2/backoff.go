package clairv2

import (
	"time"

	"github.com/layerbridge/layerbridge/internal/clairhttp"
)

// Backoff waits before retry number attempt (1 for the first retry) of a GET
// that Clair (or a proxy in front of it) answered 429, 502, 503 or 504.
// POST /v1/layers is never repeated: Clair may still be processing it.
//
// It must return promptly with a non-nil error (normally ctx.Err()) once ctx
// is done: the client stops retrying when Backoff returns an error, and never
// sleeps on its own. Tests inject a Backoff that returns nil at once.
type Backoff = clairhttp.Backoff

// ExponentialBackoff waits first, then twice as long at every attempt, never
// longer than most. It returns ctx.Err() as soon as ctx is done, without
// waiting.
func ExponentialBackoff(first, most time.Duration) Backoff {
	return clairhttp.Exponential(first, most)
}

// defaultBackoff is what New uses without WithBackoff: 0.5 s, 1 s, 2 s … up
// to 10 s between attempts.
func defaultBackoff() Backoff { return clairhttp.DefaultBackoff() }
