package doctor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/go-units"
	"github.com/moby/moby/client"
	"github.com/moby/moby/client/pkg/versions"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/engine"
	"github.com/layerbridge/layerbridge/imageref"
	"github.com/layerbridge/layerbridge/platforms"
)

// apiManifests is the Engine API version from which image inspect can list
// an image's platforms (the containerd store's manifests).
const apiManifests = "1.48"

var dockerChecks = []string{CheckDockerEndpoint, CheckDockerReachable, CheckDockerPermission, CheckDockerAPI, CheckDockerStorage, CheckDockerImage}

func (r *run) docker(ctx context.Context) {
	if r.cfg.Docker == nil {
		r.skip("no docker daemon configured", dockerChecks...)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Wait)
	defer cancel()

	// A scan of an archive or layout never talks to the daemon: then a
	// daemon problem is worth knowing, not a reason to fail.
	bad := Failed
	ref, refErr := imageref.Parse(r.cfg.Image)
	if r.cfg.Image != "" && refErr == nil && ref.Kind != imageref.Daemon {
		bad = Warning
	}

	eng, ep, err := r.cfg.Docker()
	if ep.Host == "" {
		msg := "no docker endpoint"
		if err != nil {
			msg = err.Error()
		}
		r.add(CheckDockerEndpoint, bad, msg,
			"correct or unset the setting the message names (--docker-host, DOCKER_HOST, DOCKER_CONTEXT, or currentContext in the docker config.json); `docker context ls` lists the contexts")
		r.skip("no docker endpoint", dockerChecks[1:]...)
		r.image(ctx, nil, ref, refErr)
		return
	}
	r.add(CheckDockerEndpoint, Passed, describeEndpoint(ep), "")

	sock := statSocket(ep.Socket())
	if err != nil {
		r.add(CheckDockerReachable, bad, fmt.Sprintf("cannot build a docker client for %s: %v", ep.Host, err),
			"check the TLS files of the endpoint (DOCKER_CERT_PATH, or the context's TLS material)")
		r.skip("no docker client", dockerChecks[2:5]...)
		r.image(ctx, nil, ref, refErr)
		return
	}

	info, err := engine.Probe(ctx, eng, ep)
	var (
		perm        *engine.PermissionError
		unreachable *engine.UnreachableError
		apiErr      *engine.APIVersionError
	)
	switch {
	case err == nil:
		r.daemon = &info
		r.product = askProduct(ctx, eng, info)
		r.add(CheckDockerReachable, Passed, fmt.Sprintf("%s answered at %s", r.product, ep.Host), "")
		r.permission(sock, probeOK, bad)
		r.add(CheckDockerAPI, Passed, describeAPI(info.APIVersion), "")
		r.add(CheckDockerStorage, Passed, describeStorage(r.product, info), "")
	case errors.As(err, &perm):
		r.add(CheckDockerReachable, Skipped, fmt.Sprintf("not tested: %v (see %s)", err, CheckDockerPermission), "")
		r.permission(sock, probeDenied, bad)
		r.skip("the daemon could not be asked", CheckDockerAPI, CheckDockerStorage)
	case errors.As(err, &apiErr):
		r.add(CheckDockerReachable, Passed, fmt.Sprintf("a daemon answered at %s", ep.Host), "")
		r.permission(sock, probeOK, bad)
		r.add(CheckDockerAPI, bad, fmt.Sprintf("%v; layerbridge speaks Engine API %s to %s", err, client.MinAPIVersion, client.MaxAPIVersion),
			fmt.Sprintf("upgrade Docker Engine to 19.03 or later (API %s); or, if the daemon refuses this client's version, set DOCKER_MIN_API_VERSION on the daemon", client.MinAPIVersion))
		r.skip("the daemon's API is not usable", CheckDockerStorage)
	case errors.As(err, &unreachable):
		r.add(CheckDockerReachable, bad, unreachableEvidence(ep, sock, err), r.unreachableFix(ep))
		if sock.err == nil {
			r.permission(sock, probeOther, bad)
		} else {
			r.skip("no socket to check", CheckDockerPermission)
		}
		r.skip("the daemon did not answer", CheckDockerAPI, CheckDockerStorage)
	default:
		r.add(CheckDockerReachable, bad, err.Error(), r.unreachableFix(ep))
		r.permission(sock, probeOther, bad)
		r.skip("the daemon did not answer", CheckDockerAPI, CheckDockerStorage)
	}
	if r.daemon == nil {
		eng = nil
	}
	r.image(ctx, eng, ref, refErr)
}

func describeEndpoint(ep engine.Endpoint) string {
	why := ep.Source
	switch ep.Source {
	case "default":
		why = "default: no --docker-host, DOCKER_HOST, DOCKER_CONTEXT or current docker context"
	case "DOCKER_HOST":
		why = "the DOCKER_HOST variable"
	case "--docker-host":
		why = "the --docker-host flag"
	}
	s := fmt.Sprintf("%s, chosen by %s", ep.Host, why)
	if ep.TLS != nil {
		s += " (TLS"
		if ep.TLS.SkipVerify {
			s += ", server certificate not verified"
		}
		s += ")"
	}
	return s
}

