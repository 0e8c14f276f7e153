package integration_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	digest "github.com/opencontainers/go-digest"

	"github.com/layerbridge/layerbridge/integration/harness"
)

// The containerd: source against a containerd of its own (harness.Containerd,
// containerd v2.4.2): the alpine 3.11 fixture and a multi-platform OCI image
// imported into a namespace, read in place (nothing exported, no layer in
// layerbridge's cache), scanned through real Clair 4.9 with the findings of
// the same content read from its archive; pinned by a containerd lease
// while Clair fetches; and each way of getting it wrong told as such.

// ociBlob is a blob of an OCI layout being written.
type ociBlob struct {
	mediaType string
	data      []byte
}

func (b ociBlob) descriptor() map[string]any {
	return map[string]any{"mediaType": b.mediaType, "digest": digest.FromBytes(b.data).String(), "size": len(b.data)}
}

// multiPlatformArchive writes an OCI layout tar whose index holds the alpine
// 3.11 fixture's layer as a linux/amd64 and a linux/arm64/v8 image (each
// gzip-compressed at a level of its own, so that each has blobs of its own)
// and a BuildKit attestation manifest, and returns its path and the
// digests of the amd64 and arm64 manifests.
func multiPlatformArchive(t *testing.T) (archive string, amd64, arm64 digest.Digest) {
	t.Helper()
	layers := extractLayers(t, alpineFixture, t.TempDir())
	tarData, err := os.ReadFile(layers[0])
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		t.Fatal(err)
	}
	put := func(b ociBlob) map[string]any {
		if err := os.WriteFile(filepath.Join(dir, "blobs", "sha256", digest.FromBytes(b.data).Encoded()), b.data, 0o644); err != nil {
			t.Fatal(err)
		}
		return b.descriptor()
	}
	mustJSON := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	image := func(arch, variant string, level int) map[string]any {
		var gz bytes.Buffer
		w, _ := gzip.NewWriterLevel(&gz, level)
		w.Write(tarData)
		w.Close()
		layer := put(ociBlob{"application/vnd.oci.image.layer.v1.tar+gzip", gz.Bytes()})
		config := put(ociBlob{"application/vnd.oci.image.config.v1+json", mustJSON(map[string]any{
			"architecture": arch, "variant": variant, "os": "linux",
			"rootfs": map[string]any{"type": "layers", "diff_ids": []string{digest.FromBytes(tarData).String()}},
		})})
		m := put(ociBlob{"application/vnd.oci.image.manifest.v1+json", mustJSON(map[string]any{
			"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": config, "layers": []any{layer},
		})})
		p := map[string]any{"os": "linux", "architecture": arch}
		if variant != "" {
			p["variant"] = variant
		}
		m["platform"] = p
		return m
	}
	a, b := image("amd64", "", gzip.BestSpeed), image("arm64", "v8", gzip.BestCompression)
	attConfig := put(ociBlob{"application/vnd.oci.image.config.v1+json", []byte(`{"architecture":"unknown","os":"unknown","rootfs":{"type":"layers","diff_ids":[]}}`)})
	statement := put(ociBlob{"application/vnd.in-toto+json", []byte(`{"_type":"https://in-toto.io/Statement/v0.1"}`)})
	att := put(ociBlob{"application/vnd.oci.image.manifest.v1+json", mustJSON(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": attConfig, "layers": []any{statement},
	})})
	att["platform"] = map[string]any{"os": "unknown", "architecture": "unknown"}
	att["annotations"] = map[string]string{"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": a["digest"].(string)}
	index := mustJSON(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []any{a, b, att}})
	os.WriteFile(filepath.Join(dir, "index.json"), index, 0o644)
	os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
	archive = filepath.Join(t.TempDir(), "multi.tar")
	tarDir(t, dir, archive)
	return archive, digest.Digest(a["digest"].(string)), digest.Digest(b["digest"].(string))
}

// containerdNamespace is a namespace of c of its own for the test, whose
// images are removed when it ends.
func containerdNamespace(t *testing.T, c *harness.Containerd) string {
	t.Helper()
	ns := "layerbridge-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, _ := c.Ctr(ctx, "--namespace", ns, "images", "list", "--quiet")
		for _, img := range strings.Fields(out) {
			if _, err := c.Ctr(ctx, "--namespace", ns, "images", "remove", "--sync", img); err != nil {
				t.Error(err)
			}
		}
	})
	return ns
}

