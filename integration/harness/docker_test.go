package harness

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// TestDockerStack runs Clair in a container on a network of its own, has it
// index a layer served on the network's gateway, and checks that Close
// leaves nothing behind in Docker or on this host.
func TestDockerStack(t *testing.T) {
	cli := DockerT(t)
	s, err := StartDocker(t.Context(), cli, Options{FeedDir: projectFeed, ModuleDir: "."})
	if errors.Is(err, ErrUnavailable) {
		Unavailable(t, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			if t.Failed() {
				t.Logf("clair output:\n%s", s.Clair.LogTail(16<<10))
			}
			_ = s.Close()
		}
	})
	t.Logf("timings %+v, network %s %s gateway %s", s.Timings, s.Network.Name, s.Network.Subnet, s.Network.Gateway)

	if !s.Network.Subnet.Contains(s.Network.Gateway) || !s.Network.Gateway.IsPrivate() {
		t.Errorf("gateway %s outside subnet %s, or not private", s.Network.Gateway, s.Network.Subnet)
	}
	if want := "http://" + s.Clair.ContainerName + ":6060"; s.Clair.NetworkURL != want {
		t.Errorf("NetworkURL %q, want %q", s.Clair.NetworkURL, want)
	}
	info, err := cli.ContainerInspect(t.Context(), s.Clair.ContainerName, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if u := info.Container.Config.User; u != "65532:65532" {
		t.Errorf("clair runs as %q, want the unprivileged 65532:65532", u)
	}
	if _, ok := info.Container.NetworkSettings.Networks[s.Network.Name]; !ok || len(info.Container.NetworkSettings.Networks) != 1 {
		t.Errorf("clair's networks %v, want only %s", info.Container.NetworkSettings.Networks, s.Network.Name)
	}
	if gw := s.Postgres.GatewayConnString(s.Postgres.Database); !strings.Contains(gw, "host="+s.Network.Gateway.String()+" ") {
		t.Errorf("GatewayConnString %q", gw)
	}

	// Clair, in its container, downloads a layer from this host's address
	// on the network and matches it against the feed.
	layerFile := filepath.Join(t.TempDir(), "demo-layer.tar")
	f, err := os.Create(layerFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteDirTar(f, "../testdata/demo-image/rootfs"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	layers, err := ServeLayersOn(t.Context(), s.Network.Gateway, layerFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = layers.Close() })
	got, err := s.Clair.Reference(t.Context(), layers.Layers())
	if err != nil {
		t.Fatal(err)
	}
	// The project's feed has 14 pairs for the demo image (demoV4 in
	// ../harness_test.go); musl's is one of them.
	if len(got) != 14 || !slices.Contains(got, Finding{"musl", "1.1.24-r8", "CVE-2020-28928"}) {
		t.Errorf("findings %v, want 14 with musl's CVE-2020-28928", got)
	}
	if n := layers.Gets(layers.Layers()[0].Digest); n != 1 {
		t.Errorf("clair downloaded the layer %d times, want 1", n)
	}
	if ext := s.Clair.ExternalRequests(); len(ext) > 0 {
		t.Errorf("clair tried to reach public hosts: %v", ext)
	}

	image, network, dirs := s.Clair.image, s.Network.ID, []string{s.Postgres.dir, s.Clair.dir, s.Clair.ctr.dir}
	addrs := []string{strings.TrimPrefix(s.Clair.URL, "http://"), strings.TrimPrefix(s.Feed.URL, "http://"),
		strings.TrimPrefix(s.Clair.trap.url, "http://"), net.JoinHostPort(s.Network.Gateway.String(), strconv.Itoa(s.Postgres.Port))}
	closed = true
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.ContainerInspect(t.Context(), s.Clair.ContainerName, client.ContainerInspectOptions{}); !isNotFound(err) {
		t.Errorf("clair's container after Close: %v", err)
	}
	if _, err := cli.ImageInspect(t.Context(), image); !isNotFound(err) {
		t.Errorf("clair's image %s after Close: %v", image, err)
	}
	if _, err := cli.NetworkInspect(t.Context(), network, client.NetworkInspectOptions{}); !isNotFound(err) {
		t.Errorf("network after Close: %v", err)
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind: %v", d, err)
		}
	}
	for _, a := range addrs {
		if conn, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			conn.Close()
			t.Errorf("%s still accepts connections after Close", a)
		}
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestRemoveOrphans leaves a network owned by a process that has exited and
// one owned by this process: only the first is removed.
func TestRemoveOrphans(t *testing.T) {
	cli := DockerT(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	orphan := "layerbridge-test-orphan-" + randomHex(4)
	labels := map[string]string{labelHarness: "true", labelOwner: host + "/" + strconv.Itoa(dead.Process.Pid)}
	if _, err := cli.NetworkCreate(t.Context(), orphan, client.NetworkCreateOptions{Driver: "bridge", Labels: labels}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = cli.NetworkRemove(t.Context(), orphan, client.NetworkRemoveOptions{}) })
	mine, err := CreateNetwork(t.Context(), cli, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mine.Close() })

	removed, err := RemoveOrphans(t.Context(), cli)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(removed, "network "+orphan) {
		t.Errorf("removed %v, want network %s among them", removed, orphan)
	}
	if _, err := cli.NetworkInspect(t.Context(), orphan, client.NetworkInspectOptions{}); !isNotFound(err) {
		t.Errorf("orphan network after RemoveOrphans: %v", err)
	}
	if _, err := cli.NetworkInspect(t.Context(), mine.ID, client.NetworkInspectOptions{}); err != nil {
		t.Errorf("this process's network was removed: %v", err)
	}
}
