package engine

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

// recorded answers what Docker 20.10 answered to GET /containers/json and
// to inspecting each container (../testdata/engine-samples/docker-20.10):
// a container on two user-defined networks, with an alias on each and a
// port published on loopback, and one on the host network.
type recorded struct {
	dir       string
	inspected []string
	gone      bool // every inspect answers 404: the container just stopped
}

func (r *recorded) read(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.dir, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

type recordedAPI struct {
	t *testing.T
	*recorded
}

func (r recordedAPI) ContainerList(context.Context, client.ContainerListOptions) (client.ContainerListResult, error) {
	var res client.ContainerListResult
	r.read(r.t, "containers-list.json", &res.Items)
	return res, nil
}

func (r recordedAPI) ContainerInspect(_ context.Context, id string, _ client.ContainerInspectOptions) (client.ContainerInspectResult, error) {
	r.inspected = append(r.inspected, id)
	if r.gone {
		return client.ContainerInspectResult{}, errdefs.ErrNotFound
	}
	var res client.ContainerInspectResult
	names := map[string]string{
		"3261780aba10512f76e454b18d436dfd609c73f5c3d386ec80b644dc485dce69": "lbcc-rec-clair",
		"95d1c5053509107e75494c434c254cf39ef1c353da1fb529e127ca528d01871a": "lbcc-rec-host",
	}
	r.read(r.t, "container-inspect-"+names[id]+".json", &res.Container)
	return res, nil
}

func TestContainers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		aliases bool
		gone    bool
		want    []string // the aliases of lbcc-rec-clair on lbcc-rec-a, then lbcc-rec-b
	}{
		{"the list alone shows no alias", false, false, nil},
		{"inspected, each network's aliases", true, false, []string{"clair-a", "3261780aba10", "clair", "3261780aba10"}},
		{"a container gone before its inspection keeps the list's view", true, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorded{dir: "../testdata/engine-samples/docker-20.10", gone: tc.gone}
			lister := Containers{Open: func() (ContainerListAPI, error) { return recordedAPI{t, rec}, nil }, Aliases: tc.aliases}
			list, err := lister.RunningContainers(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if len(list) != 2 {
				t.Fatalf("%d containers, want 2: %+v", len(list), list)
			}
			host, clair := list[0], list[1]
			if host.Name() != "lbcc-rec-host" || len(host.Networks) != 1 || host.Networks[0].Name != "host" || host.Networks[0].IP.IsValid() {
				t.Errorf("host-network container: %+v", host)
			}
			if clair.Name() != "lbcc-rec-clair" || len(clair.Networks) != 2 {
				t.Fatalf("clair's container: %+v", clair)
			}
			a, b := clair.Networks[0], clair.Networks[1]
			if a.Name != "lbcc-rec-a" || b.Name != "lbcc-rec-b" {
				t.Errorf("networks %s, %s: want them sorted by name", a.Name, b.Name)
			}
			if a.IP != netip.MustParseAddr("192.168.224.2") || a.Subnet != netip.MustParsePrefix("192.168.224.0/20") || a.Gateway != netip.MustParseAddr("192.168.224.1") {
				t.Errorf("endpoint on lbcc-rec-a: %+v", a)
			}
			if got := slices.Concat(a.Aliases, b.Aliases); !slices.Equal(got, tc.want) {
				t.Errorf("aliases %q, want %q", got, tc.want)
			}
			if p := clair.Ports; len(p) != 1 || p[0] != (PublishedPort{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 16060, ContainerPort: 6060}) {
				t.Errorf("published ports %+v", p)
			}
			if !tc.aliases && len(rec.inspected) > 0 {
				t.Errorf("inspected %q without Aliases", rec.inspected)
			}
		})
	}
}
