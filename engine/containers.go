package engine

import (
	"context"
	"net/netip"
	"strings"

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
	IP      netip.Addr // the container's address on the network; invalid for "host" and "none"
	Gateway netip.Addr // the host's address on the network
	Aliases []string   // DNS names of the container on this network (compose service names)
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
}

// Containers adapts the Docker Engine API to ContainerLister, for address
// detection (package reach). Open is called on first use, so a scan of an
// archive never needs a daemon.
type Containers struct {
	Open func() (ContainerListAPI, error)
}

// RunningContainers lists the daemon's running containers with their
// network endpoints and published ports.
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
				bc.Networks = append(bc.Networks, ContainerNetwork{
					Name:    name,
					IP:      ep.IPAddress,
					Gateway: ep.Gateway,
					Aliases: append(append([]string(nil), ep.Aliases...), ep.DNSNames...),
				})
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
