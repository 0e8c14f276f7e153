package dockersave

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/layerbridge/layerbridge/blobs"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/internal/mediatype"
	"github.com/layerbridge/layerbridge/platforms"
	"github.com/layerbridge/layerbridge/store"
)

// Image is one loaded image, as Loader.Load returns it.
type Image struct {
	// Ref is the reference it was loaded by (as given to Load).
	Ref string
	// Source is the kind of source it came from.
	Source SourceKind
	// ID is the daemon's image ID for daemon images (the config digest on a
	// graphdriver daemon, the manifest or index digest on the containerd
	// store) and the config digest for archives and layouts.
	ID digest.Digest
	// Platform is the image's normalized platform (see platforms.Parse).
	Platform ocispec.Platform
	// RepoTags are the daemon's tags (or the archive's), possibly empty.
	RepoTags []string
	// ManifestDigest is the digest of the manifest in the store: the
	// original manifest for containerd exports and OCI layouts, else a
	// deterministic one synthesized from the config and layers.
	ManifestDigest digest.Digest
	// ManifestSize is the manifest blob's size in bytes.
	ManifestSize int64
	// Synthesized is true when layerbridge wrote the manifest (the image
	// came without one: a graphdriver daemon's export, a classic docker
	// save archive).
	Synthesized bool
	// Manifest is that manifest. Layers are oldest first; their digests are
	// of the stored (possibly compressed) bytes, which is what Clair hashes.
	Manifest ocispec.Manifest
	// DiffIDs are the uncompressed layer digests, parallel to
	// Manifest.Layers and equal to the config's rootfs.diff_ids.
	DiffIDs []digest.Digest
	// IndexDigest is the digest Clair indexes the image under (the
	// manifest hash handed to Clair 4, what its reports are fetched by):
	// ManifestDigest for an image that came with its manifest; for one
	// whose manifest layerbridge synthesized, the config digest (which is
	// the image ID on a graphdriver daemon and for podman). Unlike the
	// synthesized manifest's digest, the config digest is known from
	// `docker image inspect` alone, so a scan can ask Clair whether it has
	// indexed the image before exporting it, and gets the same digest
	// whether it exported or not.
	IndexDigest digest.Digest
	// CacheHit is true when nothing was exported or read from the source
	// because the store already had the image.
	CacheHit bool
	// Blobs opens the image's blobs (manifest, config, layers): the store
	// for the built-in sources, whatever holds them for another Source.
	Blobs blobs.Opener
}

// Layer is one layer of an Image, in the shape `layerbridge inspect` prints.
type Layer struct {
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
	MediaType string        `json:"media_type"`
	DiffID    digest.Digest `json:"diff_id"`
}

// Layers pairs each layer descriptor with its diff ID, oldest first.
func (im Image) Layers() []Layer {
	out := make([]Layer, len(im.Manifest.Layers))
	for i, l := range im.Manifest.Layers {
		out[i] = Layer{Digest: l.Digest, Size: l.Size, MediaType: l.MediaType}
		if i < len(im.DiffIDs) {
			out[i].DiffID = im.DiffIDs[i]
		}
	}
	return out
}

// ManifestDescriptor describes the stored manifest blob (media type, digest,
// size, platform), as a registry view would serve it.
func (im Image) ManifestDescriptor() ocispec.Descriptor { return im.record().ManifestDescriptor() }

// record is what the store records of im.
func (im Image) record() store.Record {
	return store.Record{
		Ref:            im.Ref,
		Source:         string(im.Source),
		ID:             im.ID,
		Platform:       im.Platform,
		RepoTags:       im.RepoTags,
		ManifestDigest: im.ManifestDigest,
		ManifestSize:   im.ManifestSize,
		Synthesized:    im.Synthesized,
		Manifest:       im.Manifest,
		DiffIDs:        im.DiffIDs,
	}
}

// imageFromRecord is the image the store recorded as rec.
func imageFromRecord(rec store.Record) Image {
	img := Image{
		Ref:            rec.Ref,
		Source:         SourceKind(rec.Source),
		ID:             rec.ID,
		Platform:       rec.Platform,
		RepoTags:       rec.RepoTags,
		ManifestDigest: rec.ManifestDigest,
		ManifestSize:   rec.ManifestSize,
		Synthesized:    rec.Synthesized,
		Manifest:       rec.Manifest,
		DiffIDs:        rec.DiffIDs,
	}
	img.IndexDigest = indexDigest(img.ManifestDigest, img.Manifest.Config.Digest, img.Synthesized)
	return img
}

