package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"syscall"
	"testing"
)

// TestSignalExitCodes: the exit code after a signal is decided by the
// signal received, not by its message: 130 for SIGINT, 143 for SIGTERM.
func TestSignalExitCodes(t *testing.T) {
	for _, tt := range []struct {
		sig  syscall.Signal
		code int
		msg  string
	}{
		{syscall.SIGINT, exitInterrupted, "layerbridge: interrupted: interrupt signal received\n"},
		{syscall.SIGTERM, exitTerminated, "layerbridge: interrupted: terminated signal received\n"},
	} {
		ctx, stop := signalContext(t.Context())
		if err := syscall.Kill(os.Getpid(), tt.sig); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
		case <-t.Context().Done():
			t.Fatalf("%v: the context was not cancelled", tt.sig)
		}
		var stderr bytes.Buffer
		if code := exitWith(ctx, errors.New("scan: context canceled"), &stderr); code != tt.code || stderr.String() != tt.msg {
			t.Errorf("%v: exit %d, stderr %q; want %d, %q", tt.sig, code, stderr.String(), tt.code, tt.msg)
		}
		stop()
	}

	// Cancelled without a signal: an interruption all the same, whatever
	// the cause says.
	ctx, stop := signalContext(t.Context())
	stop()
	if code := exitWith(ctx, errors.New("context canceled"), new(bytes.Buffer)); code != exitInterrupted {
		t.Errorf("stopped without a signal: exit %d, want %d", code, exitInterrupted)
	}
	ctx, cancel := context.WithCancelCause(t.Context())
	cancel(errors.New("the worker terminated"))
	if code := exitWith(ctx, errors.New("context canceled"), new(bytes.Buffer)); code != exitInterrupted {
		t.Errorf("cancelled with a cause mentioning \"terminated\": exit %d, want %d", code, exitInterrupted)
	}
}
