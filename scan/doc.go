// Package scan runs one scan end to end, in the order of the design's
// diagram: find which Clair API answers, load the image into the store,
// start the layer server on an address Clair can reach, register the image's
// layers, submit them to Clair, fetch the vulnerability report, and stop.
//
// It is the only package that knows all of dockersave, bridge, clairv4,
// clairv2 and report; the CLI and the sidecar call it. It takes its inputs
// as values and options: no flags, no environment.
package scan
