package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/clairv2"
	"github.com/layerbridge/layerbridge/clairv4"
	"github.com/layerbridge/layerbridge/containerdsource"
	"github.com/layerbridge/layerbridge/dockersave"
	"github.com/layerbridge/layerbridge/engine"
	"github.com/layerbridge/layerbridge/imageref"
	"github.com/layerbridge/layerbridge/platforms"
	"github.com/layerbridge/layerbridge/reach"
	"github.com/layerbridge/layerbridge/scan"
)

// hintsFor turns a typed error into the next steps to take. Data comes from
// where the error was made; the advice is written here, where the user reads.
func hintsFor(err error) []string {
	var hints []string
	add := func(format string, args ...any) { hints = append(hints, fmt.Sprintf(format, args...)) }

	var (
		ue          *usageError
		badRef      *imageref.Error
		perm        *engine.PermissionError
		unreachable *engine.UnreachableError
		apiVer      *engine.APIVersionError
		notFound    *engine.NotFoundError
		platform    *dockersave.PlatformError
		ambiguous   *dockersave.AmbiguousError
		mismatch    *scan.APIMismatchError
		noClair     *scan.NoClairError
		clairDown   *scan.ClairUnreachableError
		noName      *reach.NameError
		unroutable  *reach.UnroutableError
		auth        *scan.AuthError
		fetch       *scan.LayerFetchError
		archive     *dockersave.ArchiveError
		clairAPI    *clairv4.APIError
		clairIndex  *clairv4.IndexError
		clair2API   *clairv2.APIError
		path        *fs.PathError
		ctrDown     *containerdsource.UnreachableError
		ctrPerm     *containerdsource.PermissionError
		ctrNotFound *containerdsource.NotFoundError
		ctrMissing  *containerdsource.MissingContentError
	)
	// An error that carries its own hints (see hintedError) adds them.
	var own interface{ Hints() []string }
	if errors.As(err, &own) {
		hints = append(hints, own.Hints()...)
	}
	switch {
	case errors.As(err, &ue):
		hints = append(hints, ue.hints...)
	case errors.As(err, &badRef):
		add("IMAGE is an image of the Docker daemon (alpine:3.11, ghcr.io/org/app@sha256:..., sha256:...), or %s; or containerd:NAME, an image of containerd named as a daemon image (a containerd image ID is whole: sha256:<64 hex digits>)", acceptedForms)
	case errors.As(err, &perm):
		sock := perm.Socket
		if sock == "" {
			sock = perm.Host
		}
		add("your user may not open %s: add it to the socket's group (usually: sudo usermod -aG docker $USER, then log in again)", sock)
		add("or point at a daemon you may use: --docker-host or DOCKER_HOST (a rootless daemon: unix://$XDG_RUNTIME_DIR/docker.sock)")
		add("in a container, give its user the socket's group: docker run --group-add \"$(stat -c %%g %s)\" (compose: group_add)", sock)
	case errors.As(err, &ctrPerm):
		add("containerd's socket is root-only by default (root:root, mode 0660): run layerbridge as root (sudo), or let a group in: set gid = GID under [grpc] in containerd's config.toml (/etc/containerd/config.toml), restart containerd, and add your user to that group")
		add("in a container or pod, give the process the socket's group: docker run --group-add GID, or Kubernetes securityContext.supplementalGroups: [GID] (deploy/kubernetes/ does)")
	case errors.As(err, &ctrDown):
		if ctrDown.Missing {
			add("is containerd running, and is %s its socket? name it with --containerd-address or CONTAINERD_ADDRESS (k3s: /run/k3s/containerd/containerd.sock; in a container, mount the host's socket)", ctrDown.Address)
		} else {
			add("the socket %s exists but containerd does not answer there: is it running? (systemctl status containerd)", ctrDown.Address)
		}
		add(`"layerbridge doctor containerd:IMAGE" checks containerd, its namespace and the image`)
	case errors.As(err, &ctrNotFound):
		if len(ctrNotFound.Elsewhere) > 0 {
			add("the image is in namespace %q: pass --containerd-namespace %s (or set CONTAINERD_NAMESPACE)", ctrNotFound.Elsewhere[0], ctrNotFound.Elsewhere[0])
		} else {
			add("`ctr -n %s images list` (on a Kubernetes node: crictl images) lists what the namespace has; the namespace is chosen with --containerd-namespace or CONTAINERD_NAMESPACE: k8s.io for Kubernetes, default for ctr and nerdctl, moby for Docker's containerd image store", ctrNotFound.Namespace)
		}
	case errors.As(err, &ctrMissing):
		switch {
		case strings.HasPrefix(ctrMissing.What, "layer"):
			add("containerd has the image's manifest but not this layer: it discards compressed layers after unpacking them when configured to (the CRI plugin's discard_unpacked_layers = true, ctr images import --discard-unpacked-layers), and layerbridge reads layers from the content store; turn that off and pull the image again (crictl rmi, crictl pull)")
		case len(ctrMissing.Present) > 0:
			add("containerd holds this image for other platforms only (pulled for %s): scan one of those with --platform, or fetch this one: ctr -n %s images pull --platform %s NAME", platformList(ctrMissing.Present), ctrMissing.Namespace, platforms.Format(ctrMissing.Platform))
		default:
			add("containerd lists this image but lacks its content (removed, or a pull that did not finish): pull it again (ctr -n %s images pull --platform %s NAME, or crictl pull NAME)", ctrMissing.Namespace, platforms.Format(ctrMissing.Platform))
		}
	case errors.As(err, &unreachable):
		add("is the Docker daemon running? (docker info)")
		add("layerbridge used %s; choose another daemon with --docker-host, DOCKER_HOST or DOCKER_CONTEXT", unreachable.Host)
		add(`"layerbridge doctor" shows which daemon was tried and why`)
	case errors.As(err, &apiVer):
		add("the daemon at %s is too old for this client; upgrade Docker Engine, or pin a version it accepts with DOCKER_API_VERSION", apiVer.Host)
	case errors.As(err, &notFound):
		add("the image is not in this daemon: check `docker images`, the daemon layerbridge used (--docker-host, DOCKER_HOST, DOCKER_CONTEXT), or load it (docker load, docker build)")
		if fi, serr := os.Stat(notFound.Ref); serr == nil {
			if fi.IsDir() {
				add("%s is a directory here: to scan the OCI image layout in it, name it oci:%s", notFound.Ref, notFound.Ref)
			} else {
				add("%s is a file here: to scan the archive, name it docker-archive:%s (docker save output) or oci-archive:%s (a tar of an OCI image layout)", notFound.Ref, notFound.Ref, notFound.Ref)
			}
		} else {
			add("to scan an archive instead, name it: %s", acceptedForms)
		}
	case errors.As(err, &archive):
		hints = append(hints, archiveHints(archive)...)
	case errors.As(err, &platform):
		add("choose one of the image's platforms with --platform, or pull the one you want")
	case errors.As(err, &ambiguous):
		add("pass --platform OS/ARCH[/VARIANT] to choose one")
	case errors.As(err, &mismatch):
		add("use --clair-api %s (or leave --clair-api at auto): Clair %s has no %s routes", mismatch.Found, map[string]string{"v4": "4", "v2": "2"}[mismatch.Found], mismatch.Want)
	case errors.As(err, &auth):
		if auth.Rejected {
			add("check --clair-psk (the base64 key from Clair's auth.psk.key) and --clair-psk-issuer (one of auth.psk.iss)")
		} else {
			add("Clair has auth.psk configured: pass --clair-psk KEY (or LAYERBRIDGE_CLAIR_PSK) and --clair-psk-issuer ISSUER")
		}
	case errors.As(err, &noName), errors.As(err, &unroutable):
		if own == nil {
			hints = append(hints, clairNameHints(err, reach.ContainerCommand{})...)
		}
	case errors.As(err, &clairDown):
		add("is Clair running at %s? pass its address with --clair or CLAIR_ADDR", clairDown.URL)
		if strings.Contains(clairDown.URL, "localhost") || strings.Contains(clairDown.URL, "127.0.0.1") {
			add("if Clair runs in a container, publish its port (-p 6060:6060) or run layerbridge on Clair's network")
		}
	case errors.As(err, &noClair):
		add("%s answers HTTP but not like Clair 4 (/indexer/api/v1/index_state) or Clair 2 (/v1/namespaces): check --clair", noClair.URL)
	case errors.As(err, &fetch):
		if fetch.NeverReached() {
			add("Clair never reached layerbridge at %s (chosen because: %s)", fetch.Advertised, fetch.Reason)
			add("give an address Clair can reach with --advertise URL (and --listen IP:PORT), or run layerbridge on Clair's Docker network")
		} else {
			add("Clair reached layerbridge at %s but a download failed: run with --log-level debug to see every layer request", fetch.Advertised)
		}
		add(`"layerbridge doctor --clair URL" proves whether Clair can reach an address`)
	case errors.Is(err, scan.ErrNoVulnerabilityData):
		add("Clair's vulnerability database is empty: wait for its updaters to finish (its log says when), or raise --timeout")
	case errors.Is(err, reach.ErrNoSharedNetwork):
		add("connect layerbridge's container to Clair's network: docker network connect NETWORK CONTAINER")
	case errors.Is(err, reach.ErrNoHostAddress):
		add("give an address of this host that the rootless daemon's containers reach (any but loopback, through rootlesskit): --advertise http://HOST:PORT --listen 0.0.0.0:PORT")
		add("or run layerbridge as a container on Clair's network (README: The container image)")
	case clairv4.IsWrongAPI(err) || clairv2.IsWrongAPI(err):
		add("this Clair speaks the other API generation: try --clair-api auto")
	case errors.As(err, &clairIndex):
		add("Clair could not index the image; its own message is above, and Clair's log tells more")
		add(`"layerbridge doctor --clair URL IMAGE" checks Clair and whether it can reach layerbridge`)
	case errors.As(err, &clairAPI), errors.As(err, &clair2API):
		add("Clair refused the request; its answer is above, and Clair's log tells more (run with --log-level debug to see every request to Clair)")
	case errors.Is(err, syscall.ENOSPC):
		add("the disk is full: free space, or move the cache with --cache-dir")
	case errors.Is(err, fs.ErrPermission):
		add("check the permissions of the path named above (for the image cache: --cache-dir)")
	case errors.Is(err, syscall.EADDRINUSE):
		add("another process listens on that address: choose another port with --listen IP:PORT (port 0: any free port)")
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		add("that IP address is not one of this machine's: give one of its addresses to --listen (0.0.0.0: every interface)")
	case errors.Is(err, fs.ErrNotExist) && errors.As(err, &path):
		add("there is nothing at %s: check the path (relative paths start in the current directory)", path.Path)
	}
	return hints
}

