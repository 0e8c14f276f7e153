package dockersave

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/platforms"
)

// What "verified" means. Every Source returns only images that pass these
// rules, whatever it reads them from: the functions of this file are the
// rules, and every source calls them (the built-in ones through stage,
// verify and commit; another source through Measure and Verify).
//
//  1. Content: every blob hashes (sha256) to the digest that names it (its
//     archive entry, or the descriptor that led to it) and has the size
//     that descriptor gives; a stream that ends before is truncated
//     (checkSize, checkDigest).
//  2. Decompression: each compressed layer (gzip, zstd) decompresses, to
//     at most maxDecompressionRatio times its size (at least
//     minDecompressedLimit): a decompression bomb ends the read
//     (inflationLimit).
//  3. Layers: the config's rootfs.diff_ids has one digest per layer of the
//     manifest, and layer i decompresses to content hashing to
//     diff_ids[i] (checkLayerCount, checkLayer).
//  4. Platform: the image names an operating system and an architecture
//     (checkPlatform).
//  5. Manifest: the manifest stored and served (the image's own, or one
//     synthesized from the blobs) describes exactly the verified blobs:
//     its config and layer descriptors carry, in order, the digest and the
//     size of the blob read for each (checkDescribed).
//  6. Daemon exports: the daemon exported the image inspect described: its
//     image ID is the config digest or the digest of a manifest or index
//     of the export, or (one platform of an index) the export holds the
//     platform manifest the daemon lists under that ID; and the export's
//     diff IDs are those inspect lists (checkExported).
//
// Metadata (manifest.json, indexes, manifests, configs) is read within
// limits before anything in it is trusted: see archive.go.

// Decompression only feeds a hash, but a bomb still costs CPU: a layer may
// inflate to this ratio over its compressed size, plus a floor for tiny
// blobs.
const (
	maxDecompressionRatio = 1100
	minDecompressedLimit  = 1 << 30
)

var errDecompressedTooLarge = fmt.Errorf("decompressed size %w (ratio above %d:1)", ErrTooLarge, maxDecompressionRatio)

// inflationLimit is how many bytes a compressed stream of size bytes may
// inflate to before it counts as a decompression bomb (rule 2).
func inflationLimit(size int64) int64 {
	limit := int64(minDecompressedLimit)
	if size > 0 && size*maxDecompressionRatio > limit {
		limit = size * maxDecompressionRatio
	}
	return limit
}

// Blob is what reading a blob's bytes established.
type Blob struct {
	Digest digest.Digest // sha256 of the bytes
	Size   int64
	// DiffID is the sha256 of the decompressed content (Digest itself
	// when the blob is not compressed); empty when it does not decompress
	// (within the limit of rule 2): DiffErr says why.
	DiffID  digest.Digest
	DiffErr error
}

// Measure reads r to its end and returns what it holds, as the built-in
// sources do while they stage a blob, without writing it anywhere: for a
// source whose blobs stay where they are (rules 1 and 2). size is the
// length the blob's descriptor gives (-1: unknown), want its digest (""
// when unknown); a blob of another length or digest is an error wrapping
// ErrTruncated or ErrDigestMismatch. A layer that does not decompress is not
// an error here (see Blob.DiffErr): Verify refuses it.
func Measure(r io.Reader, size int64, want digest.Digest) (Blob, error) {
	m := newMeter()
	defer m.close()
	h := sha256.New()
	n, comp, diffID, diffErr, err := m.copy(r, h, size)
	if se := (*sourceError)(nil); errors.As(err, &se) {
		err = se.err
	}
	if err != nil {
		return Blob{}, err
	}
	b := Blob{Digest: digestOf(h), Size: n, DiffID: diffID, DiffErr: diffErr}
	if comp == compressionNone {
		b.DiffID = b.Digest
	}
	if err := checkSize(n, size); err != nil {
		return Blob{}, err
	}
	if err := checkDigest(b.Digest, want); err != nil {
		return Blob{}, err
	}
	return b, nil
}

// Verify applies rules 3 to 5 to an image whose blobs a Source read itself
// (with Measure): config is the image config, parsed from the blob
// configBlob; layers are the blobs read for m.Layers, in order. Errors are
// *ArchiveError values naming image.
func Verify(image string, m ocispec.Manifest, config ocispec.Image, configBlob Blob, layers []Blob) error {
	diffIDs := config.RootFS.DiffIDs
	if err := checkLayerCount(image, "", diffIDs, len(layers)); err != nil {
		return err
	}
	p := platforms.Normalize(ocispec.Platform{OS: config.OS, Architecture: config.Architecture, Variant: config.Variant})
	if err := checkPlatform(image, "", p); err != nil {
		return err
	}
	for i, b := range layers {
		if err := checkLayer(image, "", i, b, diffIDs[i]); err != nil {
			return err
		}
	}
	described := make([]describedBlob, len(layers))
	for i, b := range layers {
		described[i] = describedBlob{Blob: b}
	}
	return checkDescribed(image, m, describedBlob{Blob: configBlob}, described)
}

// checkSize: the stream held the size its descriptor gives (rule 1); size
// < 0 is unknown.
func checkSize(n, size int64) error {
	if size >= 0 && n != size {
		return fmt.Errorf("%w: read %d of %d bytes", ErrTruncated, n, size)
	}
	return nil
}

