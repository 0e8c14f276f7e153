// Package reach decides how Clair and layerbridge reach each other, both
// ways, logging every decision at debug level:
//
//   - layerbridge to Clair: a host name of Clair's URL that only Docker's
//     embedded DNS knows (http://clair:6060 seen from the host) names a
//     container or network alias of the daemon; Names finds it and an
//     address of it on a network this host has an interface on, and Dialer,
//     the Clair clients' DialContext, dials it (NameError, UnroutableError
//     and ContainerCommand say what to do when that fails).
//   - Clair to layerbridge: which address Clair can download layers from
//     (Advertise: Clair's container found by name, network alias, IP or
//     published port in the daemon's container list, where layerbridge
//     runs relative to it, and which daemon runs it: Docker Desktop's
//     containers reach the host as host.docker.internal, a rootless
//     daemon's at the host's own addresses, not at their gateway), and the
//     listener for it (Listen, AdvertiseListener).
//
// Inputs: Clair's URL and the daemon's running containers (an
// engine.ContainerLister); this host's interfaces, routes and resolver by
// default, each replaceable for tests. Outputs: a Route and a Dialer; an
// Address or an Endpoint (a listener and the base URL to hand Clair), with
// the reason.
//
// It depends on engine for the Docker Engine API's view of containers, and
// on nothing else of this module: it knows addresses, not blobs or Clair's
// API, and bridge, dockersave, store and the Clair clients must not import
// it.
package reach
