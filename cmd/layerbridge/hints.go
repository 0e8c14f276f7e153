package main

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"

	"github.com/layerbridge/layerbridge/bridge"
	"github.com/layerbridge/layerbridge/clairv2"
	"github.com/layerbridge/layerbridge/clairv4"
	"github.com/layerbridge/layerbridge/dockersave"
	"github.com/layerbridge/layerbridge/scan"
)

// hintsFor turns a typed error into the next steps to take. Data comes from
// where the error was made; the advice is written here, where the user reads.
func hintsFor(err error) []string {
	var hints []string
	add := func(format string, args ...any) { hints = append(hints, fmt.Sprintf(format, args...)) }

	var (
		ue          *usageError
		perm        *dockersave.PermissionError
		unreachable *dockersave.UnreachableError
		apiVer      *dockersave.APIVersionError
		notFound    *dockersave.NotFoundError
		platform    *dockersave.PlatformError
		ambiguous   *dockersave.AmbiguousError
		mismatch    *scan.APIMismatchError
		noClair     *scan.NoClairError
		clairDown   *scan.ClairUnreachableError
		auth        *scan.AuthError
		fetch       *scan.LayerFetchError
	)
	// An error that carries its own hints (see hintedError) adds them.
	var own interface{ Hints() []string }
	if errors.As(err, &own) {
		hints = append(hints, own.Hints()...)
	}
	switch {
	case errors.As(err, &ue):
		hints = append(hints, ue.hints...)
	case errors.As(err, &perm):
		sock := perm.Socket
		if sock == "" {
			sock = perm.Host
		}
		add("your user may not open %s: add it to the socket's group (usually: sudo usermod -aG docker $USER, then log in again)", sock)
		add("or point at a daemon you may use: --docker-host or DOCKER_HOST (a rootless daemon: unix://$XDG_RUNTIME_DIR/docker.sock)")
		add("in a container, give its user the socket's group: docker run --group-add \"$(stat -c %%g %s)\" (compose: group_add)", sock)
	case errors.As(err, &unreachable):
		add("is the Docker daemon running? (docker info)")
		add("layerbridge used %s; choose another daemon with --docker-host, DOCKER_HOST or DOCKER_CONTEXT", unreachable.Host)
		add(`"layerbridge doctor" shows which daemon was tried and why`)
	case errors.As(err, &apiVer):
		add("the daemon at %s is too old for this client; upgrade Docker Engine, or pin a version it accepts with DOCKER_API_VERSION", apiVer.Host)
	case errors.As(err, &notFound):
		add("the image is not in this daemon: check `docker images`, the daemon layerbridge used (--docker-host, DOCKER_HOST, DOCKER_CONTEXT), or load it (docker load, docker build)")
		add("to scan an archive instead, name it: docker-archive:PATH, oci-archive:PATH or oci:DIR")
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
	case errors.Is(err, bridge.ErrNoSharedNetwork):
		add("connect layerbridge's container to Clair's network: docker network connect NETWORK CONTAINER")
	case clairv4.IsWrongAPI(err) || clairv2.IsWrongAPI(err):
		add("this Clair speaks the other API generation: try --clair-api auto")
	case errors.Is(err, syscall.ENOSPC):
		add("the disk is full: free space, or move the cache with --cache-dir")
	case errors.Is(err, fs.ErrPermission):
		add("check the permissions of the path named above (for the image cache: --cache-dir)")
	}
	return hints
}
