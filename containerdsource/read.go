package containerdsource

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/dockersave"
	"github.com/layerbridge/layerbridge/internal/mediatype"
	"github.com/layerbridge/layerbridge/platforms"
)

// Limits on what is read before it is trusted, as for archives: metadata
// (indexes, manifests, configs) of at most 4 MiB, at most 500 layers,
// indexes nested at most this deep.
const (
	maxMetadataSize = 4 << 20
	maxLayers       = 500
	maxIndexDepth   = 3
)

// read reads and verifies the image whose root is target (a manifest, or an
// index of them), holding each blob in l before it reads it.
func (s *Source) read(ctx context.Context, b backend, l *lease, req dockersave.Request, name string, target ocispec.Descriptor) (dockersave.Image, error) {
	if err := l.add(ctx, target.Digest); err != nil {
		return dockersave.Image{}, classify(s.cfg.Address, err)
	}
	md, hint, err := s.chooseManifest(ctx, b, l, req, target)
	if err != nil {
		return dockersave.Image{}, err
	}
	platformOf := func() ocispec.Platform {
		switch {
		case hint != nil:
			return *hint
		case req.Platform != nil:
			return *req.Platform
		}
		return req.Host
	}
	if md.Digest != target.Digest {
		if err := l.add(ctx, md.Digest); err != nil {
			return dockersave.Image{}, classify(s.cfg.Address, err)
		}
	}
	raw, mblob, err := s.readMetadata(ctx, b, req.Ref, "manifest", md, platformOf())
	if err != nil {
		return dockersave.Image{}, err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return dockersave.Image{}, metaErr(req.Ref, "manifest", md, fmt.Errorf("%w: %v", dockersave.ErrMalformedJSON, err))
	}
	if m.MediaType == "" {
		m.MediaType = md.MediaType
	}
	if !mediatype.IsManifest(m.MediaType) || !mediatype.IsConfig(m.Config.MediaType) {
		return dockersave.Image{}, metaErr(req.Ref, "manifest", md, fmt.Errorf("%w: media type %q with a config of type %q is no image manifest", dockersave.ErrNoImage, m.MediaType, m.Config.MediaType))
	}
	if len(m.Layers) > maxLayers {
		return dockersave.Image{}, metaErr(req.Ref, "manifest", md, fmt.Errorf("%w: %d layers (limit %d)", dockersave.ErrTooLarge, len(m.Layers), maxLayers))
	}
	for i, ld := range m.Layers {
		if !mediatype.IsLayer(ld.MediaType) {
			return dockersave.Image{}, metaErr(req.Ref, "manifest", md, fmt.Errorf("%w: layer %d has media type %q, no image layer", dockersave.ErrNoImage, i, ld.MediaType))
		}
	}
	for _, d := range append([]ocispec.Descriptor{m.Config}, m.Layers...) {
		if err := l.add(ctx, d.Digest); err != nil {
			return dockersave.Image{}, classify(s.cfg.Address, err)
		}
	}
	raw, cblob, err := s.readMetadata(ctx, b, req.Ref, "config", m.Config, platformOf())
	if err != nil {
		return dockersave.Image{}, err
	}
	var config ocispec.Image
	if err := json.Unmarshal(raw, &config); err != nil {
		return dockersave.Image{}, metaErr(req.Ref, "config", m.Config, fmt.Errorf("%w: %v", dockersave.ErrMalformedJSON, err))
	}
	p := ocispec.Platform{OS: config.OS, Architecture: config.Architecture, Variant: config.Variant}
	if p.Variant == "" && hint != nil {
		p.Variant = hint.Variant
	}
	p = platforms.Normalize(p)
	if req.Platform != nil && p.OS != "" && !platforms.Match(*req.Platform, p) {
		return dockersave.Image{}, &dockersave.PlatformError{Ref: req.Ref, Want: *req.Platform, Available: []ocispec.Platform{p}}
	}
	layers, err := s.layers(ctx, b, req, m, p)
	if err != nil {
		return dockersave.Image{}, err
	}
	if err := dockersave.Verify(req.Ref, m, config, cblob, layers); err != nil {
		return dockersave.Image{}, err
	}
	return dockersave.Image{
		Ref:            req.Ref,
		Source:         Kind,
		ID:             target.Digest,
		Platform:       p,
		ManifestDigest: md.Digest,
		ManifestSize:   mblob.Size,
		Manifest:       m,
		DiffIDs:        config.RootFS.DiffIDs,
		Blobs:          s,
	}, nil
}

