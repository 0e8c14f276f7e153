package engine

import (
	"context"
	"strings"

	"github.com/moby/moby/client"

	"github.com/layerbridge/layerbridge/bridge"
)

// ContainerListAPI is the Docker Engine call Containers needs;
// *client.Client implements it.
type ContainerListAPI interface {
	ContainerList(ctx context.Context, options client.ContainerListOptions) (client.ContainerListResult, error)
}

// Containers adapts the Docker Engine API to bridge.ContainerLister, for
// the layer server's address detection. Open is called on first use, so a
// scan of an archive never needs a daemon.
type Containers struct {
	Open func() (ContainerListAPI, error)
}

// RunningContainers lists the daemon's running containers with their
// network endpoints and published ports.
func (d Containers) RunningContainers(ctx context.Context) ([]bridge.Container, error) {
	c, err := d.Open()
	if err != nil {
		return nil, err
	}
	res, err := c.ContainerList(ctx, client.ContainerListOptions{})
	if err != nil {
		return nil, err
	}
	out := make([]bridge.Container, 0, len(res.Items))
	for _, s := range res.Items {
		bc := bridge.Container{ID: s.ID}
		for _, n := range s.Names {
			bc.Names = append(bc.Names, strings.TrimPrefix(n, "/"))
		}
		if s.NetworkSettings != nil {
			for name, ep := range s.NetworkSettings.Networks {
				if ep == nil {
					continue
				}
				bc.Networks = append(bc.Networks, bridge.ContainerNetwork{
					Name:    name,
					IP:      ep.IPAddress,
					Gateway: ep.Gateway,
					Aliases: append(append([]string(nil), ep.Aliases...), ep.DNSNames...),
				})
			}
		}
		if s.HostConfig.NetworkMode == "host" && len(bc.Networks) == 0 {
			bc.Networks = append(bc.Networks, bridge.ContainerNetwork{Name: "host"})
		}
		for _, p := range s.Ports {
			if p.PublicPort == 0 {
				continue
			}
			bc.Ports = append(bc.Ports, bridge.PublishedPort{HostIP: p.IP, HostPort: p.PublicPort, ContainerPort: p.PrivatePort})
		}
		out = append(out, bc)
	}
	return out, nil
}
