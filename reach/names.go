package reach

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/layerbridge/layerbridge/engine"
	"github.com/layerbridge/layerbridge/internal/didyoumean"
)

// Route is how this host reaches a host name that only Docker's embedded
// DNS knows (a Clair setup's http://clair:6060): the container the name
// names, and its address on a network this host routes to.
type Route struct {
	Name      string     // the host name
	Container string     // the container it names
	Matched   string     // how: "container name", "alias on network N" or "container ID"
	Network   string     // the network of the address
	IP        netip.Addr // the container's address on it
}

func (r Route) String() string {
	return fmt.Sprintf("%s is the %s of container %s, reached at %s on network %s", r.Name, r.Matched, r.Container, r.IP, r.Network)
}

// Names finds the container a host name names when the system's resolver
// does not know the name, and an address of it this host can route to.
type Names struct {
	// Containers lists the daemon's running containers, with their network
	// aliases (engine.Containers with Aliases set). Required.
	Containers engine.ContainerLister
	// Daemon, when set, says which daemon the containers run on (its
	// endpoint, and in its info whether it is Docker Desktop or rootless),
	// for the error when this host cannot reach them.
	Daemon func(ctx context.Context) (engine.DaemonInfo, error)
	// Interfaces returns this host's interface addresses with their
	// prefixes. The default reads the network interfaces.
	Interfaces func() ([]netip.Prefix, error)
	// Lookup resolves a host name as the system does (the default).
	Lookup func(ctx context.Context, host string) ([]netip.Addr, error)
	// Logger receives one debug line per decision.
	Logger *slog.Logger
}

