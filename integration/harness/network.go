package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/moby/moby/client"
)

// NetworkAPI is the part of the Engine API client CreateNetwork uses;
// *client.Client implements it.
type NetworkAPI interface {
	NetworkCreate(ctx context.Context, name string, options client.NetworkCreateOptions) (client.NetworkCreateResult, error)
	NetworkInspect(ctx context.Context, networkID string, options client.NetworkInspectOptions) (client.NetworkInspectResult, error)
	NetworkRemove(ctx context.Context, networkID string, options client.NetworkRemoveOptions) (client.NetworkRemoveResult, error)
}

// Network is a user-defined Docker bridge network made for one test run,
// the kind compose makes (clair-network): containers on it resolve each
// other by name, and reach this host at Gateway.
type Network struct {
	// Name is unique to this run ("layerbridge-test-" and random hex).
	Name string
	// ID is Docker's network ID.
	ID string
	// Subnet is the network's IPv4 subnet, picked by Docker.
	Subnet netip.Prefix
	// Gateway is this host's address on the network: services that
	// containers on it must reach listen there (ServeFeedOn,
	// StartPostgresOn). It is private (RFC 1918), so Clair's airgap mode
	// lets Clair connect to it.
	Gateway netip.Addr

	cli NetworkAPI
}

// CreateNetwork creates a bridge network named prefix followed by random hex
// ("layerbridge-test-" when prefix is empty), labelled as this process's
// (see RemoveOrphans), and returns once Docker reports its subnet and
// gateway. Close removes it; containers still attached make Close fail, so
// close them first.
func CreateNetwork(ctx context.Context, cli NetworkAPI, prefix string) (*Network, error) {
	if prefix == "" {
		prefix = "layerbridge-test-"
	}
	name := prefix + randomHex(6)
	res, err := cli.NetworkCreate(ctx, name, client.NetworkCreateOptions{Driver: "bridge", Labels: ownerLabels()})
	if err != nil {
		return nil, fmt.Errorf("create network %s: %w", name, err)
	}
	n := &Network{Name: name, ID: res.ID, cli: cli}
	info, err := cli.NetworkInspect(ctx, res.ID, client.NetworkInspectOptions{})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("inspect network %s: %w", name, err), n.Close())
	}
	for _, c := range info.Network.IPAM.Config {
		if c.Subnet.Addr().Is4() && c.Gateway.IsValid() {
			n.Subnet, n.Gateway = c.Subnet, c.Gateway
			break
		}
	}
	if !n.Gateway.IsValid() {
		return nil, errors.Join(fmt.Errorf("network %s: docker reports no IPv4 subnet with a gateway: %+v", name, info.Network.IPAM.Config), n.Close())
	}
	return n, nil
}

// Close removes the network. It may be called more than once, and works
// after the context CreateNetwork was given has ended.
func (n *Network) Close() error {
	if n.cli == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := n.cli.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil && !isNotFound(err) {
		return fmt.Errorf("remove network %s: %w", n.Name, err)
	}
	n.cli = nil
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
