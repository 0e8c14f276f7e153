// Package store is layerbridge's image cache: one OCI image layout on disk
// (oci-layout, index.json, blobs/sha256) shared by every image loaded into
// it and by every process using the directory. It publishes verified blobs
// atomically (staging files renamed under a store-wide lock, index.json
// rewritten atomically), records each image under its (image ID, platform),
// and bounds its size: pins keep the images of running scans, Prune evicts
// the least recently used others. Beside the images it keeps notes, small
// records of other packages (notes.go): what a source learned about blobs
// the store does not hold.
//
// What fails or dies leaves nothing visible for long: a Commit that fails
// removes the blobs it published before it releases the lock; the staging
// files of a process that died (each Store owns its own through a flock the
// kernel releases with the process) and the blobs a process killed in
// Commit left unreferenced are removed by the next Open.
//
// It does not verify what it is given: the caller (dockersave) verified the
// blobs it commits. It knows nothing of image sources, the Docker daemon or
// Clair; dockersave depends on it, never the reverse.
package store
