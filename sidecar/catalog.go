package sidecar

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/layerbridge/layerbridge/blobs"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/bridge"
	"github.com/layerbridge/layerbridge/store"
)

// ImageLister lists the images of a store and opens their blobs;
// *store.Store is one, and so is *containerdsource.Source (the images read
// from containerd, whose blobs stay there). Images must list, in the order
// they were stored, only images whose blobs Blob can open (or reports
// missing: an image removed since).
type ImageLister interface {
	Images() ([]store.Record, error)
	blobs.Opener
}

// UntaggedRepository is the repository that holds the stored images without
// a tag (an image scanned by ID, or a tag since removed from the daemon). They
// can be pulled by manifest digest only: UntaggedRepository@sha256:…
const UntaggedRepository = "layerbridge/untagged"

// Catalog is the bridge.Catalog of a store (and of the images read from
// containerd, which the store does not hold): the registry view serves the
// images they list, and nothing else. An image is listed because someone
// scanned (or inspected) it; the registry view never exports anything from
// the Docker daemon nor reads containerd's image list, so it offers no
// image that was not asked for.
//
// Repository names come from each image's RepoTags, as Docker names them:
//
//   - Docker Hub images get their short name: "alpine:3.11",
//     "library/alpine:3.11" and "docker.io/library/alpine:3.11" are all
//     repository "alpine", tag "3.11"; "docker.io/user/app:1" is "user/app".
//     A client may ask for the long forms too ("library/alpine",
//     "docker.io/library/alpine", "index.docker.io/library/alpine"): they
//     name the same repository, as distribution/reference normalizes them.
//   - Other registries keep their host: "ghcr.io/org/app:v1" is repository
//     "ghcr.io/org/app". A port cannot appear in a repository name, so its
//     colon becomes a dash: "localhost:5000/app:1" is "localhost-5000/app".
//   - Images without a usable tag are in UntaggedRepository, by digest.
//
// Every image is also reachable by its manifest digest in each of its
// repositories. When a tag names several stored images (the same tag
// stored for two platforms, or re-tagged), the most recently stored wins,
// and an image of a later lister wins over one of an earlier.
//
// When the lister can mark an image used (Touch, as *store.Store
// does), resolving an image's manifest marks it, so that images pulled
// through the registry view are evicted last. A pull is not pinned: an
// image evicted between its manifest and its blobs answers BLOB_UNKNOWN.
type Catalog struct {
	listers []ImageLister
}

// NewCatalog returns the catalog of the images images (and more, each
// after the last) list. It reads the lists on every request, so images
// stored or evicted later appear or disappear at once.
func NewCatalog(images ImageLister, more ...ImageLister) *Catalog {
	return &Catalog{listers: append([]ImageLister{images}, more...)}
}

var _ bridge.Catalog = (*Catalog)(nil)

// RepositoryOf returns the repository name and tag under which the registry
// view serves the image Docker calls repoTag (one of its RepoTags), as
// Catalog documents. ok is false for a repoTag that is not a tagged name
// (such as "<none>:<none>").
func RepositoryOf(repoTag string) (name, tag string, ok bool) {
	named, err := reference.ParseNormalizedNamed(repoTag)
	if err != nil {
		return "", "", false
	}
	tagged, isTagged := named.(reference.Tagged)
	if !isTagged {
		return "", "", false
	}
	if _, digested := named.(reference.Digested); digested {
		return "", "", false
	}
	if name, ok = viewName(named); !ok {
		return "", "", false
	}
	return name, tagged.Tag(), true
}

// viewName is the repository name of named in the registry view: Docker
// Hub's familiar name, or the registry host (lowercase, a port's colon as
// a dash) and path. ok is false when that is no repository name (an IPv6
// host).
func viewName(named reference.Named) (string, bool) {
	domain := reference.Domain(named)
	if domain == "docker.io" {
		return reference.FamiliarName(named), true
	}
	name := strings.ReplaceAll(strings.ToLower(domain), ":", "-") + "/" + reference.Path(named)
	if _, err := reference.WithName(name); err != nil {
		return "", false
	}
	return name, true
}

// requestedName is the registry view's name for the repository a client
// asks for, which may be a long form of a Docker Hub name
// ("docker.io/library/alpine" is "alpine"); "" if it names none. A port
// is no part of a name in the view (its colon is a dash there).
func requestedName(name string) string {
	if strings.Contains(name, ":") {
		return ""
	}
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil || !reference.IsNameOnly(named) {
		return ""
	}
	n, _ := viewName(named)
	return n
}

