package containerdsource

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/dockersave"
	"github.com/layerbridge/layerbridge/imageref"
	"github.com/layerbridge/layerbridge/platforms"
	"github.com/layerbridge/layerbridge/store"
)

// The defaults of containerd's own tools (ctr, nerdctl, crictl on a
// Kubernetes node).
const (
	DefaultAddress   = "/run/containerd/containerd.sock"
	DefaultNamespace = "k8s.io"
)

// Kind is the reference kind this source reads: containerd:NAME.
const Kind = imageref.Containerd

// Config configures a Source.
type Config struct {
	// Address is containerd's gRPC socket ("" is DefaultAddress).
	Address string
	// Namespace is the containerd namespace images are read from ("" is
	// DefaultNamespace): k8s.io on Kubernetes nodes, default for ctr,
	// moby for Docker 29's image store.
	Namespace string
	// Store keeps what the source learns across runs (see layers.go and
	// catalog.go): the diff IDs of layers it decompressed and the images
	// it read, for the registry view. nil remembers nothing.
	Store *store.Store
	// LeaseTTL is the expiry of the leases that pin loaded images (0 is
	// DefaultLeaseTTL); see lease.go.
	LeaseTTL time.Duration
	// Logger takes the source's decisions at debug level; nil discards.
	Logger *slog.Logger
}

// Source reads images from containerd's image and content stores: it is
// the dockersave.Source of containerd: references, and the blobs.Opener
// its images' blobs are served with. It connects on first use and is safe
// for concurrent use.
type Source struct {
	cfg  Config
	log  *slog.Logger
	dial func(address string) (backend, error)

	mu sync.Mutex
	b  backend
}

// New returns a Source for cfg. It does not connect yet.
func New(cfg Config) *Source {
	if cfg.Address == "" {
		cfg.Address = DefaultAddress
	}
	if cfg.Namespace == "" {
		cfg.Namespace = DefaultNamespace
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Source{cfg: cfg, log: log, dial: dial}
}

// Address is the containerd address the source talks to.
func (s *Source) Address() string { return s.cfg.Address }

// Namespace is the namespace it reads.
func (s *Source) Namespace() string { return s.cfg.Namespace }

// Close closes the connection, if any.
func (s *Source) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b == nil {
		return nil
	}
	err := s.b.Close()
	s.b = nil
	return err
}

// backend returns the client, connecting on first use (and again after a
// socket that did not exist).
func (s *Source) backend() (backend, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b != nil {
		return s.b, nil
	}
	b, err := s.dial(s.cfg.Address)
	if err != nil {
		return nil, err
	}
	s.b = b
	return b, nil
}

func (s *Source) withNamespace(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, s.cfg.Namespace)
}

// Load reads the image req names (containerd:NAME) from the namespace,
// verified, pinned by a lease until the returned release is called, with
// the source itself opening its blobs in place (nothing is copied into
// the store). See doc.go for what is verified and how.
//
// Errors: *UnreachableError, *PermissionError, *NotFoundError,
// *MissingContentError, dockersave's *PlatformError and *AmbiguousError,
// and *dockersave.ArchiveError for content that breaks the rules of
// dockersave's verify.go.
func (s *Source) Load(ctx context.Context, req dockersave.Request) (dockersave.Image, func(), error) {
	ref, err := imageref.Parse(string(Kind) + ":" + req.Name)
	if err != nil {
		return dockersave.Image{}, nil, err
	}
	b, err := s.backend()
	if err != nil {
		return dockersave.Image{}, nil, err
	}
	ctx = s.withNamespace(ctx)
	start := time.Now()
	img, err := s.findImage(ctx, b, req.Ref, ref)
	if err != nil {
		return dockersave.Image{}, nil, err
	}
	req.Log.DebugContext(ctx, "containerd image", "ref", req.Ref, "name", img.Name, "namespace", s.cfg.Namespace,
		"target", img.Target.Digest, "media_type", img.Target.MediaType)
	l, err := takeLease(ctx, b, req.Ref, s.cfg.LeaseTTL, s.log)
	if err != nil {
		return dockersave.Image{}, nil, classify(s.cfg.Address, err)
	}
	out, err := s.read(ctx, b, l, req, img.Name, img.Target)
	if err != nil {
		l.release()
		return dockersave.Image{}, nil, err
	}
	out.RepoTags = s.repoTags(ctx, b, img.Name, img.Target.Digest)
	s.remember(out)
	req.Log.DebugContext(ctx, "containerd image verified", "ref", req.Ref, "manifest", out.ManifestDigest,
		"platform", platforms.Format(out.Platform), "layers", len(out.Manifest.Layers), "duration", time.Since(start))
	return out, l.release, nil
}

