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
	return CreateNetworkWith(ctx, cli, prefix, NetworkOptions{})
}

// NetworkOptions are the bridge network variants CreateNetworkWith makes.
type NetworkOptions struct {
	// Internal is `docker network create --internal`: no route out of
	// the network for its containers. (This host keeps its address on
	// the network, so it still reaches them.)
	Internal bool
	// NoHostAddress gives this host no address on the network (the bridge
	// driver's com.docker.network.bridge.inhibit_ipv4): this host has no
	// route to its containers, as with Docker Desktop's VM or a remote
	// daemon. Gateway is then invalid.
	NoHostAddress bool
}

// CreateNetworkWith is CreateNetwork for the variants of opts.
func CreateNetworkWith(ctx context.Context, cli NetworkAPI, prefix string, opts NetworkOptions) (*Network, error) {
	if prefix == "" {
		prefix = "layerbridge-test-"
	}
	name := prefix + randomHex(6)
	co := client.NetworkCreateOptions{Driver: "bridge", Labels: ownerLabels(), Internal: opts.Internal}
	if opts.NoHostAddress {
		co.Options = map[string]string{"com.docker.network.bridge.inhibit_ipv4": "true"}
	}
	res, err := cli.NetworkCreate(ctx, name, co)
	if err != nil {
		return nil, fmt.Errorf("create network %s: %w", name, err)
	}
	n := &Network{Name: name, ID: res.ID, cli: cli}
	info, err := cli.NetworkInspect(ctx, res.ID, client.NetworkInspectOptions{})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("inspect network %s: %w", name, err), n.Close())
	}
	for _, c := range info.Network.IPAM.Config {
		if c.Subnet.Addr().Is4() && (c.Gateway.IsValid() || opts.NoHostAddress) {
			n.Subnet, n.Gateway = c.Subnet, c.Gateway
			break
		}
	}
	if opts.NoHostAddress {
		if !n.Subnet.IsValid() {
			return nil, errors.Join(fmt.Errorf("network %s: docker reports no IPv4 subnet: %+v", name, info.Network.IPAM.Config), n.Close())
		}
		n.Gateway = netip.Addr{}
		return n, nil
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
