package engine

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/moby/moby/client"
	"github.com/moby/moby/client/pkg/versions"
)

// Client is the part of the Docker Engine API client
// (github.com/moby/moby/client.Client, built by NewClient) that layerbridge
// uses to read images. Tests supply fakes. ImageSave's result must be closed.
type Client interface {
	Ping(ctx context.Context, options client.PingOptions) (client.PingResult, error)
	Info(ctx context.Context, options client.InfoOptions) (client.SystemInfoResult, error)
	ImageInspect(ctx context.Context, image string, opts ...client.ImageInspectOption) (client.ImageInspectResult, error)
	ImageSave(ctx context.Context, images []string, opts ...client.ImageSaveOption) (client.ImageSaveResult, error)
}

var _ Client = (*client.Client)(nil)

// API versions that gate features layerbridge uses.
const (
	APIVersionSavePlatform     = "1.48" // ImageSave with a platform
	APIVersionInspectManifests = "1.48" // ImageInspect listing an index's manifests
	APIVersionInspectPlatform  = "1.49" // ImageInspect with a platform
)

// pingTimeout bounds Ping: a daemon that accepts the connection but never
// answers is unreachable.
const pingTimeout = 15 * time.Second

// AtLeast reports whether the negotiated API version api is want or newer;
// an unknown version ("") is not.
func AtLeast(api, want string) bool {
	return api != "" && versions.GreaterThanOrEqualTo(api, want)
}

// DaemonInfo is what Probe learned about a daemon, for `layerbridge doctor`
// and debug logs.
type DaemonInfo struct {
	Endpoint      Endpoint
	APIVersion    string // negotiated from the ping
	OSType        string
	ServerVersion string
	Driver        string // storage driver, e.g. "overlay2", "fuse-overlayfs", "overlayfs"
	// ContainerdStore is true when the daemon uses the containerd image store
	// (exports keep compressed blobs and image IDs are manifest digests).
	ContainerdStore bool
	// OperatingSystem is what the daemon says it runs on: "Docker Desktop"
	// for Docker Desktop's VM, else the host's distribution.
	OperatingSystem string
	// SecurityOptions are the daemon's ("name=seccomp,profile=default",
	// "name=rootless", …).
	SecurityOptions []string
}

// Desktop reports whether the daemon is Docker Desktop's: it runs in a VM,
// whose networks this host does not route to, and its containers reach
// this host as host.docker.internal.
func (d DaemonInfo) Desktop() bool { return d.OperatingSystem == "Docker Desktop" }

// Rootless reports whether the daemon runs rootless (rootlesskit): its
// networks live in rootlesskit's network namespace, which this host does
// not route to, and its containers reach this host only at this host's own
// addresses (not at their network's gateway, nor at loopback).
func (d DaemonInfo) Rootless() bool {
	return slices.ContainsFunc(d.SecurityOptions, func(o string) bool {
		return slices.Contains(strings.Split(o, ","), "name=rootless")
	})
}

// Probe pings the daemon (negotiating the API version) and reads /info.
// Errors are classified (see Classify): *UnreachableError,
// *PermissionError, *APIVersionError.
func Probe(ctx context.Context, c Client, ep Endpoint) (DaemonInfo, error) {
	ping, err := Ping(ctx, c, ep)
	if err != nil {
		return DaemonInfo{}, err
	}
	info, err := c.Info(ctx, client.InfoOptions{})
	if err != nil {
		return DaemonInfo{}, Classify(err, ep, "")
	}
	di := DaemonInfo{
		Endpoint:      ep,
		APIVersion:    ping.APIVersion,
		OSType:        ping.OSType,
		ServerVersion: info.Info.ServerVersion,
		Driver:        info.Info.Driver,

		OperatingSystem: info.Info.OperatingSystem,
		SecurityOptions: info.Info.SecurityOptions,
	}
	for _, kv := range info.Info.DriverStatus {
		if len(kv) == 2 && kv[0] == "driver-type" && kv[1] == "io.containerd.snapshotter.v1" {
			di.ContainerdStore = true
		}
	}
	return di, nil
}

// Ping asks the daemon for its API version, negotiating the version the
// client speaks, within 15 seconds. A daemon older than the client supports
// is an *APIVersionError; other failures are classified (see Classify).
func Ping(ctx context.Context, c Client, ep Endpoint) (client.PingResult, error) {
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	p, err := c.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
	if err != nil {
		return p, Classify(err, ep, "")
	}
	if p.APIVersion != "" && versions.LessThan(p.APIVersion, client.MinAPIVersion) {
		return p, &APIVersionError{Host: ep.Host, Daemon: p.APIVersion, Minimum: client.MinAPIVersion}
	}
	return p, nil
}

// Remote reports whether the daemon runs on another host than this
// process: its endpoint is tcp:// (or ssh://) to an address that is not
// loopback.
func (d DaemonInfo) Remote() bool {
	scheme, rest, ok := strings.Cut(d.Endpoint.Host, "://")
	if !ok || (scheme != "tcp" && scheme != "ssh" && scheme != "http" && scheme != "https") {
		return false
	}
	host := rest
	if i := strings.LastIndexByte(host, '@'); i >= 0 {
		host = host[i+1:]
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err != nil || !ip.IsLoopback()
}

// Where says, as a clause, where the daemon's containers and networks live
// when this host cannot take part in them, and "" when it can (a daemon
// on this host).
func (d DaemonInfo) Where() string {
	switch {
	case d.Desktop():
		return "the docker daemon is Docker Desktop's, whose networks are inside its VM"
	case d.Rootless():
		return "the docker daemon is rootless, and its networks are inside rootlesskit's network namespace"
	case d.Remote():
		return fmt.Sprintf("the docker daemon at %s runs on another host, where its networks are", d.Endpoint.Host)
	}
	return ""
}