// readMetadata reads a small blob (index, manifest, config) whole and
// checks its digest and size against d (dockersave.Measure). p is the
// platform it belongs to, for a MissingContentError.
func (s *Source) readMetadata(ctx context.Context, b backend, ref, what string, d ocispec.Descriptor, p ocispec.Platform) ([]byte, dockersave.Blob, error) {
	if d.Size > maxMetadataSize {
		return nil, dockersave.Blob{}, metaErr(ref, what, d, fmt.Errorf("%w: %d bytes of metadata (limit %d)", dockersave.ErrTooLarge, d.Size, maxMetadataSize))
	}
	ra, err := b.ReaderAt(ctx, d)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil, dockersave.Blob{}, &MissingContentError{Ref: ref, Namespace: s.cfg.Namespace, Platform: p, What: what, Digest: d.Digest}
		}
		return nil, dockersave.Blob{}, fmt.Errorf("%s: read %s %s: %w", ref, what, d.Digest, classify(s.cfg.Address, err))
	}
	defer ra.Close()
	size := ra.Size()
	if size != d.Size {
		return nil, dockersave.Blob{}, metaErr(ref, what, d, fmt.Errorf("%w: containerd holds %d bytes, the descriptor says %d", dockersave.ErrSizeMismatch, size, d.Size))
	}
	data := make([]byte, size)
	if _, err := readFull(ra, data, 0); err != nil {
		return nil, dockersave.Blob{}, fmt.Errorf("%s: read %s %s: %w", ref, what, d.Digest, classify(s.cfg.Address, err))
	}
	blob, err := dockersave.Measure(bytes.NewReader(data), d.Size, d.Digest)
	if err != nil {
		return nil, dockersave.Blob{}, metaErr(ref, what, d, err)
	}
	return data, blob, nil
}

// metaErr is a verification failure of a metadata blob, as the archive
// readers report them.
func metaErr(ref, what string, d ocispec.Descriptor, err error) error {
	return &dockersave.ArchiveError{Image: ref, Err: fmt.Errorf("%s %s: %w", what, d.Digest, err)}
}

// candidate is an image manifest an index lists.
type candidate struct {
	d       ocispec.Descriptor
	p       ocispec.Platform
	present bool // its manifest is in the content store
}

// chooseManifest returns the image manifest to read: target itself, or
// the one of target's index (nested indexes included) for the platform
// asked for, else the host's, else the only one whose content is present.
// hint is the platform the index gives it (nil for a lone manifest).
// Attestation manifests are never chosen.
func (s *Source) chooseManifest(ctx context.Context, b backend, l *lease, req dockersave.Request, target ocispec.Descriptor) (ocispec.Descriptor, *ocispec.Platform, error) {
	switch {
	case mediatype.IsManifest(target.MediaType):
		return target, nil, nil
	case !mediatype.IsIndex(target.MediaType):
		return ocispec.Descriptor{}, nil, &dockersave.ArchiveError{Image: req.Ref, Err: fmt.Errorf("%w: the image's target %s has media type %q, neither an image manifest nor an index", dockersave.ErrNoImage, target.Digest, target.MediaType)}
	}
	cands, err := s.candidates(ctx, b, l, req, target, 0)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	if len(cands) == 0 {
		return ocispec.Descriptor{}, nil, &dockersave.ArchiveError{Image: req.Ref, Err: fmt.Errorf("%w: index %s lists no image manifest", dockersave.ErrNoImage, target.Digest)}
	}
	c, err := pick(req, cands, s.cfg.Namespace)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	req.Log.DebugContext(ctx, "platform chosen", "ref", req.Ref, "platform", platforms.Format(c.p), "manifest", c.d.Digest,
		"asked", platformAttr(req.Platform), "candidates", len(cands))
	p := c.p
	return c.d, &p, nil
}

