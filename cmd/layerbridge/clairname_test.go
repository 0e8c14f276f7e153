package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/layerbridge/layerbridge/internal/fakeclair"
	"github.com/layerbridge/layerbridge/internal/fakeengine"
)

// Clair's container as the fake daemons below run it: named
// clair.invalid (a name no resolver knows, RFC 6761), alias
// clair-alias.invalid on network clair-network.
const (
	clairContainerID = "c1a1r00000000000000000000000000000000000000000000000000000000001"
	clairName        = "clair.invalid"
	clairAlias       = "clair-alias.invalid"
)

// serveContainerDaemon answers, on a unix socket, the Engine API calls of
// finding Clair's container: ping, info, the container list (Clair's
// container at ip on clair-network, whose gateway is gw) and its
// inspection (with its alias).
func serveContainerDaemon(t *testing.T, ip, gw string) (sock string) {
	t.Helper()
	endpoint := fmt.Sprintf(`{"IPAddress":%q,"IPPrefixLen":8,"Gateway":%q}`, ip, gw)
	aliased := fmt.Sprintf(`{"IPAddress":%q,"IPPrefixLen":8,"Gateway":%q,"Aliases":[%q,"c1a1r0000000"]}`, ip, gw, clairAlias)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		w.Header().Set("Content-Type", "application/json")
		switch {
		case p == "/_ping":
			w.Header().Set("Api-Version", "1.41")
			w.Header().Set("Ostype", "linux")
			io.WriteString(w, "OK")
		case strings.HasSuffix(p, "/info"):
			io.WriteString(w, `{"ServerVersion":"20.10.24","Driver":"overlay2","OperatingSystem":"Debian GNU/Linux 12 (bookworm)"}`)
		case strings.HasSuffix(p, "/containers/json"):
			fmt.Fprintf(w, `[{"Id":%q,"Names":["/%s"],"HostConfig":{"NetworkMode":"clair-network"},"NetworkSettings":{"Networks":{"clair-network":%s}}}]`,
				clairContainerID, clairName, endpoint)
		case strings.HasSuffix(p, "/containers/"+clairContainerID+"/json"):
			fmt.Fprintf(w, `{"Id":%q,"Name":"/%s","NetworkSettings":{"Networks":{"clair-network":%s}}}`, clairContainerID, clairName, aliased)
		default:
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"message":"not found"}`)
		}
	})
	return strings.TrimPrefix(fakeengine.Start(t, h).Host, "unix://")
}

// A Clair that only Docker's DNS knows by name, reached from the host by
// that name: its container's address (127.0.0.2 here, on loopback's /8 as
// a bridge network's address is on its bridge) is dialed, the scan works,
// the report names Clair as the user did, and the debug log says how.
func TestScanClairByContainerName(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.2: %v", err)
	}
	clair := httptest.NewUnstartedServer(&fakeclair.V4{Samples: samples})
	clair.Listener.Close()
	clair.Listener = ln
	clair.Start()
	defer clair.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	sock := serveContainerDaemon(t, "127.0.0.2", "127.0.0.1")
	e := testEnv(t, map[string]string{"DOCKER_HOST": "unix://" + sock})

	for _, name := range []string{clairName, clairAlias} {
		t.Run(name, func(t *testing.T) {
			url := "http://" + name + ":" + port
			code, stdout, stderr := runCLI(t, e, "scan", "--log-level", "debug", "--cache-dir", filepath.Join(t.TempDir(), "cache"),
				"--clair", url, "-f", "json", alpineArchive)
			if code != 0 {
				t.Fatalf("exit %d\n%s", code, stderr)
			}
			if !strings.Contains(stdout, `"url": "`+url+`"`) || strings.Count(stdout, `"name": "CVE-`) != 17 {
				t.Errorf("report does not name clair as %s or lacks the 17 findings:\n%.2000s", url, stdout)
			}
			matched := "container name"
			if name == clairAlias {
				matched = "alias on network clair-network"
			}
			for _, re := range []string{
				`msg="clair's host name is a container's: connecting to its address" name=` + regexp.QuoteMeta(name) + ` container=clair.invalid matched="` + matched + `" network=clair-network ip=127.0.0.2`,
				`msg="advertised address" url=http://127.0.0.1:\d+ .*clair_container=clair.invalid network=clair-network`,
			} {
				if !regexp.MustCompile(re).MatchString(stderr) {
					t.Errorf("the log has no line matching %s\n%s", re, stderr)
				}
			}
		})
	}
}

