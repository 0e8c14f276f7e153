// Command layerbridge lets Clair scan images that exist only in a local
// Docker daemon. Run "layerbridge help" for usage.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], osEnv(), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