// indexDigest is Image.IndexDigest.
func indexDigest(manifest, config digest.Digest, synthesized bool) digest.Digest {
	if synthesized {
		return config
	}
	return manifest
}

// blobSource is where interpretation finds blobs by digest: an archive read
// in one pass, or an OCI layout directory read on demand.
type blobSource interface {
	has(d digest.Digest) bool
	// get returns the blob, staging it if needed; size < 0 means unknown.
	get(d digest.Digest, size int64) (*stagedBlob, error)
	readJSON(b *stagedBlob) ([]byte, error)
	imageName() string
}

type layerRef struct {
	entry     string
	digest    digest.Digest
	size      int64
	mediaType string
	blob      *stagedBlob
}

// candidate is one image an archive or layout offers.
type candidate struct {
	entry    string
	repoTags []string
	platform ocispec.Platform
	config   *stagedBlob
	image    ocispec.Image
	layers   []layerRef
	// original manifest, when one was found for this image
	manifestBlob  *stagedBlob
	manifestBytes []byte
	manifest      *ocispec.Manifest
	synthesize    bool
	// missing is why the candidate cannot be used (an absent blob).
	missing error
	// parents are the index digests on the way from index.json.
	parents []digest.Digest
}

func unmarshalJSON(src blobSource, entry string, data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return archiveErr(src.imageName(), entry, fmt.Errorf("%w: %v", ErrMalformedJSON, err))
	}
	return nil
}

func parseConfig(src blobSource, b *stagedBlob) (ocispec.Image, error) {
	var img ocispec.Image
	data, err := src.readJSON(b)
	if err != nil {
		return img, err
	}
	if err := unmarshalJSON(src, b.entry, data, &img); err != nil {
		return img, err
	}
	if len(img.RootFS.DiffIDs) > maxLayers {
		return img, archiveErr(src.imageName(), b.entry, fmt.Errorf("%w: more than %d layers", ErrTooLarge, maxLayers))
	}
	for _, d := range img.RootFS.DiffIDs {
		if err := d.Validate(); err != nil {
			return img, archiveErr(src.imageName(), b.entry, fmt.Errorf("%w: rootfs.diff_ids: %v", ErrMalformedJSON, err))
		}
	}
	return img, nil
}

func configPlatform(img ocispec.Image) ocispec.Platform {
	return platforms.Normalize(ocispec.Platform{OS: img.OS, Architecture: img.Architecture, Variant: img.Variant})
}

// dockerManifestEntry is one element of manifest.json.
type dockerManifestEntry struct {
	Config       string
	RepoTags     []string
	Layers       []string
	LayerSources map[digest.Digest]json.RawMessage `json:",omitempty"`
}

// candidatesFromManifestJSON reads manifest.json, which every docker save
// generation and podman write and which always lists layers in order.
func candidatesFromManifestJSON(a *archive, raw []byte) ([]*candidate, error) {
	var entries []dockerManifestEntry
	if err := unmarshalJSON(a, "manifest.json", raw, &entries); err != nil {
		return nil, err
	}
	var out []*candidate
	var fromIndex []*candidate
	indexRead := false
	for _, e := range entries {
		if len(e.Layers) > maxLayers {
			return nil, archiveErr(a.image, "manifest.json", fmt.Errorf("%w: more than %d layers", ErrTooLarge, maxLayers))
		}
		cfg, err := a.resolve(e.Config)
		if err != nil {
			return nil, err
		}
		img, err := parseConfig(a, cfg)
		if err != nil {
			return nil, err
		}
		c := &candidate{
			entry:      "manifest.json",
			repoTags:   e.RepoTags,
			platform:   configPlatform(img),
			config:     cfg,
			image:      img,
			synthesize: true,
		}
		for _, name := range e.Layers {
			b, err := a.resolve(name)
			if err != nil {
				return nil, err
			}
			c.layers = append(c.layers, layerRef{entry: name, digest: b.Digest, size: b.Size, blob: b})
		}
		// Docker 25+ on the graphdriver store marks itself with LayerSources;
		// its generated OCI manifest is replaced by our deterministic one.
		// Otherwise (containerd store) keep the original manifest if
		// index.json leads to one for exactly this config and these layers.
		if len(e.LayerSources) == 0 && a.meta["index.json"] != nil {
			if !indexRead {
				if fromIndex, err = candidatesFromIndex(a, a.meta["index.json"]); err != nil {
					return nil, err
				}
				indexRead = true
			}
			for _, o := range fromIndex {
				if o.missing == nil && o.config == cfg && sameLayers(o.layers, c.layers) {
					c.manifestBlob, c.manifestBytes, c.manifest = o.manifestBlob, o.manifestBytes, o.manifest
					c.parents, c.synthesize = o.parents, false
					c.layers = o.layers
					for i := range c.layers {
						c.layers[i].blob, _ = a.get(c.layers[i].digest, -1)
					}
					break
				}
			}
		}
		out = append(out, c)
	}
	return out, nil
}

