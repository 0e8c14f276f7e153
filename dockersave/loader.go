package dockersave

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/client"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/engine"
	"github.com/layerbridge/layerbridge/imageref"
	"github.com/layerbridge/layerbridge/internal/mediatype"
	"github.com/layerbridge/layerbridge/platforms"
	"github.com/layerbridge/layerbridge/store"
)

// Loader loads images from any source into a Store. It is safe for
// concurrent use; concurrent loads of one daemon image export it once.
type Loader struct {
	store    *store.Store
	log      *slog.Logger
	progress func(int64)
	// loadProgress, when set, is told the bytes read with the total
	// expected (WithLoadProgress).
	loadProgress func(Progress)
	host         ocispec.Platform
	openEng      func() (engine.Client, engine.Endpoint, error)

	mu     sync.Mutex
	engine engine.Client
	ep     engine.Endpoint
	api    string
}

// LoaderOption configures a Loader.
type LoaderOption func(*Loader)

// WithEngine sets the Docker Engine client for daemon references and the
// endpoint it talks to (used in errors: PermissionError names its socket).
// Without WithEngine or WithEngineFunc, loading a daemon reference fails.
func WithEngine(c engine.Client, ep engine.Endpoint) LoaderOption {
	return func(l *Loader) {
		l.openEng = func() (engine.Client, engine.Endpoint, error) { return c, ep, nil }
	}
}

// WithEngineFunc defers building the engine client until the first daemon
// reference is loaded, so archive and layout loads never resolve an endpoint.
// open is called on the first daemon load, and again on later ones until the
// client it returns has answered a ping; the Loader never closes it.
func WithEngineFunc(open func() (engine.Client, engine.Endpoint, error)) LoaderOption {
	return func(l *Loader) { l.openEng = open }
}

// WithLogger sets where decisions are logged (at debug level): source, cache
// hit or export, bytes and duration. The default discards.
func WithLogger(log *slog.Logger) LoaderOption {
	return func(l *Loader) {
		if log != nil {
			l.log = log
		}
	}
}

// WithProgress sets a callback receiving the number of bytes read from the
// source so far in the current load. It is called often, from the loading
// goroutine (concurrent loads call it concurrently): keep it fast.
func WithProgress(fn func(bytes int64)) LoaderOption {
	return func(l *Loader) { l.progress = fn }
}

// Progress is how far a load has read its source.
type Progress struct {
	// Bytes is how many bytes of the image's files (layers, config,
	// manifests) have been read so far.
	Bytes int64
	// Expected is about how many bytes the load will read in all, 0 when
	// unknown: for a daemon export the inspected size (on the containerd
	// image store the platform manifest's content size, the compressed
	// blobs the export holds; on a graphdriver store the image's size,
	// which the export's tar framing can exceed a little), for an
	// uncompressed archive file its size. Bytes can end above or below it.
	Expected int64
}

// WithLoadProgress is WithProgress with the bytes the load is expected to
// read in all. fn is called as WithProgress's callback is; a load that
// finds its image in the store reads nothing and never calls it.
func WithLoadProgress(fn func(Progress)) LoaderOption {
	return func(l *Loader) { l.loadProgress = fn }
}

// progressFor is the progress callback of a load expected to read about
// expected bytes (0: unknown).
func (l *Loader) progressFor(expected int64) func(int64) {
	if l.loadProgress == nil {
		return l.progress
	}
	return func(n int64) {
		if l.progress != nil {
			l.progress(n)
		}
		l.loadProgress(Progress{Bytes: n, Expected: expected})
	}
}

// WithHostPlatform overrides the platform preferred when an archive holds
// several images and none was requested. The default is the running program's.
func WithHostPlatform(p ocispec.Platform) LoaderOption {
	return func(l *Loader) { l.host = platforms.Normalize(p) }
}

// NewLoader returns a Loader writing into s. The store must stay open
// while the Loader is used.
func NewLoader(s *store.Store, opts ...LoaderOption) *Loader {
	l := &Loader{store: s, log: slog.New(slog.DiscardHandler), host: platforms.Host()}
	for _, o := range opts {
		o(l)
	}
	return l
}

// maxPinAttempts bounds Load's retries when the image is evicted between
// its load and its pin.
const maxPinAttempts = 3

