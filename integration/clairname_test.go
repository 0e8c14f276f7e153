package integration_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/layerbridge/layerbridge/integration/harness"
)

// TestClairByNameFromTheHost is issue 17: Clair 4.9 runs in a container on
// a user-defined network with no port published, as Clair setups run it,
// and layerbridge on the host reaches it by the names that setup uses
// (its container name, a network alias) as it does by its IP: the same
// findings, the mapping in the debug log and in doctor's clair.reachable,
// and serve likewise. A typo gets "did you mean"; a container on a network
// this host has no address on gets what was found and the two ways out.
func TestClairByNameFromTheHost(t *testing.T) {
	t.Parallel()
	stack := harness.StartDockerT(t, harness.Options{FeedDir: recordedFeed, Unpublished: true})
	docker := harness.DockerT(t)
	ref := loadFixture(t, docker, "alpine-3.11-docker-save.tar.gz")
	sock, gid := dockerSocket(t, docker)
	name := stack.Clair.ContainerName
	port := "6060"

	scan := func(t *testing.T, clair string) (jsonReport, run) {
		t.Helper()
		r := layerbridge(t, withTimeout(t, 3*time.Minute), nil, "scan", "--clair", clair,
			"--cache-dir", t.TempDir(), "--log-level", "debug", "-f", "json", ref)
		return decodeReport(t, r), r
	}
	type byName struct {
		name, host, matched, network, ip, gateway string
		fetched                                   bool // Clair downloads the layer (the first scan of the image)
	}
	check := func(tc byName) (rep jsonReport) {
		t.Run(tc.name, func(t *testing.T) {
			clair := "http://" + tc.host + ":" + port
			var r run
			rep, r = scan(t, clair)
			checkFindings(t, "scan by "+clair, rep.findings(), alpine311V4, 17, 9)
			if rep.Clair.URL != clair {
				t.Errorf("report names clair %s, want %s", rep.Clair.URL, clair)
			}
			if tc.fetched {
				fetched := logLine(t, r.stderr, `msg="layer fetched"`)
				for _, want := range []string{"status=200", "bytes=5861888", "client=" + tc.ip + ":"} {
					if !strings.Contains(fetched, want) {
						t.Errorf("layer fetched line lacks %q:\n%s", want, fetched)
					}
				}
			}
			mapping := logLine(t, r.stderr, `msg="clair's host name is a container's: connecting to its address"`)
			for _, want := range []string{"name=" + tc.host, "container=" + name, fmt.Sprintf("matched=%q", tc.matched), "network=" + tc.network, "ip=" + tc.ip} {
				if !strings.Contains(mapping, want) {
					t.Errorf("mapping line lacks %q:\n%s", want, mapping)
				}
			}
			// Advertised as today: the gateway of the network Clair is
			// reached on.
			adv := logLine(t, r.stderr, `msg="advertised address"`)
			if want := "url=http://" + tc.gateway + ":"; !strings.Contains(adv, want) {
				t.Errorf("advertised address line lacks %q:\n%s", want, adv)
			}
		})
		return rep
	}
	// First by name, so that Clair downloads the layer from the address
	// advertised; Clair knows the image afterwards.
	first := check(byName{"by container name", name, "container name", stack.Network.Name, stack.Clair.ContainerIP.String(), stack.Network.Gateway.String(), true})
	byIP, _ := scan(t, stack.Clair.URL)
	checkFindings(t, "scan by Clair's IP, no port published", byIP.findings(), first.findings(), 17, 9)

	// A second network, --internal, where Clair's container has an alias
	// of its own (the harness's "clair" alias is on every test's network).
	internal := createNetwork(t, docker, harness.NetworkOptions{Internal: true})
	alias := "clair-" + randomHex(t, 4)
	connectNetwork(t, docker, internal, name, alias)
	internalIP := containerIP(t, docker, name, internal.Name)
	check(byName{"by network alias, on an --internal network", alias, "alias on network " + internal.Name, internal.Name, internalIP, internal.Gateway.String(), false})

	t.Run("doctor by name", func(t *testing.T) {
		r := layerbridge(t, withTimeout(t, 3*time.Minute), nil, "doctor", "--clair", "http://"+alias+":"+port, "-f", "json")
		var results []struct{ Check, Status, Evidence, Fix string }
		if err := json.Unmarshal([]byte(r.stdout), &results); err != nil {
			t.Fatalf("doctor: %v\n%s\n%s", err, r.stdout, r.stderr)
		}
		got := map[string]string{}
		for _, res := range results {
			got[res.Check] = res.Status + ": " + res.Evidence
		}
		want := fmt.Sprintf("(this host does not resolve %s: %s is the alias on network %s of container %s, reached at %s on network %s)",
			alias, alias, internal.Name, name, internalIP, internal.Name)
		if !strings.HasPrefix(got["clair.reachable"], "passed") || !strings.Contains(got["clair.reachable"], want) {
			t.Errorf("clair.reachable: %s\nwant it passed with %s", got["clair.reachable"], want)
		}
		// The canary is new to Clair: it downloads it through the
		// --internal network's gateway.
		if !strings.HasPrefix(got["reachability.fetch"], "passed") || !strings.Contains(got["reachability.fetch"], "from "+internalIP+":") {
			t.Errorf("reachability.fetch: %s", got["reachability.fetch"])
		}
	})

	t.Run("serve by name", func(t *testing.T) {
		api := startServe(t, "--clair", "http://"+alias+":"+port)
		r := layerbridge(t, withTimeout(t, 3*time.Minute), nil, "scan", "--server", api, "-f", "json", ref)
		checkFindings(t, "scan through serve --clair http://"+alias, decodeReport(t, r).findings(), alpine311V4, 17, 9)
	})

	t.Run("a typo", func(t *testing.T) {
		typo := name[:len(name)-2] + name[len(name)-1:] + name[len(name)-2:len(name)-1] // the last two characters swapped
		r := layerbridge(t, withTimeout(t, time.Minute), nil, "scan", "--clair", "http://"+typo+":"+port, "--cache-dir", t.TempDir(), ref)
		for _, want := range []string{
			"layerbridge: error: cannot reach clair at http://" + typo + ":" + port,
			"(did you mean " + name + "?)",
			"layerbridge: hint: did you mean " + name + "? it is the name or a network alias of a running container",
		} {
			if r.code != 1 || !strings.Contains(r.stderr, want) {
				t.Errorf("exit %d, stderr lacks %q:\n%s", r.code, want, r.stderr)
			}
		}
	})

	t.Run("a network this host cannot reach", func(t *testing.T) {
		// The bridge of this network has no address on this host, so
		// this host has no route to its containers: what Docker Desktop's
		// VM, a remote daemon or a rootless daemon look like from here.
		// (An --internal network keeps the host's address: it is reached,
		// as above.)
		far := createNetwork(t, docker, harness.NetworkOptions{Internal: true, NoHostAddress: true})
		farAlias := "clair-far-" + randomHex(t, 4)
		c := harness.RunContainerT(t, docker, harness.ContainerSpec{
			Name: farAlias + "-ctr", Image: ref, Cmd: []string{"sleep", "600"}, Network: far, Aliases: []string{farAlias},
			StopTimeout: time.Second, // sleep, as PID 1, ignores SIGTERM
		})
		clair := "http://" + farAlias + ":" + port
		r := layerbridge(t, withTimeout(t, time.Minute), nil, "scan", "--clair", clair, "--cache-dir", t.TempDir(), ref)
		for _, want := range []string{
			fmt.Sprintf("layerbridge: error: cannot reach clair at %s: %s is the alias on network %s of container %s (%s at %s on network %s), and this host has no interface on its networks",
				clair, farAlias, far.Name, c.Name, far.Subnet, c.IP, far.Name),
			`layerbridge: hint: publish Clair's port on this host (docker run -p 127.0.0.1:6060:6060 …, compose: ports: ["127.0.0.1:6060:6060"]) and pass --clair http://localhost:6060`,
			fmt.Sprintf("layerbridge: hint: or run layerbridge as a container on network %s, where %s resolves: docker run --rm --network %s -v %s:/var/run/docker.sock --group-add %s layerbridge scan --clair %s %s",
				far.Name, farAlias, far.Name, sock, gid, clair, ref),
		} {
			if r.code != 1 || !strings.Contains(r.stderr, want) {
				t.Errorf("exit %d, stderr lacks\n%s\n---\n%s", r.code, want, r.stderr)
			}
		}
	})
}

