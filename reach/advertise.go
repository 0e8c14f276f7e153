package reach

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/layerbridge/layerbridge/engine"
)

// AdvertiseOptions are the inputs of Advertise besides Clair's URL.
type AdvertiseOptions struct {
	// Containers, when set, lets Advertise find Clair's container. When it
	// fails, Advertise logs why and falls back to the route to Clair's host.
	Containers engine.ContainerLister
	// LocalAddrs returns this host's (or this container's) addresses.
	// The default reads the network interfaces.
	LocalAddrs func() ([]netip.Addr, error)
	// RouteAddr returns the local address the kernel would use to reach
	// host:port. The default "connects" a UDP socket, which sends nothing.
	RouteAddr func(ctx context.Context, hostport string) (netip.Addr, error)
	// Resolve looks a host name up (for names that match no container by
	// name or alias, such as a compose service name seen from another
	// container). The default uses the system resolver.
	Resolve func(ctx context.Context, host string) ([]netip.Addr, error)
	// Daemon, when set, says which daemon runs Clair's container (its
	// info: Docker Desktop, rootless, or on another host), asked when
	// layerbridge runs on the host: there Clair reaches this host
	// elsewhere than at its network's gateway.
	Daemon func(ctx context.Context) (engine.DaemonInfo, error)
	// Logger receives one debug line per decision.
	Logger *slog.Logger
}

func (o AdvertiseOptions) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

// Address is the decision of Advertise: the IP to listen on and to put in the
// layer URLs handed to Clair (or, with Host, the name to put there), and
// why.
type Address struct {
	IP netip.Addr
	// Host, when set, is the name the layer URLs carry instead of IP
	// (host.docker.internal for Docker Desktop); IP is then only where to
	// listen.
	Host      string
	Reason    string // one sentence, for --log-level debug and doctor
	Container string // Clair's container, when it was found
	Network   string // the Docker network Clair reaches the bridge on, if any
	// Daemon says which kind of daemon decided the address when it is not
	// a network's gateway or a shared network: DaemonDesktop,
	// DaemonRootless or DaemonRemote; "" otherwise.
	Daemon string

	// Clair is Clair's container and Self the container layerbridge runs
	// in, when the daemon's container list showed them; nil otherwise.
	Clair, Self *engine.Container
}

// ErrNoSharedNetwork means layerbridge runs in a container that shares no
// Docker network with Clair's container, so Clair cannot reach it.
var ErrNoSharedNetwork = errors.New("layerbridge's container shares no docker network with clair's container")

// ErrNoHostAddress means Clair's container can reach this host only at one
// of this host's own addresses (a rootless daemon), and this host has none
// but loopback.
var ErrNoHostAddress = errors.New("this host has no address but loopback, and the containers of a rootless docker daemon reach this host only at its own addresses")

// The kinds of daemon Address.Daemon names.
const (
	DaemonDesktop  = "Docker Desktop"
	DaemonRootless = "rootless"
	DaemonRemote   = "remote"
)

// DesktopHostName is the name Docker Desktop's containers reach the host
// by.
const DesktopHostName = "host.docker.internal"

