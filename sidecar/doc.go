// Package sidecar is layerbridge's long-running scan service: an HTTP API
// that accepts scan requests for images of the local Docker daemon, runs
// each with scan.Run on one shared layer server, and keeps the results for
// a while. It mounts on the bridge's router, so the API, the per-scan layer
// URLs handed to Clair, the registry view (over a Catalog of the store), and
// /healthz, /readyz and /metrics all share one listener.
//
// Inputs: a Config (the loader, the store's catalog and cache, the Clair
// to ask with its clients built by the caller, the access token, limits). Outputs: an http.Handler (Service.Handler), Prometheus
// metrics, and, for `layerbridge scan --server`, a Client of the same API.
//
// Scans are driven by scan.Run only: this package never calls Clair's
// indexer or matcher itself. It asks Clair which API it speaks
// (scan.DetectAPI) once, and for readiness, and keeps the answer for its
// scans; it reads the clairv4 and clairv2 errors only to tell when Clair
// was replaced by one of the other API generation.
//
// It must not import cmd/layerbridge or pflag, read flags or the
// environment; bridge, dockersave, store and report must never import it
// (internal/layering enforces both).
package sidecar
