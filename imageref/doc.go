// Package imageref parses image references as users write them, in one
// place: on the command line, in a scan request to the sidecar and in an
// ignore file.
//
// A reference is a transport prefix (docker-daemon:, docker-archive:,
// oci-archive:, oci:, containerd:; none means the Docker daemon) and what
// follows it: a file or directory path for the file transports, and for the
// daemon and containerd a reference in the grammar of
// github.com/distribution/reference (a normalized name with an optional tag
// and digest) or an image ID. Parse
// refuses anything else, naming the rule it breaks, so that no daemon
// reference that could leave its place in an Engine API path ("..", "/",
// "?", "#", "%") reaches a Docker client. Ref.ImageName gives the
// normalized name a report carries.
//
// It imports nothing of this module: dockersave, report, sidecar and the
// command all depend on it.
package imageref