// clairNameError is err, from finding the container that Clair's host
// name names (reach.Names), as Clair being unreachable at u, with its
// hints: run is the command that would run layerbridge in a container on
// Clair's network (its Args set), d the daemon whose socket it mounts.
func clairNameError(err error, u *url.URL, d *daemon, run reach.ContainerCommand) error {
	_, ep, _ := d.open()
	if sock := ep.Socket(); sock != "" {
		run.Socket, run.Group = sock, socketGroup(sock)
	}
	err = &scan.ClairUnreachableError{URL: u.Redacted(), Err: err}
	return &hintedError{err: err, hints: clairNameHints(err, run)}
}

// clairNameHints says what to do when Clair's host name names no container
// (*reach.NameError) or one this host cannot reach (*reach.UnroutableError).
// run, when its Args are set, is the command line that would run
// layerbridge as a container on Clair's network.
func clairNameHints(err error, run reach.ContainerCommand) []string {
	var (
		noName     *reach.NameError
		unroutable *reach.UnroutableError
		hints      []string
	)
	add := func(format string, args ...any) { hints = append(hints, fmt.Sprintf(format, args...)) }
	switch {
	case errors.As(err, &noName):
		for _, s := range noName.Suggestions {
			add("did you mean %s? it is the name or a network alias of a running container", s)
		}
		if noName.ListErr != nil {
			add("layerbridge asks the Docker daemon for a container of that name, and could not: `layerbridge doctor` says why; or give Clair's IP address or published port with --clair")
		} else {
			add("is Clair running? give its address with --clair or CLAIR_ADDR: a name this host resolves, an IP address, or the name or network alias of its running container")
		}
	case errors.As(err, &unroutable):
		port := "6060"
		var clairURL *scan.ClairUnreachableError
		if errors.As(err, &clairURL) {
			if u, perr := url.Parse(clairURL.URL); perr == nil && u.Port() != "" {
				port = u.Port()
			}
		}
		if unroutable.HostNetwork() {
			add("Clair's container uses the host network: give the daemon host's address, --clair http://localhost:%s on that host", port)
			break
		}
		add("publish Clair's port on this host (docker run -p 127.0.0.1:%s:%s …, compose: ports: [\"127.0.0.1:%s:%s\"]) and pass --clair http://localhost:%s", port, port, port, port, port)
		line, ok := unroutable.Command(run, run.Socket, run.Group)
		switch {
		case !ok:
		case unroutable.DefaultBridge():
			// Docker's default bridge resolves no names: a network of
			// Clair's own first.
			line.Network = "clair-network"
			if line.Args == nil {
				add("or put Clair's container on a network of its own (docker network create clair-network && docker network connect clair-network %s) and run layerbridge as a container there (README: The container image)", unroutable.Container)
				break
			}
			add("or put Clair's container on a network of its own and run layerbridge as a container there: docker network create clair-network && docker network connect clair-network %s && %s", unroutable.Container, line)
		case line.Args == nil:
			add("or run layerbridge as a container on network %s, where %s resolves (README: The container image)", line.Network, unroutable.Name)
		default:
			add("or run layerbridge as a container on network %s, where %s resolves: %s", line.Network, unroutable.Name, line)
		}
	}
	return hints
}

