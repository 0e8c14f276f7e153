// Command layerbridge lets Clair scan images that exist only in a local
// Docker daemon. Run "layerbridge help" for usage.
package main

import (
	"context"
	"os"
)

func main() {
	ctx, stop := signalContext(context.Background())
	code := run(ctx, os.Args[1:], osEnv(), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