// checkDigest: the content hashes to the digest that names it (rule 1);
// "" names nothing.
func checkDigest(got, want digest.Digest) error {
	if want != "" && got != want {
		return fmt.Errorf("%w: content is %s, name says %s", ErrDigestMismatch, got, want)
	}
	return nil
}

// checkLayerCount: the config lists one diff ID per layer (rule 3). entry
// is where the config was read.
func checkLayerCount(image, entry string, diffIDs []digest.Digest, layers int) error {
	if len(diffIDs) != layers {
		return archiveErr(image, entry, fmt.Errorf("%w: config lists %d diff ids, manifest %d layers", ErrLayerCount, len(diffIDs), layers))
	}
	return nil
}

// checkPlatform: the image names an OS and an architecture (rule 4).
func checkPlatform(image, entry string, p ocispec.Platform) error {
	if p.OS == "" || p.Architecture == "" {
		return archiveErr(image, entry, fmt.Errorf("%w: config has no os/architecture", ErrMalformedJSON))
	}
	return nil
}

// checkLayer: layer i, read from entry, decompresses (rule 2) to the diff
// ID the config lists for it (rule 3).
func checkLayer(image, entry string, i int, b Blob, diffID digest.Digest) error {
	if b.DiffErr != nil {
		return archiveErr(image, entry, fmt.Errorf("%w: layer %d: %w", ErrDiffIDMismatch, i, b.DiffErr))
	}
	if b.DiffID != diffID {
		return archiveErr(image, entry, fmt.Errorf("%w: layer %d is %s uncompressed, config rootfs.diff_ids[%d] says %s", ErrDiffIDMismatch, i, b.DiffID, i, diffID))
	}
	return nil
}

// describedBlob is a verified blob and where it was read from ("" when not
// from an archive entry), for errors.
type describedBlob struct {
	Blob
	entry string
}

// checkDescribed makes sure manifest m describes the verified blobs exactly
// (rule 5). A manifest kept from an archive (a containerd export, an OCI
// layout) is stored as it is, so a layer or config size in it that
// disagrees with the blob (wrong, negative, huge) would reach Clair and
// registry clients; the readers compare sizes only where a descriptor leads
// to the blob.
func checkDescribed(image string, m ocispec.Manifest, config describedBlob, layers []describedBlob) error {
	check := func(what string, d ocispec.Descriptor, b describedBlob) error {
		if d.Digest != b.Digest {
			return archiveErr(image, b.entry, fmt.Errorf("%w: %s is %s, the manifest says %s", ErrDigestMismatch, what, b.Digest, d.Digest))
		}
		if d.Size != b.Size {
			return archiveErr(image, b.entry, fmt.Errorf("%w: %s %s has %d bytes, the manifest says %d", ErrSizeMismatch, what, b.Digest, b.Size, d.Size))
		}
		return nil
	}
	if len(m.Layers) != len(layers) {
		return archiveErr(image, "", fmt.Errorf("%w: manifest lists %d layers, %d verified", ErrLayerCount, len(m.Layers), len(layers)))
	}
	if err := check("config", m.Config, config); err != nil {
		return err
	}
	for i, l := range m.Layers {
		if err := check(fmt.Sprintf("layer %d", i), l, layers[i]); err != nil {
			return err
		}
	}
	return nil
}

// checkExported makes sure the daemon exported the image it described
// (rule 6): the image ID is the config digest (graphdriver) or a manifest
// or index digest (containerd store) of the export v, or the export holds
// the platform manifest the daemon listed under that ID (an export of one
// platform of an index); and the diff IDs are those inspect listed (none
// listed: not checked).
func checkExported(ref string, t daemonTarget, v *verified) error {
	ids := append([]digest.Digest{v.config.Digest}, v.parents...)
	if v.manifestBlob != nil {
		ids = append(ids, v.manifestBlob.Digest)
	}
	switch {
	case slices.Contains(ids, t.id):
	case t.manifest != "" && v.manifestBlob != nil && v.manifestBlob.Digest == t.manifest:
	case t.manifest != "":
		return archiveErr(ref, "", fmt.Errorf("%w: the daemon lists manifest %s for image %s (%s), the export holds %s", ErrExportMismatch, t.manifest, t.id, platforms.Format(t.platform), exportedManifest(v)))
	default:
		return archiveErr(ref, "", fmt.Errorf("%w: image id %s is neither the config nor a manifest of the export", ErrExportMismatch, t.id))
	}
	layers := t.inspect.RootFS.Layers
	if len(layers) == 0 {
		return nil
	}
	if len(layers) != len(v.diffIDs) {
		return archiveErr(ref, "", fmt.Errorf("%w: inspect lists %d layers, export %d", ErrExportMismatch, len(layers), len(v.diffIDs)))
	}
	for i, l := range layers {
		if digest.Digest(l) != v.diffIDs[i] {
			return archiveErr(ref, "", fmt.Errorf("%w: layer %d is %s, inspect says %s", ErrExportMismatch, i, v.diffIDs[i], l))
		}
	}
	return nil
}

func exportedManifest(v *verified) string {
	if v.manifestBlob == nil {
		return "no manifest"
	}
	return "manifest " + v.manifestBlob.Digest.String()
}