// Advertise picks the address Clair can reach the bridge on.
//
//   - Clair's URL names a container (by name, network alias, ID or IP on a
//     Docker network), or a port that a container publishes on this host:
//     the bridge's own address on a network it shares with that container
//     when layerbridge runs in a container too, otherwise the gateway (the
//     host's address) of Clair's network; but where the daemon's networks
//     are not this host's (AdvertiseOptions.Daemon), host.docker.internal for Docker
//     Desktop, this host's own address for a rootless daemon, and the
//     local address of the route to a daemon on another host.
//   - Otherwise the local address of the route to Clair's host: loopback
//     for a Clair on loopback.
func Advertise(ctx context.Context, clair *url.URL, opts AdvertiseOptions) (Address, error) {
	log := opts.logger()
	if opts.LocalAddrs == nil {
		opts.LocalAddrs = interfaceAddrs
	}
	if opts.RouteAddr == nil {
		opts.RouteAddr = routeAddr
	}
	if opts.Resolve == nil {
		opts.Resolve = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	host := clair.Hostname()
	if host == "" {
		return Address{}, fmt.Errorf("advertise: clair url %q has no host", clair)
	}
	port, err := urlPort(clair)
	if err != nil {
		return Address{}, fmt.Errorf("advertise: %w", err)
	}
	local, err := opts.LocalAddrs()
	if err != nil {
		return Address{}, fmt.Errorf("advertise: list local addresses: %w", err)
	}
	hostIP, hostIsIP := parseIP(host)

	if opts.Containers != nil {
		containers, err := opts.Containers.RunningContainers(ctx)
		if err != nil {
			log.Debug("advertise: cannot list docker containers; using the route to clair's host", "err", err)
		} else {
			addr, found, err := advertiseForContainer(ctx, opts, host, hostIP, hostIsIP, port, local, containers)
			if !found && err == nil && !hostIsIP && host != "localhost" {
				// A name Docker's container list does not show (a compose
				// service alias): match the addresses it resolves to.
				ips, rerr := opts.Resolve(ctx, host)
				log.Debug("advertise: resolved clair's host name", "host", host, "addrs", ips, "err", rerr)
				for _, ip := range ips {
					if ip = ip.Unmap(); ip.IsValid() {
						addr, found, err = advertiseForContainer(ctx, opts, ip.String(), ip, true, port, local, containers)
						if found || err != nil {
							break
						}
					}
				}
			}
			if err != nil || found {
				return addr, err
			}
		}
	}

	if host == "localhost" || (hostIsIP && hostIP.IsLoopback()) {
		ip := netip.AddrFrom4([4]byte{127, 0, 0, 1})
		if hostIsIP && hostIP.Is6() {
			ip = netip.IPv6Loopback()
		}
		return Address{IP: ip, Reason: fmt.Sprintf("clair's url %s is on loopback and no container publishes port %d, so clair runs on this host", clair.Host, port)}, nil
	}
	ip, err := opts.RouteAddr(ctx, net.JoinHostPort(host, strconv.Itoa(int(port))))
	if err != nil {
		return Address{}, fmt.Errorf("advertise: find the route to clair at %s: %w", clair.Host, err)
	}
	return Address{IP: ip, Reason: fmt.Sprintf("%s is the local address of the route to clair's host %s", ip, host)}, nil
}

func advertiseForContainer(ctx context.Context, opts AdvertiseOptions, host string, hostIP netip.Addr, hostIsIP bool, port uint16, local []netip.Addr, containers []engine.Container) (Address, bool, error) {
	log := opts.logger()
	clairC, how := findClair(host, hostIP, hostIsIP, port, local, containers)
	if clairC == nil {
		log.Debug("advertise: clair's host is not a container of this docker daemon", "host", host, "containers", len(containers))
		return Address{}, false, nil
	}
	log.Debug("advertise: found clair's container", "container", clairC.Name(), "matched", how)
	self := findSelf(local, containers)
	var (
		a       Address
		decided bool
		err     error
	)
	if self == nil {
		a, decided, err = forDaemon(ctx, opts, clairC, local)
	}
	if !decided && err == nil {
		a, err = placeFor(clairC, self, hostIP, hostIsIP)
	}
	if err == nil {
		a.Clair, a.Self = clairC, self
	}
	return a, true, err
}

// forDaemon is the address of this host for Clair's container clairC when
// layerbridge runs on the host and the daemon is one whose containers do
// not reach this host at their network's gateway: Docker Desktop's (its
// gateways are inside its VM), a rootless daemon's (inside rootlesskit's
// network namespace) or one on another host. decided is false for the
// others, or when the daemon could not be asked.
func forDaemon(ctx context.Context, opts AdvertiseOptions, clairC *engine.Container, local []netip.Addr) (a Address, decided bool, err error) {
	if opts.Daemon == nil {
		return Address{}, false, nil
	}
	log := opts.logger()
	info, err := opts.Daemon(ctx)
	if err != nil {
		log.Debug("advertise: cannot ask the docker daemon what it is; assuming it runs on this host", "err", err)
		return Address{}, false, nil
	}
	name := clairC.Name()
	switch {
	case info.Desktop():
		return Address{
			IP:   netip.IPv4Unspecified(),
			Host: DesktopHostName,
			Reason: fmt.Sprintf("clair runs in container %s of Docker Desktop, whose containers reach this host as %s (their networks' gateways are inside Desktop's VM); listening on every interface",
				name, DesktopHostName),
			Container: name, Daemon: DaemonDesktop,
		}, true, nil
	case info.Rootless():
		ip, ok := hostAddress(local)
		if !ok {
			return Address{}, true, fmt.Errorf("advertise: clair runs in container %s of a rootless docker daemon: %w", name, ErrNoHostAddress)
		}
		return Address{
			IP: ip,
			Reason: fmt.Sprintf("clair runs in container %s of a rootless docker daemon, whose containers reach this host only at its own addresses (their networks' gateways are inside rootlesskit's network namespace, and this host's loopback is closed to them); %s is this host's first",
				name, ip),
			Container: name, Daemon: DaemonRootless,
		}, true, nil
	case info.Remote():
		daemonHost, err := endpointHostPort(info.Endpoint.Host)
		if err != nil {
			log.Debug("advertise: cannot tell the remote daemon's address", "host", info.Endpoint.Host, "err", err)
			return Address{}, false, nil
		}
		ip, err := opts.RouteAddr(ctx, daemonHost)
		if err != nil {
			return Address{}, true, fmt.Errorf("advertise: find the route to the docker daemon's host %s: %w", daemonHost, err)
		}
		return Address{
			IP: ip,
			Reason: fmt.Sprintf("clair runs in container %s of the docker daemon at %s, on another host, which clair's container reaches this host from: %s is the local address of the route to it",
				name, info.Endpoint.Host, ip),
			Container: name, Daemon: DaemonRemote,
		}, true, nil
	}
	return Address{}, false, nil
}

// hostAddress is the first IPv4 address of this host that is neither
// loopback nor link-local.
func hostAddress(local []netip.Addr) (netip.Addr, bool) {
	for _, ip := range local {
		if ip.Is4() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() && !ip.IsUnspecified() {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

// endpointHostPort is the host:port of a tcp://, http(s):// or ssh://
// daemon endpoint.
func endpointHostPort(endpoint string) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", err
	}
	if u.Hostname() == "" {
		return "", fmt.Errorf("no host in %q", endpoint)
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"ssh": "22", "https": "2376"}[u.Scheme]
		if port == "" {
			port = "2375"
		}
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}

// placeFor is the address Clair's container clairC reaches layerbridge
// at, from self, the container layerbridge runs in (nil: on the host).
func placeFor(clairC, self *engine.Container, hostIP netip.Addr, hostIsIP bool) (Address, error) {
	name := clairC.Name()

	if slices.ContainsFunc(clairC.Networks, func(n engine.ContainerNetwork) bool { return n.Name == "host" }) {
		return Address{
			IP:        netip.AddrFrom4([4]byte{127, 0, 0, 1}),
			Reason:    fmt.Sprintf("clair's container %s uses the host network, so it reaches this host on loopback", name),
			Container: name, Network: "host",
		}, nil
	}

	if self != nil && self.ID == clairC.ID {
		return Address{
			IP:        netip.AddrFrom4([4]byte{127, 0, 0, 1}),
			Reason:    fmt.Sprintf("layerbridge runs in clair's own container %s", name),
			Container: name,
		}, nil
	}
	if self != nil {
		for _, cn := range clairC.Networks {
			for _, sn := range self.Networks {
				if sn.Name == cn.Name && sn.IP.IsValid() {
					return Address{
						IP:        sn.IP,
						Reason:    fmt.Sprintf("layerbridge runs in container %s, which shares network %s with clair's container %s", self.Name(), cn.Name, name),
						Container: name, Network: cn.Name,
					}, nil
				}
			}
		}
		return Address{}, fmt.Errorf("advertise: %w: layerbridge is in %s (networks %s), clair is in %s (networks %s)",
			ErrNoSharedNetwork, self.Name(), networkNames(self), name, networkNames(clairC))
	}
	// layerbridge runs on the host: Clair reaches the host through the
	// gateway of one of its networks. Prefer the network Clair's URL named.
	nets := slices.Clone(clairC.Networks)
	slices.SortStableFunc(nets, func(a, b engine.ContainerNetwork) int {
		return boolRank(hostIsIP && a.IP == hostIP) - boolRank(hostIsIP && b.IP == hostIP)
	})
	for _, n := range nets {
		if n.Gateway.IsValid() && !n.Gateway.IsUnspecified() {
			return Address{
				IP:        n.Gateway,
				Reason:    fmt.Sprintf("clair runs in container %s on network %s and layerbridge on the host, which clair reaches at that network's gateway %s", name, n.Name, n.Gateway),
				Container: name, Network: n.Name,
			}, nil
		}
	}
	return Address{}, fmt.Errorf("advertise: clair's container %s has no network with a gateway (networks %s); pass --advertise", name, networkNames(clairC))
}

func boolRank(b bool) int {
	if b {
		return -1
	}
	return 0
}

// findClair returns the container Clair's URL points at and how it matched.
func findClair(host string, hostIP netip.Addr, hostIsIP bool, port uint16, local []netip.Addr, containers []engine.Container) (*engine.Container, string) {
	for i := range containers {
		c := &containers[i]
		if hostIsIP {
			for _, n := range c.Networks {
				if n.IP.IsValid() && n.IP == hostIP {
					return c, "ip on network " + n.Name
				}
			}
			continue
		}
		if slices.Contains(c.Names, host) {
			return c, "container name"
		}
		if len(host) >= 12 && strings.HasPrefix(c.ID, host) {
			return c, "container id"
		}
		for _, n := range c.Networks {
			if slices.Contains(n.Aliases, host) {
				return c, "alias on network " + n.Name
			}
		}
	}
	// A port published on this host: Clair's URL names the host itself.
	onHost := host == "localhost" || (hostIsIP && (hostIP.IsLoopback() || hostIP.IsUnspecified() || slices.Contains(local, hostIP)))
	if !onHost {
		return nil, ""
	}
	for i := range containers {
		c := &containers[i]
		for _, p := range c.Ports {
			if p.HostPort != port {
				continue
			}
			if !p.HostIP.IsValid() || p.HostIP.IsUnspecified() || p.HostIP.IsLoopback() || (hostIsIP && p.HostIP == hostIP) {
				return c, fmt.Sprintf("publishes host port %d", port)
			}
		}
	}
	return nil, ""
}

// findSelf returns the container layerbridge runs in: the one whose network
// address is one of this process's local addresses.
func findSelf(local []netip.Addr, containers []engine.Container) *engine.Container {
	for i := range containers {
		for _, n := range containers[i].Networks {
			if n.IP.IsValid() && !n.IP.IsLoopback() && slices.Contains(local, n.IP) {
				return &containers[i]
			}
		}
	}
	return nil
}

func networkNames(c *engine.Container) string {
	names := make([]string, 0, len(c.Networks))
	for _, n := range c.Networks {
		names = append(names, n.Name)
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func urlPort(u *url.URL) (uint16, error) {
	p := u.Port()
	if p == "" {
		switch u.Scheme {
		case "https":
			return 443, nil
		case "http":
			return 80, nil
		default:
			return 0, fmt.Errorf("clair url %q: unknown scheme %q", u, u.Scheme)
		}
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("clair url %q: bad port: %w", u, err)
	}
	return uint16(n), nil
}

func parseIP(host string) (netip.Addr, bool) {
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return ip.Unmap(), true
}

func interfaceAddrs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr().Unmap())
		}
	}
	return out, nil
}

func routeAddr(ctx context.Context, hostport string) (netip.Addr, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", hostport)
	if err != nil {
		return netip.Addr{}, err
	}
	defer c.Close()
	ap, err := netip.ParseAddrPort(c.LocalAddr().String())
	if err != nil {
		return netip.Addr{}, err
	}
	return ap.Addr().Unmap(), nil
}
