package reach

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strconv"
)

// ListenOptions say where a one-shot layer server listens and which base
// URL Clair is given for it.
type ListenOptions struct {
	// Advertise, when set, is the base URL given to Clair as it is (the
	// user's --advertise); nothing is detected.
	Advertise *url.URL
	// Listen is the HOST:PORT to listen on ("" chooses: with Advertise,
	// every interface at Advertise's port; otherwise the detected address
	// and a free port). A host in Listen that is an IP address (not
	// unspecified) is advertised instead of the detected one.
	// AdvertiseListener ignores it: its listener is open already.
	Listen string
	AdvertiseOptions
}

// Endpoint is an open listener and the base URL Clair downloads from it.
type Endpoint struct {
	Listener net.Listener
	Base     *url.URL
	// Reason says why Base was chosen, as a clause ("it was given with
	// --advertise", "clair's url ... is on loopback ...").
	Reason string
}

// Listen decides the base URL to advertise to the Clair at clair (see
// Advertise) and opens the listener that serves it, logging the decision
// at debug level.
func Listen(ctx context.Context, clair *url.URL, opts ListenOptions) (Endpoint, error) {
	log := opts.logger()
	var lc net.ListenConfig
	if adv := opts.Advertise; adv != nil {
		addr := opts.Listen
		if addr == "" {
			addr = ":" + defaultPort(adv)
		}
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			return Endpoint{}, fmt.Errorf("listen on %s for --advertise %s: %w", addr, adv, err)
		}
		return given(ctx, log, ln, adv), nil
	}
	addr, err := Advertise(ctx, clair, opts.AdvertiseOptions)
	if err != nil {
		return Endpoint{}, err
	}
	listenAddr := net.JoinHostPort(addr.IP.String(), "0")
	if opts.Listen != "" {
		listenAddr = opts.Listen
		if h, _, err := net.SplitHostPort(opts.Listen); err == nil {
			addr = preferListenHost(addr, h)
		}
	}
	ln, err := lc.Listen(ctx, "tcp", listenAddr)
	if err != nil {
		return Endpoint{}, fmt.Errorf("listen on %s (the address clair can reach: %s): %w", listenAddr, addr.Reason, err)
	}
	return endpoint(ctx, log, ln, addr), nil
}

// AdvertiseListener is Listen for a listener that is already open (the
// sidecar's --listen): the address Advertise detects, or ln's own IP when
// ln is bound to one, at ln's port; or opts.Advertise as it is.
func AdvertiseListener(ctx context.Context, clair *url.URL, ln net.Listener, opts ListenOptions) (Endpoint, error) {
	log := opts.logger()
	if adv := opts.Advertise; adv != nil {
		return given(ctx, log, ln, adv), nil
	}
	addr, err := Advertise(ctx, clair, opts.AdvertiseOptions)
	if err != nil {
		return Endpoint{}, err
	}
	if h, _, err := net.SplitHostPort(ln.Addr().String()); err == nil {
		addr = preferListenHost(addr, h)
	}
	return endpoint(ctx, log, ln, addr), nil
}

// preferListenHost advertises the listener's host instead of the detected
// address when it is a specific IP address (not 0.0.0.0 or ::): the user
// chose it with --listen, and nothing else would reach the listener.
func preferListenHost(a Address, host string) Address {
	lip, err := netip.ParseAddr(host)
	if err != nil || lip.Unmap().IsUnspecified() || lip.Unmap() == a.IP || a.Host != "" {
		// A name (host.docker.internal) reaches this host whatever
		// address it listens on.
		return a
	}
	lip = lip.Unmap()
	a.Reason = fmt.Sprintf("--listen names %s; detection would have chosen %s (%s)", lip, a.IP, a.Reason)
	a.IP = lip
	return a
}

// given is ln advertised as the user's --advertise, logged.
func given(ctx context.Context, log *slog.Logger, ln net.Listener, adv *url.URL) Endpoint {
	ep := Endpoint{Listener: ln, Base: adv, Reason: "it was given with --advertise"}
	log.DebugContext(ctx, "advertised address", "url", adv.String(), "listen", ln.Addr().String(), "why", ep.Reason)
	return ep
}

// endpoint is ln advertised at a's IP, logged.
func endpoint(ctx context.Context, log *slog.Logger, ln net.Listener, a Address) Endpoint {
	port := ln.Addr().(*net.TCPAddr).Port
	host := a.Host
	if host == "" {
		host = a.IP.String()
	}
	base := &url.URL{Scheme: "http", Host: net.JoinHostPort(host, strconv.Itoa(port))}
	log.DebugContext(ctx, "advertised address", "url", base.String(), "listen", ln.Addr().String(), "why", a.Reason,
		"clair_container", a.Container, "network", a.Network, "daemon", a.Daemon)
	return Endpoint{Listener: ln, Base: base, Reason: a.Reason}
}

// defaultPort is u's port, or its scheme's.
func defaultPort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if u.Scheme == "https" {
		return "443"
	}
	return "80"
}
