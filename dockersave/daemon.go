package dockersave

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/client"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/engine"
	"github.com/layerbridge/layerbridge/internal/mediatype"
	"github.com/layerbridge/layerbridge/platforms"
	"github.com/layerbridge/layerbridge/store"
)

// engineClient returns the engine and the negotiated API version, building
// and pinging the client on first use.
func (l *Loader) engineClient(ctx context.Context) (engine.Client, engine.Endpoint, string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.engine != nil {
		return l.engine, l.ep, l.api, nil
	}
	if l.openEng == nil {
		return nil, engine.Endpoint{}, "", fmt.Errorf("no docker engine configured for daemon images")
	}
	c, ep, err := l.openEng()
	if err != nil {
		return nil, engine.Endpoint{}, "", err
	}
	p, err := engine.Ping(ctx, c, ep)
	if err != nil {
		return nil, engine.Endpoint{}, "", err
	}
	l.log.DebugContext(ctx, "docker daemon", "host", ep.Host, "endpoint_source", ep.Source, "api_version", p.APIVersion, "os_type", p.OSType)
	l.engine, l.ep, l.api = c, ep, p.APIVersion
	return c, ep, p.APIVersion, nil
}

// loadDaemon is the source of daemon images (SourceDaemon): it reads them
// with `docker save` through the Engine API into the store, unless the
// store has the image ID and platform already, and pins them when it can
// before Prune could evict them.
func (l *Loader) loadDaemon(ctx context.Context, req Request) (_ Image, _ *store.Pin, err error) {
	ref, name, want := req.Ref, req.Name, req.Platform
	eng, ep, api, err := l.engineClient(ctx)
	if err != nil {
		return Image{}, nil, err
	}
	t, err := inspectTarget(ctx, eng, ep, api, ref, name, want)
	if err != nil {
		return Image{}, nil, err
	}
	id, have, ins := t.id, t.platform, t.inspect
	req.Log.DebugContext(ctx, "inspected", "ref", ref, "id", id, "platform", platforms.Format(have), "tags", ins.RepoTags,
		"manifest", t.manifest, "platforms", formatPlatforms(t.platforms))
	identity, err := t.identity()
	if err != nil {
		return Image{}, nil, fmt.Errorf("%s: %w", ref, err)
	}
	if req.Watch != nil {
		if err := req.Watch.Identified(ctx, identity); err != nil {
			return Image{}, nil, err
		}
	}
	hit := func(rec store.Record) Image {
		img := imageFromRecord(rec)
		img.Ref, img.Source, img.RepoTags, img.CacheHit = ref, SourceDaemon, ins.RepoTags, true
		req.Log.DebugContext(ctx, "cache hit", "ref", ref, "id", id, "manifest", img.ManifestDigest)
		return img
	}
	// Prune cannot evict the image while the lookup's pin is held, so a hit
	// found under it is pinned.
	rec, pin, ok, err := l.store.LookupPinned(ctx, id, have)
	if err != nil {
		return Image{}, nil, fmt.Errorf("%s: %w", ref, err)
	}
	if ok {
		img := hit(rec)
		if req.Watch != nil {
			req.Watch.Layers(ctx, img.Manifest.Layers, l.store)
		}
		return img, pin, nil
	}
	lock, err := l.store.LockImage(ctx, id, have)
	if err != nil {
		return Image{}, nil, fmt.Errorf("%s: %w", ref, err)
	}
	defer lock.Unlock()
	// Another goroutine or process may have exported it while we waited.
	if rec, ok, err := l.store.Lookup(id, have); err != nil {
		return Image{}, nil, err
	} else if ok {
		img := hit(rec)
		if req.Watch != nil {
			req.Watch.Layers(ctx, img.Manifest.Layers, l.store)
		}
		return img, nil, nil
	}

	var opts []client.ImageSaveOption
	if engine.AtLeast(api, engine.APIVersionSavePlatform) {
		opts = append(opts, client.ImageSaveWithPlatforms(have))
	}
	start := time.Now()
	req.Log.DebugContext(ctx, "export", "ref", ref, "id", id, "with_platform", len(opts) > 0, "api_version", api)
	rc, err := eng.ImageSave(ctx, []string{id.String()}, opts...)
	if err != nil {
		return Image{}, nil, daemonErr(err, ep, ref)
	}
	defer rc.Close()
	st := newStager(l.store, req.progressFor(t.exportSize()))
	defer st.cleanup()
	if req.Watch != nil {
		live := l.watchExport(ctx, req, t, identity, st)
		// After commit: from then on the store serves the blobs.
		defer func() { live.finish(err) }()
	}
	a, err := readArchive(ctx, rc, st, ref)
	if err != nil {
		return Image{}, nil, err
	}
	v, err := interpret(a, a.meta, &have, req.Host)
	if err != nil {
		return Image{}, nil, err
	}
	if err := checkExported(ref, t, v); err != nil {
		return Image{}, nil, err
	}
	img := imageOf(ref, SourceDaemon, id, have, ins.RepoTags, v)
	pin, err = l.commit(ctx, img, v, lock)
	if err != nil {
		return Image{}, nil, err
	}
	req.Log.DebugContext(ctx, "exported", "ref", ref, "bytes", st.total, "duration", time.Since(start))
	return img, pin, nil
}

