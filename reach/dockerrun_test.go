package reach

import "testing"

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
		{ContainerCommand{Network: "n", Group: "0", Args: []string{"scan", "it's"}},
			`docker run --rm --network n -v /var/run/docker.sock:/var/run/docker.sock --group-add 0 layerbridge scan 'it'\''s'`},
	} {
		if got := tc.c.String(); got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
	}
}
