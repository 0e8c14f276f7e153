package reach

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync"
)

// Dialer dials one host the way this host can reach it: a name only
// Docker's embedded DNS knows goes to the address of the container it
// names (Names.Resolve), every other host as a net.Dialer dials it. Built
// once for Clair's host and set as the DialContext of the Clair clients'
// transport, it makes every request to Clair, and every check of whether
// Clair answers, take the same way. It is safe for concurrent use.
type Dialer struct {
	host  string
	names Names
	log   *slog.Logger
	net   net.Dialer

	mu     sync.Mutex
	known  bool  // how host is reached is settled
	route  Route // the route, when routed
	routed bool
}

// NewDialer returns a Dialer for host (a URL's Hostname), resolving it with
// names.
func NewDialer(host string, names Names) *Dialer {
	log := names.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Dialer{host: host, names: names, log: log}
}

// Resolve settles how the host is reached (see Names.Resolve) and keeps
// the answer for the dials that follow; ok says whether through a route.
// An error is not kept: the next call asks again (the container may start
// meanwhile).
func (d *Dialer) Resolve(ctx context.Context) (r Route, ok bool, err error) {
	d.mu.Lock()
	if d.known {
		r, ok = d.route, d.routed
		d.mu.Unlock()
		return r, ok, nil
	}
	d.mu.Unlock()
	r, ok, err = d.names.Resolve(ctx, d.host)
	if err != nil {
		return Route{}, false, err
	}
	d.mu.Lock()
	d.known, d.route, d.routed = true, r, ok
	d.mu.Unlock()
	return r, ok, nil
}

// Route returns the route the dials take, once Resolve (or a dial) found
// one.
func (d *Dialer) Route() (Route, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.route, d.known && d.routed
}

// forget drops a route whose address stopped answering.
func (d *Dialer) forget(old Route) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.routed && d.route == old {
		d.known, d.routed, d.route = false, false, Route{}
	}
}

// LookupNetIP resolves host as the dials do: the route's address for the
// Dialer's host when it has one, the system's answer otherwise. It fits
// AdvertiseOptions.Resolve, so that address detection finds Clair's
// container where the dials reach it.
func (d *Dialer) LookupNetIP(ctx context.Context, host string) ([]netip.Addr, error) {
	if host == d.host {
		r, ok, err := d.Resolve(ctx)
		if err != nil {
			return nil, err
		}
		if ok {
			return []netip.Addr{r.IP}, nil
		}
	}
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// DialContext dials addr (host:port). For the Dialer's host with a route,
// it dials the route's address; when that fails, it resolves the name
// again once (a restarted container may have another address). Errors of
// the resolution are returned as dial errors (*net.OpError) wrapping a
// *NameError or *UnroutableError.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host != d.host {
		return d.net.DialContext(ctx, network, addr)
	}
	r, ok, err := d.Resolve(ctx)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	if !ok {
		return d.net.DialContext(ctx, network, addr)
	}
	conn, err := d.net.DialContext(ctx, network, net.JoinHostPort(r.IP.String(), port))
	if err == nil || ctx.Err() != nil {
		return conn, err
	}
	d.forget(r)
	again, ok, rerr := d.Resolve(ctx)
	if rerr != nil || !ok || again.IP == r.IP {
		return nil, err
	}
	d.log.DebugContext(ctx, "the container's address changed: dialing its new one", "name", d.host, "was", r.IP, "now", again.IP, "network", again.Network)
	return d.net.DialContext(ctx, network, net.JoinHostPort(again.IP.String(), port))
}
