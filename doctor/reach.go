package doctor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/layerbridge/layerbridge/bridge"
	"github.com/layerbridge/layerbridge/clairv2"
	"github.com/layerbridge/layerbridge/clairv4"
	"github.com/layerbridge/layerbridge/engine"
	"github.com/layerbridge/layerbridge/reach"
	"github.com/layerbridge/layerbridge/scan"
)

// lookup resolves host names as the Clair clients' dials do, for address
// detection; nil is the system's resolver.
func (r *run) lookup() func(ctx context.Context, host string) ([]netip.Addr, error) {
	if r.cfg.ClairDialer == nil {
		return nil
	}
	return r.cfg.ClairDialer.LookupNetIP
}

// daemonInfo is what the Docker checks learned of the daemon, for address
// detection (Docker Desktop, rootless, remote).
func (r *run) daemonInfo(context.Context) (engine.DaemonInfo, error) {
	if r.daemon == nil {
		return engine.DaemonInfo{}, errors.New("the docker daemon was not reached")
	}
	return *r.daemon, nil
}

// errIndexed ends the canary's scan once Clair has indexed it: the
// vulnerability report is not part of the proof.
var errIndexed = errors.New("canary indexed")

// reachability proves whether Clair can download from the address a scan
// would advertise: the canary is served on that address (chosen as the scan
// command chooses it) and scanned through the same code as `layerbridge
// scan`; the layer server reports what arrived.
func (r *run) reachability(ctx context.Context) {
	if r.cfg.Clair.URL == nil {
		r.skip("no clair url given", CheckReachAddress, CheckReachFetch, CheckReachNetworks)
		return
	}
	// Ask the daemon once for both the address and the network check.
	var containers []engine.Container
	var listErr error
	if r.cfg.Containers != nil {
		lctx, cancel := context.WithTimeout(ctx, r.cfg.Wait)
		containers, listErr = r.cfg.Containers.RunningContainers(lctx)
		cancel()
	}
	var (
		lister engine.ContainerLister
		place  reach.Address
		perr   error
	)
	if r.cfg.Containers != nil && listErr == nil {
		lister = staticContainers(containers)
		// Where Clair is, for the network check and for the advice when
		// Clair cannot reach the advertised address.
		place, perr = reach.Advertise(ctx, r.cfg.Clair.URL, reach.AdvertiseOptions{Containers: lister, Resolve: r.lookup(), Daemon: r.daemonInfo, Logger: r.log})
		r.clairContainer = place.Container
	}
	r.canaryScan(ctx, lister)
	switch {
	case r.cfg.Containers == nil:
		r.add(CheckReachNetworks, Skipped, "no docker daemon to list containers", "")
	case listErr != nil:
		r.add(CheckReachNetworks, Skipped, fmt.Sprintf("cannot list docker containers: %v", listErr), "")
	default:
		r.networks(containers, place, perr)
	}
}

func (r *run) canaryScan(ctx context.Context, containers engine.ContainerLister) {
	if r.api == "" {
		r.skip("clair cannot be used", CheckReachAddress, CheckReachFetch)
		return
	}
	c, err := newCanary(r.cfg.TempDir)
	if err != nil {
		r.add(CheckReachAddress, Skipped, err.Error(), "")
		r.add(CheckReachFetch, Failed, err.Error(), "give a writable temporary directory (TMPDIR)")
		return
	}
	defer c.close()

	ep, err := reach.Listen(ctx, r.cfg.Clair.URL, reach.ListenOptions{
		Advertise: r.cfg.Advertise, Listen: r.cfg.Listen,
		AdvertiseOptions: reach.AdvertiseOptions{Containers: containers, Resolve: r.lookup(), Daemon: r.daemonInfo, Logger: r.log},
	})
	if err != nil {
		r.add(CheckReachAddress, Failed, fmt.Sprintf("no address to serve layers on: %v", err), addressFix(err))
		r.add(CheckReachFetch, Skipped, "no address to test", "")
		return
	}
	base, reason, ln := ep.Base, ep.Reason, ep.Listener
	r.add(CheckReachAddress, Passed, fmt.Sprintf("layer URLs start with %s (listening on %s): %s", base, ln.Addr(), reason), "")

	// The fetch observer, not the grant, is read: it is complete once the
	// server has shut down, whereas a fetch is recorded only after its last
	// byte was sent, possibly after Clair has already answered.
	var mu sync.Mutex
	var fetches []bridge.Fetch
	srv := bridge.New(bridge.WithLogger(r.log), bridge.WithFetchObserver(func(f bridge.Fetch) {
		mu.Lock()
		fetches = append(fetches, f)
		mu.Unlock()
	}))
	hs := bridge.NewHTTPServer(srv, r.log, bridge.Limits{})
	served := make(chan struct{})
	go func() {
		defer close(served)
		hs.Serve(ln)
	}()

	runCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	runCtx, cancel := context.WithTimeout(runCtx, r.cfg.Wait)
	defer cancel()
	_, err = scan.Run(runCtx, scan.Config{
		Image:    canaryRef,
		Loader:   c,
		Clair:    r.cfg.Clair,
		Detected: r.api,
		Server:   srv,
		Base:     base,
		Reason:   reason,
		Stage: func(s scan.Stage) {
			if s == scan.StageMatching {
				stop(errIndexed)
			}
		},
		Logger: r.log,
	})
	indexed := errors.Is(context.Cause(runCtx), errIndexed)
	if indexed {
		err = nil
	}
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	if hs.Shutdown(sctx) != nil {
		hs.Close()
	}
	scancel()
	<-served
	mu.Lock()
	seen := slices.Clone(fetches)
	mu.Unlock()
	var state string
	if ok, _ := fetchOutcome(seen); ok != nil && !indexed {
		// Downloaded, not indexed: what does Clair say of it?
		state = r.indexState(ctx, c.manifest, err)
	}
	r.fetch(base, reason, seen, err, indexed, state)
}