// Resolve says how this host reaches host. It needs no route (ok false)
// when host is an IP address, localhost or a name the system resolves;
// otherwise it looks for a running container named host or with host as a
// network alias, and returns its address on a network one of this host's
// interfaces is on (Linux hosts reach user-defined bridge networks
// directly). It fails with a *NameError when no container answers to the
// name, and with an *UnroutableError when this host has no interface on
// any of that container's networks (Docker Desktop's VM, a remote or
// rootless daemon, a network without a host address).
func (n Names) Resolve(ctx context.Context, host string) (r Route, ok bool, err error) {
	log := n.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if _, err := netip.ParseAddr(host); err == nil || host == "" || strings.EqualFold(host, "localhost") {
		return Route{}, false, nil
	}
	lookup := n.Lookup
	if lookup == nil {
		lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	addrs, lerr := lookup(ctx, host)
	if lerr == nil && len(addrs) > 0 {
		return Route{}, false, nil
	}
	if lerr == nil {
		lerr = &net.DNSError{Err: "no address", Name: host, IsNotFound: true}
	}
	if ctx.Err() != nil {
		return Route{}, false, lerr
	}
	log.DebugContext(ctx, "the host name does not resolve here: looking for a container of that name", "name", host, "err", lerr)
	if n.Containers == nil {
		return Route{}, false, &NameError{Name: host, Err: lerr}
	}
	list, err := n.Containers.RunningContainers(ctx)
	if err != nil {
		return Route{}, false, &NameError{Name: host, Err: lerr, ListErr: err}
	}
	matches := matchName(host, list)
	if len(matches) == 0 {
		e := &NameError{Name: host, Err: lerr, Running: len(list), Suggestions: didyoumean.Closest(host, knownNames(list))}
		log.DebugContext(ctx, "no container answers to the name", "name", host, "running", len(list), "suggestions", e.Suggestions)
		return Route{}, false, e
	}
	interfaces := n.Interfaces
	if interfaces == nil {
		interfaces = interfacePrefixes
	}
	local, err := interfaces()
	if err != nil {
		return Route{}, false, fmt.Errorf("list this host's interfaces: %w", err)
	}
	for _, m := range matches {
		for _, cn := range m.networks() {
			if !cn.IP.IsValid() {
				continue
			}
			if p, ok := onLink(cn.IP, local); ok {
				r := Route{Name: host, Container: m.c.Name(), Matched: m.how, Network: cn.Name, IP: cn.IP}
				log.DebugContext(ctx, "clair's host name is a container's: connecting to its address", "name", host, "container", r.Container,
					"matched", r.Matched, "network", r.Network, "ip", r.IP, "interface", p)
				return r, true, nil
			}
			log.DebugContext(ctx, "this host has no interface on the container's network", "container", m.c.Name(), "network", cn.Name, "ip", cn.IP, "subnet", cn.Subnet)
		}
	}
	m := matches[0]
	e := &UnroutableError{Name: host, Container: m.c.Name(), Matched: m.how, Networks: m.c.Networks, Local: nonLoopback(local)}
	if n.Daemon != nil {
		if info, err := n.Daemon(ctx); err == nil {
			e.Daemon = info
		} else {
			log.DebugContext(ctx, "cannot tell which daemon the container runs on", "err", err)
		}
	}
	return Route{}, false, e
}

// match is a container that answers to a host name, and how.
type match struct {
	c       *engine.Container
	how     string
	network string // the network of the alias that matched; "" for a name or ID
}

// networks are the container's networks, the one whose alias matched
// first: there the name means this container.
func (m match) networks() []engine.ContainerNetwork {
	nets := slices.Clone(m.c.Networks)
	slices.SortStableFunc(nets, func(a, b engine.ContainerNetwork) int {
		return boolRank(a.Name == m.network) - boolRank(b.Name == m.network)
	})
	return nets
}

// matchName returns the containers that answer to host: by name first,
// then by network alias, then by ID (12 hex digits or more).
func matchName(host string, list []engine.Container) []match {
	var byName, byAlias, byID []match
	for i := range list {
		c := &list[i]
		if slices.Contains(c.Names, host) {
			byName = append(byName, match{c: c, how: "container name"})
			continue
		}
		if i := slices.IndexFunc(c.Networks, func(n engine.ContainerNetwork) bool { return slices.Contains(n.Aliases, host) }); i >= 0 {
			byAlias = append(byAlias, match{c: c, how: "alias on network " + c.Networks[i].Name, network: c.Networks[i].Name})
			continue
		}
		if len(host) >= 12 && strings.HasPrefix(c.ID, host) {
			byID = append(byID, match{c: c, how: "container ID"})
		}
	}
	return slices.Concat(byName, byAlias, byID)
}

// knownNames are the names containers answer to on their networks, for
// "did you mean": their names and aliases, without the short IDs Docker
// adds as aliases.
func knownNames(list []engine.Container) []string {
	var out []string
	for _, c := range list {
		out = append(out, c.Names...)
		for _, n := range c.Networks {
			for _, a := range n.Aliases {
				if !strings.HasPrefix(c.ID, a) {
					out = append(out, a)
				}
			}
		}
	}
	return out
}

// onLink returns the interface prefix of this host that ip is on.
func onLink(ip netip.Addr, local []netip.Prefix) (netip.Prefix, bool) {
	for _, p := range local {
		if p.Contains(ip) && p.Addr() != ip {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

func nonLoopback(ps []netip.Prefix) []netip.Prefix {
	return slices.DeleteFunc(slices.Clone(ps), func(p netip.Prefix) bool { return p.Addr().IsLoopback() || p.Addr().IsLinkLocalUnicast() })
}

func interfacePrefixes() ([]netip.Prefix, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	out := make([]netip.Prefix, 0, len(addrs))
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p)
		}
	}
	return out, nil
}

// NameError means a host name resolves nowhere: the system's resolver does
// not know it and no running container of the daemon answers to it.
type NameError struct {
	Name string
	Err  error // the system resolver's
	// Running is how many containers were looked at, and Suggestions the
	// names and network aliases among them close to Name.
	Running     int
	Suggestions []string
	// ListErr is why the daemon could not be asked; Running and
	// Suggestions are then empty.
	ListErr error
}

func (e *NameError) Error() string {
	if e.ListErr != nil {
		return fmt.Sprintf("%v, and the docker daemon could not be asked for a container of that name: %v", e.Err, e.ListErr)
	}
	s := fmt.Sprintf("%v, and no running container of the docker daemon (%d running) is named %s or has it as a network alias", e.Err, e.Running, e.Name)
	if len(e.Suggestions) > 0 {
		s += fmt.Sprintf(" (did you mean %s?)", strings.Join(e.Suggestions, " or "))
	}
	return s
}

func (e *NameError) Unwrap() error { return e.Err }

// UnroutableError means a host name names a container, but this host has
// no interface on any of that container's networks, so it cannot connect
// to it by address.
type UnroutableError struct {
	Name      string
	Container string
	Matched   string                    // how the name matched, as Route.Matched
	Networks  []engine.ContainerNetwork // the container's networks and addresses
	Local     []netip.Prefix            // this host's networks
	// Daemon is what the daemon's info says of it (where its networks
	// live: Docker Desktop's VM, a rootless daemon's namespace, another
	// host), when it could be asked.
	Daemon engine.DaemonInfo
}

// Network is the network to run layerbridge on to reach the container by
// its name: the one whose alias matched, else the first with an address;
// "" when the container uses the host network or has no address.
func (e *UnroutableError) Network() string {
	if e.HostNetwork() {
		return ""
	}
	if n, ok := strings.CutPrefix(e.Matched, "alias on network "); ok {
		return n
	}
	for _, n := range e.Networks {
		if n.IP.IsValid() {
			return n.Name
		}
	}
	return ""
}

// Command completes run (its Args set) into the docker run line of
// layerbridge on the container's network: the network (Network), and how
// to open the daemon's socket there. socket and group are the daemon's
// socket and its group ID as this host sees them, for a daemon on this
// host; Docker Desktop's and a rootless daemon's containers run as root,
// which there is no more than the user and owns the socket. It returns
// false when there is no network to run on.
func (e *UnroutableError) Command(run ContainerCommand, socket, group string) (ContainerCommand, bool) {
	run.Network = e.Network()
	if run.Network == "" {
		return run, false
	}
	switch {
	case e.Daemon.Desktop():
		run.Socket, run.User = "/var/run/docker.sock", "0"
	case e.Daemon.Rootless():
		run.Socket, run.User = socket, "0"
	case !e.Daemon.Remote():
		run.Socket, run.Group = socket, group
	}
	return run, true
}

// DefaultBridge reports whether Network is Docker's default bridge, where
// containers do not resolve each other's names.
func (e *UnroutableError) DefaultBridge() bool { return e.Network() == "bridge" }

// HostNetwork reports whether the container uses the host network: it
// listens on the daemon host's own addresses.
func (e *UnroutableError) HostNetwork() bool {
	return slices.ContainsFunc(e.Networks, func(n engine.ContainerNetwork) bool { return n.Name == "host" })
}

func (e *UnroutableError) Error() string {
	var nets []string
	for _, n := range e.Networks {
		switch {
		case n.Name == "host":
			nets = append(nets, "the host network of the docker daemon's host")
		case n.IP.IsValid() && n.Subnet.IsValid():
			nets = append(nets, fmt.Sprintf("%s at %s on network %s", n.Subnet, n.IP, n.Name))
		case n.IP.IsValid():
			nets = append(nets, fmt.Sprintf("%s on network %s", n.IP, n.Name))
		default:
			nets = append(nets, "network "+n.Name+" without an address")
		}
	}
	if len(nets) == 0 {
		nets = append(nets, "no network")
	}
	var local []string
	for _, p := range e.Local {
		local = append(local, p.Masked().String())
	}
	if len(local) == 0 {
		local = append(local, "none")
	}
	s := fmt.Sprintf("%s is the %s of container %s (%s), and this host has no interface on its networks (this host's networks: %s)",
		e.Name, e.Matched, e.Container, strings.Join(nets, "; "), strings.Join(local, ", "))
	if where := e.Daemon.Where(); where != "" {
		s += ": " + where
	}
	return s
}
