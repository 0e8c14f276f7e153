// Package dockersave turns an image source into a verified image: it gets
// an image's exact layers out of a local Docker daemon (or out of an archive
// or OCI layout the user already has), checks every byte against the
// digests that name it (verify.go lists the rules), and returns an Image
// describing it (image ID, platform, manifest, layer descriptors and diff
// IDs) with what opens its blobs.
//
// Sources. A Loader reads each reference (see imageref.Parse: a daemon
// image, docker-archive:PATH, oci-archive:PATH or oci:DIR; a daemon
// reference outside the reference grammar is refused before any Engine API
// call) with the Source registered for its kind: the built-in ones read
// daemon images (through the engine package's client), archive files and
// layouts, each through one streaming archive reader that hashes every blob
// while it writes it to a staging file of the store, so they keep their
// images in the store (package store), pinned until the caller releases
// them. WithSource adds a kind (a containerd: source, say) or replaces a
// built-in one; such a source returns images it verified with the same
// rules (Measure, Verify) and may serve their blobs from wherever it keeps
// them (Image.Blobs).
//
// Why Image lives here and not in store: an Image is what a Source returns,
// whether or not it was stored (a source may keep its blobs elsewhere), and
// it says where it came from (SourceKind). The store records images as
// store.Record and knows nothing of sources, so dependencies point one way:
// dockersave uses store, never the reverse.
//
// Inputs: a reference, an optional platform, a store and, for daemon
// references only, an engine.Client. It must not import the Clair clients
// (clairv4, clairv2), bridge, report or cmd/layerbridge, nor read flags or
// the environment itself: callers pass getenv, directories and options.
package dockersave
