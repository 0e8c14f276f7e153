package store

import (
	"encoding/json"
	"fmt"
	"strings"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/platforms"
)

// Annotations the store writes on each index.json descriptor. The descriptor's
// digest is the manifest digest and its data field embeds the manifest, so a
// lookup never opens a blob.
const (
	AnnotationImageID     = "io.layerbridge.image.id"
	AnnotationPlatform    = "io.layerbridge.image.platform"
	AnnotationRepoTags    = "io.layerbridge.image.repo-tags"
	AnnotationDiffIDs     = "io.layerbridge.image.diff-ids"
	AnnotationSourceRef   = "io.layerbridge.source.ref"
	AnnotationSourceKind  = "io.layerbridge.source.kind"
	AnnotationSynthesized = "io.layerbridge.manifest.synthesized"
)

// Record is one image the store holds: what its index.json record says.
// Images are recorded under their (ID, Platform); a later record for the
// same pair replaces the earlier one unless that one is pinned.
type Record struct {
	// Ref is the reference the image was loaded by.
	Ref string
	// Source is the kind of source it was loaded from (dockersave's
	// SourceKind: "daemon", "docker-archive", "oci-archive", "oci").
	Source string
	// ID is the image's identity: the daemon's image ID for daemon images,
	// the config digest for archives and layouts.
	ID digest.Digest
	// Platform is the image's normalized platform (see platforms.Parse).
	Platform ocispec.Platform
	// RepoTags are the daemon's tags (or the archive's), possibly empty.
	RepoTags []string
	// ManifestDigest is the digest of the stored manifest blob.
	ManifestDigest digest.Digest
	// ManifestSize is the manifest blob's size in bytes.
	ManifestSize int64
	// Synthesized is true when layerbridge wrote the manifest (the image
	// came without one).
	Synthesized bool
	// Manifest is that manifest. Layers are oldest first.
	Manifest ocispec.Manifest
	// DiffIDs are the uncompressed layer digests, parallel to
	// Manifest.Layers and equal to the config's rootfs.diff_ids.
	DiffIDs []digest.Digest
}

// ManifestDescriptor describes the stored manifest blob (media type, digest,
// size, platform), as a registry view would serve it.
func (r Record) ManifestDescriptor() ocispec.Descriptor {
	mt := r.Manifest.MediaType
	if mt == "" {
		mt = ocispec.MediaTypeImageManifest
	}
	p := r.Platform
	return ocispec.Descriptor{MediaType: mt, Digest: r.ManifestDigest, Size: r.ManifestSize, Platform: &p}
}

func recordMatches(d ocispec.Descriptor, id digest.Digest, platform string) bool {
	return d.Annotations[AnnotationImageID] == id.String() && d.Annotations[AnnotationPlatform] == platform
}

// Lookup finds the stored image for (id, platform) and checks, by stat only,
// that its manifest, config and layer blobs are all present with the recorded
// sizes. It reads index.json and no blob. ok is false when there is no such
// record or a blob is missing; err is for an unreadable index.
func (s *Store) Lookup(id digest.Digest, platform ocispec.Platform) (rec Record, ok bool, err error) {
	idx, err := s.readIndex()
	if err != nil {
		return Record{}, false, err
	}
	key := platforms.Format(platforms.Normalize(platform))
	for i := len(idx.Manifests) - 1; i >= 0; i-- {
		d := idx.Manifests[i]
		if !recordMatches(d, id, key) {
			continue
		}
		rec, err := recordFromDescriptor(d)
		if err != nil || !s.complete(rec) {
			return Record{}, false, nil
		}
		return rec, true, nil
	}
	return Record{}, false, nil
}

// Images lists the stored images whose blobs are all present, in index order.
// Records written by other tools (without layerbridge annotations) are skipped.
func (s *Store) Images() ([]Record, error) {
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	var out []Record
	for _, d := range idx.Manifests {
		if d.Annotations[AnnotationImageID] == "" {
			continue
		}
		rec, err := recordFromDescriptor(d)
		if err != nil || !s.complete(rec) {
			continue
		}
		out = append(out, rec)
	}
	return out, nil
}

