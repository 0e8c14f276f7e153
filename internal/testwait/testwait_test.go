package testwait

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRecv(t *testing.T) {
	ch := make(chan int, 1)
	ch <- 7
	if got := Recv(t, ch, "a value"); got != 7 {
		t.Errorf("Recv = %d, want 7", got)
	}
	close(ch)
	if got := Recv(t, ch, "the close"); got != 0 {
		t.Errorf("Recv on a closed channel = %d, want 0", got)
	}
	var wg sync.WaitGroup
	wg.Go(func() {})
	Wait(t, &wg, "one goroutine")
}

// fakeT records how a wait ended; its deadline is the binary's.
type fakeT struct {
	testing.TB
	deadline time.Time
	failed   string
}

func (f *fakeT) Deadline() (time.Time, bool) { return f.deadline, true }

func TestBoundBeforeTheBinarysDeadline(t *testing.T) {
	dl := time.Now().Add(margin + time.Second)
	got := bound(&fakeT{TB: t, deadline: dl})
	if want := dl.Add(-margin); !got.Equal(want) {
		t.Errorf("bound = %s, want %s: a margin before the binary's deadline", got, want)
	}
	far := time.Now().Add(time.Hour)
	if got := bound(&fakeT{TB: t, deadline: far}); !got.Before(time.Now().Add(Limit + time.Second)) {
		t.Errorf("bound = %s with a deadline an hour away, want at most Limit from now", got)
	}
}

func (f *fakeT) Helper() {}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// A wait for something that never comes fails the test that waited, naming
// what it waited for, once the bound is reached.
func TestRecvGivesUp(t *testing.T) {
	f := &fakeT{TB: t, deadline: time.Now().Add(margin + 10*time.Millisecond)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Recv(f, make(chan int), "the %s", "answer")
	}()
	select {
	case <-done:
	case <-time.After(Limit):
		t.Fatal("Recv did not give up at its bound")
	}
	if !strings.Contains(f.failed, "gave up waiting for the answer") {
		t.Errorf("failure = %q", f.failed)
	}
}

// A cleanup runs after t.Context() has ended: its waits are still bounded,
// not failed at once.
func TestRecvInCleanup(t *testing.T) {
	ch := make(chan int)
	go func() { ch <- 1 }()
	t.Cleanup(func() {
		if got := Recv(t, ch, "a value in a cleanup"); got != 1 {
			t.Errorf("Recv = %d", got)
		}
	})
}