// watchExport serves the blobs of the export of t as they are staged
// (Watcher.Layers; whole only once their digest and diff ID are checked
// against what the daemon listed), and announces the layers: at once for a
// graphdriver export, whose layers are the uncompressed diff IDs; on the
// containerd image store, once the platform's manifest has been read from
// the export, which names them. The caller finishes the returned board
// when the load ends.
func (l *Loader) watchExport(ctx context.Context, req Request, t daemonTarget, id Identity, st *stager) *liveBlobs {
	want := make(map[digest.Digest]bool, len(id.DiffIDs))
	for _, d := range id.DiffIDs {
		want[d] = true
	}
	live := newLiveBlobs(l.store, req.Log, req.Ref, func(b *stagedBlob) error {
		if !want[b.DiffID] {
			return fmt.Errorf("%w: blob %s is %s uncompressed, which is none of the image's diff ids", ErrDiffIDMismatch, b.Digest, b.DiffID)
		}
		return nil
	})
	// Blobs whose digests are known before their bytes arrive are served
	// while they are written.
	st.onStaging, st.onAbandoned = live.following, live.abandoned
	if t.synthesized() {
		// The layers are the diff IDs: nothing else is served. A legacy
		// archive's layer directories are named by v1 IDs, which the
		// diff IDs and one directory's json give.
		st.onStaging = func(d digest.Digest, size int64, tmp string) func(int64) {
			if !want[d] {
				return nil
			}
			return live.following(d, size, tmp)
		}
		st.legacy = newLegacyLayers(id.DiffIDs)
		layers := make([]ocispec.Descriptor, len(id.DiffIDs))
		for i, d := range id.DiffIDs {
			layers[i] = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d}
		}
		req.Log.DebugContext(ctx, "layers known before the export", "ref", req.Ref, "layers", len(layers))
		req.Watch.Layers(ctx, layers, live)
		st.onStaged = live.staged
		return live
	}
	announced := t.manifest == ""
	st.onStaged = func(b *stagedBlob) {
		live.staged(b)
		if announced || b.Digest != t.manifest {
			return
		}
		announced = true
		data, err := l.store.ReadStaging(b.tmp, maxMetadataSize)
		if err != nil {
			req.Log.DebugContext(ctx, "cannot read the exported manifest early", "ref", req.Ref, "manifest", b.Digest, "err", err)
			return
		}
		var m ocispec.Manifest
		if err := json.Unmarshal(data, &m); err != nil || len(m.Layers) != len(id.DiffIDs) {
			req.Log.DebugContext(ctx, "exported manifest unusable early", "ref", req.Ref, "manifest", b.Digest, "err", err)
			return
		}
		req.Log.DebugContext(ctx, "layers known from the exported manifest", "ref", req.Ref, "manifest", b.Digest, "layers", len(m.Layers))
		req.Watch.Layers(ctx, m.Layers, live)
	}
	return live
}

// synthesized reports whether the export of t comes without a manifest
// that layerbridge keeps (graphdriver daemons and podman), so that
// layerbridge synthesizes one whose layers are the diff IDs. On those the
// inspect response has no descriptor and the image ID is the config digest.
func (t daemonTarget) synthesized() bool {
	return t.manifest == "" && t.inspect.Descriptor == nil
}

// identity is what inspect told of the image (Watcher.Identified).
func (t daemonTarget) identity() (Identity, error) {
	id := Identity{ID: t.id, Platform: t.platform, RepoTags: t.inspect.RepoTags}
	for _, l := range t.inspect.RootFS.Layers {
		d, err := digest.Parse(l)
		if err != nil {
			return Identity{}, fmt.Errorf("daemon listed diff id %q: %w", l, err)
		}
		id.DiffIDs = append(id.DiffIDs, d)
	}
	switch {
	case t.manifest != "":
		id.IndexDigest = t.manifest
	case t.synthesized():
		id.IndexDigest = t.id
	}
	return id, nil
}

// daemonTarget is what the daemon said about the image to export, before
// the export: the export must match it (checkExported).
type daemonTarget struct {
	// id is the image ID as `docker images` shows it, which is also what is
	// exported: the config digest on a graphdriver daemon; on the
	// containerd image store the digest of the image's manifest or, for
	// images built by BuildKit and multi-platform images, of its index.
	id       digest.Digest
	platform ocispec.Platform
	// manifest is the digest of the platform's image manifest when the
	// daemon lists it (containerd image store, API 1.48 and later): an
	// export for one platform holds that manifest, not the index the ID
	// names. "" when the daemon does not say.
	manifest digest.Digest
	// platforms are the image platforms the daemon lists, for errors.
	platforms []ocispec.Platform
	// contentSize is the size of the content of manifest (the manifest,
	// its config and layers as stored, compressed), when the daemon lists
	// it: what an export of that platform holds.
	contentSize int64
	// inspect is the inspect result for platform: its RootFS.Layers are the
	// diff IDs the export must have.
	inspect client.ImageInspectResult
}

