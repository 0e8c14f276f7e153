// Package integration holds the end-to-end tests of layerbridge: they run
// against the real Docker daemon and a real Clair (built from the Go module
// proxy as a tool dependency of this module), never against fakes.
//
// It is its own Go module so that the product module never depends on Clair.
// A missing Docker daemon or PostgreSQL is a test failure in CI, not a skip.
package integration