func describeAPI(v string) string {
	s := fmt.Sprintf("Engine API %s (layerbridge speaks %s to %s)", v, client.MinAPIVersion, client.MaxAPIVersion)
	if v != "" && versions.LessThan(v, "1.48") {
		s += "; below 1.48 exports cannot be limited to one platform"
	}
	return s
}

func unreachableEvidence(ep engine.Endpoint, sock socketInfo, err error) string {
	switch {
	case sock.path == "":
		return err.Error()
	case errors.Is(sock.err, fs.ErrNotExist):
		return fmt.Sprintf("no socket at %s: nothing listens there (is the daemon running, or does it listen elsewhere?)", sock.path)
	case sock.err != nil:
		return fmt.Sprintf("cannot look at %s: %v", sock.path, sock.err)
	case !sock.isSocket:
		return fmt.Sprintf("%s exists but is not a socket (%s)", sock.path, lsMode(sock))
	}
	return fmt.Sprintf("%s exists but no daemon answers on it (a stale socket from a stopped daemon?): %v", sock.path, err)
}

func (r *run) unreachableFix(ep engine.Endpoint) string {
	var alt []string
	for _, c := range r.cfg.SocketCandidates {
		if c == ep.Socket() || slices.Contains(alt, c) {
			continue
		}
		if s := statSocket(c); s.err == nil && s.isSocket {
			alt = append(alt, c)
		}
	}
	fix := "start the Docker daemon (sudo systemctl start docker, or start Docker Desktop), or point layerbridge at the daemon you use with --docker-host or DOCKER_HOST"
	for _, a := range alt {
		fix += fmt.Sprintf("; a Docker socket exists at %s: export DOCKER_HOST=unix://%s", a, a)
	}
	return fix
}

// probeOutcome is how the daemon's ping went, for the permission check.
type probeOutcome int

const (
	probeOK     probeOutcome = iota // the ping went through the socket
	probeDenied                     // connecting was refused with EACCES
	probeOther                      // no answer for another reason
)

// permission reports whether this process may connect to the daemon's unix
// socket, from the socket's owner, group and mode against this process's
// user and groups.
func (r *run) permission(sock socketInfo, probe probeOutcome, bad Status) {
	switch {
	case sock.path == "":
		r.add(CheckDockerPermission, Skipped, "not a unix socket endpoint: no file permissions apply", "")
		return
	case sock.err != nil && errors.Is(sock.err, fs.ErrPermission):
		r.add(CheckDockerPermission, bad, fmt.Sprintf("%s cannot even look at %s: %v", currentIdentity(), sock.path, sock.err),
			"a directory above the socket is not searchable by your user: fix its mode, or use a daemon socket you may reach (--docker-host, DOCKER_HOST)")
		return
	case sock.err != nil:
		r.add(CheckDockerPermission, Skipped, fmt.Sprintf("cannot look at %s: %v", sock.path, sock.err), "")
		return
	}
	id := currentIdentity()
	v := id.access(sock)
	ev := fmt.Sprintf("you are %s; %s is owned by %s:%s with mode %s: %s", id, sock.path, nameOrID(sock.owner, sock.uid), nameOrID(sock.group, sock.gid), lsMode(sock), v.reason)
	switch {
	case probe == probeOK || (v.allowed && probe == probeOther):
		r.add(CheckDockerPermission, Passed, ev, "")
	case v.allowed:
		r.add(CheckDockerPermission, bad, ev+", yet connecting was denied",
			"the file mode is not what refuses you: look for a security module (SELinux, AppArmor) or a parent directory's ACL denying access, or use a daemon you may access (--docker-host, DOCKER_HOST)")
	default:
		r.add(CheckDockerPermission, bad, ev, permissionFix(id, sock))
	}
}

func nameOrID(name string, id uint32) string {
	if name != "" {
		return name
	}
	return fmt.Sprint(id)
}

func permissionFix(id identity, sock socketInfo) string {
	group := nameOrID(sock.group, sock.gid)
	switch {
	case sock.group != "" && id.listedIn(sock.gid):
		return fmt.Sprintf("you were added to group %s after this session started: log out and in again (or run `newgrp %s`) so that your processes carry the group", group, group)
	case sock.group == "docker":
		return "add your user to the docker group: sudo usermod -aG docker $USER, then log out and in again (or run `newgrp docker`); or run a rootless daemon you own and point at it: DOCKER_HOST=unix://$XDG_RUNTIME_DIR/docker.sock"
	case sock.perm&0o060 != 0 && sock.gid != 0:
		return fmt.Sprintf("add your user to group %s (sudo usermod -aG %s $USER, then log in again), run with sudo, or use a daemon you may access (--docker-host, DOCKER_HOST; rootless: unix://$XDG_RUNTIME_DIR/docker.sock)", group, group)
	}
	return fmt.Sprintf("only %s may open it: run with sudo, have the daemon create its socket with a group you are in (dockerd --group, or the docker.socket unit's SocketGroup), or use a daemon you may access (--docker-host, DOCKER_HOST; rootless: unix://$XDG_RUNTIME_DIR/docker.sock)", nameOrID(sock.owner, sock.uid))
}

