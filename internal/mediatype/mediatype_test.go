package mediatype

import (
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestIsUncompressedLayer(t *testing.T) {
	for mt, want := range map[string]bool{
		ocispec.MediaTypeImageLayer:                                 true,
		"application/vnd.docker.image.rootfs.diff.tar":              true,
		"application/vnd.oci.image.layer.nondistributable.v1.tar":   true,
		ocispec.MediaTypeImageLayerGzip:                             false,
		ocispec.MediaTypeImageLayerZstd:                             false,
		"application/vnd.docker.image.rootfs.diff.tar.gzip":         false,
		"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": false,
		"application/vnd.oci.image.layer.v1.tar+gzip+encrypted":     false,
		"application/vnd.in-toto+json":                              false,
		"application/tar":                                           false,
	} {
		if got := IsUncompressedLayer(mt); got != want {
			t.Errorf("IsUncompressedLayer(%q) = %v", mt, got)
		}
	}
}

func TestIsAttestation(t *testing.T) {
	unknown := &ocispec.Platform{OS: "unknown", Architecture: "unknown"}
	for _, tc := range []struct {
		d    ocispec.Descriptor
		want bool
	}{
		{ocispec.Descriptor{Annotations: map[string]string{"vnd.docker.reference.type": "attestation-manifest"}}, true},
		{ocispec.Descriptor{Platform: unknown}, true},
		{ocispec.Descriptor{Platform: &ocispec.Platform{OS: "linux", Architecture: "amd64"}}, false},
		{ocispec.Descriptor{}, false},
	} {
		if got := IsAttestation(tc.d); got != tc.want {
			t.Errorf("IsAttestation(%+v) = %v", tc.d, got)
		}
	}
}