func (s *Store) complete(rec Record) bool {
	if !s.hasBlob(rec.ManifestDigest, rec.ManifestSize) || !s.hasBlob(rec.Manifest.Config.Digest, rec.Manifest.Config.Size) {
		return false
	}
	for _, l := range rec.Manifest.Layers {
		if !s.hasBlob(l.Digest, l.Size) {
			return false
		}
	}
	return true
}

func descriptorFor(rec Record, manifestBytes []byte) ocispec.Descriptor {
	p := platforms.Normalize(rec.Platform)
	ann := map[string]string{
		AnnotationImageID:    rec.ID.String(),
		AnnotationPlatform:   platforms.Format(p),
		AnnotationSourceRef:  rec.Ref,
		AnnotationSourceKind: rec.Source,
	}
	if len(rec.RepoTags) > 0 {
		ann[AnnotationRepoTags] = strings.Join(rec.RepoTags, ",")
		ann[ocispec.AnnotationRefName] = rec.RepoTags[0]
	}
	ids := make([]string, len(rec.DiffIDs))
	for i, d := range rec.DiffIDs {
		ids[i] = d.String()
	}
	ann[AnnotationDiffIDs] = strings.Join(ids, ",")
	if rec.Synthesized {
		ann[AnnotationSynthesized] = "true"
	}
	mt := rec.Manifest.MediaType
	if mt == "" {
		mt = ocispec.MediaTypeImageManifest
	}
	return ocispec.Descriptor{
		MediaType:   mt,
		Digest:      rec.ManifestDigest,
		Size:        int64(len(manifestBytes)),
		Data:        manifestBytes,
		Platform:    &p,
		Annotations: ann,
	}
}

func recordFromDescriptor(d ocispec.Descriptor) (Record, error) {
	if err := CheckDigest(d.Digest); err != nil {
		return Record{}, err
	}
	if int64(len(d.Data)) != d.Size || digest.FromBytes(d.Data) != d.Digest {
		return Record{}, fmt.Errorf("index record %s: embedded manifest does not match", d.Digest)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(d.Data, &m); err != nil {
		return Record{}, fmt.Errorf("index record %s: malformed manifest: %v", d.Digest, err)
	}
	if m.MediaType == "" {
		m.MediaType = d.MediaType
	}
	id, err := digest.Parse(d.Annotations[AnnotationImageID])
	if err != nil {
		return Record{}, fmt.Errorf("index record %s: image id: %w", d.Digest, err)
	}
	p, err := platforms.Parse(d.Annotations[AnnotationPlatform])
	if err != nil {
		return Record{}, fmt.Errorf("index record %s: %w", d.Digest, err)
	}
	var diffIDs []digest.Digest
	if s := d.Annotations[AnnotationDiffIDs]; s != "" {
		for _, v := range strings.Split(s, ",") {
			dd, err := digest.Parse(v)
			if err != nil {
				return Record{}, fmt.Errorf("index record %s: diff id: %w", d.Digest, err)
			}
			diffIDs = append(diffIDs, dd)
		}
	}
	if len(diffIDs) != len(m.Layers) {
		return Record{}, fmt.Errorf("index record %s: %d diff ids for %d layers", d.Digest, len(diffIDs), len(m.Layers))
	}
	var tags []string
	if s := d.Annotations[AnnotationRepoTags]; s != "" {
		tags = strings.Split(s, ",")
	}
	return Record{
		Ref:            d.Annotations[AnnotationSourceRef],
		Source:         d.Annotations[AnnotationSourceKind],
		ID:             id,
		Platform:       p,
		RepoTags:       tags,
		ManifestDigest: d.Digest,
		ManifestSize:   d.Size,
		Synthesized:    d.Annotations[AnnotationSynthesized] == "true",
		Manifest:       m,
		DiffIDs:        diffIDs,
	}, nil
}
