package reach

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/layerbridge/layerbridge/engine"
)

// notFound is the system resolver's answer for a name only Docker's DNS
// knows.
func notFound(_ context.Context, host string) ([]netip.Addr, error) {
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// countingLister counts the container listings.
type countingLister struct {
	fakeContainers
	n atomic.Int64
}

func (c *countingLister) RunningContainers(ctx context.Context) ([]engine.Container, error) {
	c.n.Add(1)
	return c.fakeContainers.RunningContainers(ctx)
}

var (
	// This host: its LAN and the bridge of clair-network (Linux).
	hostNets = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8"), netip.MustParsePrefix("192.0.2.2/24"), netip.MustParsePrefix("172.18.0.1/16")}

	// Clair as compose runs it: container clair-1, alias clair on
	// clair-network (which this host is on) and on a network without a
	// host address (inhibit_ipv4, or in Docker Desktop's VM).
	composeClair = engine.Container{
		ID:    "c1a1r00000000000000000000000000000000000000000000000000000000001",
		Names: []string{"project-clair-1"},
		Networks: []engine.ContainerNetwork{
			{Name: "backend", IP: netip.MustParseAddr("10.98.0.2"), Subnet: netip.MustParsePrefix("10.98.0.0/24"), Gateway: netip.MustParseAddr("10.98.0.1"), Aliases: []string{"clair", "c1a1r0000000"}},
			{Name: "clair-network", IP: netip.MustParseAddr("172.18.0.3"), Subnet: netip.MustParsePrefix("172.18.0.0/16"), Gateway: netip.MustParseAddr("172.18.0.1"), Aliases: []string{"clair", "c1a1r0000000"}},
		},
	}
	postgresDB = engine.Container{
		ID:       "9057000000000000000000000000000000000000000000000000000000000000",
		Names:    []string{"clair-db"},
		Networks: []engine.ContainerNetwork{{Name: "clair-network", IP: netip.MustParseAddr("172.18.0.2"), Subnet: netip.MustParsePrefix("172.18.0.0/16"), Aliases: []string{"postgres"}}},
	}
	// Clair on a network only: this host has no interface on it.
	isolatedClair = engine.Container{
		ID:       "15014000000000000000000000000000000000000000000000000000000000000",
		Names:    []string{"clair"},
		Networks: []engine.ContainerNetwork{{Name: "isolated", IP: netip.MustParseAddr("10.98.0.2"), Subnet: netip.MustParsePrefix("10.98.0.0/24"), Gateway: netip.MustParseAddr("10.98.0.1")}},
	}
)

func TestResolve(t *testing.T) {
	interfaces := func() ([]netip.Prefix, error) { return hostNets, nil }
	tests := []struct {
		name       string
		host       string
		containers []engine.Container
		lookup     func(context.Context, string) ([]netip.Addr, error)
		want       Route // zero: no route needed
		wantErr    string
		listed     bool // whether the daemon must have been asked
	}{
		{name: "an IP address needs no route", host: "172.18.0.3", containers: []engine.Container{composeClair}},
		{name: "localhost needs no route", host: "localhost"},
		{name: "a name the system resolves needs no route", host: "clair.example", lookup: func(context.Context, string) ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr("192.0.2.9")}, nil
		}},
		{name: "a container name", host: "clair-db", containers: []engine.Container{composeClair, postgresDB}, listed: true,
			want: Route{Name: "clair-db", Container: "clair-db", Matched: "container name", Network: "clair-network", IP: netip.MustParseAddr("172.18.0.2")}},
		{name: "a network alias, on the one network this host is on", host: "clair", containers: []engine.Container{postgresDB, composeClair}, listed: true,
			want: Route{Name: "clair", Container: "project-clair-1", Matched: "alias on network backend", Network: "clair-network", IP: netip.MustParseAddr("172.18.0.3")}},
		{name: "a container ID", host: "c1a1r0000000000", containers: []engine.Container{composeClair}, listed: true,
			want: Route{Name: "c1a1r0000000000", Container: "project-clair-1", Matched: "container ID", Network: "clair-network", IP: netip.MustParseAddr("172.18.0.3")}},
		{name: "a typo", host: "clari", containers: []engine.Container{postgresDB, composeClair}, listed: true,
			wantErr: "lookup clari: no such host, and no running container of the docker daemon (2 running) is named clari or has it as a network alias (did you mean clair?)"},
		{name: "nothing near", host: "redis", containers: []engine.Container{postgresDB}, listed: true,
			wantErr: "no running container of the docker daemon (1 running) is named redis or has it as a network alias"},
		{name: "a network this host has no interface on", host: "clair", containers: []engine.Container{isolatedClair}, listed: true,
			wantErr: "clair is the container name of container clair (10.98.0.0/24 at 10.98.0.2 on network isolated), and this host has no interface on its networks (this host's networks: 192.0.2.0/24, 172.18.0.0/16)"},
		{name: "clair on the host network", host: "clair-host", containers: []engine.Container{hostNetC}, listed: true,
			wantErr: "the host network of the docker daemon's host"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.lookup == nil {
				tc.lookup = notFound
			}
			lister := &countingLister{fakeContainers: fakeContainers{list: tc.containers}}
			r, ok, err := Names{Containers: lister, Interfaces: interfaces, Lookup: tc.lookup}.Resolve(t.Context(), tc.host)
			if (lister.n.Load() > 0) != tc.listed {
				t.Errorf("the daemon was asked %d times", lister.n.Load())
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ok != (tc.want != Route{}) || r != tc.want {
				t.Errorf("route %+v (ok %v), want %+v", r, ok, tc.want)
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	interfaces := func() ([]netip.Prefix, error) { return hostNets, nil }
	t.Run("a typo is a NameError over the resolver's error", func(t *testing.T) {
		_, _, err := Names{Containers: fakeContainers{list: []engine.Container{composeClair}}, Interfaces: interfaces, Lookup: notFound}.Resolve(t.Context(), "clairr")
		var ne *NameError
		var dns *net.DNSError
		if !errors.As(err, &ne) || !errors.As(err, &dns) || len(ne.Suggestions) != 1 || ne.Suggestions[0] != "clair" {
			t.Fatalf("err = %#v, want a NameError suggesting clair and wrapping the DNS error", err)
		}
	})
	t.Run("a daemon that cannot be asked", func(t *testing.T) {
		_, _, err := Names{Containers: fakeContainers{err: errors.New("permission denied")}, Interfaces: interfaces, Lookup: notFound}.Resolve(t.Context(), "clair")
		var ne *NameError
		if !errors.As(err, &ne) || ne.ListErr == nil || !strings.Contains(err.Error(), "could not be asked for a container of that name: permission denied") {
			t.Fatalf("err = %v, want a NameError saying the daemon could not be asked", err)
		}
	})
	t.Run("an unreachable container says where the daemon is", func(t *testing.T) {
		daemon := func(context.Context) (engine.DaemonInfo, error) {
			return engine.DaemonInfo{Endpoint: engine.Endpoint{Host: "tcp://192.0.2.50:2376"}}, nil
		}
		_, _, err := Names{Containers: fakeContainers{list: []engine.Container{isolatedClair}}, Daemon: daemon, Interfaces: interfaces, Lookup: notFound}.Resolve(t.Context(), "clair")
		var ue *UnroutableError
		if !errors.As(err, &ue) || ue.Container != "clair" || len(ue.Networks) != 1 || !strings.Contains(err.Error(), "the docker daemon at tcp://192.0.2.50:2376 runs on another host") {
			t.Fatalf("err = %v, want an UnroutableError naming the remote daemon", err)
		}
	})
}