// candidates lists the image manifests of the index d (and of the indexes
// it nests, whose content is present), attestations left out, each with
// whether its manifest is in the content store.
func (s *Source) candidates(ctx context.Context, b backend, l *lease, req dockersave.Request, d ocispec.Descriptor, depth int) ([]candidate, error) {
	if depth >= maxIndexDepth {
		return nil, metaErr(req.Ref, "index", d, fmt.Errorf("%w: indexes nested more than %d deep", dockersave.ErrTooLarge, maxIndexDepth))
	}
	raw, _, err := s.readMetadata(ctx, b, req.Ref, "index", d, req.Host)
	if err != nil {
		return nil, err
	}
	var idx ocispec.Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, metaErr(req.Ref, "index", d, fmt.Errorf("%w: %v", dockersave.ErrMalformedJSON, err))
	}
	var out []candidate
	for _, e := range idx.Manifests {
		if err := e.Digest.Validate(); err != nil {
			return nil, metaErr(req.Ref, "index", d, fmt.Errorf("%w: descriptor digest: %v", dockersave.ErrMalformedJSON, err))
		}
		if mediatype.IsAttestation(e) {
			continue
		}
		_, err := b.Info(ctx, e.Digest)
		present := err == nil
		if err != nil && !errdefs.IsNotFound(err) {
			return nil, fmt.Errorf("%s: %w", req.Ref, classify(s.cfg.Address, err))
		}
		switch {
		case mediatype.IsIndex(e.MediaType):
			if !present {
				continue
			}
			if err := l.add(ctx, e.Digest); err != nil {
				return nil, classify(s.cfg.Address, err)
			}
			nested, err := s.candidates(ctx, b, l, req, e, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, nested...)
		case mediatype.IsManifest(e.MediaType) && (e.Platform != nil || len(idx.Manifests) == 1):
			c := candidate{d: e, present: present}
			if e.Platform != nil {
				c.p = platforms.Normalize(*e.Platform)
			}
			out = append(out, c)
		}
	}
	return out, nil
}

// pick chooses among the candidates as the daemon and archive sources
// choose: the platform asked for, else the host's, else the only one
// present. Asked-for (or host) platforms whose content is absent are a
// *MissingContentError naming the platforms that are present.
func pick(req dockersave.Request, cands []candidate, namespace string) (candidate, error) {
	var all, present []ocispec.Platform
	for _, c := range cands {
		all = append(all, c.p)
		if c.present {
			present = append(present, c.p)
		}
	}
	matching := func(want ocispec.Platform) []candidate {
		var out []candidate
		for _, c := range cands {
			if platforms.Match(want, c.p) {
				out = append(out, c)
			}
		}
		return out
	}
	firstPresent := func(cs []candidate, want ocispec.Platform) (candidate, error) {
		if i := slices.IndexFunc(cs, func(c candidate) bool { return c.present }); i >= 0 {
			return cs[i], nil
		}
		return candidate{}, &MissingContentError{Ref: req.Ref, Namespace: namespace, Platform: want, What: "manifest", Digest: cs[0].d.Digest, Present: present}
	}
	if req.Platform != nil {
		m := matching(*req.Platform)
		if len(m) == 0 {
			return candidate{}, &dockersave.PlatformError{Ref: req.Ref, Want: *req.Platform, Available: all}
		}
		return firstPresent(m, *req.Platform)
	}
	if len(cands) == 1 {
		return firstPresent(cands, cands[0].p)
	}
	if m := matching(req.Host); len(m) > 0 {
		return firstPresent(m, m[0].p)
	}
	var ok []candidate
	for _, c := range cands {
		if c.present {
			ok = append(ok, c)
		}
	}
	switch len(ok) {
	case 1:
		return ok[0], nil
	case 0:
		return firstPresent(cands, cands[0].p)
	}
	return candidate{}, &dockersave.AmbiguousError{Ref: req.Ref, Platforms: present}
}

func platformAttr(p *ocispec.Platform) string {
	if p == nil {
		return "any"
	}
	return platforms.Format(*p)
}
