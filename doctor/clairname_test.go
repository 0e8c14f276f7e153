package doctor

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/layerbridge/layerbridge/engine"
	"github.com/layerbridge/layerbridge/internal/fakeclair"
	"github.com/layerbridge/layerbridge/reach"
	"github.com/layerbridge/layerbridge/scan"
)

// clairByName is Clair's URL with a host name only the Docker daemon's
// containers (containers) answer to, and the clients the command would
// build for it: dialing through a reach.Dialer.
func clairByName(t *testing.T, u *url.URL, containers engine.ContainerLister) (scan.Clair, *reach.Dialer) {
	t.Helper()
	d := reach.NewDialer(u.Hostname(), reach.Names{Containers: containers, Lookup: func(_ context.Context, host string) ([]netip.Addr, error) {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}})
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = d.DialContext
	t.Cleanup(tr.CloseIdleConnections)
	return scan.NewClair(u, "", scan.ClairOptions{HTTPClient: &http.Client{Transport: tr}}), d
}

// Clair's container reached from the host by its name: clair.reachable
// says which container and address the name took, and the canary proves
// the rest.
func TestClairReachedByContainerName(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.2: %v", err)
	}
	srv := httptest.NewUnstartedServer(withOpenAPI(&fakeclair.V4{Samples: samples}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	containers := staticContainers{{
		ID: "c1a1r00000000000000000000000000000000000000000000000000000000001", Names: []string{"clair.invalid"},
		Networks: []engine.ContainerNetwork{{Name: "clair-network", IP: mustAddr("127.0.0.2"), Subnet: netip.MustParsePrefix("127.0.0.0/8"), Gateway: mustAddr("127.0.0.1")}},
	}}
	u, _ := url.Parse("http://clair.invalid:" + port)
	cfg := baseConfig(t, u)
	cfg.Docker, cfg.Listen = nil, ""
	cfg.Clair, cfg.ClairDialer = clairByName(t, u, containers)
	cfg.Containers = containers
	results := Run(t.Context(), cfg)
	expect(t, results, CheckClairReachable, Passed, []string{
		"http://clair.invalid:" + port + " answered in",
		"(this host does not resolve clair.invalid: clair.invalid is the container name of container clair.invalid, reached at 127.0.0.2 on network clair-network)",
	}, nil)
	expect(t, results, CheckReachAddress, Passed, []string{"layer URLs start with http://127.0.0.1:", "gateway 127.0.0.1"}, nil)
	expect(t, results, CheckReachFetch, Passed, []string{"downloaded", "indexed the canary layer"}, nil)
}

// A name for a container this host has no interface for (Docker Desktop's
// VM, a remote daemon, a network without a host address): what was found,
// and the two fixes, the docker run line included.
func TestClairNameUnroutable(t *testing.T) {
	containers := staticContainers{{
		ID: "c1a1r00000000000000000000000000000000000000000000000000000000001", Names: []string{"project-clair-1"},
		Networks: []engine.ContainerNetwork{{Name: "backend", IP: mustAddr("10.98.0.2"), Subnet: netip.MustParsePrefix("10.98.0.0/24"), Aliases: []string{"clair"}}},
	}}
	u, _ := url.Parse("http://clair:6060")
	cfg := Config{Image: "myapp:latest"}
	cfg.Clair, cfg.ClairDialer = clairByName(t, u, containers)
	results := Run(t.Context(), cfg)
	expect(t, results, CheckClairReachable, Failed, []string{
		"cannot reach clair at http://clair:6060",
		"clair is the alias on network backend of container project-clair-1 (10.98.0.0/24 at 10.98.0.2 on network backend), and this host has no interface on its networks",
	}, []string{
		"publish Clair's port on this host (docker run -p 127.0.0.1:6060:6060",
		"--clair http://localhost:6060",
		`or run layerbridge as a container on network backend, where clair resolves: docker run --rm --network backend -v /var/run/docker.sock:/var/run/docker.sock --group-add "$(stat -c %g /var/run/docker.sock)" layerbridge doctor --clair http://clair:6060 myapp:latest`,
	})

	// A typo gets "did you mean".
	u, _ = url.Parse("http://clari:6060")
	cfg.Clair, cfg.ClairDialer = clairByName(t, u, containers)
	expect(t, Run(t.Context(), cfg), CheckClairReachable, Failed, []string{"(did you mean clair?)"},
		[]string{"did you mean clair? it is the name or a network alias of a running container"})
}

// On Docker Desktop and rootless Docker, Clair's container does not reach
// this host at its network's gateway: doctor serves the canary where it
// does (host.docker.internal; this host's own address) and says why. (Here,
// not on Desktop, the fake Clair cannot resolve host.docker.internal: the
// canary proves that too.)
func TestDesktopAndRootlessAddresses(t *testing.T) {
	u := startV4(t, &fakeclair.V4{})
	p, err := strconv.ParseUint(u.Port(), 10, 16)
	if err != nil {
		t.Fatal(err)
	}
	containers := staticContainers{{
		ID: "0123456789abcdef0123456789abcdef", Names: []string{"clair"},
		Networks: []engine.ContainerNetwork{{Name: "clair_default", IP: mustAddr("172.20.0.3"), Gateway: mustAddr("172.20.0.1")}},
		Ports:    []engine.PublishedPort{{HostPort: uint16(p), ContainerPort: 6060}},
	}}
	for _, tc := range []struct {
		name, info string
		address    []string
		networks   []string
	}{
		{"Docker Desktop", `"OperatingSystem":"Docker Desktop","SecurityOptions":["name=seccomp,profile=unconfined","name=cgroupns"]`,
			[]string{"layer URLs start with http://host.docker.internal:", "of Docker Desktop, whose containers reach this host as host.docker.internal"},
			[]string{"clair's container clair is on network(s) clair_default", "layerbridge runs on the host: clair runs in container clair of Docker Desktop"}},
		{"rootless", `"OperatingSystem":"Debian GNU/Linux 12 (bookworm)","SecurityOptions":["name=seccomp,profile=default","name=rootless"]`,
			[]string{"of a rootless docker daemon, whose containers reach this host only at its own addresses"},
			[]string{"layerbridge runs on the host: clair runs in container clair of a rootless docker daemon"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := healthyDaemon()
			d.info = tc.info
			cfg := baseConfig(t, u)
			cfg.Docker, cfg.Containers, cfg.Listen = startDaemon(t, d), containers, ""
			cfg.Wait = 5 * time.Second
			results := Run(t.Context(), cfg)
			if r := result(t, results, CheckReachAddress); r.Status == Failed && strings.Contains(r.Evidence, "no address but loopback") {
				t.Skipf("this machine has no address but loopback: %s", r.Evidence)
			}
			expect(t, results, CheckReachAddress, Passed, tc.address, nil)
			expect(t, results, CheckReachNetworks, Passed, tc.networks, nil)
		})
	}
}
