package reach

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/layerbridge/layerbridge/engine"
)

// The daemons whose containers do not reach this host at their network's
// gateway (engine's tests read these from recorded and synthesized /info).
var (
	plainDaemon    = engine.DaemonInfo{Endpoint: engine.Endpoint{Host: "unix:///var/run/docker.sock"}, OperatingSystem: "Debian GNU/Linux 12 (bookworm)", SecurityOptions: []string{"name=seccomp,profile=default"}}
	desktopDaemon  = engine.DaemonInfo{Endpoint: engine.Endpoint{Host: "unix:///Users/me/.docker/run/docker.sock"}, OperatingSystem: "Docker Desktop", SecurityOptions: []string{"name=seccomp,profile=unconfined", "name=cgroupns"}}
	rootlessDaemon = engine.DaemonInfo{Endpoint: engine.Endpoint{Host: "unix:///run/user/1001/docker.sock"}, OperatingSystem: "Debian GNU/Linux 12 (bookworm)", SecurityOptions: []string{"name=seccomp,profile=default", "name=rootless"}}
	remoteDaemon   = engine.DaemonInfo{Endpoint: engine.Endpoint{Host: "tcp://198.51.100.7:2376"}, OperatingSystem: "Ubuntu 24.04 LTS"}
)

func TestAdvertiseForTheDaemon(t *testing.T) {
	all := []engine.Container{postgresC, clairC, bridgeC, hostNetC}
	inContainer := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("172.18.0.4")}
	for _, tc := range []struct {
		name         string
		clair        string
		daemon       engine.DaemonInfo
		daemonErr    error
		local        []netip.Addr
		wantIP       string
		wantHost     string
		wantDaemon   string
		wantReason   string
		wantErr      error
		wantRoutedTo string
	}{
		{name: "a plain daemon: the gateway", clair: "http://clair:6060", daemon: plainDaemon, local: hostAddrs, wantIP: "172.18.0.1", wantReason: "that network's gateway 172.18.0.1"},
		{name: "a daemon that does not answer: the gateway", clair: "http://clair:6060", daemonErr: errors.New("permission denied"), local: hostAddrs, wantIP: "172.18.0.1"},
		{name: "Docker Desktop: host.docker.internal, on every interface", clair: "http://127.0.0.1:6060", daemon: desktopDaemon, local: hostAddrs,
			wantIP: "0.0.0.0", wantHost: "host.docker.internal", wantDaemon: DaemonDesktop, wantReason: "of Docker Desktop, whose containers reach this host as host.docker.internal"},
		{name: "Docker Desktop, clair on the host network", clair: "http://clair-host:6060", daemon: desktopDaemon, local: hostAddrs,
			wantIP: "0.0.0.0", wantHost: "host.docker.internal", wantDaemon: DaemonDesktop},
		{name: "rootless: this host's own address", clair: "http://localhost:6060", daemon: rootlessDaemon, local: hostAddrs,
			wantIP: "192.0.2.2", wantDaemon: DaemonRootless, wantReason: "of a rootless docker daemon, whose containers reach this host only at its own addresses"},
		{name: "rootless, and no address but loopback", clair: "http://localhost:6060", daemon: rootlessDaemon, local: []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("fe80::1")},
			wantErr: ErrNoHostAddress},
		{name: "a daemon on another host: the route to it", clair: "http://clair:6060", daemon: remoteDaemon, local: hostAddrs,
			wantIP: "192.0.2.2", wantDaemon: DaemonRemote, wantRoutedTo: "198.51.100.7:2376", wantReason: "on another host"},
		{name: "in a container on clair's network, whatever the daemon", clair: "http://clair:6060", daemon: desktopDaemon, local: inContainer, wantIP: "172.18.0.4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, _ := url.Parse(tc.clair)
			routedTo := ""
			a, err := Advertise(t.Context(), u, AdvertiseOptions{
				Containers: fakeContainers{list: all},
				LocalAddrs: func() ([]netip.Addr, error) { return tc.local, nil },
				RouteAddr: func(_ context.Context, hostport string) (netip.Addr, error) {
					routedTo = hostport
					return netip.MustParseAddr("192.0.2.2"), nil
				},
				Daemon: func(context.Context) (engine.DaemonInfo, error) { return tc.daemon, tc.daemonErr },
			})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a.IP.String() != tc.wantIP || a.Host != tc.wantHost || a.Daemon != tc.wantDaemon || !strings.Contains(a.Reason, tc.wantReason) {
				t.Errorf("Advertise = ip %s, host %q, daemon %q (%s); want %s, %q, %q (%s)", a.IP, a.Host, a.Daemon, a.Reason, tc.wantIP, tc.wantHost, tc.wantDaemon, tc.wantReason)
			}
			if routedTo != tc.wantRoutedTo {
				t.Errorf("routed to %q, want %q", routedTo, tc.wantRoutedTo)
			}
		})
	}
}

// On Docker Desktop the layer URLs carry host.docker.internal, and the
// listener is on every interface, at a free port or --listen's.
func TestListenOnDockerDesktop(t *testing.T) {
	u, _ := url.Parse("http://127.0.0.1:6060")
	opts := AdvertiseOptions{
		Containers: fakeContainers{list: []engine.Container{clairC}},
		LocalAddrs: func() ([]netip.Addr, error) { return hostAddrs, nil },
		Daemon:     func(context.Context) (engine.DaemonInfo, error) { return desktopDaemon, nil },
	}
	for _, listen := range []string{"", "127.0.0.1:0"} {
		ep, err := Listen(t.Context(), u, ListenOptions{Listen: listen, AdvertiseOptions: opts})
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(ep.Listener.Addr().String())
		ep.Listener.Close()
		if want := "http://host.docker.internal:" + port; ep.Base.String() != want {
			t.Errorf("--listen %q: base %s, want %s", listen, ep.Base, want)
		}
		if ap := netip.MustParseAddrPort(ep.Listener.Addr().String()); listen == "" && !ap.Addr().IsUnspecified() {
			t.Errorf("listening on %s, want every interface", ep.Listener.Addr())
		}
	}
}
