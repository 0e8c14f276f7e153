package doctor

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/layerbridge/layerbridge/blobs"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/dockersave"
)

// canary is a one-layer image made for one doctor run: a valid tar holding
// a file with random content, so that its digest is new to Clair and Clair
// must download it (Clair never fetches a layer it has indexed before). It
// plays the scan's image loader, and opens the canary image's blobs from
// its own directory: an image whose blobs are not in the store.
type canary struct {
	dir      string
	layer    ocispec.Descriptor
	manifest digest.Digest // a fresh random manifest hash, for the same reason
}

// newCanary writes the canary layer into a new directory under tempDir.
// The caller removes it with close.
func newCanary(tempDir string) (*canary, error) {
	dir, err := os.MkdirTemp(tempDir, "layerbridge-doctor-")
	if err != nil {
		return nil, fmt.Errorf("canary layer: %w", err)
	}
	c := &canary{dir: dir}
	if err := c.write(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("canary layer: %w", err)
	}
	return c, nil
}

func (c *canary) write() error {
	var nonce [16]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return err
	}
	body := []byte("layerbridge doctor canary " + hex.EncodeToString(nonce[:]) + "\n" +
		"This layer proves that Clair can download from layerbridge's address.\n")
	f, err := os.CreateTemp(c.dir, "layer-")
	if err != nil {
		return err
	}
	defer f.Close()
	h := digest.SHA256.Digester()
	tw := tar.NewWriter(io.MultiWriter(f, h.Hash()))
	hdr := &tar.Header{Name: "layerbridge-doctor-canary.txt", Mode: 0o644, Size: int64(len(body)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if _, err := tw.Write(body); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	d := h.Digest()
	if err := os.Rename(f.Name(), filepath.Join(c.dir, d.Encoded())); err != nil {
		return err
	}
	c.layer = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d, Size: fi.Size()}
	c.manifest = digest.FromBytes(append([]byte("layerbridge doctor manifest "), nonce[:]...))
	return nil
}

func (c *canary) close() { os.RemoveAll(c.dir) }

// Blob serves the canary layer and nothing else (blobs.Opener).
func (c *canary) Blob(_ context.Context, d digest.Digest) (blobs.Blob, error) {
	if d != c.layer.Digest {
		return nil, fmt.Errorf("open blob %s: %w", d, fs.ErrNotExist)
	}
	f, err := os.Open(filepath.Join(c.dir, d.Encoded()))
	if err != nil {
		return nil, err
	}
	return blobs.FromFile(f)
}

// Load returns the canary image whatever is asked (scan.ImageLoader). It
// has nothing to pin: the canary's directory lives until close.
func (c *canary) Load(context.Context, string, *ocispec.Platform, ...dockersave.LoadOption) (dockersave.Image, func(), error) {
	return dockersave.Image{
		Ref:            canaryRef,
		ID:             c.manifest,
		Platform:       ocispec.Platform{OS: "linux", Architecture: "amd64"},
		ManifestDigest: c.manifest,
		IndexDigest:    c.manifest,
		Manifest: ocispec.Manifest{
			MediaType: ocispec.MediaTypeImageManifest,
			Layers:    []ocispec.Descriptor{c.layer},
		},
		DiffIDs: []digest.Digest{c.layer.Digest},
		Blobs:   c,
	}, func() {}, nil
}

// canaryRef labels the canary's grant in the layer server's log.
const canaryRef = "layerbridge-doctor-canary"