// createNetwork is harness.CreateNetworkWith for the test's lifetime; it is
// removed at cleanup, after the containers started later.
func createNetwork(t *testing.T, docker *client.Client, opts harness.NetworkOptions) *harness.Network {
	t.Helper()
	n, err := harness.CreateNetworkWith(t.Context(), docker, "", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("%v", err)
		}
	})
	return n
}

// connectNetwork connects container to n with alias, as `docker network
// connect --alias` does, until the test ends.
func connectNetwork(t *testing.T, docker *client.Client, n *harness.Network, container, alias string) {
	t.Helper()
	_, err := docker.NetworkConnect(t.Context(), n.ID, client.NetworkConnectOptions{
		Container: container, EndpointConfig: &network.EndpointSettings{Aliases: []string{alias}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), time.Minute)
		defer cancel()
		if _, err := docker.NetworkDisconnect(ctx, n.ID, client.NetworkDisconnectOptions{Container: container, Force: true}); err != nil {
			t.Errorf("disconnect %s from %s: %v", container, n.Name, err)
		}
	})
}

// containerIP is the address of container on network.
func containerIP(t *testing.T, docker *client.Client, container, networkName string) string {
	t.Helper()
	res, err := docker.ContainerInspect(t.Context(), container, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ep := res.Container.NetworkSettings.Networks[networkName]
	if ep == nil || !ep.IPAddress.IsValid() {
		t.Fatalf("container %s has no address on %s", container, networkName)
	}
	return ep.IPAddress.String()
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// startServe runs `layerbridge serve` on this host with args, listening on
// every interface at a free port, until the test ends (SIGTERM), and
// returns its API's loopback URL once /readyz answers 200.
func startServe(t *testing.T, args ...string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	args = append([]string{"serve", "--listen", "0.0.0.0:" + port, "--cache-dir", t.TempDir(), "--log-level", "debug"}, args...)
	cmd := exec.CommandContext(ctx, layerbridgeBin(t), args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cancel()
		<-exited // bounded by WaitDelay
		if t.Failed() {
			t.Logf("serve's output:\n%s", out.String())
		}
	})
	api := "http://127.0.0.1:" + port
	wait := withTimeout(t, time.Minute)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(wait, http.MethodGet, api+"/readyz", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return api
			}
		}
		select {
		case <-exited:
			t.Fatalf("serve exited (%v):\n%s", waitErr, out.String())
		case <-wait.Done():
			t.Fatalf("serve not ready: %v", context.Cause(wait))
		case <-tick.C:
		}
	}
}
