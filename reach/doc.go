// Package reach decides how Clair and layerbridge reach each other: which
// address Clair can download layers from (Advertise: Clair's container
// found by name, network alias, IP or published port in the Docker
// daemon's container list, and where layerbridge runs relative to it), and
// opens the listener for it (Listen, AdvertiseListener), logging every
// decision at debug level.
//
// Inputs: Clair's URL and the daemon's running containers (an
// engine.ContainerLister); this host's interfaces, routes and resolver by
// default, each replaceable for tests. Outputs: an Address or an Endpoint
// (a listener and the base URL to hand Clair), with the reason.
//
// It depends on engine for the Docker Engine API's view of containers, and
// on nothing else of this module: it knows addresses, not blobs or Clair's
// API, and bridge, dockersave, store and the Clair clients must not import
// it.
package reach