// layerbridgeLeases lists the leases layerbridge holds in namespace ns, as
// "ID ref" lines.
func layerbridgeLeases(t *testing.T, ctx context.Context, c *harness.Containerd, ns string) []string {
	t.Helper()
	out, err := c.Ctr(ctx, "--namespace", ns, "leases", "list")
	if err != nil {
		t.Error(err)
		return nil
	}
	var held []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "layerbridge-") {
			held = append(held, strings.Join(f, " "))
		}
	}
	return held
}

// blobsIn counts the blobs of the cache.
func blobsIn(t *testing.T, cache string) int {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(cache, "blobs", "sha256"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return len(entries)
}

// leaseWatchingClair is a reverse proxy to Clair that, when layerbridge asks
// Clair to index an image, lists the leases layerbridge holds in containerd
// before it passes the request on: what holds the image while Clair fetches
// its layers.
type leaseWatchingClair struct {
	t      *testing.T
	c      *harness.Containerd
	ns     string
	mu     sync.Mutex
	during [][]string // the leases seen at each index request
}

func (w *leaseWatchingClair) start(clair string) string {
	target, _ := url.Parse(clair)
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/indexer/api/v1/index_report" {
			held := layerbridgeLeases(w.t, r.Context(), w.c, w.ns)
			w.mu.Lock()
			w.during = append(w.during, held)
			w.mu.Unlock()
		}
		proxy.ServeHTTP(rw, r)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		w.t.Fatal(err)
	}
	go srv.Serve(ln)
	w.t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

