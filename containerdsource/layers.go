package containerdsource

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/containerd/errdefs"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/dockersave"
	"github.com/layerbridge/layerbridge/internal/mediatype"
)

// How a layer is verified without copying it. containerd's content store
// is content-addressed: a blob is committed under its digest only after
// containerd hashed it (a pull, an import). So for each layer layerbridge
// asks containerd for the blob's size and labels (no byte is read) and
// checks the size against the manifest's descriptor; the digest is
// containerd's. What remains is its diff ID (verify.go's rule 3), taken,
// in this order, from:
//
//  1. the digest itself, for an uncompressed layer;
//  2. the containerd.io/uncompressed label containerd's unpacker puts on a
//     compressed layer once it has decompressed it into a snapshot (every
//     image a node has run);
//  3. a note in layerbridge's store, written the first time layerbridge
//     read the layer itself (4);
//  4. reading the layer once through containerd: dockersave.Measure
//     hashes it (checking its digest and size) and decompresses it (within
//     the decompression-bomb limit), and the diff ID it computed is noted
//     for the next scan, keyed by the blob's digest.
//
// The diff IDs then go through dockersave.Verify with the config's
// rootfs.diff_ids, as every source's do.

// LabelUncompressed is the label containerd's unpacker puts on compressed
// layer content: the digest of the uncompressed layer (its diff ID).
const LabelUncompressed = "containerd.io/uncompressed"

// noteDiffID is the kind of the store notes remembering diff IDs, keyed by
// the blob digest's hex.
const noteDiffID = "layer-diffid"

// diffIDNote is such a note.
type diffIDNote struct {
	Digest digest.Digest `json:"digest"`
	Size   int64         `json:"size"`
	DiffID digest.Digest `json:"diff_id"`
}

// layerInfo is what layers learned of one layer before it is verified.
type layerInfo struct {
	blob dockersave.Blob
	how  string // where its diff ID came from; "" until known
}

// layers returns what verifies the manifest's layers (dockersave.Blob:
// digest, size, diff ID), reading only the layers whose diff ID neither
// containerd nor the store knows.
func (s *Source) layers(ctx context.Context, b backend, req dockersave.Request, m ocispec.Manifest, p ocispec.Platform) ([]dockersave.Blob, error) {
	infos := make([]layerInfo, len(m.Layers))
	var toRead int64
	for i, ld := range m.Layers {
		info, err := b.Info(ctx, ld.Digest)
		if err != nil {
			if errdefs.IsNotFound(err) {
				return nil, &MissingContentError{Ref: req.Ref, Namespace: s.cfg.Namespace, Platform: p, What: fmt.Sprintf("layer %d", i), Digest: ld.Digest}
			}
			return nil, fmt.Errorf("%s: layer %d %s: %w", req.Ref, i, ld.Digest, classify(s.cfg.Address, err))
		}
		li := layerInfo{blob: dockersave.Blob{Digest: ld.Digest, Size: info.Size}}
		switch {
		case info.Size != ld.Size:
			return nil, &dockersave.ArchiveError{Image: req.Ref, Err: fmt.Errorf("%w: layer %d %s has %d bytes in containerd's content store, the manifest says %d",
				dockersave.ErrSizeMismatch, i, ld.Digest, info.Size, ld.Size)}
		case mediatype.IsUncompressedLayer(ld.MediaType):
			li.blob.DiffID, li.how = ld.Digest, "uncompressed"
		case validDigest(info.Labels[LabelUncompressed]):
			li.blob.DiffID, li.how = digest.Digest(info.Labels[LabelUncompressed]), "containerd label"
		default:
			if d, ok := s.rememberedDiffID(ld.Digest, info.Size); ok {
				li.blob.DiffID, li.how = d, "store note"
			} else {
				toRead += info.Size
			}
		}
		infos[i] = li
	}
	var read int64
	report := func(n int64) {
		if req.Progress != nil {
			req.Progress(dockersave.Progress{Bytes: read + n, Expected: toRead})
		}
	}
	out := make([]dockersave.Blob, len(infos))
	for i, li := range infos {
		if li.how == "" {
			start := time.Now()
			blob, err := s.measure(ctx, b, req.Ref, m.Layers[i], report)
			if err != nil {
				return nil, err
			}
			read += blob.Size
			li.blob, li.how = blob, "read and decompressed"
			s.rememberDiffID(blob)
			req.Log.DebugContext(ctx, "layer read to learn its diff id", "ref", req.Ref, "layer", i, "digest", blob.Digest,
				"bytes", blob.Size, "duration", time.Since(start))
		}
		req.Log.DebugContext(ctx, "layer", "ref", req.Ref, "layer", i, "digest", li.blob.Digest, "size", li.blob.Size,
			"diff_id", li.blob.DiffID, "diff_id_from", li.how)
		out[i] = li.blob
	}
	return out, nil
}

