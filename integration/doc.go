// Package integration holds the end-to-end tests of layerbridge: they run
// against the real Docker daemon and a real Clair (built from the Go module
// proxy as a tool of the module integration/engines/clair), never against
// fakes.
//
// It is its own Go module so that the product module never depends on Clair,
// and Clair is built from a module of its own so that its dependency graph
// never follows the product's (containerd's client requires an otelhttp
// Clair 4.9 does not build with).
// A missing Docker daemon or PostgreSQL is a test failure in CI, not a skip.
package integration