// A name that no resolver and no container knows: "did you mean" among the
// daemon's container names and aliases. A container this host has no
// interface for: what was found, and the two ways out, exactly.
func TestScanClairByNameErrors(t *testing.T) {
	sock := serveContainerDaemon(t, "10.98.0.2", "10.98.0.1")
	e := testEnv(t, map[string]string{"DOCKER_HOST": "unix://" + sock})
	var st syscall.Stat_t
	if err := syscall.Stat(sock, &st); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, clair string
		stderr      []string
	}{
		{"a typo", "http://clair-alais.invalid:6060", []string{
			"layerbridge: error: cannot reach clair at http://clair-alais.invalid:6060: lookup clair-alais.invalid",
			"no running container of the docker daemon (1 running) is named clair-alais.invalid or has it as a network alias (did you mean clair-alias.invalid?)",
			"layerbridge: hint: did you mean clair-alias.invalid? it is the name or a network alias of a running container",
		}},
		{"a network this host has no interface on", "http://" + clairAlias + ":6060", []string{
			"layerbridge: error: cannot reach clair at http://clair-alias.invalid:6060: clair-alias.invalid is the alias on network clair-network of container clair.invalid (10.0.0.0/8 at 10.98.0.2 on network clair-network), and this host has no interface on its networks",
			`layerbridge: hint: publish Clair's port on this host (docker run -p 127.0.0.1:6060:6060 …, compose: ports: ["127.0.0.1:6060:6060"]) and pass --clair http://localhost:6060`,
			fmt.Sprintf("layerbridge: hint: or run layerbridge as a container on network clair-network, where clair-alias.invalid resolves: docker run --rm --network clair-network -v %s:/var/run/docker.sock --group-add %d layerbridge scan --clair http://clair-alias.invalid:6060 %s",
				sock, st.Gid, alpineArchive),
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, e, "scan", "--cache-dir", filepath.Join(t.TempDir(), "cache"), "--clair", tc.clair, alpineArchive)
			if code != 1 {
				t.Fatalf("exit %d, want 1\n%s", code, stderr)
			}
			for _, w := range tc.stderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks\n%s\n---\n%s", w, stderr)
				}
			}
			if strings.Contains(stderr, "is Clair running at") {
				t.Errorf("the generic hint for a Clair that does not answer:\n%s", stderr)
			}
		})
	}
	if _, err := os.Stat(sock); err != nil {
		t.Fatal(err)
	}
}

// serve follows the same rule, and its docker run line runs the sidecar.
func TestServeClairByNameUnroutable(t *testing.T) {
	sock := serveContainerDaemon(t, "10.98.0.2", "10.98.0.1")
	e := testEnv(t, map[string]string{"DOCKER_HOST": "unix://" + sock})
	code, _, stderr := runCLI(t, e, "serve", "--cache-dir", filepath.Join(t.TempDir(), "cache"), "--listen", "127.0.0.1:0", "--clair", "http://"+clairAlias+":6060")
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, stderr)
	}
	re := regexp.MustCompile(`layerbridge: hint: or run layerbridge as a container on network clair-network, where clair-alias.invalid resolves: docker run -d --name layerbridge -p 127.0.0.1:(\d+):(\d+) --network clair-network -v \S+docker.sock:/var/run/docker.sock --group-add \d+ layerbridge serve --clair http://clair-alias.invalid:6060 --listen 0.0.0.0:(\d+)\n`)
	if m := re.FindStringSubmatch(stderr); m == nil || m[1] != m[2] || m[2] != m[3] {
		t.Errorf("stderr lacks the docker run line of the sidecar:\n%s", stderr)
	}
}