// findImage looks name up in the namespace: as given, then normalized
// (alpine:3.11 is docker.io/library/alpine:3.11 in containerd, as nerdctl
// and crictl name it); an image ID is a target digest (Docker 29's image
// IDs) or the name CRI gives an image by its config digest.
func (s *Source) findImage(ctx context.Context, b backend, given string, ref imageref.Ref) (imgRecord, error) {
	names := []string{ref.Name}
	if ref.Named != nil {
		if n := reference.TagNameOnly(ref.Named).String(); n != ref.Name {
			names = append(names, n)
		}
	}
	if ref.ID != "" && ref.ID != ref.Name {
		names = append(names, ref.ID)
	}
	for _, n := range names {
		img, err := b.GetImage(ctx, n)
		if err == nil {
			return imgRecord{Name: img.Name, Target: img.Target}, nil
		}
		if !errdefs.IsNotFound(err) {
			return imgRecord{}, s.lookupError(given, err)
		}
	}
	if ref.ID != "" {
		imgs, err := b.ListImages(ctx, "target.digest=="+ref.ID)
		if err != nil {
			return imgRecord{}, s.lookupError(given, err)
		}
		if len(imgs) > 0 {
			return imgRecord{Name: imgs[0].Name, Target: imgs[0].Target}, nil
		}
	}
	nf := &NotFoundError{Ref: given, Name: names[len(names)-1], Namespace: s.cfg.Namespace, Address: s.cfg.Address}
	nf.Elsewhere = s.elsewhere(ctx, b, names)
	return imgRecord{}, nf
}

type imgRecord struct {
	Name   string
	Target ocispec.Descriptor
}

func (s *Source) lookupError(ref string, err error) error {
	return fmt.Errorf("%s: look up in containerd namespace %q: %w", ref, s.cfg.Namespace, classify(s.cfg.Address, err))
}

// elsewhere lists the other namespaces holding an image under one of
// names; nil when none does or they cannot be listed.
func (s *Source) elsewhere(ctx context.Context, b backend, names []string) []string {
	nss, err := b.Namespaces(ctx)
	if err != nil {
		s.log.DebugContext(ctx, "cannot list containerd namespaces", "error", err)
		return nil
	}
	var out []string
	for _, ns := range nss {
		if ns == s.cfg.Namespace {
			continue
		}
		nctx := namespaces.WithNamespace(ctx, ns)
		for _, n := range names {
			if _, err := b.GetImage(nctx, n); err == nil {
				out = append(out, ns)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

// repoTags are the tagged names the namespace gives the image's target:
// the image's tags, as docker inspect lists RepoTags.
func (s *Source) repoTags(ctx context.Context, b backend, name string, target digest.Digest) []string {
	names := []string{name}
	if imgs, err := b.ListImages(ctx, "target.digest=="+target.String()); err == nil {
		for _, i := range imgs {
			names = append(names, i.Name)
		}
	} else {
		s.log.DebugContext(ctx, "cannot list the image's other names", "target", target, "error", err)
	}
	var tags []string
	for _, n := range names {
		named, err := reference.ParseNormalizedNamed(n)
		if err != nil {
			continue
		}
		if _, ok := named.(reference.NamedTagged); !ok {
			continue
		}
		if _, ok := named.(reference.Digested); ok {
			continue
		}
		if !slices.Contains(tags, n) {
			tags = append(tags, n)
		}
	}
	return tags
}