func TestContainerdSource(t *testing.T) {
	t.Parallel()
	c := containerd.Get(t)
	stack := harness.StartT(t, harness.Options{FeedDir: recordedFeed})
	ctx := withTimeout(t, 5*time.Minute)
	ns := containerdNamespace(t, c)
	fixture, err := filepath.Abs(alpineFixture)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ImportImage(ctx, ns, fixture); err != nil {
		t.Fatal(err)
	}
	multi, amd64, arm64 := multiPlatformArchive(t)
	// Imported as BuildKit's images reach containerd: the index kept as the
	// image, unpacked for this machine's platform only (so that only the
	// amd64 layer carries containerd's uncompressed label).
	if _, err := c.Ctr(ctx, "--namespace", ns, "images", "import", "--all-platforms", "--index-name", "docker.io/library/multi:1", multi); err != nil {
		t.Fatal(err)
	}
	at := []string{"--containerd-address", c.Address, "--containerd-namespace", ns}

	t.Run("inspect reads in place", func(t *testing.T) {
		cache := t.TempDir()
		r := layerbridge(t, withTimeout(t, time.Minute), nil, append([]string{"inspect", "--cache-dir", cache}, append(at, "containerd:alpine:3.11")...)...)
		if r.code != 0 || !strings.Contains(r.stdout, alpineLayerSum) || !strings.Contains(r.stdout, "Manifest:  "+alpineManifest) ||
			!strings.Contains(r.stdout, "nothing copied") || !strings.Contains(r.stdout, "Tags:      docker.io/library/alpine:3.11") {
			t.Errorf("inspect: exit %d\n%s", r.code, r.stdout)
		}
		if n := blobsIn(t, cache); n != 0 {
			t.Errorf("the cache holds %d blobs after inspect, want none", n)
		}
		if held := layerbridgeLeases(t, ctx, c, ns); len(held) != 0 {
			t.Errorf("leases left after inspect: %q", held)
		}
	})

	t.Run("scan equals the archive's and holds a lease", func(t *testing.T) {
		watch := &leaseWatchingClair{t: t, c: c, ns: ns}
		clair := watch.start(stack.Clair.URL)
		cache := t.TempDir()
		args := append([]string{"scan", "--clair", clair, "--cache-dir", cache, "-f", "json"}, append(at, "containerd:alpine:3.11")...)
		rep := decodeReport(t, layerbridge(t, withTimeout(t, 3*time.Minute), nil, args...))
		checkFindings(t, "containerd:alpine:3.11", rep.findings(), alpine311V4, 17, 9)
		archived := decodeReport(t, layerbridge(t, withTimeout(t, 3*time.Minute), nil, "scan", "--clair", stack.Clair.URL, "--cache-dir", t.TempDir(), "-f", "json", "docker-archive:"+fixture))
		if !slices.Equal(rep.findings(), archived.findings()) {
			t.Errorf("containerd: %d findings, docker-archive: %d", len(rep.findings()), len(archived.findings()))
		}
		if rep.Image.ManifestDigest != alpineManifest || rep.Image.ID != alpineManifest {
			t.Errorf("manifest %s, id %s: want containerd's manifest, as Clair indexed it", rep.Image.ManifestDigest, rep.Image.ID)
		}
		watch.mu.Lock()
		during := watch.during
		watch.mu.Unlock()
		if len(during) != 1 || len(during[0]) != 1 || !strings.Contains(during[0][0], "io.layerbridge.ref=containerd:alpine:3.11") {
			t.Errorf("leases while Clair was asked to index: %q, want one, naming the image", during)
		}
		if held := layerbridgeLeases(t, ctx, c, ns); len(held) != 0 {
			t.Errorf("leases after the scan: %q", held)
		}
		if n := blobsIn(t, cache); n != 0 {
			t.Errorf("the cache holds %d blobs after the scan, want none", n)
		}
		t.Logf("RESULT engine=%q ref=containerd:alpine:3.11 clair=v4 findings=%d vulnerabilities=%d", "containerd 2.4.2", len(rep.findings()), harness.Vulnerabilities(rep.findings()))
	})

	t.Run("multi-platform", func(t *testing.T) {
		for _, tc := range []struct {
			platform string
			scanned  string
			manifest digest.Digest
		}{
			{"", "linux/amd64", amd64},
			{"linux/amd64", "linux/amd64", amd64},
			{"linux/arm64", "linux/arm64", arm64}, // no uncompressed label: read once
			{"linux/arm64", "linux/arm64", arm64}, // then from the cache's note
		} {
			var extra []string
			if tc.platform != "" {
				extra = []string{"--platform", tc.platform}
			}
			args := append([]string{"scan", "--clair", stack.Clair.URL, "--cache-dir", t.TempDir(), "-f", "json"}, append(append(at, extra...), "containerd:multi:1")...)
			rep := decodeReport(t, layerbridge(t, withTimeout(t, 3*time.Minute), nil, args...))
			if rep.Image.Platform != tc.scanned || rep.Image.ManifestDigest != tc.manifest.String() {
				t.Errorf("--platform %q: scanned %s %s, want %s %s", tc.platform, rep.Image.Platform, rep.Image.ManifestDigest, tc.scanned, tc.manifest)
			}
			checkFindings(t, "containerd:multi:1 "+tc.platform, rep.findings(), alpine311V4, 17, 9)
			archived := decodeReport(t, layerbridge(t, withTimeout(t, 3*time.Minute), nil,
				append([]string{"scan", "--clair", stack.Clair.URL, "--cache-dir", t.TempDir(), "-f", "json"}, append(extra, "oci-archive:"+multi)...)...))
			if !slices.Equal(rep.findings(), archived.findings()) || archived.Image.ManifestDigest != rep.Image.ManifestDigest {
				t.Errorf("--platform %q: containerd's %d findings (%s), the archive's %d (%s)", tc.platform,
					len(rep.findings()), rep.Image.ManifestDigest, len(archived.findings()), archived.Image.ManifestDigest)
			}
		}
		r := layerbridge(t, withTimeout(t, time.Minute), nil, append([]string{"inspect", "--cache-dir", t.TempDir(), "--platform", "linux/s390x"}, append(at, "containerd:multi:1")...)...)
		if r.code != 1 || !strings.Contains(r.stderr, "available: linux/amd64, linux/arm64") {
			t.Errorf("--platform linux/s390x: exit %d, want 1 naming the image's platforms", r.code)
		}
	})

	t.Run("a platform whose content is absent", func(t *testing.T) {
		// An image pulled for one platform: containerd keeps the index,
		// which lists the others.
		only := containerdNamespace(t, c)
		if _, err := c.Ctr(ctx, "--namespace", only, "images", "import", "--all-platforms", "--index-name", "docker.io/library/multi:1", multi); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Ctr(ctx, "--namespace", only, "content", "rm", arm64.String()); err != nil {
			t.Fatal(err)
		}
		r := layerbridge(t, withTimeout(t, time.Minute), nil, "inspect", "--cache-dir", t.TempDir(), "--platform", "linux/arm64",
			"--containerd-address", c.Address, "--containerd-namespace", only, "containerd:multi:1")
		if r.code != 1 || !strings.Contains(r.stderr, "manifest of platform linux/arm64 ("+arm64.String()+") is not in containerd's content store") ||
			!strings.Contains(r.stderr, "content present for linux/amd64") || !strings.Contains(r.stderr, "hint: containerd holds this image for other platforms only") {
			t.Errorf("exit %d, want 1 naming the platform present and what to do", r.code)
		}
		if held := layerbridgeLeases(t, ctx, c, only); len(held) != 0 {
			t.Errorf("leases left after a failed load: %q", held)
		}
	})

	t.Run("wrong namespace", func(t *testing.T) {
		r := layerbridge(t, withTimeout(t, time.Minute), nil, "inspect", "--cache-dir", t.TempDir(),
			"--containerd-address", c.Address, "--containerd-namespace", "k8s.io", "containerd:alpine:3.11")
		if r.code != 1 || !strings.Contains(r.stderr, fmt.Sprintf(`in containerd namespace "k8s.io" at %s (namespace %q has it)`, c.Address, ns)) ||
			!strings.Contains(r.stderr, "hint: the image is in namespace \""+ns+"\": pass --containerd-namespace "+ns) {
			t.Errorf("exit %d, want 1 naming the namespace that has the image", r.code)
		}
	})

	t.Run("missing socket", func(t *testing.T) {
		r := layerbridge(t, withTimeout(t, time.Minute), []string{"CONTAINERD_ADDRESS=" + c.Address + ".gone"}, "inspect", "--cache-dir", t.TempDir(), "containerd:alpine:3.11")
		if r.code != 1 || !strings.Contains(r.stderr, "containerd at "+c.Address+".gone: no socket there") || !strings.Contains(r.stderr, "hint: is containerd running") {
			t.Errorf("exit %d, want 1 saying there is no socket", r.code)
		}
	})

	t.Run("doctor", func(t *testing.T) {
		r := layerbridge(t, withTimeout(t, 2*time.Minute), nil, append([]string{"doctor", "--format", "json", "--clair", stack.Clair.URL, "--cache-dir", t.TempDir()}, append(at, "containerd:multi:1")...)...)
		if r.code != 0 {
			t.Errorf("exit %d, want 0\n%s", r.code, r.stdout)
		}
		results := decodeDoctor(t, r)
		expectCheck(t, results, "containerd.reachable", "passed", "containerd 2.4.2", "answered at "+c.Address)
		expectCheck(t, results, "containerd.namespace", "passed", fmt.Sprintf("namespace %q exists", ns))
		expectCheck(t, results, "containerd.image", "passed", "containerd:multi:1 is docker.io/library/multi:1", amd64.String(), "linux/amd64", "present and verified")
		expectCheck(t, results, "docker.image", "skipped", "read from containerd")
		t.Logf("RESULT engine=%q doctor: %s; %s", "containerd 2.4.2", results["containerd.reachable"].Evidence, results["containerd.image"].Evidence)
	})

	t.Run("serve: scan API and registry view", func(t *testing.T) {
		base := startServe(t, append([]string{"--clair", stack.Clair.URL}, at...)...)
		rep := decodeReport(t, layerbridge(t, withTimeout(t, 3*time.Minute), nil, "scan", "--server", base, "-f", "json", "containerd:alpine:3.11"))
		checkFindings(t, "containerd:alpine:3.11 through the sidecar", rep.findings(), alpine311V4, 17, 9)
		// The registry view serves it: its blobs come from containerd.
		ref, err := name.ParseReference(strings.TrimPrefix(base, "http://")+"/alpine:3.11", name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		img, err := remote.Image(ref, remote.WithContext(withTimeout(t, time.Minute)))
		if err != nil {
			t.Fatalf("pull from the registry view: %v", err)
		}
		if err := validate.Image(img, validate.Fast); err != nil {
			t.Errorf("the pulled image does not validate: %v", err)
		}
		layers, err := img.Layers()
		if err != nil || len(layers) != 1 {
			t.Fatalf("layers %v, %v", layers, err)
		}
		rc, err := layers[0].Compressed()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		got := digest.SHA256.Digester()
		if n, err := io.Copy(got.Hash(), rc); err != nil || got.Digest().String() != alpineLayerSum || n != 5861888 {
			t.Errorf("pulled layer: %d bytes hashing to %s (%v), want the layer %s", n, got.Digest(), err, alpineLayerSum)
		}
		if d, _ := img.Digest(); d.String() != alpineManifest {
			t.Errorf("pulled manifest %s, want containerd's %s", d, alpineManifest)
		}
	})
}