func sameLayers(a, b []layerRef) bool {
	return slices.EqualFunc(a, b, func(x, y layerRef) bool { return x.digest == y.digest })
}

// sniffMediaType recovers a missing descriptor media type from the blob.
func sniffMediaType(data []byte) string {
	var probe struct {
		MediaType string          `json:"mediaType"`
		Manifests json.RawMessage `json:"manifests"`
		Layers    json.RawMessage `json:"layers"`
	}
	if json.Unmarshal(data, &probe) != nil {
		return ""
	}
	switch {
	case probe.MediaType != "":
		return probe.MediaType
	case probe.Manifests != nil:
		return ocispec.MediaTypeImageIndex
	case probe.Layers != nil:
		return ocispec.MediaTypeImageManifest
	}
	return ""
}

// candidatesFromIndex walks index.json -> (nested indexes ->) image
// manifests. Descriptors whose blobs are absent are skipped (containerd
// exports reference platforms it does not have); attestations, referrers and
// non-image artifacts are never candidates.
func candidatesFromIndex(src blobSource, raw []byte) ([]*candidate, error) {
	var out []*candidate
	seen := map[digest.Digest]bool{}
	var walk func(entry string, raw []byte, depth int, parents []digest.Digest) error
	walk = func(entry string, raw []byte, depth int, parents []digest.Digest) error {
		var idx ocispec.Index
		if err := unmarshalJSON(src, entry, raw, &idx); err != nil {
			return err
		}
		for _, d := range idx.Manifests {
			if err := d.Digest.Validate(); err != nil {
				return archiveErr(src.imageName(), entry, fmt.Errorf("%w: descriptor digest: %v", ErrMalformedJSON, err))
			}
			if seen[d.Digest] || mediatype.IsAttestation(d) || !src.has(d.Digest) {
				continue
			}
			seen[d.Digest] = true
			b, err := src.get(d.Digest, d.Size)
			if err != nil {
				return err
			}
			data, err := src.readJSON(b)
			if err != nil {
				return err
			}
			mt := d.MediaType
			if mt == "" {
				mt = sniffMediaType(data)
			}
			switch {
			case mediatype.IsIndex(mt):
				if depth >= maxIndexDepth {
					return archiveErr(src.imageName(), b.entry, fmt.Errorf("%w: indexes nested deeper than %d", ErrTooLarge, maxIndexDepth))
				}
				if err := walk(b.entry, data, depth+1, append(slices.Clone(parents), d.Digest)); err != nil {
					return err
				}
			case mediatype.IsManifest(mt):
				c, err := manifestCandidate(src, d, b, data, parents)
				if err != nil {
					return err
				}
				if c != nil {
					out = append(out, c)
				}
			}
		}
		return nil
	}
	if err := walk("index.json", raw, 0, nil); err != nil {
		return nil, err
	}
	return out, nil
}

