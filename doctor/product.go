package doctor

import (
	"context"
	"fmt"
	"strings"

	"github.com/moby/moby/client"

	"github.com/layerbridge/layerbridge/engine"
)

// versionGetter is the Engine API call that says which engine answers
// (GET /version). The real client has it; doctor asks only a client that
// does.
type versionGetter interface {
	ServerVersion(ctx context.Context, options client.ServerVersionOptions) (client.ServerVersionResult, error)
}

// product is what a daemon speaking the Engine API is, from its version
// response: Docker Engine, Podman (whose API service speaks it too), or
// another product.
type product struct {
	// name is the product: "Docker Engine", "Podman Engine", or the name
	// of the daemon's first component.
	name    string
	version string
	os      string
	// desktop is Docker Desktop's name and version ("Docker Desktop
	// 4.41.2 (191736)") when the engine runs inside it.
	desktop string
	// containerd and runc are the versions of the components Docker lists.
	containerd, runc string
}

// podman reports whether the engine is Podman's API service.
func (e product) podman() bool { return strings.HasPrefix(e.name, "Podman") }

// String is "Docker Engine 29.8.1 (linux; containerd 2.4.2, runc 1.1.5)",
// "Podman Engine 4.3.1 (linux)".
func (e product) String() string {
	s := e.name
	if e.version != "" {
		s += " " + e.version
	}
	var about []string
	if e.desktop != "" {
		about = append(about, "in "+e.desktop)
	}
	if e.os != "" {
		about = append(about, e.os)
	}
	var parts []string
	if e.containerd != "" {
		parts = append(parts, "containerd "+e.containerd)
	}
	if e.runc != "" {
		parts = append(parts, "runc "+e.runc)
	}
	if len(parts) > 0 {
		about = append(about, strings.Join(parts, ", "))
	}
	if len(about) > 0 {
		s += " (" + strings.Join(about, "; ") + ")"
	}
	return s
}

// identifyProduct names the engine from its version response (v; nil when
// the daemon gave none) and what Probe learned. The version response's
// components are where engines say what they are: Docker lists "Engine"
// (with containerd, runc, docker-init), Podman "Podman Engine" (with
// Conmon and its OCI runtime); its Platform names Docker Desktop.
func identifyProduct(v *client.ServerVersionResult, info engine.DaemonInfo) product {
	e := product{name: "Docker Engine", version: info.ServerVersion, os: info.OSType}
	if v == nil {
		return e
	}
	if v.Os != "" {
		e.os = v.Os
	}
	if v.Version != "" {
		e.version = v.Version
	}
	for i, c := range v.Components {
		switch {
		case i == 0 && c.Name == "Engine":
			e.version = c.Version
		case i == 0:
			e.name, e.version = c.Name, c.Version
		case c.Name == "containerd":
			e.containerd = c.Version
		case c.Name == "runc":
			e.runc = c.Version
		}
	}
	if p := v.Platform.Name; strings.HasPrefix(p, "Docker Desktop") {
		e.desktop = p
	}
	return e
}

// askProduct asks the daemon which engine it is; without an answer it is
// named from Probe's information alone.
func askProduct(ctx context.Context, eng engine.Client, info engine.DaemonInfo) product {
	vg, ok := eng.(versionGetter)
	if !ok {
		return identifyProduct(nil, info)
	}
	v, err := vg.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil {
		return identifyProduct(nil, info)
	}
	return identifyProduct(&v, info)
}

// describeStorage says which image store the daemon keeps images in, and
// what that means for an export.
func describeStorage(e product, info engine.DaemonInfo) string {
	switch {
	case e.podman():
		return fmt.Sprintf("Podman's containers/storage (driver %s): exports hold uncompressed layers and image IDs are config digests", info.Driver)
	case info.ContainerdStore:
		with := ""
		if e.containerd != "" {
			with = ", containerd " + e.containerd
		}
		return fmt.Sprintf("containerd image store (snapshotter %s%s): exports keep layers compressed and image IDs are manifest digests", info.Driver, with)
	}
	return fmt.Sprintf("graphdriver store (%s): exports hold uncompressed layers and image IDs are config digests", info.Driver)
}

// storeName is the image store's short name, for messages.
func storeName(e product, info engine.DaemonInfo) string {
	switch {
	case e.podman():
		return "containers/storage"
	case info.ContainerdStore:
		return "containerd"
	}
	return "graphdriver"
}
