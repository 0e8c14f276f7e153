package bridge

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
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
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
		ep := Endpoint{Listener: ln, Base: adv, Reason: "it was given with --advertise"}
		log.DebugContext(ctx, "advertised address", "url", adv.String(), "listen", ln.Addr().String(), "why", ep.Reason)
		return ep, nil
	}
	addr, err := Advertise(ctx, clair, opts.AdvertiseOptions)
	if err != nil {
		return Endpoint{}, err
	}
	ip, reason := addr.IP, addr.Reason
	listenAddr := net.JoinHostPort(ip.String(), "0")
	if opts.Listen != "" {
		listenAddr = opts.Listen
		if h, _, err := net.SplitHostPort(opts.Listen); err == nil && h != "" {
			if lip, err := netip.ParseAddr(h); err == nil && !lip.IsUnspecified() && lip != ip {
				reason = fmt.Sprintf("--listen names %s; detection would have chosen %s (%s)", lip, ip, reason)
				ip = lip
			}
		}
	}
	ln, err := lc.Listen(ctx, "tcp", listenAddr)
	if err != nil {
		return Endpoint{}, fmt.Errorf("listen on %s (the address clair can reach: %s): %w", listenAddr, reason, err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	base := &url.URL{Scheme: "http", Host: net.JoinHostPort(ip.String(), strconv.Itoa(port))}
	log.DebugContext(ctx, "advertised address", "url", base.String(), "listen", ln.Addr().String(), "why", reason,
		"clair_container", addr.Container, "network", addr.Network)
	return Endpoint{Listener: ln, Base: base, Reason: reason}, nil
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