// measure reads layer d through containerd with dockersave.Measure: its
// digest, size and diff ID, computed from its bytes.
func (s *Source) measure(ctx context.Context, b backend, ref string, d ocispec.Descriptor, progress func(int64)) (dockersave.Blob, error) {
	ra, err := b.ReaderAt(ctx, d)
	if err != nil {
		return dockersave.Blob{}, fmt.Errorf("%s: read layer %s: %w", ref, d.Digest, classify(s.cfg.Address, err))
	}
	defer ra.Close()
	r := &countingReader{r: bufio.NewReaderSize(io.NewSectionReader(newRemoteBlob(ra), 0, ra.Size()), readAhead), report: progress}
	blob, err := dockersave.Measure(r, d.Size, d.Digest)
	if err != nil {
		if errors.Is(err, dockersave.ErrTruncated) || errors.Is(err, dockersave.ErrDigestMismatch) {
			return dockersave.Blob{}, &dockersave.ArchiveError{Image: ref, Err: fmt.Errorf("layer %s in containerd's content store: %w", d.Digest, err)}
		}
		return dockersave.Blob{}, fmt.Errorf("%s: read layer %s: %w", ref, d.Digest, classify(s.cfg.Address, err))
	}
	return blob, nil
}

type countingReader struct {
	r      io.Reader
	n      int64
	report func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if n > 0 && c.report != nil {
		c.report(c.n)
	}
	return n, err
}

// rememberedDiffID is the diff ID a note of the store gives blob d of
// size bytes.
func (s *Source) rememberedDiffID(d digest.Digest, size int64) (digest.Digest, bool) {
	if s.cfg.Store == nil {
		return "", false
	}
	raw, err := s.cfg.Store.Note(noteDiffID, d.Encoded())
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.log.Debug("cannot read the diff id note", "digest", d, "error", err)
		}
		return "", false
	}
	var n diffIDNote
	if json.Unmarshal(raw, &n) != nil || n.Digest != d || n.Size != size || !validDigest(string(n.DiffID)) {
		s.log.Debug("diff id note does not match the blob: ignored", "digest", d)
		return "", false
	}
	return n.DiffID, true
}

// rememberDiffID notes the diff ID Measure computed for a blob it read
// whole; a blob that did not decompress is not noted.
func (s *Source) rememberDiffID(b dockersave.Blob) {
	if s.cfg.Store == nil || b.DiffErr != nil || b.DiffID == "" || b.DiffID == b.Digest {
		return
	}
	raw, _ := json.Marshal(diffIDNote{Digest: b.Digest, Size: b.Size, DiffID: b.DiffID})
	if err := s.cfg.Store.PutNote(noteDiffID, b.Digest.Encoded(), raw); err != nil {
		s.log.Debug("cannot note the layer's diff id; it will be read again next time", "digest", b.Digest, "error", err)
	}
}

func validDigest(s string) bool {
	d := digest.Digest(s)
	return s != "" && d.Validate() == nil && d.Algorithm() == digest.SHA256
}
