// Package bridge is the HTTP side of layerbridge: it serves the blobs that a
// scan registered, under an unguessable per-scan capability path, so that
// Clair can download exactly the bytes whose digests it was given; and it
// decides which address Clair can reach it on (Advertise).
//
// With WithRegistry it also offers a read-only OCI distribution view of the
// images a Catalog names, guarded by a Token (or, without one, open to
// loopback clients only), so that unmodified registry clients can pull them.
//
// Inputs: each scan's blobs and the blobs.Opener they are read with (the
// image's: the store, for images loaded into it), a Catalog for the
// registry view and, for address detection, a ContainerLister (the Docker
// daemon's view of containers).
// Output: an http.Handler, and NewHTTPServer, the one http.Server
// configuration (timeouts, body limits) of every layerbridge listener; the
// caller runs the server.
//
// bridge reads blobs but knows nothing of Clair's APIs or of where images
// come from: it must not import clairv2, clairv4, report, dockersave or
// store.
package bridge
