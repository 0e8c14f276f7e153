package mediatype

import (
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The Docker image manifest v2 schema 2 media types.
const (
	DockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	DockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	DockerConfig       = "application/vnd.docker.container.image.v1+json"
)

// IsIndex reports whether mt is an OCI image index or a Docker manifest list.
func IsIndex(mt string) bool {
	return mt == ocispec.MediaTypeImageIndex || mt == DockerManifestList
}

// IsManifest reports whether mt is an OCI or Docker image manifest.
func IsManifest(mt string) bool {
	return mt == ocispec.MediaTypeImageManifest || mt == DockerManifest
}

// IsConfig reports whether mt is an OCI or Docker image config.
func IsConfig(mt string) bool {
	return mt == ocispec.MediaTypeImageConfig || mt == DockerConfig
}

// IsLayer accepts OCI and Docker filesystem layer types (including
// non-distributable ones), nothing else (signatures, attestations, SBOMs).
func IsLayer(mt string) bool {
	return strings.HasPrefix(mt, "application/vnd.oci.image.layer.") ||
		strings.HasPrefix(mt, "application/vnd.docker.image.rootfs.")
}

// IsUncompressedLayer reports whether mt, a layer type (IsLayer), names an
// uncompressed tar: its digest is then its diff ID.
func IsUncompressedLayer(mt string) bool {
	return IsLayer(mt) && strings.HasSuffix(mt, ".tar")
}

// IsAttestation reports whether the index entry d is an attestation
// manifest (BuildKit's provenance or SBOM: annotated
// vnd.docker.reference.type attestation-manifest, platform unknown/unknown),
// which is never an image to scan.
func IsAttestation(d ocispec.Descriptor) bool {
	if d.Annotations["vnd.docker.reference.type"] == "attestation-manifest" {
		return true
	}
	return d.Platform != nil && d.Platform.OS == "unknown" && d.Platform.Architecture == "unknown"
}