func manifestCandidate(src blobSource, d ocispec.Descriptor, b *stagedBlob, data []byte, parents []digest.Digest) (*candidate, error) {
	var m ocispec.Manifest
	if err := unmarshalJSON(src, b.entry, data, &m); err != nil {
		return nil, err
	}
	if m.Subject != nil || !mediatype.IsConfig(m.Config.MediaType) {
		return nil, nil // a referrer (signature, SBOM) or a non-image artifact
	}
	if len(m.Layers) > maxLayers {
		return nil, archiveErr(src.imageName(), b.entry, fmt.Errorf("%w: more than %d layers", ErrTooLarge, maxLayers))
	}
	for _, l := range m.Layers {
		if !mediatype.IsLayer(l.MediaType) {
			return nil, nil
		}
		if err := l.Digest.Validate(); err != nil {
			return nil, archiveErr(src.imageName(), b.entry, fmt.Errorf("%w: layer digest: %v", ErrMalformedJSON, err))
		}
	}
	if err := m.Config.Digest.Validate(); err != nil {
		return nil, archiveErr(src.imageName(), b.entry, fmt.Errorf("%w: config digest: %v", ErrMalformedJSON, err))
	}
	if m.MediaType == "" {
		m.MediaType = d.MediaType
	}
	c := &candidate{entry: b.entry, manifestBlob: b, manifestBytes: data, manifest: &m, parents: parents}
	if d.Platform != nil {
		c.platform = platforms.Normalize(*d.Platform)
	}
	if src.has(m.Config.Digest) {
		cfg, err := src.get(m.Config.Digest, m.Config.Size)
		if err != nil {
			return nil, err
		}
		img, err := parseConfig(src, cfg)
		if err != nil {
			return nil, err
		}
		c.config, c.image = cfg, img
		if p := configPlatform(img); p.OS != "" && p.Architecture != "" {
			if p.Variant == "" && c.platform.Architecture == p.Architecture {
				p.Variant = c.platform.Variant
			}
			c.platform = p
		}
		if c.platform.OS == "unknown" {
			return nil, nil
		}
	} else {
		c.missing = archiveErr(src.imageName(), blobPath(m.Config.Digest), fmt.Errorf("%w: config %s of manifest %s", ErrMissingBlob, m.Config.Digest, d.Digest))
	}
	for _, l := range m.Layers {
		c.layers = append(c.layers, layerRef{entry: blobPath(l.Digest), digest: l.Digest, size: l.Size, mediaType: l.MediaType})
		if c.missing == nil && !src.has(l.Digest) {
			c.missing = archiveErr(src.imageName(), blobPath(l.Digest), fmt.Errorf("%w: layer %s of manifest %s", ErrMissingBlob, l.Digest, d.Digest))
		}
	}
	return c, nil
}

// choose picks the image to load: the one matching want, else the host
// platform, else the only complete one.
func choose(cands []*candidate, want *ocispec.Platform, host ocispec.Platform, image string) (*candidate, error) {
	if len(cands) == 0 {
		return nil, archiveErr(image, "", fmt.Errorf("%w: no image manifest found", ErrNoImage))
	}
	available := func(cs []*candidate) []ocispec.Platform {
		out := make([]ocispec.Platform, len(cs))
		for i, c := range cs {
			out[i] = c.platform
		}
		return out
	}
	filter := func(cs []*candidate, keep func(*candidate) bool) []*candidate {
		var out []*candidate
		for _, c := range cs {
			if keep(c) {
				out = append(out, c)
			}
		}
		return out
	}
	complete := func(c *candidate) bool { return c.missing == nil }
	pick := func(cs []*candidate) (*candidate, error) {
		if len(cs) == 1 {
			return cs[0], nil
		}
		ok := filter(cs, complete)
		switch len(ok) {
		case 0:
			return cs[0], nil // fails verification with its missing blob
		case 1:
			return ok[0], nil
		}
		return nil, &AmbiguousError{Ref: image, Platforms: available(cs)}
	}
	if want != nil {
		m := filter(cands, func(c *candidate) bool { return platforms.Match(*want, c.platform) })
		if len(m) == 0 {
			return nil, &PlatformError{Ref: image, Want: *want, Available: available(cands)}
		}
		return pick(m)
	}
	if len(cands) == 1 {
		return cands[0], nil
	}
	if m := filter(cands, func(c *candidate) bool { return platforms.Match(host, c.platform) }); len(m) > 0 {
		return pick(m)
	}
	if ok := filter(cands, complete); len(ok) == 1 {
		return ok[0], nil
	}
	return nil, &AmbiguousError{Ref: image, Platforms: available(cands)}
}

