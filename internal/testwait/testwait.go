// Package testwait bounds the waits of tests. A test that waits on a
// channel, a WaitGroup or a connection for something that never happens
// must fail by itself, with a message naming what it waited for, its
// cleanups run and the other tests of the package reported, instead of
// hanging until `go test -timeout` kills the whole binary without a word.
//
// Every wait ends at the test's bound: Limit after it started, and in any
// case shortly before the test binary's deadline (-timeout), whichever is
// first; and when the test's own context (t.Context) ends.
//
// The helpers that fail the test (Recv, Wait) call t.Fatalf, so they must be
// called from the test's goroutine or one of its cleanups. Goroutines a test starts use Context in
// a select instead, and report back on a channel.
//
// For tests only; it imports nothing of the project.
package testwait

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// Limit is the longest a single wait may take. Nothing a unit test waits
// for takes that long, even under the race detector on a loaded machine;
// a test that needs longer (an integration test waiting for Clair) makes
// its own context with an explicit timeout.
const Limit = time.Minute

// margin is how long before the binary's deadline every wait gives up, so
// that the test can still fail, clean up and print its FAIL line.
const margin = 5 * time.Second

// deadliner is what *testing.T has and testing.TB lacks.
type deadliner interface {
	Deadline() (time.Time, bool)
}

// Context returns a context derived from t.Context() that ends at the
// test's wait bound (see the package comment). It is cancelled when the
// test ends. Called from a cleanup, when t.Context() has ended already, it
// ends at the bound only.
func Context(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := bounded(t)
	t.Cleanup(cancel)
	return ctx
}

func bounded(t testing.TB) (context.Context, context.CancelFunc) {
	parent := t.Context()
	if parent.Err() != nil {
		parent = context.WithoutCancel(parent)
	}
	return context.WithDeadline(parent, bound(t))
}

// Deadline returns the instant at which a wait started now must give up:
// for the deadline of a net.Conn, say.
func Deadline(t testing.TB) time.Time {
	return bound(t)
}

func bound(t testing.TB) time.Time {
	end := time.Now().Add(Limit)
	if d, ok := t.(deadliner); ok {
		if dl, ok := d.Deadline(); ok && dl.Add(-margin).Before(end) {
			end = dl.Add(-margin)
		}
	}
	return end
}

// Recv returns the next value received from ch. When none arrives before
// the test's bound, it fails the test with what it was waiting for. A
// closed channel gives its zero value, as a receive does.
func Recv[T any](t testing.TB, ch <-chan T, what string, args ...any) T {
	t.Helper()
	ctx, cancel := bounded(t)
	defer cancel()
	select {
	case v := <-ch:
		return v
	case <-ctx.Done():
		t.Fatalf("gave up waiting for %s: %v", fmt.Sprintf(what, args...), context.Cause(ctx))
	}
	var zero T
	return zero
}

// Wait waits for wg. When it is not done before the test's bound, it fails
// the test with what it was waiting for (the goroutines it waited for are
// left running).
func Wait(t testing.TB, wg *sync.WaitGroup, what string, args ...any) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	Recv(t, done, what, args...)
}
