// Package fakeengine is a stand-in Docker Engine API for tests: an HTTP
// server on a unix socket, reached with the real Docker client through
// DOCKER_HOST or --docker-host, that records every request it gets, so a
// test can assert exactly which Engine API calls were made (and that none
// was).
//
// It is test code that lives outside _test files so that the tests of
// dockersave, sidecar and cmd/layerbridge can share it; product code must
// not import it.
package fakeengine
