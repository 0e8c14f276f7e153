package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/layerbridge/layerbridge/integration/clairv2standin"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "clairv2standin:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("clairv2standin", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:6064", "address to listen on")
	feed := fs.String("feed", "", "Alpine SecDB directory with vX.Y/main.yaml files (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *feed == "" {
		return errors.New("--feed is required")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	h, err := clairv2standin.New(os.DirFS(*feed), clairv2standin.WithLogger(log))
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	log.Info("clair v2 stand-in listening", slog.String("url", "http://"+l.Addr().String()), slog.String("feed", *feed))
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
