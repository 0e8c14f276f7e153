// Package scan runs one scan end to end: find which Clair API answers
// (unless the caller knows), load the image (with its release: its blobs
// stay available until Clair is done), register the image's layers with
// its own blob opener on the caller's layer server (the caller owns the
// listener and the http.Server, and says at which URL Clair reaches it),
// submit them to Clair, fetch the vulnerability report, revoke the layers'
// URLs and release the image. README's Development section draws the
// packages and this flow.
//
// The load is watched (submit.go, a dockersave.Watcher): once inspect has
// identified the image, Clair is asked whether it has indexed it already
// (Clair 4 by the digest it indexes the image under, Clair 2 by its top
// layer's name), and if so the load stops with ErrAlreadyIndexed and the
// report is read without an export. Otherwise the layers are registered
// and submitted as soon as the load knows them; each is served once the
// load has read and verified it, so that Clair indexes while the export
// goes on. A load that fails cancels the submission. Result.Timings tells
// the stages as they overlapped.
//
// Clair is one value (Clair, built once by NewClair with the HTTP client,
// credentials and logger of every request to it): the command builds it
// where it reads the flags, and the sidecar and doctor take it as given.
//
// It is the only package that knows all of dockersave, bridge, clairv4,
// clairv2 and report; the CLI, the sidecar and doctor call it. It takes its
// inputs as values and options: no flags, no environment.
package scan