// indexState says, in Clair's words, where the canary's index stands when
// it did not finish: Clair 4's index report (state and error) for the
// canary's manifest, or Clair 2's answer to POST /v1/layers. "" when
// Clair said nothing about it.
func (r *run) indexState(ctx context.Context, manifest digest.Digest, err error) string {
	if r.api == scan.APIv4 {
		v4 := r.cfg.Clair.V4
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ir, qerr := v4.IndexReport(qctx, manifest)
		cancel()
		if qerr == nil {
			s := "its index report is in state " + ir.State
			if ir.Message != "" {
				s += fmt.Sprintf(" with error %q", redactCapability(ir.Message))
			}
			return s
		}
		r.log.DebugContext(ctx, "no index report for the canary", "manifest", manifest, "err", qerr)
		if e, ok := errors.AsType[*clairv4.IndexError](err); ok {
			return fmt.Sprintf("its index ended in state %s with error %q", clairv4.StateIndexError, redactCapability(e.Message))
		}
		if errors.Is(qerr, clairv4.ErrNotFound) {
			return "Clair has no index report for it"
		}
		return ""
	}
	if e, ok := errors.AsType[*clairv2.APIError](err); ok {
		return fmt.Sprintf("POST /v1/layers answered %d %s with error %q", e.StatusCode, http.StatusText(e.StatusCode), redactCapability(e.Message))
	}
	return ""
}