// inspectTarget inspects name and settles which platform of it to export.
// On the containerd image store an image is an index of platform manifests
// (and attestation manifests, which are never images); its ID stays the
// index's, whichever platform is exported.
func inspectTarget(ctx context.Context, eng engine.Client, ep engine.Endpoint, api, ref, name string, want *ocispec.Platform) (daemonTarget, error) {
	var opts []client.ImageInspectOption
	if engine.AtLeast(api, engine.APIVersionInspectManifests) {
		opts = append(opts, client.ImageInspectWithManifests(true))
	}
	ins, err := eng.ImageInspect(ctx, name, opts...)
	if err != nil {
		return daemonTarget{}, daemonErr(err, ep, ref)
	}
	id, err := digest.Parse(ins.ID)
	if err != nil {
		return daemonTarget{}, fmt.Errorf("%s: daemon returned image id %q: %w", ref, ins.ID, err)
	}
	t := daemonTarget{id: id, platform: inspectPlatform(ins), inspect: ins}
	// The image manifests the daemon lists, attestations left out.
	type listed struct {
		platform  ocispec.Platform
		digest    digest.Digest
		available bool
		content   int64
	}
	var manifests []listed
	for _, m := range ins.Manifests {
		if m.Kind != image.ManifestKindImage {
			continue
		}
		var p ocispec.Platform
		switch {
		case m.ImageData != nil && m.ImageData.Platform.OS != "":
			p = m.ImageData.Platform
		case m.Descriptor.Platform != nil:
			p = *m.Descriptor.Platform
		default:
			continue
		}
		d, err := digest.Parse(m.ID)
		if err != nil {
			return daemonTarget{}, fmt.Errorf("%s: daemon listed manifest id %q: %w", ref, m.ID, err)
		}
		manifests = append(manifests, listed{platform: platforms.Normalize(p), digest: d, available: m.Available, content: m.Size.Content})
		t.platforms = append(t.platforms, platforms.Normalize(p))
	}
	find := func(p ocispec.Platform) (listed, bool) {
		for _, m := range manifests {
			if m.available && platforms.Format(m.platform) == platforms.Format(p) {
				return m, true
			}
		}
		for _, m := range manifests {
			if platforms.Match(p, m.platform) {
				return m, true
			}
		}
		return listed{}, false
	}
	if want == nil || platforms.Match(*want, t.platform) {
		if m, ok := find(t.platform); ok {
			t.manifest, t.contentSize = m.digest, m.content
		}
		return t, nil
	}
	available := t.platforms
	if len(available) == 0 {
		available = []ocispec.Platform{t.platform}
	}
	if len(manifests) > 0 {
		m, ok := find(*want)
		if !ok {
			return daemonTarget{}, &PlatformError{Ref: ref, Want: *want, Available: available}
		}
		if !m.available {
			return daemonTarget{}, &PlatformError{Ref: ref, Want: *want, Available: available,
				Err: fmt.Errorf("the image lists %s, but its content is not in this daemon (pull it for that platform first)", platforms.Format(m.platform))}
		}
		t.manifest, t.contentSize = m.digest, m.content
	}
	if !engine.AtLeast(api, engine.APIVersionInspectPlatform) {
		return daemonTarget{}, &PlatformError{Ref: ref, Want: *want, Available: available}
	}
	// The platform's own config: its diff IDs and exact platform. Inspect
	// by the ID, so that a tag moved meanwhile cannot mix two images.
	pins, err := eng.ImageInspect(ctx, id.String(), client.ImageInspectWithPlatform(want))
	if err != nil {
		return daemonTarget{}, &PlatformError{Ref: ref, Want: *want, Available: available, Err: err}
	}
	if t.platform = inspectPlatform(pins); !platforms.Match(*want, t.platform) {
		return daemonTarget{}, &PlatformError{Ref: ref, Want: *want, Available: available}
	}
	if t.manifest == "" && pins.Descriptor != nil && mediatype.IsManifest(pins.Descriptor.MediaType) {
		t.manifest = pins.Descriptor.Digest
	}
	pins.ID, pins.RepoTags = ins.ID, ins.RepoTags
	t.inspect = pins
	return t, nil
}

// exportSize is about how many bytes the export of t reads (see
// Progress.Expected).
func (t daemonTarget) exportSize() int64 {
	if t.contentSize > 0 {
		return t.contentSize
	}
	return max(t.inspect.Size, 0)
}

// daemonErr classifies an error of the Engine API for ref (see
// engine.Classify); the daemon refusing a platform is a *PlatformError.
func daemonErr(err error, ep engine.Endpoint, ref string) error {
	if engine.IsPlatformUnavailable(err) {
		return &PlatformError{Ref: ref, Err: err}
	}
	return engine.Classify(err, ep, ref)
}

// inspectPlatform is the platform the daemon says an image is for.
func inspectPlatform(ins client.ImageInspectResult) ocispec.Platform {
	return platforms.Normalize(ocispec.Platform{OS: ins.Os, Architecture: ins.Architecture, Variant: ins.Variant})
}
