// Package scan runs one scan end to end: find which Clair API answers, load
// the image (with its release: its blobs stay available until Clair is
// done), start the layer server on an address Clair can reach or use the
// caller's, register the image's layers there with the image's own blob
// opener, submit them to Clair, fetch the vulnerability report, release the
// image and stop. README's Development section draws the packages and this
// flow.
//
// Clair is one value (Clair, built once by NewClair with the HTTP client,
// credentials and logger of every request to it): the command builds it
// where it reads the flags, and the sidecar and doctor take it as given.
//
// It is the only package that knows all of dockersave, bridge, clairv4,
// clairv2 and report; the CLI, the sidecar and doctor call it. It takes its
// inputs as values and options: no flags, no environment.
package scan
