package doctor

import (
	"bufio"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/system"
	"github.com/moby/moby/client"

	"github.com/layerbridge/layerbridge/engine"
)

// recordedDaemon answers ping, version and info with what a real engine
// answered (testdata/engines/<name>, see its README), and nothing else.
func recordedDaemon(t *testing.T, name string) http.Handler {
	t.Helper()
	dir := filepath.Join("testdata", "engines", name)
	read := func(file string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	headers := http.Header{}
	sc := bufio.NewScanner(strings.NewReader(string(read("ping-headers.txt"))))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k == "Date" || k == "Content-Length" {
			continue
		}
		headers.Add(k, strings.TrimSpace(v))
	}
	version, info := read("version.json"), read("info.json")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body []byte
		switch {
		case r.URL.Path == "/_ping":
			for k, v := range headers {
				w.Header()[k] = v
			}
			w.Write([]byte("OK"))
			return
		case strings.HasSuffix(r.URL.Path, "/version"):
			body = version
		case strings.HasSuffix(r.URL.Path, "/info"):
			body = info
		default:
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
}

// Doctor names the engine from its version response and the image store
// from its info, for the engines recorded in testdata/engines.
func TestEngineNamedFromRecordedResponses(t *testing.T) {
	for _, tc := range []struct {
		engine                string
		reachable, api, store string
	}{
		{"docker-20.10", "Docker Engine 20.10.24+dfsg1 (linux; containerd 1.6.20~ds1, runc 1.1.5+ds1) answered at unix://",
			"Engine API 1.41", "graphdriver store (fuse-overlayfs): exports hold uncompressed layers"},
		{"docker-29.8", "Docker Engine 29.8.1 (linux; containerd 2.4.2+unknown, runc 1.1.5+ds1) answered at unix://",
			"Engine API 1.56", "containerd image store (snapshotter overlayfs, containerd 2.4.2+unknown): exports keep layers compressed"},
		{"podman-4.3", "Podman Engine 4.3.1 (linux) answered at unix://",
			"Engine API 1.41", "Podman's containers/storage (driver vfs): exports hold uncompressed layers"},
	} {
		t.Run(tc.engine, func(t *testing.T) {
			sock := filepath.Join(shortTempDir(t), "docker.sock")
			serveUnix(t, sock, recordedDaemon(t, tc.engine))
			results := Run(t.Context(), Config{Docker: daemonAt("unix://"+sock, "--docker-host"), Image: "missing:1"})
			expect(t, results, CheckDockerReachable, Passed, []string{tc.reachable}, nil)
			expect(t, results, CheckDockerAPI, Passed, []string{tc.api}, nil)
			expect(t, results, CheckDockerStorage, Passed, []string{tc.store}, nil)
		})
	}
}

func TestIdentifyProduct(t *testing.T) {
	info := engine.DaemonInfo{ServerVersion: "27.0.3", OSType: "linux"}
	for _, tc := range []struct {
		name string
		v    *client.ServerVersionResult
		want string
	}{
		{"no version response", nil, "Docker Engine 27.0.3 (linux)"},
		{"docker desktop", &client.ServerVersionResult{
			Platform: client.PlatformInfo{Name: "Docker Desktop 4.41.2 (191736)"}, Version: "28.1.1", Os: "linux",
			Components: []system.ComponentVersion{{Name: "Engine", Version: "28.1.1"}, {Name: "containerd", Version: "1.7.27"}},
		}, "Docker Engine 28.1.1 (in Docker Desktop 4.41.2 (191736); linux; containerd 1.7.27)"},
		{"docker ce names its edition, not a product", &client.ServerVersionResult{
			Platform: client.PlatformInfo{Name: "Docker Engine - Community"}, Version: "28.1.1", Os: "linux",
			Components: []system.ComponentVersion{{Name: "Engine", Version: "28.1.1"}},
		}, "Docker Engine 28.1.1 (linux)"},
		{"another product", &client.ServerVersionResult{
			Version: "1.2", Components: []system.ComponentVersion{{Name: "Example Engine", Version: "1.2.3"}},
		}, "Example Engine 1.2.3 (linux)"},
		{"no components", &client.ServerVersionResult{Version: "19.03.15", Os: "linux"}, "Docker Engine 19.03.15 (linux)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := identifyProduct(tc.v, info).String(); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
