// Command clair is what `make clair` runs: it starts the demo's services
// with the harness (PostgreSQL, the SecDB feed, Clair v4 built from the Go
// module proxy, all on loopback), prints the line that points layerbridge
// at that Clair, and keeps them running until it is interrupted (Ctrl-C)
// or terminated (SIGTERM), then stops them and removes their files. Run it
// from the integration module directory:
//
//	go build -o ../bin/clair-stack ./cmd/clair && ../bin/clair-stack
//
// Stdout holds the instructions, among them exactly one line
//
//	export CLAIR_ADDR=http://127.0.0.1:PORT
//
// and progress goes to stderr. Exit status: 0 once stopped by a signal, 1
// when the services could not start or one of them died, 2 for a usage
// error. Run it as a program, not with `go run`: go run does not pass
// SIGTERM on, and what it started would outlive it until the kernel's
// parent-death signal. Should it be killed outright, its services die with
// it, and the next run removes their directories (the harness's owner
// rule).
//
// Like cmd/demo it uses the harness only; it must not import layerbridge's
// product packages.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/layerbridge/layerbridge/integration/harness"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: clair-stack [flags]

Starts PostgreSQL, an Alpine SecDB feed and Clair v4 on loopback (building
Clair the first time, which takes minutes), prints the CLAIR_ADDR to export
for layerbridge, and keeps them running until Ctrl-C or SIGTERM. Run in the
integration module directory.

flags:
`

type options struct {
	feed     string
	cacheDir string
}

func parse(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("clair-stack", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.feed, "feed", "testdata/secdb", "Alpine SecDB directory Clair is fed")
	fs.StringVar(&o.cacheDir, "cache-dir", "", "where the Clair binary is cached (default ~/.cache/layerbridge-integration)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "clair-stack: error:", err)
		return 2
	}
	if err := serve(ctx, o, stdout, harness.ProgressLogger(stderr)); err != nil {
		fmt.Fprintln(stderr, "clair-stack: error:", err)
		return 1
	}
	fmt.Fprintln(stderr, "clair-stack: stopped; Clair, PostgreSQL and the feed are gone, and their files removed")
	return 0
}

// serve starts the stack, says how to use it, and keeps it until ctx ends
// (nil error) or a service dies (an error).
func serve(ctx context.Context, o options, stdout io.Writer, log *slog.Logger) (err error) {
	start := time.Now()
	stack, err := harness.Start(ctx, harness.Options{FeedDir: o.feed, CacheDir: o.cacheDir, Logger: log})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer func() {
		log.Info("stopping clair, the feed and postgres")
		if cerr := stack.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	log.Info("clair ready", slog.String("url", stack.Clair.URL), slog.Duration("took", time.Since(start).Round(time.Millisecond)),
		slog.String("log", stack.Clair.LogPath))
	fmt.Fprintf(stdout, `
Clair 4.9 runs at %[1]s, with PostgreSQL and the Alpine SecDB feed of %[2]s on loopback.
It knows only the advisories in that feed (the demo's: a few for Alpine packages). In another shell:

export CLAIR_ADDR=%[1]s

    bin/layerbridge scan IMAGE

Ctrl-C here (or SIGTERM) stops Clair, PostgreSQL and the feed and removes their files.
`, stack.Clair.URL, o.feed)
	select {
	case <-ctx.Done():
		log.Info("interrupted", slog.Any("signal", context.Cause(ctx)))
		return nil
	case <-stack.Done():
		if ctx.Err() != nil { // the signal stopped them first
			log.Info("interrupted", slog.Any("signal", context.Cause(ctx)))
			return nil
		}
		return fmt.Errorf("clair or postgres exited on its own; clair's log:\n%s", stack.Clair.LogTail(8<<10))
	}
}