// member is a stored image in a repository, under tag ("" for none), and
// the lister that listed it.
type member struct {
	img  store.Record
	tag  string
	from ImageLister
}

// listed is an image and its lister.
type listed struct {
	img  store.Record
	from ImageLister
}

// repository returns the images of repository name, oldest first.
func (c *Catalog) repository(name string) ([]member, error) {
	var imgs []listed
	for _, l := range c.listers {
		recs, err := l.Images()
		if err != nil {
			return nil, fmt.Errorf("list stored images: %w", err)
		}
		for _, r := range recs {
			imgs = append(imgs, listed{r, l})
		}
	}
	want := requestedName(name)
	var out []member
	if want == "" {
		return nil, fmt.Errorf("repository %s: %w", name, bridge.ErrRepositoryUnknown)
	}
	for _, li := range imgs {
		tagged := false
		for _, rt := range li.img.RepoTags {
			n, tag, ok := RepositoryOf(rt)
			if !ok {
				continue
			}
			tagged = true
			if n == want {
				out = append(out, member{li.img, tag, li.from})
			}
		}
		if !tagged && want == UntaggedRepository {
			out = append(out, member{li.img, "", li.from})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("repository %s: %w", name, bridge.ErrRepositoryUnknown)
	}
	return out, nil
}

// toucher marks an image used; *store.Store is one.
type toucher interface {
	Touch(img store.Record) error
}

// touch marks m's image used, if its lister can. The mark only orders
// eviction, so failing to set it changes nothing else and is not reported.
func (c *Catalog) touch(m member) {
	if t, ok := m.from.(toucher); ok {
		_ = t.Touch(m.img)
	}
}

// ResolveTag returns the manifest of the most recently stored image that
// carries tag in repository name.
func (c *Catalog) ResolveTag(_ context.Context, name, tag string) (ocispec.Descriptor, error) {
	members, err := c.repository(name)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	for _, m := range slices.Backward(members) {
		if m.tag != "" && m.tag == tag {
			c.touch(m)
			return manifestDescriptor(m.img), nil
		}
	}
	return ocispec.Descriptor{}, fmt.Errorf("%s:%s: %w", name, tag, bridge.ErrNotInRepository)
}

// Lookup returns the descriptor of d if it is the manifest, the config or a
// layer of an image of repository name.
func (c *Catalog) Lookup(_ context.Context, name string, d digest.Digest) (ocispec.Descriptor, error) {
	members, err := c.repository(name)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	for _, m := range slices.Backward(members) {
		if m.img.ManifestDigest == d {
			c.touch(m)
			return manifestDescriptor(m.img), nil
		}
		if m.img.Manifest.Config.Digest == d {
			return m.img.Manifest.Config, nil
		}
		for _, l := range m.img.Manifest.Layers {
			if l.Digest == d {
				return l, nil
			}
		}
	}
	return ocispec.Descriptor{}, fmt.Errorf("%s@%s: %w", name, d, bridge.ErrNotInRepository)
}

// Blob opens blob d (bridge.Catalog) with the first lister that has it:
// blobs are named by their content, so any that has d has the same bytes.
// When none has it, the error wraps fs.ErrNotExist, unless a lister failed
// otherwise (containerd does not answer), which is that error.
func (c *Catalog) Blob(ctx context.Context, d digest.Digest) (blobs.Blob, error) {
	var notFound, failed error
	for _, l := range c.listers {
		b, err := l.Blob(ctx, d)
		switch {
		case err == nil:
			return b, nil
		case errors.Is(err, fs.ErrNotExist):
			notFound = err
		case failed == nil:
			failed = err
		}
	}
	if failed != nil {
		return nil, failed
	}
	return nil, notFound
}

// Tags returns the tags of repository name.
func (c *Catalog) Tags(_ context.Context, name string) ([]string, error) {
	members, err := c.repository(name)
	if err != nil {
		return nil, err
	}
	tags := []string{}
	for _, m := range members {
		if m.tag != "" && !slices.Contains(tags, m.tag) {
			tags = append(tags, m.tag)
		}
	}
	return tags, nil
}

// manifestDescriptor is the stored manifest's descriptor, without the
// platform (the registry view serves the manifest, not an index entry).
func manifestDescriptor(img store.Record) ocispec.Descriptor {
	d := img.ManifestDescriptor()
	d.Platform = nil
	return d
}
