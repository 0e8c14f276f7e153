package clairv4

import (
	"context"
	"time"
)

// Backoff waits before retry number attempt (1 for the first retry) of a
// request Clair asked to repeat: a vulnerability report answered 202 (no
// vulnerability data yet), an index report still in an intermediate state, or
// a 429 (and, for GET, 502/503/504) answer.
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
// to 10 s between attempts, which suits both a busy indexer and a matcher
// still loading its first vulnerability feed.
func defaultBackoff() Backoff { return ExponentialBackoff(500*time.Millisecond, 10*time.Second) }