// fetch turns the canary scan's outcome into the verdict on reachability:
// it passes only when Clair downloaded the canary and indexed it (Clair 4:
// an index report in state IndexFinished; Clair 2: 201 to POST /v1/layers).
// state is Clair's account of an index that did not finish (indexState).
func (r *run) fetch(baseURL *url.URL, reason string, fetches []bridge.Fetch, err error, indexed bool, state string) {
	base := baseURL.String()
	ok, last := fetchOutcome(fetches)
	timedOut := err != nil && errors.Is(err, context.DeadlineExceeded)
	clairSaid := redactCapability(clairMessage(err))
	verb, infinitive := "indexed", "index"
	if r.api == scan.APIv2 {
		verb, infinitive = "analysed", "analyse"
	}
	unreachableFix := r.reachFix(baseURL, clairSaid)
	notIndexedFix := "the download works but Clair's indexer fails, so every scan would fail too: Clair's log has the cause (often an indexer component that needs the network, such as the rhel scanner's repository-to-CPE mapping in an offline Clair: give Clair access, or configure it off); fix Clair and run doctor again"
	if r.api == scan.APIv2 {
		notIndexedFix = "the download works but Clair 2 cannot analyse the layer, so every scan would fail too: Clair's log has the cause; fix Clair and run doctor again"
	}

	switch {
	case ok != nil && indexed:
		r.add(CheckReachFetch, Passed, fmt.Sprintf("Clair reached %s and downloaded %d bytes (HTTP %d, from %s, in %s); it %s the canary layer",
			base, ok.Bytes, ok.Status, ok.Remote, ok.Duration.Round(time.Microsecond), verb), "")
	case ok != nil && timedOut:
		r.add(CheckReachFetch, Failed, fmt.Sprintf("Clair reached %s and downloaded %d bytes (from %s) but did not finish indexing the canary layer within %s%s",
			base, ok.Bytes, ok.Remote, r.cfg.Wait, prefixed(": ", state)),
			"Clair is slow, busy or stuck: its log says what it is doing; if it is only slow, give doctor a longer --wait and scans a longer --timeout")
	case ok != nil && isFetchError(err):
		r.add(CheckReachFetch, Failed, fmt.Sprintf("Clair downloaded %d bytes from %s (from %s) but rejected them: %s", ok.Bytes, base, ok.Remote, clairSaid),
			"something between Clair and layerbridge changes the bytes (an HTTP proxy or a compressing gateway): let Clair connect directly (add the address to Clair's NO_PROXY)")
	case ok != nil:
		r.add(CheckReachFetch, Failed, fmt.Sprintf("Clair reached %s and downloaded %d bytes (HTTP %d, from %s) but could not %s the canary layer: %s",
			base, ok.Bytes, ok.Status, ok.Remote, infinitive, cmp.Or(state, "Clair said: "+clairSaid)), notIndexedFix)
	case last != nil:
		r.add(CheckReachFetch, Failed, fmt.Sprintf("Clair reached %s (from %s) but its download was answered %d: %v; Clair said: %s",
			base, last.Remote, last.Status, last.Err, clairSaid), "run again; if it persists, report it with the --log-level debug output")
	case indexed:
		r.add(CheckReachFetch, Warning, fmt.Sprintf("Clair %s the canary layer without any request reaching %s: something else answered for that address (an HTTP proxy or cache?)", verb, base),
			"let Clair connect to layerbridge directly: add the advertised address to Clair's NO_PROXY")
	case timedOut:
		r.add(CheckReachFetch, Failed, fmt.Sprintf("no request from Clair arrived at %s within %s (the address was chosen because %s)", base, r.cfg.Wait, reason), unreachableFix)
	case err != nil && isFetchError(err):
		r.add(CheckReachFetch, Failed, fmt.Sprintf("no request from Clair arrived at %s (the address was chosen because %s); Clair said: %s", base, reason, clairSaid), unreachableFix)
	case err != nil:
		r.add(CheckReachFetch, Failed, fmt.Sprintf("the canary scan failed before Clair fetched anything: %s", redactCapability(err.Error())), "")
	default:
		r.add(CheckReachFetch, Warning, "the canary scan ended without a download and without an error", "")
	}
}

// prefixed is p+s, or "" when s is.
func prefixed(p, s string) string {
	if s == "" {
		return ""
	}
	return p + s
}

// fetchOutcome returns the first fetch Clair completed with 200, and the
// last fetch of any kind.
func fetchOutcome(fs []bridge.Fetch) (ok, last *bridge.Fetch) {
	for i := range fs {
		if ok == nil && fs[i].Status == 200 && fs[i].Err == nil {
			ok = &fs[i]
		}
		last = &fs[i]
	}
	return ok, last
}

func isFetchError(err error) bool {
	_, ok := errors.AsType[*scan.LayerFetchError](err)
	return ok
}

// clairMessage digs Clair's own words out of a scan error.
func clairMessage(err error) string {
	if err == nil {
		return ""
	}
	if e, ok := errors.AsType[*clairv4.IndexError](err); ok {
		return e.Message
	}
	if e, ok := errors.AsType[*clairv2.APIError](err); ok {
		msg := e.Message
		if clairv2.IsLayerFetchError(err) {
			msg += " (Clair 2 says this for every download failure)"
		}
		return msg
	}
	if e, ok := errors.AsType[*clairv4.APIError](err); ok && e.Message != "" {
		return e.Message
	}
	return err.Error()
}

// capabilityInURL matches the capability segment of a layer URL, which
// Clair quotes in its errors.
var capabilityInURL = regexp.MustCompile(`/layers/[A-Za-z0-9_-]{43}/`)

func redactCapability(s string) string {
	return capabilityInURL.ReplaceAllString(s, "/layers/<capability>/")
}

