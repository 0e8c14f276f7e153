// Package containerdsource reads an image of containerd's image store
// (containerd:NAME: Kubernetes nodes, nerdctl, Docker 29's image store) as
// a verified dockersave.Image, without exporting or copying it: its
// manifest, config and layers stay in containerd's content store, and the
// layer server and the registry view read them from there (Source is the
// images' blobs.Opener). It is registered with dockersave.WithSource for
// the kind imageref.Containerd.
//
// Verification follows dockersave's verify.go: the index (if any), the
// manifest and the config are read whole and hashed (dockersave.Measure);
// each layer's size is checked against the manifest and its diff ID
// against the config's rootfs.diff_ids (dockersave.Verify). Layers are not
// read when containerd or the store already knows their diff ID (see
// layers.go), which makes a first scan cost what a later one does.
//
// Pinning: each loaded image is held by a containerd lease, renewed while
// held and deleted by the release Load returns, with an expiry so that a
// lease of a process that died goes away by itself (lease.go).
//
// It talks to containerd only through the containerd Go client, at the
// address and namespace it is given (the command reads
// --containerd-address/CONTAINERD_ADDRESS and
// --containerd-namespace/CONTAINERD_NAMESPACE); it never reads flags or the
// environment itself. It keeps small notes in layerbridge's store (diff
// IDs it computed, the images it read for the registry view) and no layer
// bytes.
package containerdsource
