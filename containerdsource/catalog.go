package containerdsource

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/dockersave"
	"github.com/layerbridge/layerbridge/platforms"
	"github.com/layerbridge/layerbridge/store"
)

// The images the registry view offers. The store holds no blob of a
// containerd image, so it has no record of it either; instead each image
// Load returns is noted in the store (manifest, tags, diff IDs: no layer
// bytes), under the containerd address and namespace it was read from.
// Images lists the notes of this source's address and namespace, which
// the registry view offers beside the store's images, their blobs opened
// with Blob. As for the store's images, only images someone scanned or
// inspected are offered, and an image containerd has removed since answers
// "unknown" when pulled.

// noteImage is the kind of the notes of images read from containerd.
const noteImage = "containerd-image"

// maxImageNotes bounds the images noted; the least recently read go first.
const maxImageNotes = 1000

// imageNote is one such note.
type imageNote struct {
	Address        string           `json:"address"`
	Namespace      string           `json:"namespace"`
	Ref            string           `json:"ref"`
	ID             digest.Digest    `json:"id"`
	Platform       ocispec.Platform `json:"platform"`
	RepoTags       []string         `json:"repo_tags,omitempty"`
	ManifestDigest digest.Digest    `json:"manifest_digest"`
	ManifestSize   int64            `json:"manifest_size"`
	Manifest       ocispec.Manifest `json:"manifest"`
	DiffIDs        []digest.Digest  `json:"diff_ids"`
}

func (s *Source) noteKey(manifest digest.Digest) string {
	h := sha256.Sum256([]byte(s.cfg.Address + "\n" + s.cfg.Namespace + "\n" + manifest.String()))
	return hex.EncodeToString(h[:])
}

// remember notes img for the registry view; a store that cannot take it
// only leaves it out of the view.
func (s *Source) remember(img dockersave.Image) {
	if s.cfg.Store == nil {
		return
	}
	raw, err := json.Marshal(imageNote{
		Address: s.cfg.Address, Namespace: s.cfg.Namespace, Ref: img.Ref, ID: img.ID, Platform: img.Platform,
		RepoTags: img.RepoTags, ManifestDigest: img.ManifestDigest, ManifestSize: img.ManifestSize,
		Manifest: img.Manifest, DiffIDs: img.DiffIDs,
	})
	if err == nil {
		err = s.cfg.Store.PutNote(noteImage, s.noteKey(img.ManifestDigest), raw)
	}
	if err != nil {
		s.log.Debug("cannot note the image for the registry view", "ref", img.Ref, "error", err)
		return
	}
	notes, err := s.cfg.Store.Notes(noteImage)
	if err != nil || len(notes) <= maxImageNotes {
		return
	}
	slices.SortFunc(notes, func(a, b store.Note) int { return a.ModTime.Compare(b.ModTime) })
	for _, n := range notes[:len(notes)-maxImageNotes] {
		_ = s.cfg.Store.RemoveNote(noteImage, n.Key)
	}
}

// Images lists the images read from this containerd namespace (by any
// process using the same store), least recently read first, as store
// records (Source "containerd"): the registry view's list beside the
// store's own (see sidecar.ImageLister). Their blobs are opened with Blob.
func (s *Source) Images() ([]store.Record, error) {
	if s.cfg.Store == nil {
		return nil, nil
	}
	notes, err := s.cfg.Store.Notes(noteImage)
	if err != nil {
		return nil, err
	}
	type noted struct {
		rec store.Record
		at  time.Time
	}
	var out []noted
	for _, n := range notes {
		var in imageNote
		if json.Unmarshal(n.Data, &in) != nil || in.Address != s.cfg.Address || in.Namespace != s.cfg.Namespace {
			continue
		}
		if n.Key != s.noteKey(in.ManifestDigest) || store.CheckDigest(in.ManifestDigest) != nil || len(in.DiffIDs) != len(in.Manifest.Layers) {
			continue
		}
		out = append(out, noted{at: n.ModTime, rec: store.Record{
			Ref: in.Ref, Source: string(Kind), ID: in.ID, Platform: platforms.Normalize(in.Platform), RepoTags: in.RepoTags,
			ManifestDigest: in.ManifestDigest, ManifestSize: in.ManifestSize, Manifest: in.Manifest, DiffIDs: in.DiffIDs,
		}})
	}
	slices.SortStableFunc(out, func(a, b noted) int { return a.at.Compare(b.at) })
	recs := make([]store.Record, len(out))
	for i, n := range out {
		recs[i] = n.rec
	}
	return recs, nil
}