// Load makes sure the image ref (see imageref.Parse) is in the store and returns
// it, pinned (see store.Pin): its blobs stay stored until release is called,
// however other goroutines and processes prune the store. Call release when
// the blobs are no longer needed (at once if they are not needed at all);
// extra calls do nothing.
//
// platform, when not nil, selects among the platforms of a multi-platform
// image or archive and is an error (*PlatformError) when the image has no
// such platform; nil means the daemon's image as inspected, or for archives
// the host platform, or the only image. Daemon images already stored for the
// same (image ID, platform) are not exported again (Image.CacheHit).
//
// The pin is taken before the image becomes evictable (a cache hit is
// looked up under the pin; a load is pinned before it releases the store's
// index lock), so no Prune can come in between. Should another export of
// the image interfere, it pins afterwards and, should Prune have evicted
// the image meanwhile, loads it again (a few times at most, then fails
// with an error wrapping store.ErrNotStored).
//
// Errors: *PlatformError, *AmbiguousError, *ArchiveError (with the sentinel
// errors of this package); for daemon images also the engine package's
// *NotFoundError, *UnreachableError, *PermissionError and *APIVersionError;
// or I/O errors wrapped with the reference.
func (l *Loader) Load(ctx context.Context, ref string, platform *ocispec.Platform) (img Image, release func(), err error) {
	for attempt := 1; ; attempt++ {
		img, pin, err := l.load(ctx, ref, platform)
		if err != nil {
			return Image{}, nil, err
		}
		if pin != nil {
			return img, pin.Release, nil
		}
		l.log.DebugContext(ctx, "pinning after load", "ref", ref, "manifest", img.ManifestDigest)
		pin, err = l.store.Pin(ctx, img.record())
		if err == nil {
			return img, pin.Release, nil
		}
		if !errors.Is(err, store.ErrNotStored) || attempt == maxPinAttempts {
			return Image{}, nil, fmt.Errorf("%s: %w", ref, err)
		}
		l.log.DebugContext(ctx, "evicted before pinned, loading again", "ref", ref, "attempt", attempt)
	}
}

