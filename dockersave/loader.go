package dockersave

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/engine"
	"github.com/layerbridge/layerbridge/imageref"
	"github.com/layerbridge/layerbridge/platforms"
	"github.com/layerbridge/layerbridge/store"
)

// Loader loads images by reference, each with the Source registered for the
// reference's kind: the built-in sources read Docker daemon images,
// docker-archive: and oci-archive: files and oci: layouts into a store;
// WithSource adds others. It is safe for concurrent use; concurrent loads
// of one daemon image export it once.
type Loader struct {
	store    *store.Store
	log      *slog.Logger
	progress func(int64)
	// loadProgress, when set, is told the bytes read with the total
	// expected (WithLoadProgress).
	loadProgress func(Progress)
	host         ocispec.Platform
	sources      map[SourceKind]Source
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

// progressFunc is what a load reports its progress to (Request.Progress):
// the callbacks of WithProgress and WithLoadProgress; nil with neither.
func (l *Loader) progressFunc() func(Progress) {
	if l.progress == nil && l.loadProgress == nil {
		return nil
	}
	return func(p Progress) {
		if l.progress != nil {
			l.progress(p.Bytes)
		}
		if l.loadProgress != nil {
			l.loadProgress(p)
		}
	}
}

// WithHostPlatform overrides the platform preferred when an archive holds
// several images and none was requested. The default is the running program's.
func WithHostPlatform(p ocispec.Platform) LoaderOption {
	return func(l *Loader) { l.host = platforms.Normalize(p) }
}

// WithSource makes the Loader read references of kind with src. A kind
// imageref.Parse does not know is written "KIND:NAME" (a registered kind takes
// precedence over a daemon image of that name, which can still be written
// "docker-daemon:KIND:NAME"); for a kind it knows (SourceDaemon,
// SourceDockerArchive, SourceOCIArchive, SourceOCILayout), src replaces the
// built-in source. The Loader does not check what src returns: see Source.
// WithSource panics on an empty kind or one holding a colon.
func WithSource(kind SourceKind, src Source) LoaderOption {
	if kind == "" || strings.Contains(string(kind), ":") {
		panic(fmt.Sprintf("dockersave: WithSource: invalid kind %q", kind))
	}
	return func(l *Loader) { l.sources[kind] = src }
}

// NewLoader returns a Loader whose built-in sources write into s. The store
// must stay open while the Loader is used.
func NewLoader(s *store.Store, opts ...LoaderOption) *Loader {
	l := &Loader{store: s, log: slog.New(slog.DiscardHandler), host: platforms.Host()}
	archives := l.storeSource(l.loadArchiveFile)
	l.sources = map[SourceKind]Source{
		SourceDaemon:        l.storeSource(l.loadDaemon),
		SourceDockerArchive: archives,
		SourceOCIArchive:    archives,
		SourceOCILayout:     l.storeSource(l.loadLayout),
	}
	for _, o := range opts {
		o(l)
	}
	return l
}

// Load loads the image ref (see imageref.Parse, and WithSource for other kinds)
// with the source of its kind and returns it with its release: the image's
// blobs stay available (the built-in sources pin them in the store, however
// other goroutines and processes prune it) until release is called. Call
// release when the blobs are no longer needed (at once if they are not
// needed at all); extra calls do nothing.
//
// platform, when not nil, selects among the platforms of a multi-platform
// image or archive and is an error (*PlatformError) when the image has no
// such platform; nil means the daemon's image as inspected, or for archives
// the host platform, or the only image. Daemon images already stored for the
// same (image ID, platform) are not exported again (Image.CacheHit).
//
// Errors: *PlatformError, *AmbiguousError, *ArchiveError (with the sentinel
// errors of this package); for daemon images also the engine package's
// *NotFoundError, *UnreachableError, *PermissionError and *APIVersionError;
// an error wrapping store.ErrNotStored when Prune kept evicting the image
// before it could be pinned; or I/O errors wrapped with the reference.
func (l *Loader) Load(ctx context.Context, ref string, platform *ocispec.Platform, opts ...LoadOption) (img Image, release func(), err error) {
	r, err := l.parse(ref)
	if err != nil {
		return Image{}, nil, err
	}
	if platform != nil {
		p := platforms.Normalize(*platform)
		platform = &p
	}
	start := time.Now()
	l.log.DebugContext(ctx, "load image", "ref", ref, "source", r.Kind, "platform", platformAttr(platform))
	req := Request{Ref: ref, Kind: r.Kind, Name: r.Name, Platform: platform, Host: l.host, Progress: l.progressFunc(), Log: l.log}
	for _, o := range opts {
		o(&req)
	}
	src := l.sources[r.Kind]
	if src == nil {
		return Image{}, nil, fmt.Errorf("%s: %w: %s", ref, ErrNoSource, r.Kind)
	}
	img, release, err = src.Load(ctx, req)
	if err == nil && (img.Blobs == nil || release == nil) {
		if release != nil {
			release()
		}
		err = fmt.Errorf("%s: the %s source returned an image without Blobs or release", ref, r.Kind)
	}
	if err != nil {
		l.log.DebugContext(ctx, "load failed", "ref", ref, "error", err, "duration", time.Since(start))
		return Image{}, nil, err
	}
	if img.IndexDigest == "" {
		img.IndexDigest = indexDigest(img.ManifestDigest, img.Manifest.Config.Digest, img.Synthesized)
	}
	l.log.DebugContext(ctx, "image loaded", "ref", ref, "id", img.ID, "platform", platforms.Format(img.Platform),
		"manifest", img.ManifestDigest, "layers", len(img.Manifest.Layers), "cache_hit", img.CacheHit, "duration", time.Since(start))
	return img, release, nil
}

// parse parses ref: "KIND:NAME" for a kind registered with WithSource that
// imageref.Parse does not know, else as imageref.Parse does.
func (l *Loader) parse(ref string) (Ref, error) {
	if kind, name, ok := strings.Cut(ref, ":"); ok && l.sources[SourceKind(kind)] != nil && !slices.Contains(builtinKinds, SourceKind(kind)) {
		if name == "" {
			return Ref{}, fmt.Errorf("parse image reference %q: empty name", ref)
		}
		return Ref{Kind: SourceKind(kind), Name: name}, nil
	}
	return imageref.Parse(ref)
}

func platformAttr(p *ocispec.Platform) string {
	if p == nil {
		return "any"
	}
	return platforms.Format(*p)
}
