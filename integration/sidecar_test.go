package integration_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"debug/elf"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/moby/moby/client"

	"github.com/layerbridge/layerbridge/integration/harness"
)

// TestSidecarInContainer is the sidecar as deployed: layerbridge's own
// image (built as `make image` builds it), running `serve` in a container
// on a user-defined network next to Clair 4.9 in another container, the
// Docker socket mounted and its group added. A scan requested through the
// HTTP API from the host must give the same findings as `layerbridge scan`
// run on the host against the same Clair, and the 17 pairs Clair reports
// for the fixture; address detection must pick the sidecar's own address
// on the shared network; the registry view must hand the stored image to
// go-containerregistry and to Clair's own `clairctl report`.
func TestSidecarInContainer(t *testing.T) {
	t.Parallel()
	start := time.Now()
	stack := harness.StartDockerT(t, harness.Options{FeedDir: recordedFeed})
	t.Logf("clair in a container on %s up in %v: %+v", stack.Network.Name, time.Since(start).Round(time.Millisecond), stack.Timings)
	docker := harness.DockerT(t)
	ref := loadFixture(t, docker, "alpine-3.11-docker-save.tar.gz")
	if ref != "alpine:3.11" {
		t.Fatalf("loaded %q, want alpine:3.11", ref)
	}

	t0 := time.Now()
	image := buildSidecarImage(t, docker)
	t.Logf("image %s built in %v", image, time.Since(t0).Round(time.Millisecond))
	sock, gid := dockerSocket(t, docker)
	token := randomToken(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	// Compose mounts secrets 0444; the sidecar's user is not the file's owner.
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	sidecar := harness.RunContainerT(t, docker, harness.ContainerSpec{
		Name:  "layerbridge-test-sidecar-" + token[:12],
		Image: image,
		Cmd: []string{"serve", "--clair", stack.Clair.NetworkURL,
			"--token-file", "/run/secrets/layerbridge_token", "--log-level", "debug"},
		GroupAdd: []string{gid},
		Binds:    []string{sock + ":/var/run/docker.sock", tokenFile + ":/run/secrets/layerbridge_token:ro"},
		Network:  stack.Network,
		Publish:  []uint16{8080},
	})
	api := sidecar.HostURL(8080)
	waitSidecarReady(t, withTimeout(t, time.Minute), api, sidecar)
	t.Logf("sidecar %s (%s) ready at %s, %v after start", sidecar.Name, sidecar.IP, api, time.Since(start).Round(time.Millisecond))

	t.Run("address detection", func(t *testing.T) {
		line := logLine(t, sidecar.Log(), `msg="advertised address"`)
		for _, want := range []string{
			fmt.Sprintf("url=http://%s:8080", sidecar.IP),
			"network=" + stack.Network.Name,
			"clair_container=" + stack.Clair.ContainerName,
			fmt.Sprintf(`why="layerbridge runs in container %s, which shares network %s with clair's container %s"`,
				sidecar.Name, stack.Network.Name, stack.Clair.ContainerName),
		} {
			if !strings.Contains(line, want) {
				t.Errorf("advertised address line lacks %q:\n%s", want, line)
			}
		}
	})

	t.Run("address detection, clair named as in compose", func(t *testing.T) {
		// deploy/compose.yaml says --clair http://clair:6060: a network
		// alias, which Docker's container list does not show, so detection
		// resolves it and finds Clair's container by address.
		c := harness.RunContainerT(t, docker, harness.ContainerSpec{
			Name:     sidecar.Name + "-compose",
			Image:    image,
			Cmd:      []string{"serve", "--clair", "http://" + harness.ClairAlias + ":6060", "--token-file", "/run/secrets/layerbridge_token", "--log-level", "debug"},
			GroupAdd: []string{gid},
			Binds:    []string{sock + ":/var/run/docker.sock", tokenFile + ":/run/secrets/layerbridge_token:ro"},
			Network:  stack.Network,
			Publish:  []uint16{8080},
		})
		waitSidecarReady(t, withTimeout(t, time.Minute), c.HostURL(8080), c)
		line := logLine(t, c.Log(), `msg="advertised address"`)
		for _, want := range []string{
			fmt.Sprintf("url=http://%s:8080", c.IP),
			"clair_container=" + stack.Clair.ContainerName,
			fmt.Sprintf(`why="layerbridge runs in container %s, which shares network %s`, c.Name, stack.Network.Name),
		} {
			if !strings.Contains(line, want) {
				t.Errorf("advertised address line lacks %q:\n%s", want, line)
			}
		}
	})

	t.Run("access control", func(t *testing.T) {
		// The host's requests reach the published port from Docker's
		// gateway, not from loopback: the API wants the token.
		for _, tok := range []string{"", "wrong-token-wrong-token"} {
			resp := apiRequest(t, http.MethodPost, api+"/api/v1/scans", tok, `{"image":"alpine:3.11"}`)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("token %q: %s, want 401", tok, resp.Status)
			}
		}
	})

	var viaAPI jsonReport
	t.Run("scan through the api", func(t *testing.T) {
		ctx := withTimeout(t, 3*time.Minute)
		st := requestScan(t, ctx, api, token, ref)
		if st.State != "done" {
			t.Fatalf("scan %s ended %s: %s", st.ID, st.State, st.Error)
		}
		var states []string
		for _, h := range st.History {
			states = append(states, h.State)
		}
		for _, want := range []string{"exporting", "indexing", "matching", "done"} {
			if !slices.Contains(states, want) {
				t.Errorf("history %v lacks %s", states, want)
			}
		}
		if err := json.Unmarshal(st.Report, &viaAPI); err != nil {
			t.Fatalf("report: %v\n%s", err, st.Report)
		}
		checkFindings(t, "the sidecar in a container via clair 4.9 in a container", viaAPI.findings(), alpine311V4, 17, 9)
		if viaAPI.Image.ID != "sha256:a187dde48cd289ac374ad8539930628314bc581a481cdb41409c9289419ddb72" || viaAPI.Clair.API != "v4" ||
			viaAPI.Clair.URL != stack.Clair.NetworkURL {
			t.Errorf("report header: %+v %+v", viaAPI.Image, viaAPI.Clair)
		}
		// Clair, from its container, downloaded the layer from the sidecar's
		// address on the network.
		fetched := logLine(t, sidecar.Log(), `msg="layer fetched"`)
		for _, want := range []string{"digest=" + alpineLayerSum, "status=200", "bytes=5861888", "client=" + stack.Clair.ContainerIP.String() + ":"} {
			if !strings.Contains(fetched, want) {
				t.Errorf("layer fetched line lacks %q:\n%s", want, fetched)
			}
		}
		resp := apiRequest(t, http.MethodGet, api+"/api/v1/scans/"+st.ID+"/report?format=table", token, "")
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "CVE-2021-3450") {
			t.Errorf("table report: %s\n%s", resp.Status, b)
		}
	})

	t.Run("same findings as layerbridge scan on the host", func(t *testing.T) {
		r := layerbridge(t, withTimeout(t, 3*time.Minute), nil, "scan", "--clair", stack.Clair.URL,
			"--cache-dir", t.TempDir(), "--log-level", "debug", "-f", "json", ref)
		rep := decodeReport(t, r)
		checkFindings(t, "layerbridge scan on the host via clair 4.9 in a container", rep.findings(), alpine311V4, 17, 9)
		if !slices.Equal(rep.findings(), viaAPI.findings()) || rep.Image.ManifestDigest != viaAPI.Image.ManifestDigest {
			t.Errorf("host scan (manifest %s) and sidecar scan (manifest %s) differ", rep.Image.ManifestDigest, viaAPI.Image.ManifestDigest)
		}
		// On the host, detection picks the gateway of Clair's network.
		line := logLine(t, r.stderr, `msg="advertised address"`)
		if want := fmt.Sprintf("url=http://%s:", stack.Network.Gateway); !strings.Contains(line, want) {
			t.Errorf("host scan's advertised address line lacks %q:\n%s", want, line)
		}
	})

	t.Run("layerbridge scan --server from the host", func(t *testing.T) {
		r := layerbridge(t, withTimeout(t, 3*time.Minute), nil, "scan", "--server", api, "--token-file", tokenFile, "-f", "json", ref)
		rep := decodeReport(t, r)
		checkFindings(t, "layerbridge scan --server", rep.findings(), alpine311V4, 17, 9)
	})

	t.Run("registry view with go-containerregistry", func(t *testing.T) {
		if viaAPI.Image.ManifestDigest == "" {
			t.Skip("no scan report to compare with")
		}
		r, err := name.ParseReference(strings.TrimPrefix(api, "http://")+"/alpine:3.11", name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		ctx := withTimeout(t, time.Minute)
		if _, err := remote.Image(r, remote.WithContext(ctx)); err == nil {
			t.Error("pulled without credentials")
		}
		img, err := remote.Image(r, remote.WithContext(ctx), remote.WithAuth(&authn.Basic{Username: "layerbridge", Password: token}))
		if err != nil {
			t.Fatal(err)
		}
		// The stored manifest, synthesized for this graphdriver image; the
		// scan keyed Clair on the image ID, which inspect knows (issue 18).
		if viaAPI.Image.ManifestDigest != viaAPI.Image.ID {
			t.Errorf("the scan keyed clair on %s, want the image ID %s", viaAPI.Image.ManifestDigest, viaAPI.Image.ID)
		}
		if d, err := img.Digest(); err != nil || d.String() != alpineSynthesizedManifest {
			t.Errorf("manifest digest %v (%v), want the stored %s", d, err, alpineSynthesizedManifest)
		}
		if d, err := img.ConfigName(); err != nil || d.String() != viaAPI.Image.ID {
			t.Errorf("config digest %v (%v), want the image ID %s", d, err, viaAPI.Image.ID)
		}
		layers, err := img.Layers()
		if err != nil || len(layers) != 1 {
			t.Fatalf("layers %d, %v; want 1", len(layers), err)
		}
		d, _ := layers[0].Digest()
		rc, err := layers[0].Compressed() // verifies the digest at EOF
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil || d.String() != alpineLayerSum || n != 5861888 {
			t.Errorf("layer %s: %d bytes, %v; want %s, 5861888 bytes", d, n, err, alpineLayerSum)
		}
	})

	// The README's example: Clair's own client pulls the manifest from the
	// registry view, with the token as the password of basic authentication
	// from a Docker config, and hands Clair the layer URLs of the registry
	// view with that authentication. It names the registry by the sidecar's
	// address on the network, which both this host and Clair's container
	// reach, and which clairctl (go-containerregistry) speaks plain HTTP to
	// because it is private (RFC 1918).
	registry := sidecar.IP.String() + ":8080"
	t.Run("clairctl report through the registry view", func(t *testing.T) {
		out := clairctlReport(t, stack.Clair.URL, registry, "alpine:3.11", token)
		got, err := harness.FindingsV4(out)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		checkFindings(t, "clairctl report via the registry view", got, alpine311V4, 17, 9)
		var hdr struct {
			Hash string `json:"manifest_hash"`
		}
		if err := json.Unmarshal(out, &hdr); err != nil || hdr.Hash != alpineSynthesizedManifest {
			t.Errorf("clairctl's manifest %q (%v), want the registry view's %s", hdr.Hash, err, alpineSynthesizedManifest)
		}
	})

	t.Run("clairctl report of an image clair has not seen", func(t *testing.T) {
		// Clair knew the scanned image's layer already. This one adds a layer Clair
		// has never indexed, put in the store by `layerbridge inspect` in
		// the sidecar's container, not by a scan: Clair must download it
		// from the registry view, with the credentials clairctl passes.
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM alpine:3.11\nCOPY nonce /nonce\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "nonce"), []byte(randomToken(t)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		tag := harness.BuildImageT(t, docker, dir, "layerbridge-test-clairctl")
		out, code, err := sidecar.Exec(withTimeout(t, time.Minute), docker, "/layerbridge", "inspect", tag)
		if err != nil || code != 0 {
			t.Fatalf("layerbridge inspect %s in the sidecar: exit %d, %v\n%s", tag, code, err, out)
		}
		report := clairctlReport(t, stack.Clair.URL, registry, tag, token)
		got, err := harness.FindingsV4(report)
		if err != nil {
			t.Fatalf("%v\n%s", err, report)
		}
		checkFindings(t, "clairctl report of a new image via the registry view", got, alpine311V4, 17, 9)
		var fromClair []string
		for _, l := range strings.Split(sidecar.Log(), "\n") {
			if strings.Contains(l, "route=registry-blob") && strings.Contains(l, "client="+stack.Clair.ContainerIP.String()+":") {
				fromClair = append(fromClair, l)
			}
		}
		if len(fromClair) != 1 || !strings.Contains(fromClair[0], "method=GET status=200") {
			t.Errorf("clair's requests to the registry view: %q; want one GET of the new layer, answered 200", fromClair)
		}
	})

	t.Run("stayed on the machine", func(t *testing.T) {
		if ext := stack.Clair.ExternalRequests(); len(ext) > 0 {
			t.Errorf("clair tried to reach public hosts: %v", ext)
		}
	})
}

