// Command demo is what `make demo` runs: it starts the harness (PostgreSQL,
// the project's SecDB feed, Clair v4 built from the Go module proxy), builds
// the demo image from testdata/demo-image in the local Docker daemon, scans
// it with the layerbridge binary it is given, as a user would:
//
//	layerbridge scan --clair <clair URL> layerbridge-demo:latest
//
// with layerbridge's output passed through, then removes the image and
// stops everything it started, also on Ctrl-C (an image left by a run that
// was killed is removed by the next run). Run it from the integration module directory:
//
//	go run ./cmd/demo --layerbridge ../bin/layerbridge
//
// Its exit status is layerbridge's; 2 for a usage error, 1 when the demo
// itself failed, 130 when interrupted. Progress goes to stderr, so stdout is
// exactly layerbridge's.
//
// It uses the harness and the Docker Engine API client; it must not import
// layerbridge's product packages: it runs the layerbridge binary as a user
// would.
package main
