package clairv2

import (
	"context"
	"time"
)

// Backoff waits before retry number attempt (1 for the first retry) of a GET
// that Clair (or a proxy in front of it) answered 429, 502, 503 or 504.
// POST /v1/layers is never repeated: Clair may still be processing it.
//
// It must return promptly with a non-nil error (normally ctx.Err()) once ctx
// is done: the client stops retrying when Backoff returns an error, and never
// sleeps on its own. Tests inject a Backoff that returns nil at once.
type Backoff func(ctx context.Context, attempt int) error

// ExponentialBackoff waits first, then twice as long at every attempt, never
// longer than most. It returns ctx.Err() as soon as ctx is done, without
// waiting.
func ExponentialBackoff(first, most time.Duration) Backoff {
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

// defaultBackoff is what New uses without WithBackoff: 0.5 s, 1 s, 2 s … up
// to 10 s between attempts.
func defaultBackoff() Backoff { return ExponentialBackoff(500*time.Millisecond, 10*time.Second) }