// buildSidecarImage builds layerbridge's image the way `make image` does:
// deploy/image/context.sh prepares the context from a static binary and the
// repository's Dockerfile. The image is removed at cleanup.
func buildSidecarImage(t *testing.T, docker harness.DockerAPI) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "context")
	cmd := exec.Command("sh", "../deploy/image/context.sh", dir, staticLayerbridgeBin(t))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("deploy/image/context.sh: %v\n%s", err, out)
	}
	return harness.BuildImageT(t, docker, dir, "layerbridge-test")
}

// staticLayerbridgeBin returns a statically linked layerbridge for the FROM
// scratch image: $LAYERBRIDGE_BIN (make's, always static) if it is, else
// one built here with CGO_ENABLED=0.
func staticLayerbridgeBin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("LAYERBRIDGE_BIN"); p != "" && isStatic(t, p) {
		return p
	}
	bin := filepath.Join(t.TempDir(), "layerbridge")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/layerbridge")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/layerbridge: %v\n%s", err, out)
	}
	return bin
}

func isStatic(t *testing.T, path string) bool {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Logf("%s is dynamically linked; building a static one", path)
			return false
		}
	}
	return true
}

// dockerSocket returns the daemon's unix socket and its group, for the
// sidecar's bind mount and --group-add.
func dockerSocket(t *testing.T, docker *client.Client) (path, gid string) {
	t.Helper()
	path, ok := strings.CutPrefix(docker.DaemonHost(), "unix://")
	if !ok {
		harness.Unavailable(t, fmt.Errorf("the docker daemon is at %s, not a unix socket the sidecar's container could mount", docker.DaemonHost()))
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		t.Fatalf("%s: no owner information", path)
	}
	return path, fmt.Sprint(st.Gid)
}

