// Package bridge is the HTTP side of layerbridge: it serves the blobs that a
// scan registered, under an unguessable per-scan capability path, so that
// Clair can download exactly the bytes whose digests it was given. Which
// address Clair reaches it on is package reach's decision.
//
// With WithRegistry it also offers a read-only OCI distribution view of the
// images a Catalog names, guarded by a Token (or, without one, open to
// loopback clients only), so that unmodified registry clients can pull them.
//
// Inputs: each scan's blobs and the blobs.Opener they are read with (the
// image's: the store, for images loaded into it) and a Catalog for the
// registry view.
// Output: an http.Handler, and NewHTTPServer, the one http.Server
// configuration (timeouts, body limits) of every layerbridge listener; the
// caller runs the server.
//
// bridge reads blobs but knows nothing of Clair's APIs or of where images
// come from: it must not import clairv2, clairv4, report, dockersave,
// store, engine or reach.
package bridge
