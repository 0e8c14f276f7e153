package reach

import (
	"net/netip"
	"testing"

	"github.com/layerbridge/layerbridge/engine"
)

func TestContainerCommand(t *testing.T) {
	for _, tc := range []struct {
		c    ContainerCommand
		want string
	}{
		{ContainerCommand{Network: "clair-network", Socket: "/var/run/docker.sock", Group: "998", Args: []string{"scan", "--clair", "http://clair:6060", "alpine:3.11"}},
			"docker run --rm --network clair-network -v /var/run/docker.sock:/var/run/docker.sock --group-add 998 layerbridge scan --clair http://clair:6060 alpine:3.11"},
		{ContainerCommand{Network: "my net", Args: []string{"doctor", "--clair", "http://clair:6060"}},
			`docker run --rm --network 'my net' -v /var/run/docker.sock:/var/run/docker.sock --group-add "$(stat -c %g /var/run/docker.sock)" layerbridge doctor --clair http://clair:6060`},
		{ContainerCommand{Network: "n", Socket: "/run/user/1000/docker.sock", Group: "1000", Flags: []string{"-d", "--name", "layerbridge", "-p", "127.0.0.1:8080:8080"}, Args: []string{"serve", "--clair", "http://clair:6060"}},
			"docker run -d --name layerbridge -p 127.0.0.1:8080:8080 --network n -v /run/user/1000/docker.sock:/var/run/docker.sock --group-add 1000 layerbridge serve --clair http://clair:6060"},
		{ContainerCommand{Network: "n", Socket: "/run/user/1001/docker.sock", User: "0", Args: []string{"scan", "alpine:3.11"}},
			"docker run --rm --network n -v /run/user/1001/docker.sock:/var/run/docker.sock --user 0 layerbridge scan alpine:3.11"},
		{ContainerCommand{Network: "n", Group: "0", Args: []string{"scan", "it's"}},
			`docker run --rm --network n -v /var/run/docker.sock:/var/run/docker.sock --group-add 0 layerbridge scan 'it'\''s'`},
	} {
		if got := tc.c.String(); got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
	}
}

// The docker run line to reach an unroutable container by name opens the
// daemon's socket as that daemon allows: its group on this host; as root in
// Docker Desktop's VM and for a rootless daemon (whose root is the user).
func TestUnroutableCommand(t *testing.T) {
	run := ContainerCommand{Args: []string{"scan", "--clair", "http://clair:6060", "alpine:3.11"}}
	nets := []engine.ContainerNetwork{{Name: "clair-network", IP: netip.MustParseAddr("172.18.0.3")}}
	for _, tc := range []struct {
		daemon engine.DaemonInfo
		want   string
	}{
		{plainDaemon, "docker run --rm --network clair-network -v /var/run/docker.sock:/var/run/docker.sock --group-add 998 layerbridge scan --clair http://clair:6060 alpine:3.11"},
		{desktopDaemon, "docker run --rm --network clair-network -v /var/run/docker.sock:/var/run/docker.sock --user 0 layerbridge scan --clair http://clair:6060 alpine:3.11"},
		{rootlessDaemon, "docker run --rm --network clair-network -v /run/user/1001/docker.sock:/var/run/docker.sock --user 0 layerbridge scan --clair http://clair:6060 alpine:3.11"},
		{remoteDaemon, `docker run --rm --network clair-network -v /var/run/docker.sock:/var/run/docker.sock --group-add "$(stat -c %g /var/run/docker.sock)" layerbridge scan --clair http://clair:6060 alpine:3.11`},
	} {
		e := &UnroutableError{Name: "clair", Container: "clair", Matched: "container name", Networks: nets, Daemon: tc.daemon}
		socket, group := tc.daemon.Endpoint.Socket(), "998"
		c, ok := e.Command(run, socket, group)
		if !ok || c.String() != tc.want {
			t.Errorf("%s daemon:\ngot  %s (%v)\nwant %s", tc.daemon.OperatingSystem, c, ok, tc.want)
		}
	}
	host := &UnroutableError{Name: "clair", Networks: []engine.ContainerNetwork{{Name: "host"}}}
	if _, ok := host.Command(run, "", ""); ok {
		t.Error("a docker run line for a container on the host network")
	}
}