// clairctlReport runs `clairctl report -o json` for registry/ref against
// Clair at clairURL, with a Docker config that holds the token as the
// registry's basic-authentication password, and returns its output.
func clairctlReport(t *testing.T, clairURL, registry, ref, token string) []byte {
	t.Helper()
	cfgDir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte("layerbridge:" + token))
	cfg := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, registry, auth)
	if err := os.WriteFile(filepath.Join(cfgDir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd, err := harness.ClairctlCommand(withTimeout(t, 3*time.Minute), ".", "report", "--host", clairURL, "--out", "json", registry+"/"+ref)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+cfgDir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	t.Logf("clairctl report %s/%s: %v\n%s", registry, ref, err, stderr.String())
	if err != nil {
		t.Fatal(err)
	}
	return stdout.Bytes()
}

func randomToken(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// waitSidecarReady polls /readyz (open, no token) until it answers 200:
// Docker and Clair reachable from the sidecar's container.
func waitSidecarReady(t *testing.T, ctx context.Context, api string, c *harness.Container) {
	t.Helper()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	last := ""
	for {
		if exited, err := c.Exited(); exited {
			t.Fatalf("sidecar exited (%v):\n%s", err, c.Log())
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, api+"/readyz", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = resp.Status + " " + string(b)
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			t.Fatalf("sidecar not ready: %v (last answer: %s)", context.Cause(ctx), last)
		case <-tick.C:
		}
	}
}

// scanStatus is the sidecar's scan status, the fields the test reads.
type scanStatus struct {
	ID      string `json:"id"`
	State   string `json:"state"`
	Error   string `json:"error"`
	History []struct {
		State string `json:"state"`
	} `json:"history"`
	Report json.RawMessage `json:"report"`
}

// requestScan posts a scan of image and polls its status until it is done
// or failed.
func requestScan(t *testing.T, ctx context.Context, api, token, image string) scanStatus {
	t.Helper()
	resp := apiRequest(t, http.MethodPost, api+"/api/v1/scans", token, fmt.Sprintf(`{"image":%q}`, image))
	var st scanStatus
	err := json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || err != nil || st.ID == "" {
		t.Fatalf("POST /api/v1/scans: %s, %v, %+v", resp.Status, err, st)
	}
	if loc := resp.Header.Get("Location"); loc != "/api/v1/scans/"+st.ID {
		t.Errorf("Location %q", loc)
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for st.State != "done" && st.State != "failed" {
		select {
		case <-ctx.Done():
			t.Fatalf("scan %s still %s: %v", st.ID, st.State, context.Cause(ctx))
		case <-tick.C:
		}
		resp := apiRequest(t, http.MethodGet, api+"/api/v1/scans/"+st.ID, token, "")
		st = scanStatus{}
		err := json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil {
			t.Fatalf("GET scan: %s, %v", resp.Status, err)
		}
	}
	return st
}

// apiRequest sends a request to the sidecar with the token as a bearer
// token ("" sends none).
func apiRequest(t *testing.T, method, url, token, body string) *http.Response {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// logLine returns the first line of a text log that contains msg, failing
// the test if there is none.
func logLine(t *testing.T, log, msg string) string {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), msg) {
			return sc.Text()
		}
	}
	t.Fatalf("no log line with %s in:\n%s", msg, log)
	return ""
}
