// Package doctor runs the checks that find why a local scan would fail, and
// returns one structured Result per check: what was found (the evidence),
// whether it passed, and the fix. Its one job is diagnosis: it prints
// nothing, reads no flags and no environment variables (the caller passes
// the Docker endpoint, the cache directory, the Clair to check with the
// clients a scan would use, and the addresses),
// and it never changes the user's setup.
//
// The checks run in order, each group using what the previous one learned:
// Docker (endpoint and why, reachable, socket permission, API version,
// storage driver, the image and its platforms), the store (cache directory
// writable, free space against the image's size), Clair (reachable, which
// API and version, authentication, vulnerability data), and reachability:
// a tiny canary layer with a fresh digest is served on the advertised
// address exactly as a scan serves layers, Clair is asked to index it, and
// the layer server reports whether Clair's download arrived.
//
// It builds on engine, dockersave, bridge, clairv4, clairv2 and scan. It
// must not import cmd/layerbridge, pflag or report's renderers.
package doctor
