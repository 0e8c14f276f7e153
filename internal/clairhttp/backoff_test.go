package clairhttp

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

func TestExponential(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := Exponential(500*time.Millisecond, 10*time.Second)
		for attempt, want := range map[int]time.Duration{
			1: 500 * time.Millisecond, 2: time.Second, 3: 2 * time.Second, 5: 8 * time.Second,
			6: 10 * time.Second, 40: 10 * time.Second, 0: 10 * time.Second,
		} {
			start := time.Now()
			if err := b(t.Context(), attempt); err != nil {
				t.Fatal(err)
			}
			if got := time.Since(start); got != want {
				t.Errorf("attempt %d waited %v, want %v", attempt, got, want)
			}
		}
	})
}

func TestExponentialBackoffStopsWithContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := Exponential(time.Minute, time.Hour)
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		start := time.Now()
		err := b(ctx, 1)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v", err)
		}
		if got := time.Since(start); got != 3*time.Second {
			t.Errorf("returned after %v, want at the deadline", got)
		}
		if err := b(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("done context: err = %v", err)
		}
	})
}