// socketGroup is the numeric group of the file at path, or "" when it
// cannot be read.
func socketGroup(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return ""
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return strconv.FormatUint(uint64(st.Gid), 10)
	}
	return ""
}

// acceptedForms lists the image sources, for hints.
const acceptedForms = "docker-archive:PATH (docker save output, optionally gzip- or zstd-compressed), oci-archive:PATH (a tar of an OCI image layout) or oci:DIR (an OCI image layout directory)"

// platformList formats platforms for a hint.
func platformList(ps []ocispec.Platform) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = platforms.Format(p)
	}
	return strings.Join(s, ", ")
}

// archiveHints says what to do about an archive, layout or export that
// could not be read: the reference says which kind of source it was.
func archiveHints(ae *dockersave.ArchiveError) []string {
	ref, _ := imageref.Parse(ae.Image)
	daemon := ref.Kind == imageref.Daemon
	var hints []string
	add := func(format string, args ...any) { hints = append(hints, fmt.Sprintf(format, args...)) }
	var de *dockersave.DaemonError
	switch {
	case ref.Kind == imageref.Containerd && errors.Is(ae, dockersave.ErrTooLarge):
		add("the image exceeds one of layerbridge's safety limits (named above): 4 MiB of metadata, 500 layers, or a layer inflating over 1100 times its size; such an image is refused")
	case ref.Kind == imageref.Containerd && errors.Is(ae, dockersave.ErrNoImage):
		add("this containerd image is no container image layerbridge can scan (an artifact, or no manifest for a platform); check it with: ctr images list and ctr content get DIGEST")
	case ref.Kind == imageref.Containerd:
		add("containerd's content for this image does not match its own manifest or config (named above): it was altered in containerd's content store, or the image was built wrongly; remove it and pull it again (ctr -n NAMESPACE images rm NAME; ctr -n NAMESPACE images pull NAME)")
	case errors.As(ae, &de):
		add("the Docker daemon stopped the export and said why (above): fix that (often its disk space: docker system df), then scan again")
	case daemon && errors.Is(ae, dockersave.ErrExportMismatch):
		add("the image changed in the daemon during the export (rebuilt, re-tagged or removed?): scan again")
	case daemon && (errors.Is(ae, dockersave.ErrTruncated) || errors.Is(ae, dockersave.ErrNotArchive)):
		add("the daemon's export stream broke off or is not an image export: check the daemon's log, and that --docker-host reaches the daemon itself (no proxy in between), then scan again")
	case daemon:
		add("the daemon exported an image layerbridge refuses (named above); scan again, and if it persists, export it with docker save -o FILE IMAGE and report the message")
	case errors.Is(ae, dockersave.ErrNotArchive):
		if fi, err := os.Stat(ref.Name); err == nil && fi.IsDir() {
			hints = append(hints, directoryHints(ref.Name, true)...)
			break
		}
		add("%s is not an image archive; layerbridge reads %s", ref.Name, acceptedForms)
		add("write one with: docker save -o image.tar IMAGE (or podman save, or skopeo copy ... docker-archive:image.tar)")
	case errors.Is(ae, dockersave.ErrNotLayout):
		hints = append(hints, directoryHints(ref.Name, false)...)
	case errors.Is(ae, dockersave.ErrTruncated):
		add("the archive ends early or breaks off: the copy is incomplete or damaged; write it again (docker save -o FILE IMAGE) and scan the complete file")
	case errors.Is(ae, dockersave.ErrTrailingData):
		add("the file goes on after the end of the archive: it is damaged, or several files joined; write it again (docker save -o FILE IMAGE)")
	case errors.Is(ae, dockersave.ErrUnexpectedEntry), errors.Is(ae, dockersave.ErrNoImage):
		add("this tar is no image archive: docker-archive: wants what docker save writes (docker export writes a container's file system, which is not an image), oci-archive: a tar of an OCI image layout")
	case errors.Is(ae, dockersave.ErrTooLarge):
		add("the archive exceeds one of layerbridge's safety limits (named above): 4 MiB of metadata, 10,000 entries, 500 layers, or a layer inflating over 1100 times its size; such an archive is refused")
	case errors.Is(ae, dockersave.ErrUnsafeEntry), errors.Is(ae, dockersave.ErrDuplicateEntry),
		errors.Is(ae, dockersave.ErrLinkCycle), errors.Is(ae, dockersave.ErrDanglingLink):
		add("the archive holds an entry no image archive has (named above) and is refused for safety; export the image again with docker save -o FILE IMAGE, and do not scan an archive of unknown origin")
	case errors.Is(ae, dockersave.ErrDigestMismatch), errors.Is(ae, dockersave.ErrSizeMismatch), errors.Is(ae, dockersave.ErrDiffIDMismatch),
		errors.Is(ae, dockersave.ErrLayerCount), errors.Is(ae, dockersave.ErrMissingBlob), errors.Is(ae, dockersave.ErrMalformedJSON):
		add("the image's content does not match its own manifest (named above): the archive or layout is damaged or was altered; export it again (docker save -o FILE IMAGE, or skopeo copy ... oci:DIR)")
	}
	return hints
}

