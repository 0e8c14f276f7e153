package dockersave

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/moby/moby/client/pkg/versions"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// EngineClient is the part of the Docker Engine API client
// (github.com/moby/moby/client.Client, built by NewEngineClient) that
// dockersave uses. Tests supply fakes. ImageSave's result must be closed.
type EngineClient interface {
	Ping(ctx context.Context, options client.PingOptions) (client.PingResult, error)
	Info(ctx context.Context, options client.InfoOptions) (client.SystemInfoResult, error)
	ImageInspect(ctx context.Context, image string, opts ...client.ImageInspectOption) (client.ImageInspectResult, error)
	ImageSave(ctx context.Context, images []string, opts ...client.ImageSaveOption) (client.ImageSaveResult, error)
}

var _ EngineClient = (*client.Client)(nil)

// API versions that gate features used here.
const (
	apiSavePlatform     = "1.48" // ImageSave with a platform
	apiInspectManifests = "1.48" // ImageInspect listing an index's manifests
	apiInspectPlatform  = "1.49" // ImageInspect with a platform
	pingTimeout         = 15 * time.Second
)

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
}

// Probe pings the daemon (negotiating the API version) and reads /info. Errors
// are classified like Loader errors: *UnreachableError, *PermissionError,
// *APIVersionError.
func Probe(ctx context.Context, c EngineClient, ep Endpoint) (DaemonInfo, error) {
	ping, err := ping(ctx, c, ep)
	if err != nil {
		return DaemonInfo{}, err
	}
	info, err := c.Info(ctx, client.InfoOptions{})
	if err != nil {
		return DaemonInfo{}, classifyEngineErr(err, ep, "")
	}
	di := DaemonInfo{
		Endpoint:      ep,
		APIVersion:    ping.APIVersion,
		OSType:        ping.OSType,
		ServerVersion: info.Info.ServerVersion,
		Driver:        info.Info.Driver,
	}
	for _, kv := range info.Info.DriverStatus {
		if len(kv) == 2 && kv[0] == "driver-type" && kv[1] == "io.containerd.snapshotter.v1" {
			di.ContainerdStore = true
		}
	}
	return di, nil
}

func ping(ctx context.Context, c EngineClient, ep Endpoint) (client.PingResult, error) {
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	p, err := c.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
	if err != nil {
		return p, classifyEngineErr(err, ep, "")
	}
	if p.APIVersion != "" && versions.LessThan(p.APIVersion, client.MinAPIVersion) {
		return p, &APIVersionError{Host: ep.Host, Daemon: p.APIVersion, Minimum: client.MinAPIVersion}
	}
	return p, nil
}

// classifyEngineErr maps client errors to the typed errors callers branch on.
// ref, when set, names the image for not-found and platform errors.
func classifyEngineErr(err error, ep Endpoint, ref string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		if ref != "" {
			return fmt.Errorf("%s: %w", ref, err)
		}
		return fmt.Errorf("docker daemon at %s: %w", ep.Host, err)
	}
	msg := strings.ToLower(err.Error())
	switch {
	case errors.Is(err, fs.ErrPermission) || strings.Contains(msg, "permission denied while trying to connect"):
		return &PermissionError{Host: ep.Host, Socket: ep.Socket(), Err: err}
	case strings.Contains(msg, "is too old") || strings.Contains(msg, "is not supported by this client") ||
		strings.Contains(msg, "minimum supported api version"):
		return &APIVersionError{Host: ep.Host, Minimum: client.MinAPIVersion, Err: err}
	case client.IsErrConnectionFailed(err) || errors.Is(err, fs.ErrNotExist):
		return &UnreachableError{Host: ep.Host, Err: err}
	case ref != "" && (strings.Contains(msg, "does not provide the specified platform") ||
		strings.Contains(msg, "no suitable export target") || strings.Contains(msg, "no match for platform")):
		return &PlatformError{Ref: ref, Err: err}
	case ref != "" && cerrdefs.IsNotFound(err):
		return &NotFoundError{Ref: ref, Err: err}
	}
	if ref != "" {
		return fmt.Errorf("%s: %w", ref, err)
	}
	return fmt.Errorf("docker daemon at %s: %w", ep.Host, err)
}

func inspectPlatform(ins client.ImageInspectResult) ocispec.Platform {
	return normalizePlatform(ocispec.Platform{OS: ins.Os, Architecture: ins.Architecture, Variant: ins.Variant})
}