// image checks that the image a scan would read is there, on which
// platforms, and how big it is. eng is nil when the daemon cannot be used.
func (r *run) image(ctx context.Context, eng engine.Client, ref imageref.Ref, refErr error) {
	switch {
	case r.cfg.Image == "":
		r.add(CheckDockerImage, Skipped, "no IMAGE given", "")
		return
	case refErr != nil:
		r.add(CheckDockerImage, Failed, refErr.Error(), "give a daemon image (name:tag, name@digest, image ID) or docker-archive:PATH, oci-archive:PATH, oci:DIR")
		return
	case ref.Kind == imageref.Containerd:
		r.add(CheckDockerImage, Skipped, "a containerd: image is read from containerd, not Docker (see "+CheckContainerdImage+")", "")
		return
	case ref.Kind != imageref.Daemon:
		r.localImage(ref)
		return
	case eng == nil:
		r.add(CheckDockerImage, Skipped, "the docker daemon cannot be asked", "")
		return
	}
	var opts []client.ImageInspectOption
	if r.daemon.ContainerdStore && !versions.LessThan(r.daemon.APIVersion, apiManifests) {
		opts = append(opts, client.ImageInspectWithManifests(true))
	}
	ins, err := eng.ImageInspect(ctx, ref.Name, opts...)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			r.add(CheckDockerImage, Failed,
				fmt.Sprintf("the daemon at %s (%s image store) has no image %q", r.daemon.Endpoint.Host, storeName(r.product, *r.daemon), ref.Name),
				fmt.Sprintf("`docker images` lists what this daemon has; `docker pull %s` or build it; if you built it with another daemon (rootless, Docker Desktop, another context), select that one with --docker-host, DOCKER_HOST or DOCKER_CONTEXT", ref.Name))
			return
		}
		r.add(CheckDockerImage, Failed, fmt.Sprintf("inspect %s: %v", ref.Name, err), "")
		return
	}
	r.imageBytes = ins.Size
	have := []ocispec.Platform{{OS: ins.Os, Architecture: ins.Architecture, Variant: ins.Variant}}
	var plats []string
	for _, m := range ins.Manifests {
		if m.Kind != "image" || m.ImageData == nil {
			continue
		}
		p := norm(m.ImageData.Platform)
		s := platforms.Format(p)
		if !m.Available {
			s += " (not pulled)"
		} else if !slices.ContainsFunc(have, func(h ocispec.Platform) bool { return samePlatform(h, p) }) {
			have = append(have, p)
		}
		plats = append(plats, s)
	}
	if len(plats) == 0 {
		plats = []string{platforms.Format(have[0])}
	}
	id := ins.ID
	if len(id) > 19 {
		id = id[:19] + "…"
	}
	ev := fmt.Sprintf("%s is %s, %s, platform(s) %s", ref.Name, id, humanSize(ins.Size), strings.Join(plats, ", "))
	if want := r.cfg.Platform; want != nil && !slices.ContainsFunc(have, func(h ocispec.Platform) bool { return matchPlatform(*want, h) }) {
		r.add(CheckDockerImage, Failed, ev+fmt.Sprintf("; none is the requested %s", platforms.Format(*want)),
			fmt.Sprintf("scan one of its platforms with --platform, or fetch the one you want: docker pull --platform %s %s", platforms.Format(*want), ref.Name))
		return
	}
	r.add(CheckDockerImage, Passed, ev, "")
}

func (r *run) localImage(ref imageref.Ref) {
	fi, err := os.Stat(ref.Name)
	if err != nil {
		r.add(CheckDockerImage, Failed, fmt.Sprintf("%s: %v", ref, err), "check the path (it is relative to the working directory)")
		return
	}
	if ref.Kind == imageref.OCILayout {
		r.add(CheckDockerImage, Passed, fmt.Sprintf("%s is a directory read without Docker", ref), "")
		return
	}
	r.imageBytes = fi.Size()
	r.add(CheckDockerImage, Passed, fmt.Sprintf("%s is a %s file read without Docker", ref, humanSize(fi.Size())), "")
}

func samePlatform(a, b ocispec.Platform) bool {
	return platforms.Format(norm(a)) == platforms.Format(norm(b))
}

// matchPlatform: same OS and architecture, and the same variant unless want
// has none (as dockersave selects).
func matchPlatform(want, have ocispec.Platform) bool {
	w, h := norm(want), norm(have)
	return w.OS == h.OS && w.Architecture == h.Architecture && (w.Variant == "" || w.Variant == h.Variant)
}

func norm(p ocispec.Platform) ocispec.Platform {
	n, err := platforms.Parse(platforms.Format(p))
	if err != nil {
		return p
	}
	return n
}

// humanSize prints a byte count as docker images does: 5.61MB.
func humanSize(n int64) string { return units.HumanSizeWithPrecision(float64(n), 3) }