// directoryHints says what to name a directory given as an image, from
// what it holds; asArchive when it was given as docker-archive: or
// oci-archive:, which name files.
func directoryHints(dir string, asArchive bool) []string {
	has := func(name string) bool { _, err := os.Stat(filepath.Join(dir, name)); return err == nil }
	switch {
	case has("oci-layout") && has("index.json"):
		return []string{fmt.Sprintf("%s is an OCI image layout directory: name it oci:%s", dir, dir)}
	case has("manifest.json"):
		return []string{fmt.Sprintf("%s looks like an unpacked docker save: scan the tar itself, or pack it again (tar -C %s -cf image.tar .) and name it docker-archive:image.tar", dir, dir)}
	case asArchive:
		return []string{
			fmt.Sprintf("%s is a directory: docker-archive: and oci-archive: name a file; an OCI image layout directory is named oci:%s", dir, dir),
			fmt.Sprintf("an OCI image layout holds oci-layout, index.json and blobs/; %s has %s", dir, layoutFilesIn(dir)),
		}
	default:
		return []string{
			fmt.Sprintf("an OCI image layout holds oci-layout, index.json and blobs/; %s has %s", dir, layoutFilesIn(dir)),
			"write one with: skopeo copy docker-daemon:IMAGE oci:DIR (or unpack an oci-archive into it); a single file is named docker-archive:PATH or oci-archive:PATH",
		}
	}
}

// layoutFilesIn says which files of an OCI image layout dir has.
func layoutFilesIn(dir string) string {
	var have []string
	for _, name := range []string{"oci-layout", "index.json", "blobs"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			have = append(have, name)
		}
	}
	if len(have) == 0 {
		return "none of them"
	}
	return "only " + strings.Join(have, ", ")
}