// reachFix explains, from Clair's message and the chosen address, how to
// give Clair an address it can reach.
func (r *run) reachFix(base *url.URL, clairSaid string) string {
	var parts []string
	host := base.Hostname()
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() && (r.clairContainer != "" || !isLoopbackHost(r.cfg.Clair.URL.Hostname())) {
		parts = append(parts, fmt.Sprintf("%s is loopback: if Clair runs in a container or on another host, it is Clair's own loopback, not this host", host))
	}
	switch {
	case strings.Contains(clairSaid, "disallowed by policy"):
		parts = append(parts, "Clair's indexer runs with airgap: true and only connects to loopback and private addresses: advertise such an address, or set indexer.airgap: false")
	case strings.Contains(clairSaid, "no such host"):
		parts = append(parts, "Clair cannot resolve the advertised host name: advertise an IP address, or a name Clair's DNS resolves")
	case strings.Contains(clairSaid, "connection refused"):
		parts = append(parts, "nothing listens on that address as Clair sees it")
	case strings.Contains(clairSaid, "i/o timeout"), strings.Contains(clairSaid, "no route to host"), strings.Contains(clairSaid, "network is unreachable"):
		parts = append(parts, "Clair's connection was dropped: a firewall or a missing route lies between Clair and that address; allow Clair to connect to that port")
	case strings.Contains(clairSaid, "unexpected status code"):
		parts = append(parts, "something other than layerbridge answered Clair for that address (an HTTP proxy in Clair's environment?): add the address to Clair's NO_PROXY")
	}
	parts = append(parts, "give an address Clair can reach: --advertise http://HOST:PORT with --listen 0.0.0.0:PORT (HOST as Clair sees this machine, e.g. the gateway of Clair's Docker network or this host's LAN address), or run layerbridge on Clair's Docker network (docker run --network NETWORK), or publish/route that port so Clair's host can connect")
	return strings.Join(parts, "; ")
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.IsLoopback()
}

func addressFix(err error) string {
	switch {
	case errors.Is(err, reach.ErrNoSharedNetwork):
		return "connect layerbridge's container to one of Clair's networks (docker network connect NETWORK CONTAINER), or run layerbridge on the host"
	case errors.Is(err, reach.ErrNoHostAddress):
		return "give an address of this host that the rootless daemon's containers reach (through rootlesskit, any address of this host but loopback): --advertise http://HOST:PORT --listen 0.0.0.0:PORT; or run layerbridge as a container on Clair's network"
	case err != nil && strings.Contains(err.Error(), "listen"):
		return "the address cannot be listened on here: choose the local address with --listen IP:PORT (0.0.0.0:PORT for every interface) and what Clair connects to with --advertise URL"
	}
	return "give the address Clair should download from with --advertise URL (and --listen IP:PORT)"
}

// staticContainers answers with one listing, so that the daemon is asked
// once per check.
type staticContainers []engine.Container

func (s staticContainers) RunningContainers(context.Context) ([]engine.Container, error) {
	return s, nil
}

// networks shows where Clair's container and layerbridge sit on Docker's
// networks, which is what decides the address Clair can reach.
func (r *run) networks(list []engine.Container, addr reach.Address, advErr error) {
	clairC := addr.Clair
	if advErr != nil && !errors.Is(advErr, reach.ErrNoSharedNetwork) {
		r.add(CheckReachNetworks, Skipped, fmt.Sprintf("cannot place clair: %v", advErr), "")
		return
	}
	if errors.Is(advErr, reach.ErrNoSharedNetwork) {
		r.add(CheckReachNetworks, Failed, fmt.Sprintf("layerbridge runs in a container on another network than Clair's: %v", advErr), addressFix(advErr))
		return
	}
	if clairC == nil {
		r.add(CheckReachNetworks, Skipped, fmt.Sprintf("clair at %s is not a container of this docker daemon (%d running)", r.cfg.Clair.URL.Host, len(list)), "")
		return
	}
	var nets []string
	for _, n := range clairC.Networks {
		s := n.Name
		if n.IP.IsValid() {
			s += " (" + n.IP.String()
			if n.Gateway.IsValid() {
				s += ", gateway " + n.Gateway.String()
			}
			s += ")"
		}
		nets = append(nets, s)
	}
	ev := fmt.Sprintf("clair's container %s is on network(s) %s; ", addr.Container, strings.Join(nets, ", "))
	self := addr.Self
	switch {
	case addr.Daemon != "":
		ev += "layerbridge runs on the host: " + addr.Reason
	case addr.Network == "host":
		ev += "it uses the host network, so it reaches layerbridge on this host's loopback"
	case self != nil && self.ID == clairC.ID:
		ev += "layerbridge runs inside that same container"
	case self != nil:
		ev += fmt.Sprintf("layerbridge runs in container %s on the same network %s (%s)", self.Name(), addr.Network, addr.IP)
	default:
		ev += fmt.Sprintf("layerbridge runs on the host, which clair reaches at network %s's gateway %s", addr.Network, addr.IP)
	}
	if adv := r.cfg.Advertise; adv != nil && adv.Hostname() != addr.IP.String() {
		ev += fmt.Sprintf("; --advertise %s overrides that address", (&url.URL{Scheme: adv.Scheme, Host: adv.Host}).String())
	}
	r.add(CheckReachNetworks, Passed, ev, "")
}
