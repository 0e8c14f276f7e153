package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/layerbridge/layerbridge/imageref"
	"github.com/layerbridge/layerbridge/internal/didyoumean"
)

// Exit codes, the one table that README and --help repeat.
const (
	exitOK          = 0   // success; for scan: no finding at or above --fail-on
	exitError       = 1   // the command failed
	exitUsage       = 2   // bad flags or arguments
	exitFindings    = 3   // scan: a finding at or above --fail-on
	exitInterrupted = 130 // interrupted (SIGINT)
	exitTerminated  = 143 // interrupted by SIGTERM
)

// signalContext is signal.NotifyContext for SIGINT and SIGTERM, but the
// context's cause is a *signalError holding the signal received, so that
// exitWith tells the two apart by value (NotifyContext's cause is only a
// message). Call stop when done.
func signalContext(parent context.Context) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(parent)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-ch:
			cancel(&signalError{sig: sig})
		case <-done:
		}
	}()
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			signal.Stop(ch)
			close(done)
			cancel(context.Canceled)
		})
	}
}

// signalError is the cause of a cancellation by a signal.
type signalError struct{ sig os.Signal }

// Error reads as NotifyContext's cause does: "terminated signal received".
func (e *signalError) Error() string { return e.sig.String() + " signal received" }

// Is makes the cause a context.Canceled, as NotifyContext's is.
func (e *signalError) Is(target error) bool { return target == context.Canceled }

// interruptedCode is the exit code after an interruption whose cause is
// cause: 143 for SIGTERM, else 130 (SIGINT, or a cancellation by the
// caller), 128 plus the signal's number as shells report it.
func interruptedCode(cause error) int {
	var se *signalError
	if errors.As(cause, &se) && se.sig == syscall.SIGTERM {
		return exitTerminated
	}
	return exitInterrupted
}

// env is the process environment as the commands see it; tests replace it.
type env struct {
	getenv func(string) string
	home   string
	isTTY  func(w any) bool
	// inContainer reports whether this process runs in a container, where
	// loopback may be the container's own.
	inContainer func() bool
}

func osEnv() env {
	home, _ := os.UserHomeDir()
	return env{getenv: os.Getenv, home: home, isTTY: isTerminal, inContainer: runningInContainer}
}

// runningInContainer looks for the marker files Docker (/.dockerenv) and
// Podman (/run/.containerenv) put in every container they start. They say
// how the file system came to be, not which network this process is on:
// with --network host, in a pod, or with Clair started in the same
// container, loopback is Clair's too. So it is never used alone: only a
// loopback Clair that does not answer is blamed on the container.
func runningInContainer() bool {
	for _, f := range []string{"/.dockerenv", "/run/.containerenv"} {
		if _, err := os.Stat(f); err == nil {
			return true
		}
	}
	return false
}

// command is one subcommand: its name, one line of help, and its entry point.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, name string, args []string, e env, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"scan", "export a local image, serve its layers to Clair and report its vulnerabilities", runScan},
		{"inspect", "export a local image into the cache and print its layers", runInspect},
		{"serve", "run as a sidecar: a scan API, the layer server and a registry view on one listener", runServe},
		{"doctor", "find why a scan would fail: Docker, cache, Clair, and whether Clair can reach layerbridge", runDoctor},
		{"version", "print the version", runVersion},
	}
}

const usageHeader = `layerbridge lets Clair scan images that exist only in a local Docker daemon or in
containerd.

Usage:
    layerbridge <command> [flags] [arguments]

Commands:
`

const usageFooter = `
Run "layerbridge <command> --help" for a command's flags.

Exit codes:
    0    success (scan: no finding at or above --fail-on)
    1    the command failed
    2    bad flags or arguments
    3    scan: a finding at or above --fail-on
    130  interrupted (143 on SIGTERM)
`

func usage() string {
	var b strings.Builder
	b.WriteString(usageHeader)
	for _, c := range commands() {
		fmt.Fprintf(&b, "    %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(&b, "    %-9s %s\n", "help", "show this help, or a command's")
	b.WriteString(usageFooter)
	return b.String()
}

// run routes args to a command and turns its error into an exit code and a
// message on stderr. It is the whole program but for signal handling.
func run(ctx context.Context, args []string, e env, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		io.WriteString(stderr, usage())
		return exitUsage
	}
	name, rest := args[0], args[1:]
	switch name {
	case "help", "-h", "--help":
		if len(rest) > 0 {
			return run(ctx, []string{rest[0], "--help"}, e, stdout, stderr)
		}
		io.WriteString(stdout, usage())
		return exitOK
	case "--version":
		name = "version"
	}
	for _, c := range commands() {
		if c.name == name {
			return exitWith(ctx, c.run(ctx, "layerbridge "+name, rest, e, stdout, stderr), stderr)
		}
	}
	err := usageErrorf("unknown command %q", name)
	if near := nearest(name); near != "" {
		err.hints = append(err.hints, fmt.Sprintf("did you mean %q?", near))
	}
	err.hints = append(err.hints, `run "layerbridge help" for the list of commands`)
	return exitWith(ctx, err, stderr)
}

// exitWith prints err in the program's format and returns its exit code.
//
//	layerbridge: error: <what failed>
//	layerbridge: hint: <what to do next>
func exitWith(ctx context.Context, err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	if errors.Is(err, pflag.ErrHelp) {
		return exitOK
	}
	var fe *findingsError
	if errors.As(err, &fe) {
		fmt.Fprintf(stderr, "layerbridge: %s\n", fe.Error())
		return exitFindings
	}
	if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
		fmt.Fprintf(stderr, "layerbridge: interrupted: %v\n", cause)
		return interruptedCode(cause)
	}
	fmt.Fprintf(stderr, "layerbridge: error: %v\n", err)
	for _, h := range hintsFor(err) {
		fmt.Fprintf(stderr, "layerbridge: hint: %s\n", h)
	}
	if isUsage(err) {
		return exitUsage
	}
	return exitError
}

// isUsage reports whether err is a mistake in the command line (exit 2):
// a usageError, or an IMAGE that is no image reference.
func isUsage(err error) bool {
	var (
		ue     *usageError
		badRef *imageref.Error
	)
	return errors.As(err, &ue) || errors.As(err, &badRef)
}

// usageError is a mistake in the command line: exit code 2.
type usageError struct {
	msg   string
	hints []string
}

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) *usageError {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// findingsError reports that a scan found vulnerabilities at or above the
// --fail-on threshold: exit code 3, not a failure of the tool.
type findingsError struct {
	count     int
	threshold string
}

func (e *findingsError) Error() string {
	return fmt.Sprintf("%d finding(s) at or above %s (--fail-on)", e.count, e.threshold)
}

// nearest returns the command name closest to s, or "" when none is close.
func nearest(s string) string {
	var names []string
	for _, c := range append(commands(), command{name: "help"}) {
		names = append(names, c.name)
	}
	if near := didyoumean.Closest(s, names); len(near) > 0 {
		return near[0]
	}
	return ""
}
