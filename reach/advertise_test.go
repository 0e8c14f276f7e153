package reach

import (
	"context"
	"errors"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/layerbridge/layerbridge/engine"
)

type fakeContainers struct {
	list []engine.Container
	err  error
}

func (f fakeContainers) RunningContainers(context.Context) ([]engine.Container, error) {
	return f.list, f.err
}

var (
	hostAddrs = []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("172.18.0.1")}

	clairC = engine.Container{
		ID:    "c1a1r0000000000000000000000000000000000000000000000000000000000",
		Names: []string{"clair"},
		Networks: []engine.ContainerNetwork{{
			Name: "clair-network", IP: netip.MustParseAddr("172.18.0.3"), Gateway: netip.MustParseAddr("172.18.0.1"), Aliases: []string{"clair-svc"},
		}},
		Ports: []engine.PublishedPort{{HostPort: 6060, ContainerPort: 6060}},
	}
	postgresC = engine.Container{
		ID:    "9057000000000000000000000000000000000000000000000000000000000000",
		Names: []string{"postgres"},
		Networks: []engine.ContainerNetwork{{
			Name: "clair-network", IP: netip.MustParseAddr("172.18.0.2"), Gateway: netip.MustParseAddr("172.18.0.1"),
		}},
	}
	bridgeC = engine.Container{
		ID:    "b41d000000000000000000000000000000000000000000000000000000000000",
		Names: []string{"layerbridge"},
		Networks: []engine.ContainerNetwork{{
			Name: "clair-network", IP: netip.MustParseAddr("172.18.0.4"), Gateway: netip.MustParseAddr("172.18.0.1"),
		}},
	}
	loneC = engine.Container{
		ID:    "10e0000000000000000000000000000000000000000000000000000000000000",
		Names: []string{"lonely"},
		Networks: []engine.ContainerNetwork{{
			Name: "other", IP: netip.MustParseAddr("172.19.0.2"), Gateway: netip.MustParseAddr("172.19.0.1"),
		}},
	}
	hostNetC = engine.Container{ID: "4057000000000000000000000000000000000000000000000000000000000000", Names: []string{"clair-host"}, Networks: []engine.ContainerNetwork{{Name: "host"}}}
)

func TestAdvertise(t *testing.T) {
	inContainer := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("172.18.0.4")}
	inLonely := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("172.19.0.2")}
	all := []engine.Container{postgresC, clairC, bridgeC, hostNetC}
	tests := []struct {
		name       string
		clair      string
		containers engine.ContainerLister
		local      []netip.Addr
		route      string
		want       string
		wantNet    string
		wantErr    error
	}{
		{"clair on loopback, no docker", "http://127.0.0.1:6060", nil, hostAddrs, "", "127.0.0.1", "", nil},
		{"localhost", "http://localhost:6061", fakeContainers{list: all}, hostAddrs, "", "127.0.0.1", "", nil},
		{"ipv6 loopback", "http://[::1]:6061", nil, hostAddrs, "", "::1", "", nil},
		{"docker unreachable falls back to the route", "http://127.0.0.1:6060", fakeContainers{err: errors.New("permission denied")}, hostAddrs, "", "127.0.0.1", "", nil},
		{"remote clair uses the route", "http://203.0.113.9:6060", fakeContainers{list: all}, hostAddrs, "192.0.2.2", "192.0.2.2", "", nil},
		{"container by name from the host", "http://clair:6060", fakeContainers{list: all}, hostAddrs, "", "172.18.0.1", "clair-network", nil},
		{"container by alias", "http://clair-svc:6060", fakeContainers{list: all}, hostAddrs, "", "172.18.0.1", "clair-network", nil},
		{"container by id prefix", "http://c1a1r0000000:6060", fakeContainers{list: all}, hostAddrs, "", "172.18.0.1", "clair-network", nil},
		{"container by ip from the host", "http://172.18.0.3:6060", fakeContainers{list: all}, hostAddrs, "", "172.18.0.1", "clair-network", nil},
		{"published port on loopback", "http://127.0.0.1:6060", fakeContainers{list: all}, hostAddrs, "", "172.18.0.1", "clair-network", nil},
		{"published port on the host's address", "http://192.0.2.2:6060", fakeContainers{list: all}, hostAddrs, "", "172.18.0.1", "clair-network", nil},
		{"in a container on clair's network", "http://clair:6060", fakeContainers{list: all}, inContainer, "", "172.18.0.4", "clair-network", nil},
		{"in a container, clair by ip", "http://172.18.0.3:6060", fakeContainers{list: all}, inContainer, "", "172.18.0.4", "clair-network", nil},
		{"in a container on another network", "http://clair:6060", fakeContainers{list: append(all, loneC)}, inLonely, "", "", "", ErrNoSharedNetwork},
		{"clair on the host network", "http://clair-host:6060", fakeContainers{list: all}, hostAddrs, "", "127.0.0.1", "host", nil},
		{"service name resolved by dns", "http://svc.example:6060", fakeContainers{list: all}, inContainer, "", "172.18.0.4", "clair-network", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := url.Parse(tt.clair)
			if err != nil {
				t.Fatal(err)
			}
			routed := false
			got, err := Advertise(t.Context(), u, AdvertiseOptions{
				Containers: tt.containers,
				LocalAddrs: func() ([]netip.Addr, error) { return tt.local, nil },
				RouteAddr: func(_ context.Context, hostport string) (netip.Addr, error) {
					routed = true
					if tt.route == "" {
						t.Errorf("unexpected route lookup for %s", hostport)
						return netip.Addr{}, errors.New("no route")
					}
					return netip.MustParseAddr(tt.route), nil
				},
				Resolve: func(_ context.Context, host string) ([]netip.Addr, error) {
					if host == "svc.example" {
						return []netip.Addr{netip.MustParseAddr("172.18.0.3")}, nil
					}
					return nil, errors.New("no such host")
				},
			})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.IP.String() != tt.want || got.Network != tt.wantNet {
				t.Errorf("Advertise = %s on network %q (%s), want %s on %q", got.IP, got.Network, got.Reason, tt.want, tt.wantNet)
			}
			if got.Reason == "" {
				t.Error("no reason given")
			}
			if tt.route != "" && !routed {
				t.Error("route was not consulted")
			}
		})
	}
}

func TestAdvertiseRejectsBadURLs(t *testing.T) {
	for _, raw := range []string{"http://:6060", "ftp://clair", "http://clair:notaport"} {
		u, err := url.Parse(raw)
		if err != nil {
			continue // not even a URL: nothing for Advertise to reject
		}
		if _, err := Advertise(t.Context(), u, AdvertiseOptions{LocalAddrs: func() ([]netip.Addr, error) { return hostAddrs, nil }}); err == nil {
			t.Errorf("Advertise(%q) succeeded", raw)
		} else if !strings.Contains(err.Error(), "clair") {
			t.Errorf("Advertise(%q) error %q does not mention clair", raw, err)
		}
	}
}
