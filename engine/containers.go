package engine

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

// Container is what address detection (package reach) needs to know
// about one running container.
type Container struct {
	ID       string
	Names    []string // without the leading "/"
	Networks []ContainerNetwork
	Ports    []PublishedPort
}

// ContainerNetwork is a container's endpoint on one Docker network.
type ContainerNetwork struct {
	Name    string
	IP      netip.Addr   // the container's address on the network; invalid for "host" and "none"
	Subnet  netip.Prefix // the network's subnet, as the endpoint has it; invalid when IP is
	Gateway netip.Addr   // the host's address on the network
	// Aliases are the container's further DNS names on this network
	// (compose service names, --network-alias). The container list does
	// not show them: only Containers with Aliases set fills them in.
	Aliases []string
}

// PublishedPort is a container port published on the host.
type PublishedPort struct {
	HostIP        netip.Addr // unspecified or invalid means every host address
	HostPort      uint16
	ContainerPort uint16
}

// ContainerLister lists the running containers of the Docker daemon;
// Containers is one.
type ContainerLister interface {
	RunningContainers(ctx context.Context) ([]Container, error)
}

// Name is the container's first name, or its short ID when it has none.
func (c *Container) Name() string {
	if len(c.Names) > 0 {
		return c.Names[0]
	}
	if len(c.ID) > 12 {
		return c.ID[:12]
	}
	return c.ID
}

// ContainerListAPI is the Docker Engine call Containers needs;
// *client.Client implements it.
type ContainerListAPI interface {
	ContainerList(ctx context.Context, options client.ContainerListOptions) (client.ContainerListResult, error)
	ContainerInspect(ctx context.Context, id string, options client.ContainerInspectOptions) (client.ContainerInspectResult, error)
}

// Containers adapts the Docker Engine API to ContainerLister, for address
// detection (package reach). Open is called on first use, so a scan of an
// archive never needs a daemon.
type Containers struct {
	Open func() (ContainerListAPI, error)
	// Aliases, when set, has RunningContainers inspect each container for
	// its network aliases, which the list does not show: one more Engine
	// API call per running container.
	Aliases bool
}

// RunningContainers lists the daemon's running containers with their
// network endpoints (sorted by network name) and published ports.
func (d Containers) RunningContainers(ctx context.Context) ([]Container, error) {
	c, err := d.Open()
	if err != nil {
		return nil, err
	}
	res, err := c.ContainerList(ctx, client.ContainerListOptions{})
	if err != nil {
		return nil, err
	}
	out := make([]Container, 0, len(res.Items))
	for _, s := range res.Items {
		bc := Container{ID: s.ID}
		for _, n := range s.Names {
			bc.Names = append(bc.Names, strings.TrimPrefix(n, "/"))
		}
		if s.NetworkSettings != nil {
			for name, ep := range s.NetworkSettings.Networks {
				if ep == nil {
					continue
				}
				cn := ContainerNetwork{
					Name:    name,
					IP:      ep.IPAddress,
					Gateway: ep.Gateway,
					Aliases: slices.Concat(ep.Aliases, ep.DNSNames),
				}
				if ep.IPAddress.IsValid() && ep.IPPrefixLen > 0 {
					cn.Subnet, _ = ep.IPAddress.Prefix(ep.IPPrefixLen)
				}
				bc.Networks = append(bc.Networks, cn)
			}
			slices.SortFunc(bc.Networks, func(a, b ContainerNetwork) int { return strings.Compare(a.Name, b.Name) })
		}
		if d.Aliases && len(bc.Networks) > 0 {
			if err := addAliases(ctx, c, &bc); err != nil {
				return nil, err
			}
		}
		if s.HostConfig.NetworkMode == "host" && len(bc.Networks) == 0 {
			bc.Networks = append(bc.Networks, ContainerNetwork{Name: "host"})
		}
		for _, p := range s.Ports {
			if p.PublicPort == 0 {
				continue
			}
			bc.Ports = append(bc.Ports, PublishedPort{HostIP: p.IP, HostPort: p.PublicPort, ContainerPort: p.PrivatePort})
		}
		out = append(out, bc)
	}
	return out, nil
}

// addAliases adds the network aliases that inspecting c shows to its
// networks. A container gone meanwhile keeps the list's view.
func addAliases(ctx context.Context, api ContainerListAPI, c *Container) error {
	res, err := api.ContainerInspect(ctx, c.ID, client.ContainerInspectOptions{})
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("inspect container %s: %w", c.Name(), err)
	}
	ns := res.Container.NetworkSettings
	if ns == nil {
		return nil
	}
	for i := range c.Networks {
		ep := ns.Networks[c.Networks[i].Name]
		if ep == nil {
			continue
		}
		for _, a := range slices.Concat(ep.Aliases, ep.DNSNames) {
			if !slices.Contains(c.Networks[i].Aliases, a) {
				c.Networks[i].Aliases = append(c.Networks[i].Aliases, a)
			}
		}
	}
	return nil
}
