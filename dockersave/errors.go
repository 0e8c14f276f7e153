package dockersave

import (
	"errors"
	"fmt"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/platforms"
)

// Sentinel errors for the ways an archive can be rejected. They are wrapped in
// an *ArchiveError naming the image and the entry; test them with errors.Is.
var (
	// ErrUnsafeEntry: an entry whose name or link target could leave the
	// archive (absolute, "..", backslash, NUL) or whose type is a device,
	// fifo or sparse file.
	ErrUnsafeEntry = errors.New("unsafe archive entry")
	// ErrUnexpectedEntry: a name outside the allow-list of docker save and
	// OCI layout archives.
	ErrUnexpectedEntry = errors.New("unexpected archive entry")
	// ErrDuplicateEntry: the same name appears twice.
	ErrDuplicateEntry = errors.New("duplicate archive entry")
	// ErrLinkCycle: symbolic or hard links that loop or chain too deep.
	ErrLinkCycle = errors.New("link cycle")
	// ErrDanglingLink: a link whose target is not a regular entry of the archive.
	ErrDanglingLink = errors.New("link to missing entry")
	// ErrDigestMismatch: a blob's content does not hash to the digest in its name
	// or descriptor.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrSizeMismatch: a blob's size differs from its descriptor.
	ErrSizeMismatch = errors.New("size mismatch")
	// ErrDiffIDMismatch: a layer's uncompressed digest differs from the
	// config's rootfs.diff_ids entry at the same position.
	ErrDiffIDMismatch = errors.New("diff id mismatch")
	// ErrLayerCount: the manifest and the config disagree on the number of layers.
	ErrLayerCount = errors.New("layer count mismatch")
	// ErrMissingBlob: a manifest names a blob or entry that is not in the archive.
	ErrMissingBlob = errors.New("missing blob")
	// ErrTooLarge: a metadata file, the entry count or the layer count exceeds
	// its limit.
	ErrTooLarge = errors.New("exceeds limit")
	// ErrMalformedJSON: manifest.json, index.json, a manifest or a config that
	// does not parse.
	ErrMalformedJSON = errors.New("malformed json")
	// ErrTruncated: the stream ended early or without the tar end-of-archive
	// marker, or a tar header in it does not parse.
	ErrTruncated = errors.New("truncated archive")
	// ErrTrailingData: bytes other than zero padding after the end of the archive.
	ErrTrailingData = errors.New("trailing data after end of archive")
	// ErrNoImage: the archive holds neither manifest.json nor index.json, or
	// no usable image manifest.
	ErrNoImage = errors.New("no image in archive")
	// ErrExportMismatch: the daemon exported something other than the image it
	// reported in inspect (different ID or diff IDs).
	ErrExportMismatch = errors.New("export does not match inspected image")
	// ErrNotArchive: the file or stream is not a tar archive (uncompressed,
	// or gzip- or zstd-compressed) at all: it is empty, a directory, or its
	// first bytes are no tar header.
	ErrNotArchive = errors.New("not a tar archive")
	// ErrNotLayout: an oci: directory lacks a file every OCI image layout
	// has (oci-layout, index.json); Entry names it.
	ErrNotLayout = errors.New("not an OCI image layout")
)

// ErrNoSource is returned (wrapped) by Loader.Load for a reference of a
// kind imageref.Parse knows but no Source was registered for (containerd:
// without WithSource).
var ErrNoSource = errors.New("no source registered for references of kind")

// ArchiveError is every failure to read or verify an archive, an OCI layout or
// a daemon export. Image is the reference being loaded; Entry is the archive
// entry (or blob path) concerned, empty when the problem is not tied to one.
// Err wraps one of the sentinel errors above (or an I/O error such as ENOSPC).
type ArchiveError struct {
	Image string
	Entry string
	Err   error
}

func (e *ArchiveError) Error() string {
	if e.Entry == "" {
		return fmt.Sprintf("%s: %v", e.Image, e.Err)
	}
	return fmt.Sprintf("%s: archive entry %q: %v", e.Image, e.Entry, e.Err)
}

func (e *ArchiveError) Unwrap() error { return e.Err }

// DaemonError is the error message the Docker daemon appended to an export
// stream after it had started sending the tar (HTTP status was already 200).
// It is found inside an *ArchiveError; the export is always treated as failed.
type DaemonError struct {
	Message string
}

func (e *DaemonError) Error() string { return "daemon reported: " + e.Message }

// PlatformError means the image (or archive) has no content for the wanted
// platform. Available lists what it does offer, when known.
type PlatformError struct {
	Ref       string
	Want      ocispec.Platform
	Available []ocispec.Platform
	Err       error
}

func (e *PlatformError) Error() string {
	msg := fmt.Sprintf("image %s does not provide platform %s", e.Ref, platforms.Format(e.Want))
	if len(e.Available) > 0 {
		msg += " (available: " + formatPlatforms(e.Available) + ")"
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *PlatformError) Unwrap() error { return e.Err }

// AmbiguousError means an archive or layout holds several images and neither
// the requested nor the host platform picks exactly one. Platforms lists the
// candidates (one entry per image, so it may repeat).
type AmbiguousError struct {
	Ref       string
	Platforms []ocispec.Platform
}

func (e *AmbiguousError) Error() string {
	return fmt.Sprintf("%s holds %d images (%s): choose one by platform", e.Ref, len(e.Platforms), formatPlatforms(e.Platforms))
}

func formatPlatforms(ps []ocispec.Platform) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = platforms.Format(p)
	}
	return strings.Join(s, ", ")
}

func archiveErr(image, entry string, err error) error {
	return &ArchiveError{Image: image, Entry: entry, Err: err}
}
