package bridge

import (
	"bytes"
	"fmt"
	"io"
)

// Layer media types, chosen from the bytes, never from a file name: Clair
// 4.7.3 and later reject a Content-Type that disagrees with the compression it
// sniffs, and Clair 4.2 rejects application/x-gzip, the type Go would guess.
const (
	MediaTypeLayerTar  = "application/vnd.oci.image.layer.v1.tar"
	MediaTypeLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip"
	MediaTypeLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd"
)

var (
	gzipMagic = []byte{0x1f, 0x8b, 0x08}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// layerContentType reads the first bytes of f (without moving its offset) and
// returns the media type of a layer with that compression. Anything that is
// neither gzip nor zstd is served as a plain tar: that includes the empty
// layer, which Clair indexes fine.
func layerContentType(f io.ReaderAt) (string, error) {
	var head [4]byte
	n, err := f.ReadAt(head[:], 0)
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("sniff compression: %w", err)
	}
	return sniffContentType(head[:n]), nil
}

func sniffContentType(head []byte) string {
	switch {
	case bytes.HasPrefix(head, gzipMagic):
		return MediaTypeLayerGzip
	case bytes.HasPrefix(head, zstdMagic):
		return MediaTypeLayerZstd
	default:
		return MediaTypeLayerTar
	}
}
