package doctor

import (
	"context"
	"log/slog"
	"net/url"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/containerdsource"
	"github.com/layerbridge/layerbridge/engine"
	"github.com/layerbridge/layerbridge/reach"
	"github.com/layerbridge/layerbridge/scan"
)

// Status is the outcome of one check.
type Status string

// The four outcomes. Only Failed makes a run fail: a Warning is something
// that will not stop a scan but may make its result misleading or slow.
const (
	Passed  Status = "passed"
	Warning Status = "warning"
	Failed  Status = "failed"
	Skipped Status = "skipped" // not run: an earlier check failed, or nothing to check
)

// Result is the outcome of one check. The JSON field names are a stable
// interface (layerbridge doctor --format json prints a list of Results).
type Result struct {
	Check    string `json:"check"`    // one of the Check* names, e.g. "docker.permission"
	Status   Status `json:"status"`   // passed, warning, failed or skipped
	Evidence string `json:"evidence"` // what was observed, with the values that decided it
	Fix      string `json:"fix"`      // what to do; "" when there is nothing to do
}

// Check names, in the order Run returns them. Every run returns every check
// exactly once, so a caller can look a result up by name.
const (
	CheckDockerEndpoint   = "docker.endpoint"
	CheckDockerReachable  = "docker.reachable"
	CheckDockerPermission = "docker.permission"
	CheckDockerAPI        = "docker.api"
	CheckDockerStorage    = "docker.storage"
	CheckDockerImage      = "docker.image"

	CheckContainerdReachable = "containerd.reachable"
	CheckContainerdNamespace = "containerd.namespace"
	CheckContainerdImage     = "containerd.image"

	CheckStoreWritable = "store.writable"
	CheckStoreSpace    = "store.space"

	CheckClairReachable = "clair.reachable"
	CheckClairAPI       = "clair.api"
	CheckClairVersion   = "clair.version"
	CheckClairAuth      = "clair.auth"
	CheckClairVulnDB    = "clair.vulndb"

	CheckReachAddress  = "reachability.address"
	CheckReachFetch    = "reachability.fetch"
	CheckReachNetworks = "reachability.networks"
)

// Config is what Run checks. Every field is optional: a group whose inputs
// are missing is reported as skipped.
type Config struct {
	// Docker opens the Engine API client and returns the endpoint it talks
	// to, as the scan command does (engine.ResolveEndpoint, then
	// engine.NewClient). It is called once. An error with an
	// empty Endpoint.Host means no endpoint could be chosen; with a Host,
	// that the client could not be built for it. nil skips the Docker checks.
	Docker func() (engine.Client, engine.Endpoint, error)
	// SocketCandidates are other places a Docker socket is commonly found
	// (the rootless daemon's $XDG_RUNTIME_DIR/docker.sock, Docker Desktop's
	// ~/.docker/desktop/docker.sock): when the chosen daemon does not answer,
	// the ones that exist are offered as the fix.
	SocketCandidates []string

	// Containerd is the source of containerd: images a scan would use;
	// nil skips the containerd checks. They run when Image is a
	// containerd: image, or when ContainerdNamed says the user named a
	// containerd (--containerd-address, CONTAINERD_ADDRESS), and then only
	// warn.
	Containerd      *containerdsource.Source
	ContainerdNamed bool

	// Image is the reference a scan would be given (see imageref.Parse).
	// "" skips the image check. For an archive, a layout or a containerd:
	// image the Docker checks only warn: the scan would not need the
	// daemon.
	Image string
	// Platform is the --platform a scan would be given; nil for any.
	Platform *ocispec.Platform
	// CacheDir is the image cache a scan would write to. It is not created.
	CacheDir string

	// Clair is the Clair to check, with the API expected of it and the
	// clients a scan would use (scan.NewClair); a nil Clair.URL skips the
	// Clair and reachability checks.
	Clair scan.Clair
	// ClairDialer is how Clair's clients dial its host (the command builds
	// both): clair.reachable shows the route it took to a name only
	// Docker's DNS knows, and address detection finds Clair's container
	// where the dials reach it. nil: Clair's host is dialed as it is.
	ClairDialer *reach.Dialer

	// Listen and Advertise are the scan's --listen and --advertise: the
	// canary layer is served exactly where a scan would serve layers.
	Listen    string
	Advertise *url.URL
	// Containers lists the daemon's running containers, to find Clair's
	// container and its networks; nil skips the network check.
	Containers engine.ContainerLister

	// Wait bounds each group of checks, and how long Clair has to fetch the
	// canary layer. Default 30s.
	Wait time.Duration
	// TempDir is where the canary layer is written (removed afterwards);
	// "" means the system's temporary directory.
	TempDir string
	// Logger receives the same debug lines a scan logs. Default: discard.
	Logger *slog.Logger
}

// DefaultWait is Config.Wait's default.
const DefaultWait = 30 * time.Second

// Run runs every check in order and returns one Result per Check* name, in
// that order. It never fails as a whole: problems are results. It leaves
// nothing behind but the canary's index in Clair (a manifest and a layer of
// a few kilobytes under a random digest).
func Run(ctx context.Context, cfg Config) []Result {
	if cfg.Wait <= 0 {
		cfg.Wait = DefaultWait
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &run{cfg: cfg, log: cfg.Logger}
	r.docker(ctx)
	r.containerd(ctx)
	r.store()
	r.clair(ctx)
	r.reachability(ctx)
	return r.results
}

// Failures returns the failed results, in order.
func Failures(results []Result) []Result {
	var out []Result
	for _, res := range results {
		if res.Status == Failed {
			out = append(out, res)
		}
	}
	return out
}

// run is the state of one Run: the config, what earlier checks learned and
// the results so far.
type run struct {
	cfg     Config
	log     *slog.Logger
	results []Result

	// Learned by the Docker checks.
	daemon     *engine.DaemonInfo
	product    product // which engine the daemon is, when daemon is set
	imageBytes int64   // the image's size, 0 when unknown

	// Learned by the Clair checks: the API to use for the canary, "" when
	// Clair cannot be used.
	api string

	// Learned from the container list: Clair's container, "" if Clair is
	// not a container of this daemon.
	clairContainer string
}

func (r *run) add(check string, status Status, evidence, fix string) {
	r.log.Debug("doctor", "check", check, "status", status, "evidence", evidence)
	r.results = append(r.results, Result{Check: check, Status: status, Evidence: evidence, Fix: fix})
}

func (r *run) skip(reason string, checks ...string) {
	for _, c := range checks {
		r.add(c, Skipped, reason, "")
	}
}
