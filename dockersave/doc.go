// Package dockersave gets an image's exact layers out of a local Docker daemon
// (or out of an archive or OCI layout the user already has) into a verified,
// content-addressed OCI image layout on disk: the store (package store).
//
// Inputs: an image reference (see imageref.Parse: a daemon image, docker-archive:PATH,
// oci-archive:PATH or oci:DIR; a daemon reference outside the reference grammar
// is refused before any Engine API call), an optional platform, a Store directory and,
// for daemon references only, an engine.Client. Output: an Image describing what
// was stored (image ID, platform, manifest digest, layer descriptors and diff
// IDs), whose blobs can then be opened with the store's OpenBlob.
//
// Every source goes through one streaming archive reader: each blob is hashed
// while it is written to a staging file inside the store, verified against its
// name and the image config's rootfs.diff_ids, and only then renamed into
// blobs/sha256/. An image already stored for the same (image ID, platform) is
// not exported again.
//
// It must not import the Clair clients (clairv4, clairv2), bridge, report or
// cmd/layerbridge, nor read flags or the environment itself: callers pass
// getenv, directories and options.
package dockersave