// load is Load without the pin's second chance: the pin it returns
// is nil when it could not be taken before Prune could evict the image.
func (l *Loader) load(ctx context.Context, ref string, platform *ocispec.Platform) (Image, *store.Pin, error) {
	r, err := imageref.Parse(ref)
	if err != nil {
		return Image{}, nil, err
	}
	if platform != nil {
		p := platforms.Normalize(*platform)
		platform = &p
	}
	start := time.Now()
	l.log.DebugContext(ctx, "load image", "ref", ref, "source", r.Kind, "platform", platformAttr(platform))
	var img Image
	var pin *store.Pin
	switch r.Kind {
	case SourceDaemon:
		img, pin, err = l.loadDaemon(ctx, ref, r.Name, platform)
	case SourceOCILayout:
		img, pin, err = l.loadLayout(ctx, ref, r, platform)
	default:
		img, pin, err = l.loadArchiveFile(ctx, ref, r, platform)
	}
	if err != nil {
		l.log.DebugContext(ctx, "load failed", "ref", ref, "error", err, "duration", time.Since(start))
		return Image{}, nil, err
	}
	if img.CacheHit {
		// Exports were marked used when committed. The mark is advisory:
		// a store that cannot take it (read-only) still serves the image.
		if err := l.store.Touch(img.record()); err != nil {
			l.log.DebugContext(ctx, "cannot mark image used", "ref", ref, "error", err)
		}
	}
	l.log.DebugContext(ctx, "image loaded", "ref", ref, "id", img.ID, "platform", platforms.Format(img.Platform),
		"manifest", img.ManifestDigest, "layers", len(img.Manifest.Layers), "cache_hit", img.CacheHit, "pinned", pin != nil, "duration", time.Since(start))
	return img, pin, nil
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

func platformAttr(p *ocispec.Platform) string {
	if p == nil {
		return "any"
	}
	return platforms.Format(*p)
}

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

// loadDaemon loads a daemon image, and pins it when it can before Prune
// could evict it.
func (l *Loader) loadDaemon(ctx context.Context, ref, name string, want *ocispec.Platform) (Image, *store.Pin, error) {
	eng, ep, api, err := l.engineClient(ctx)
	if err != nil {
		return Image{}, nil, err
	}
	t, err := inspectTarget(ctx, eng, ep, api, ref, name, want)
	if err != nil {
		return Image{}, nil, err
	}
	id, have, ins := t.id, t.platform, t.inspect
	l.log.DebugContext(ctx, "inspected", "ref", ref, "id", id, "platform", platforms.Format(have), "tags", ins.RepoTags,
		"manifest", t.manifest, "platforms", formatPlatforms(t.platforms))
	hit := func(rec store.Record) Image {
		img := imageFromRecord(rec)
		img.Ref, img.Source, img.RepoTags, img.CacheHit = ref, SourceDaemon, ins.RepoTags, true
		l.log.DebugContext(ctx, "cache hit", "ref", ref, "id", id, "manifest", img.ManifestDigest)
		return img
	}
	// Prune cannot evict the image while the lookup's pin is held, so a hit
	// found under it is pinned.
	rec, pin, ok, err := l.store.LookupPinned(ctx, id, have)
	if err != nil {
		return Image{}, nil, fmt.Errorf("%s: %w", ref, err)
	}
	if ok {
		return hit(rec), pin, nil
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
		return hit(rec), nil, nil
	}

	var opts []client.ImageSaveOption
	if engine.AtLeast(api, engine.APIVersionSavePlatform) {
		opts = append(opts, client.ImageSaveWithPlatforms(have))
	}
	start := time.Now()
	l.log.DebugContext(ctx, "export", "ref", ref, "id", id, "with_platform", len(opts) > 0, "api_version", api)
	rc, err := eng.ImageSave(ctx, []string{id.String()}, opts...)
	if err != nil {
		return Image{}, nil, daemonErr(err, ep, ref)
	}
	defer rc.Close()
	st := newStager(l.store, l.progressFor(t.exportSize()))
	defer st.cleanup()
	a, err := readArchive(ctx, rc, st, ref)
	if err != nil {
		return Image{}, nil, err
	}
	v, err := interpret(a, a.meta, &have, l.host)
	if err != nil {
		return Image{}, nil, err
	}
	if err := checkAgainstInspect(ref, t, v); err != nil {
		return Image{}, nil, err
	}
	img := imageOf(ref, SourceDaemon, id, have, ins.RepoTags, v)
	pin, err = l.commit(ctx, img, v, lock)
	if err != nil {
		return Image{}, nil, err
	}
	l.log.DebugContext(ctx, "exported", "ref", ref, "bytes", st.total, "duration", time.Since(start))
	return img, pin, nil
}

// daemonTarget is what the daemon said about the image to export, before
// the export: the export must match it (checkAgainstInspect).
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

// checkAgainstInspect makes sure the daemon exported the image it described:
// the ID is the config digest (graphdriver) or a manifest or index digest
// (containerd store) of the export, or the export holds the platform
// manifest the daemon listed under that ID (an export of one platform of an
// index); and the diff IDs are those inspect listed.
func checkAgainstInspect(ref string, t daemonTarget, v *verified) error {
	ids := append([]digest.Digest{v.config.digest}, v.parents...)
	if v.manifestBlob != nil {
		ids = append(ids, v.manifestBlob.digest)
	}
	switch {
	case slices.Contains(ids, t.id):
	case t.manifest != "" && v.manifestBlob != nil && v.manifestBlob.digest == t.manifest:
	case t.manifest != "":
		return archiveErr(ref, "", fmt.Errorf("%w: the daemon lists manifest %s for image %s (%s), the export holds %s", ErrExportMismatch, t.manifest, t.id, platforms.Format(t.platform), exportedManifest(v)))
	default:
		return archiveErr(ref, "", fmt.Errorf("%w: image id %s is neither the config nor a manifest of the export", ErrExportMismatch, t.id))
	}
	layers := t.inspect.RootFS.Layers
	if len(layers) == 0 {
		return nil
	}
	if len(layers) != len(v.diffIDs) {
		return archiveErr(ref, "", fmt.Errorf("%w: inspect lists %d layers, export %d", ErrExportMismatch, len(layers), len(v.diffIDs)))
	}
	for i, l := range layers {
		if digest.Digest(l) != v.diffIDs[i] {
			return archiveErr(ref, "", fmt.Errorf("%w: layer %d is %s, inspect says %s", ErrExportMismatch, i, v.diffIDs[i], l))
		}
	}
	return nil
}

func exportedManifest(v *verified) string {
	if v.manifestBlob == nil {
		return "no manifest"
	}
	return "manifest " + v.manifestBlob.digest.String()
}

// commit stores the verified image img (v) holding its lock (nil when not
// held), and returns its pin (nil when it must be pinned afterwards).
func (l *Loader) commit(ctx context.Context, img Image, v *verified, lock *store.ImageLock) (*store.Pin, error) {
	if err := checkDescribed(img.Ref, v); err != nil {
		return nil, fmt.Errorf("%s: store: %w", img.Ref, err)
	}
	pin, err := l.store.Commit(ctx, img.record(), v.manifestBytes, v.staged(), lock)
	if err != nil {
		return nil, fmt.Errorf("%s: store: %w", img.Ref, err)
	}
	v.published()
	return pin, nil
}

func imageOf(ref string, kind SourceKind, id digest.Digest, p ocispec.Platform, tags []string, v *verified) Image {
	return Image{
		Ref:            ref,
		Source:         kind,
		ID:             id,
		Platform:       platforms.Normalize(p),
		RepoTags:       tags,
		ManifestDigest: v.manifestDigest,
		ManifestSize:   int64(len(v.manifestBytes)),
		Manifest:       v.manifest,
		DiffIDs:        v.diffIDs,
	}
}

// loadArchiveFile reads docker-archive: and oci-archive: files, gzip or zstd
// compressed or not (sniffed), with the same reader as daemon exports.
func (l *Loader) loadArchiveFile(ctx context.Context, ref string, r Ref, want *ocispec.Platform) (Image, *store.Pin, error) {
	f, err := os.Open(r.Name)
	if err != nil {
		return Image{}, nil, fmt.Errorf("%s: %w", ref, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Image{}, nil, fmt.Errorf("%s: %w", ref, err)
	}
	if fi.IsDir() {
		return Image{}, nil, archiveErr(ref, "", fmt.Errorf("%w: %s is a directory", ErrNotArchive, r.Name))
	}
	br := bufio.NewReaderSize(f, 64<<10)
	magic, _ := br.Peek(4)
	var in io.Reader = br
	comp := detectCompression(magic)
	if comp == compressionNone && fi.Size() > 0 && fi.Size() < blockSize {
		return Image{}, nil, archiveErr(ref, "", fmt.Errorf("%w: it has %d bytes, less than one tar header", ErrNotArchive, fi.Size()))
	}
	switch comp {
	case compressionGzip:
		gz, err := gzip.NewReader(br)
		if err != nil {
			return Image{}, nil, archiveErr(ref, "", fmt.Errorf("%w: gzip: %v", ErrTruncated, err))
		}
		in = &cappedReader{r: gz, limit: inflationLimit(fi.Size())}
	case compressionZstd:
		zd, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return Image{}, nil, archiveErr(ref, "", fmt.Errorf("%w: zstd: %v", ErrTruncated, err))
		}
		defer zd.Close()
		in = &cappedReader{r: zd, limit: inflationLimit(fi.Size())}
	}
	l.log.DebugContext(ctx, "read archive", "ref", ref, "path", r.Name, "compression", comp)
	start := time.Now()
	var expected int64
	if comp == compressionNone {
		expected = fi.Size()
	}
	st := newStager(l.store, l.progressFor(expected))
	defer st.cleanup()
	a, err := readArchive(ctx, in, st, ref)
	if err != nil {
		return Image{}, nil, err
	}
	v, err := interpret(a, a.meta, want, l.host)
	if err != nil {
		return Image{}, nil, err
	}
	img := imageOf(ref, r.Kind, v.config.digest, v.platform, v.repoTags, v)
	pin, err := l.commit(ctx, img, v, nil)
	if err != nil {
		return Image{}, nil, err
	}
	l.log.DebugContext(ctx, "archive stored", "ref", ref, "bytes", st.total, "duration", time.Since(start))
	return img, pin, nil
}
