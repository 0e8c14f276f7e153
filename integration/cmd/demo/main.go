package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
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

const usage = `usage: go run ./cmd/demo --layerbridge PATH [flags] [-- scan flags...]

Starts PostgreSQL and Clair v4 on loopback (building Clair the first time,
which takes minutes), builds the demo image with Docker, and runs
"layerbridge scan --clair URL [scan flags...] IMAGE". Run in the
integration module directory. Ctrl-C stops everything.

flags:
`

type options struct {
	layerbridge string
	feed        string
	context     string
	image       string
	cacheDir    string
	scanArgs    []string
}

func parse(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.layerbridge, "layerbridge", "", "the layerbridge binary to run (required)")
	fs.StringVar(&o.feed, "feed", "testdata/secdb", "Alpine SecDB directory Clair is fed")
	fs.StringVar(&o.context, "context", "testdata/demo-image", "Docker build context of the demo image")
	fs.StringVar(&o.image, "image", "layerbridge-demo:latest", "tag of the demo image")
	fs.StringVar(&o.cacheDir, "cache-dir", "", "where the Clair binary is cached (default ~/.cache/layerbridge-integration)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.scanArgs = fs.Args()
	if o.layerbridge == "" {
		fs.Usage()
		return o, errors.New("--layerbridge is required")
	}
	if _, err := exec.LookPath(o.layerbridge); err != nil {
		return o, fmt.Errorf("--layerbridge %s: not an executable file (build layerbridge first): %w", o.layerbridge, err)
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "demo: error:", err)
		return 2
	}
	log := harness.ProgressLogger(stderr)
	code, err := demo(ctx, o, stdout, stderr, log)
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "demo: interrupted; everything it started is stopped")
		return 130
	}
	if err != nil {
		fmt.Fprintln(stderr, "demo: error:", err)
		return 1
	}
	return code
}

func demo(ctx context.Context, o options, stdout, stderr io.Writer, log *slog.Logger) (code int, err error) {
	docker, err := harness.DockerClient(ctx)
	if err != nil {
		return 0, err
	}
	defer docker.Close()

	start := time.Now()
	stack, err := harness.Start(ctx, harness.Options{FeedDir: o.feed, CacheDir: o.cacheDir, Logger: log})
	if err != nil {
		return 0, err
	}
	defer func() {
		log.Info("stopping clair and postgres")
		if cerr := stack.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	log.Info("harness ready", slog.Duration("took", time.Since(start).Round(time.Millisecond)),
		slog.String("clair", stack.Clair.URL), slog.Duration("clair_build", stack.Timings.ClairBuild.Round(time.Millisecond)),
		slog.Duration("postgres", stack.Timings.Postgres.Round(time.Millisecond)),
		slog.Duration("clair_up", stack.Timings.ClairUp.Round(time.Millisecond)),
		slog.Duration("first_update", stack.Timings.FirstUpdate.Round(time.Millisecond)))

	// The image is labelled as this process's: removed below, or by the
	// next run's RemoveOrphans should this one be killed first.
	if removed, err := harness.RemoveOrphans(ctx, docker); err != nil {
		log.Warn("cannot remove what earlier runs left in docker", slog.Any("err", err))
	} else if len(removed) > 0 {
		log.Info("removed what earlier runs left in docker", slog.Any("removed", removed))
	}
	log.Info("building the demo image", slog.String("image", o.image), slog.String("context", o.context))
	id, err := harness.BuildOwnedImage(ctx, docker, o.context, o.image, stderr)
	defer func() {
		log.Info("removing the demo image", slog.String("image", o.image))
		if rerr := harness.RemoveImage(docker, o.image); rerr != nil && err == nil {
			err = rerr
		}
	}()
	if err != nil {
		return 0, err
	}
	log.Info("demo image built", slog.String("image", o.image), slog.String("id", id))

	args := append([]string{"scan", "--clair", stack.Clair.URL}, o.scanArgs...)
	args = append(args, o.image)
	cmd := exec.CommandContext(ctx, o.layerbridge, args...)
	cmd.Env = append(os.Environ(), "CLAIR_ADDR="+stack.Clair.URL)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, stdout, stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	log.Info("running layerbridge", slog.Any("args", append([]string{o.layerbridge}, args...)))
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &exit) && exit.Exited():
		log.Info("layerbridge exited", slog.Int("status", exit.ExitCode()))
		return exit.ExitCode(), nil
	default:
		return 0, fmt.Errorf("run layerbridge: %w", err)
	}
}
