package doctor

import (
	"context"
	"errors"
	"fmt"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/containerdsource"
	"github.com/layerbridge/layerbridge/dockersave"
	"github.com/layerbridge/layerbridge/imageref"
	"github.com/layerbridge/layerbridge/platforms"
)

var containerdChecks = []string{CheckContainerdReachable, CheckContainerdNamespace, CheckContainerdImage}

// containerd checks the containerd a containerd: image would be read from:
// it answers (and its version), the namespace exists, and the image is
// there with all its content for the platform, verified as a scan would
// verify it. Problems fail the run when IMAGE is a containerd: image, and
// are warnings when containerd was named (Config.ContainerdNamed) for
// another image; otherwise the checks are skipped.
func (r *run) containerd(ctx context.Context) {
	src := r.cfg.Containerd
	ref, refErr := imageref.Parse(r.cfg.Image)
	wanted := r.cfg.Image != "" && refErr == nil && ref.Kind == imageref.Containerd
	switch {
	case src == nil:
		r.skip("no containerd configured", containerdChecks...)
		return
	case !wanted && !r.cfg.ContainerdNamed:
		r.skip("IMAGE is no containerd: image (give --containerd-address or CONTAINERD_ADDRESS to check containerd anyway)", containerdChecks...)
		return
	}
	bad := Warning
	if wanted {
		bad = Failed
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Wait)
	defer cancel()

	info, err := src.Probe(ctx)
	var (
		ue *containerdsource.UnreachableError
		pe *containerdsource.PermissionError
	)
	switch {
	case errors.As(err, &pe):
		r.add(CheckContainerdReachable, bad, err.Error(), containerdPermissionFix(pe))
		r.skip("containerd could not be asked", CheckContainerdNamespace, CheckContainerdImage)
		return
	case errors.As(err, &ue):
		fix := "start containerd, or point layerbridge at its socket with --containerd-address or CONTAINERD_ADDRESS (the default is " + containerdsource.DefaultAddress + "; k3s: /run/k3s/containerd/containerd.sock; Docker 29's: /run/docker/containerd/containerd.sock, or /run/containerd/containerd.sock)"
		r.add(CheckContainerdReachable, bad, err.Error(), fix)
		r.skip("containerd did not answer", CheckContainerdNamespace, CheckContainerdImage)
		return
	case err != nil:
		r.add(CheckContainerdReachable, bad, err.Error(), "")
		r.skip("containerd did not answer", CheckContainerdNamespace, CheckContainerdImage)
		return
	}
	version := info.Version
	if info.Revision != "" {
		version += " (revision " + info.Revision + ")"
	}
	r.add(CheckContainerdReachable, Passed, fmt.Sprintf("containerd %s answered at %s", version, info.Address), "")
	if info.HasNamespace {
		r.add(CheckContainerdNamespace, Passed, fmt.Sprintf("namespace %q exists (namespaces: %s)", src.Namespace(), strings.Join(info.Namespaces, ", ")), "")
	} else {
		r.add(CheckContainerdNamespace, bad, fmt.Sprintf("containerd has no namespace %q; it has %s", src.Namespace(), orNone(info.Namespaces)),
			"name the namespace that holds your images with --containerd-namespace or CONTAINERD_NAMESPACE: k8s.io on Kubernetes nodes, default for ctr, moby for Docker's containerd image store; `ctr namespaces list` lists them")
	}
	if !wanted {
		r.add(CheckContainerdImage, Skipped, "IMAGE is no containerd: image", "")
		return
	}
	r.containerdImage(ctx, src, ref)
}

// containerdImage loads the image as a scan would (lease, verification)
// and releases it at once.
func (r *run) containerdImage(ctx context.Context, src *containerdsource.Source, ref imageref.Ref) {
	var p *ocispec.Platform
	if r.cfg.Platform != nil {
		n := platforms.Normalize(*r.cfg.Platform)
		p = &n
	}
	img, release, err := src.Load(ctx, dockersave.Request{
		Ref: r.cfg.Image, Kind: ref.Kind, Name: ref.Name, Platform: p, Host: platforms.Host(), Log: r.log,
	})
	if err != nil {
		r.add(CheckContainerdImage, Failed, err.Error(), containerdImageFix(err, src, ref))
		return
	}
	release()
	var size int64
	for _, l := range img.Manifest.Layers {
		size += l.Size
	}
	r.add(CheckContainerdImage, Passed, fmt.Sprintf("%s is %s in namespace %q: manifest %s, %s, %d layer(s), %s compressed; its content is present and verified",
		r.cfg.Image, strings.Join(orName(img.RepoTags, ref.Name), ", "), src.Namespace(), img.ManifestDigest, platforms.Format(img.Platform), len(img.Manifest.Layers), humanSize(size)), "")
}

func containerdPermissionFix(pe *containerdsource.PermissionError) string {
	group := "its group"
	if pe.Group != "" {
		group = "its group " + pe.Group
	}
	return "containerd's socket is root-only by default (root:root, mode 0660): run layerbridge as root, or let a group use it: " +
		"set gid = GID under [grpc] in containerd's config.toml, restart containerd, and add your user to that group; " +
		"in a container or pod, add " + group + " to the process's groups (docker run --group-add GID; Kubernetes: securityContext.supplementalGroups)"
}

func containerdImageFix(err error, src *containerdsource.Source, ref imageref.Ref) string {
	var (
		nf      *containerdsource.NotFoundError
		missing *containerdsource.MissingContentError
		pe      *dockersave.PlatformError
	)
	switch {
	case errors.As(err, &nf) && len(nf.Elsewhere) > 0:
		return fmt.Sprintf("the image is in namespace %s: pass --containerd-namespace %s (or set CONTAINERD_NAMESPACE)", nf.Elsewhere[0], nf.Elsewhere[0])
	case errors.As(err, &nf):
		return fmt.Sprintf("`ctr -n %s images list` (or `crictl images` on a Kubernetes node) lists what the namespace has; pull the image there (ctr -n %s images pull NAME, crictl pull NAME)", src.Namespace(), src.Namespace())
	case errors.As(err, &missing):
		return fmt.Sprintf("containerd has this image for other platforms only: scan one of those with --platform, or fetch this one: ctr -n %s images pull --platform %s %s", src.Namespace(), platforms.Format(missing.Platform), ref.Name)
	case errors.As(err, &pe):
		return "choose one of the image's platforms with --platform"
	}
	return ""
}

func orNone(ss []string) string {
	if len(ss) == 0 {
		return "none"
	}
	return strings.Join(ss, ", ")
}

func orName(tags []string, name string) []string {
	if len(tags) == 0 {
		return []string{name}
	}
	return tags
}