// verified is a candidate whose blobs all checked out.
type verified struct {
	config         *stagedBlob
	layers         []*stagedBlob
	manifestBlob   *stagedBlob // nil when the manifest was synthesized
	manifestBytes  []byte
	manifestDigest digest.Digest
	manifest       ocispec.Manifest
	diffIDs        []digest.Digest
	platform       ocispec.Platform
	repoTags       []string
	parents        []digest.Digest
}

// verify stages the candidate's layers (if not yet), checks them with the
// rules of verify.go (the layer count, each diff ID, the platform), and
// settles the manifest, which must describe the blobs.
func verify(src blobSource, c *candidate) (*verified, error) {
	if c.missing != nil {
		return nil, c.missing
	}
	image := src.imageName()
	diffIDs := c.image.RootFS.DiffIDs
	if err := checkLayerCount(image, c.config.entry, diffIDs, len(c.layers)); err != nil {
		return nil, err
	}
	v := &verified{config: c.config, diffIDs: diffIDs, platform: c.platform, repoTags: c.repoTags, parents: c.parents}
	if err := checkPlatform(image, c.config.entry, v.platform); err != nil {
		return nil, err
	}
	for i, l := range c.layers {
		b := l.blob
		if b == nil {
			var err error
			if b, err = src.get(l.digest, l.size); err != nil {
				return nil, err
			}
		}
		if err := checkLayer(image, l.entry, i, b.Blob, diffIDs[i]); err != nil {
			return nil, err
		}
		v.layers = append(v.layers, b)
	}
	if c.manifest != nil && !c.synthesize {
		v.manifestBlob, v.manifestBytes, v.manifestDigest = c.manifestBlob, c.manifestBytes, c.manifestBlob.Digest
		v.manifest = *c.manifest
		return v, v.checkDescribed(image)
	}
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: c.config.Digest, Size: c.config.Size},
		Layers:    make([]ocispec.Descriptor, len(v.layers)),
	}
	for i, b := range v.layers {
		m.Layers[i] = ocispec.Descriptor{MediaType: b.compression.layerMediaType(), Digest: b.Digest, Size: b.Size}
	}
	data, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("%s: encode manifest: %w", image, err)
	}
	v.manifest, v.manifestBytes, v.manifestDigest = m, data, digest.FromBytes(data)
	return v, v.checkDescribed(image)
}

// checkDescribed checks that v's manifest describes v's blobs (rule 5 of
// verify.go).
func (v *verified) checkDescribed(image string) error {
	layers := make([]describedBlob, len(v.layers))
	for i, b := range v.layers {
		layers[i] = b.describedBlob
	}
	return checkDescribed(image, v.manifest, v.config.describedBlob, layers)
}

// interpret turns what a source offered into one verified image.
func interpret(src blobSource, meta map[string][]byte, want *ocispec.Platform, host ocispec.Platform) (*verified, error) {
	image := src.imageName()
	var cands []*candidate
	var err error
	if raw, ok := meta["oci-layout"]; ok {
		var layout ocispec.ImageLayout
		if err := unmarshalJSON(src, "oci-layout", raw, &layout); err != nil {
			return nil, err
		}
	}
	if raw, ok := meta["manifest.json"]; ok {
		a, isArchive := src.(*archive)
		if !isArchive {
			return nil, archiveErr(image, "manifest.json", ErrUnexpectedEntry)
		}
		if cands, err = candidatesFromManifestJSON(a, raw); err != nil {
			return nil, err
		}
	}
	if len(cands) == 0 {
		raw, ok := meta["index.json"]
		if !ok {
			return nil, archiveErr(image, "", fmt.Errorf("%w: neither manifest.json nor index.json", ErrNoImage))
		}
		if cands, err = candidatesFromIndex(src, raw); err != nil {
			return nil, err
		}
	}
	c, err := choose(cands, want, host, image)
	if err != nil {
		return nil, err
	}
	return verify(src, c)
}
