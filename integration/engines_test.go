package integration_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/layerbridge/layerbridge/integration/harness"
)

// The engine tests run what runs against the system's Docker Engine 20.10
// against the other engines users have: Docker Engine 29 with the
// containerd image store and BuildKit (harness.Dockerd, built from Go
// modules), and Podman (harness.Podman). Each image is made on the engine
// under test, and the same content on Docker 20.10 (the same Dockerfile
// with the classic builder, the same archive loaded, or the archive itself
// where 20.10 cannot load it); layerbridge scans both, the engine's first,
// through the same real Clair 4.9 and the Clair v2 stand-in, and the
// findings must be equal to each other and to the table the kind expects.

// daemon is an engine that speaks the Docker Engine API.
type daemon struct {
	name string
	host string // for layerbridge's --docker-host
	cli  *client.Client
	// dockerd is set for Docker 29, the engine with BuildKit (buildx) and
	// multi-platform images here.
	dockerd *harness.Dockerd
	// loadsOCI is true when `docker load` takes an OCI layout tar.
	loadsOCI bool
	// exportsZstd is false for an engine whose export (docker save) fails
	// for an image with zstd layers.
	exportsZstd bool
}

func docker20Engine(t *testing.T) *daemon {
	t.Helper()
	cli := harness.DockerT(t)
	return &daemon{name: "docker " + serverVersion(t, cli), host: cli.DaemonHost(), cli: cli}
}

func docker29Engine(t *testing.T) *daemon {
	t.Helper()
	d := docker29.Get(t)
	cli, err := d.Client(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return &daemon{name: "docker " + serverVersion(t, cli), host: d.Host, cli: cli, dockerd: d, loadsOCI: true, exportsZstd: true}
}

func podmanEngine(t *testing.T) *daemon {
	t.Helper()
	p := podman.Get(t)
	cli, err := p.Client(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return &daemon{name: "podman " + serverVersion(t, cli), host: p.Host, cli: cli, loadsOCI: true}
}

func serverVersion(t *testing.T, cli *client.Client) string {
	t.Helper()
	v, err := cli.ServerVersion(t.Context(), client.ServerVersionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return v.Version
}

// imageKind is a way of making an image and what Clair finds in it.
type imageKind struct {
	name string
	// feed is the SecDB feed the expected findings hold for.
	feed string
	// v4 and v2 are what Clair 4.9 and the v2 stand-in find; v2 nil means
	// the kind is not scanned through the stand-in (it cannot read zstd).
	v4, v2 []harness.Finding
	// make makes the image on e and returns its reference.
	make func(t *testing.T, e *daemon) string
	// same makes the same content on Docker 20.10, or names an archive of
	// it, and returns that reference.
	same func(t *testing.T, docker20 *daemon) string
	// buildKit: only an engine with BuildKit makes it; ociLoad: only one
	// that loads OCI archives.
	buildKit, ociLoad bool
	// zstd: the image has zstd layers (see daemon.exportsZstd).
	zstd bool
}

func imageKinds(t *testing.T) []imageKind {
	mixed := alpineMixedContext(t)
	demo := demoContext(t)
	noOpenSSL := without(alpine311V4, "libcrypto1.1", "libssl1.1")
	load := func(fixture string) func(*testing.T, *daemon) string {
		return func(t *testing.T, e *daemon) string { return loadFixture(t, e.cli, fixture) }
	}
	archive := func(ref string) func(*testing.T, *daemon) string {
		return func(*testing.T, *daemon) string { return ref }
	}
	classic := func(dir string) func(*testing.T, *daemon) string {
		return func(t *testing.T, e *daemon) string {
			loadFixture(t, e.cli, "alpine-3.11-docker-save.tar.gz") // the base of FROM alpine:3.11
			return buildClassic(t, e, dir)
		}
	}
	buildKit := func(dir string) func(*testing.T, *daemon) string {
		return func(t *testing.T, e *daemon) string {
			loadFixture(t, e.cli, "alpine-3.11-docker-save.tar.gz")
			return buildWithBuildKit(t, e, dir, nil)
		}
	}
	fixture := func(name string) string {
		p, err := filepath.Abs(filepath.Join("../testdata/fixtures", name))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	return []imageKind{
		{name: "load alpine-3.11 (docker save)", feed: recordedFeed, v4: alpine311V4, v2: alpine311V2,
			make: load("alpine-3.11-docker-save.tar.gz"), same: load("alpine-3.11-docker-save.tar.gz")},
		{name: "load dive-test (docker save)", feed: recordedFeed, v4: []harness.Finding{}, v2: []harness.Finding{},
			make: load("dive-test-docker-image.tar"), same: load("dive-test-docker-image.tar")},
		{name: "load dive-test (kaniko)", feed: recordedFeed, v4: []harness.Finding{}, v2: []harness.Finding{},
			make: load("dive-test-kaniko-image.tar"), same: load("dive-test-kaniko-image.tar")},
		{name: "load dive-test (oci, gzip)", feed: recordedFeed, v4: []harness.Finding{}, v2: []harness.Finding{}, ociLoad: true,
			make: load("dive-test-oci-gzip-image.tar"), same: archive("oci-archive:" + fixture("dive-test-oci-gzip-image.tar"))},
		{name: "load dive-test (oci, zstd)", feed: recordedFeed, v4: []harness.Finding{}, ociLoad: true, zstd: true,
			make: load("dive-test-oci-zstd-image.tar"), same: archive("oci-archive:" + fixture("dive-test-oci-zstd-image.tar"))},
		{name: "load dive-test (oci, uncompressed)", feed: recordedFeed, v4: []harness.Finding{}, v2: []harness.Finding{}, ociLoad: true,
			make: load("dive-test-oci-uncompressed-image.tar"), same: archive("oci-archive:" + fixture("dive-test-oci-uncompressed-image.tar"))},
		{name: "classic builder, alpine 3.11 + COPY + RUN", feed: recordedFeed, v4: noOpenSSL, v2: alpine311V2,
			make: classic(mixed), same: classic(mixed)},
		{name: "classic builder, demo image", feed: projectFeed, v4: demoV4, v2: demoV2,
			make: classic(demo), same: classic(demo)},
		{name: "BuildKit, alpine 3.11 + COPY + RUN", feed: recordedFeed, v4: noOpenSSL, v2: alpine311V2, buildKit: true,
			make: buildKit(mixed), same: classic(mixed)},
		{name: "BuildKit, demo image", feed: projectFeed, v4: demoV4, v2: demoV2, buildKit: true,
			make: buildKit(demo), same: classic(demo)},
	}
}

// alpineMixedContext is a build context on the alpine 3.11 fixture: a COPY
// layer and a RUN layer that removes the OpenSSL packages from the apk
// database, so that the findings depend on the layers the builder adds (on
// Docker 29 with the classic builder: a plain docker base layer, a docker
// gzip COPY layer, an OCI gzip RUN layer).
func alpineMixedContext(t *testing.T) string {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "Dockerfile"), "FROM alpine:3.11\n"+
		"COPY motd /etc/motd.layerbridge\n"+
		"RUN sed -i -e '/^P:libssl1.1$/,/^$/d' -e '/^P:libcrypto1.1$/,/^$/d' /lib/apk/db/installed\n")
	writeFile(t, filepath.Join(dir, "motd"), "built for layerbridge's engine tests\n")
	return dir
}

// demoContext is a copy of the demo image's build context
// (testdata/demo-image).
func demoContext(t *testing.T) string {
	dir := t.TempDir()
	copyTree(t, "testdata/demo-image", dir)
	return dir
}

// multiPlatformContext is a FROM scratch build context for linux/amd64 and
// linux/arm64 (no emulation needed): amd64 gets the demo image's root file
// system, arm64 the same without busybox, so that the findings tell which
// platform was scanned. It also returns a context for each platform alone,
// for a builder that makes one platform (Docker 20.10's).
func multiPlatformContext(t *testing.T) (dir string, perPlatform map[string]string) {
	dir = t.TempDir()
	writeFile(t, filepath.Join(dir, "Dockerfile"), "FROM scratch\nARG TARGETARCH\nCOPY rootfs-${TARGETARCH}/ /\n")
	copyTree(t, demoRootFS, filepath.Join(dir, "rootfs-amd64"))
	copyTree(t, demoRootFS, filepath.Join(dir, "rootfs-arm64"))
	dropApkPackage(t, filepath.Join(dir, "rootfs-arm64", "lib/apk/db/installed"), "busybox")
	perPlatform = map[string]string{}
	for _, arch := range []string{"amd64", "arm64"} {
		p := t.TempDir()
		writeFile(t, filepath.Join(p, "Dockerfile"), "FROM scratch\nCOPY rootfs/ /\n")
		copyTree(t, filepath.Join(dir, "rootfs-"+arch), filepath.Join(p, "rootfs"))
		perPlatform["linux/"+arch] = p
	}
	return dir, perPlatform
}

// dropApkPackage removes package pkg's record from the apk database at path.
func dropApkPackage(t *testing.T, path, pkg string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	records := strings.Split(strings.TrimRight(string(b), "\n"), "\n\n")
	kept := slices.DeleteFunc(records, func(r string) bool { return strings.HasPrefix(r, "P:"+pkg+"\n") })
	if len(kept) == len(records) {
		t.Fatalf("%s has no package %s", path, pkg)
	}
	writeFile(t, path, strings.Join(kept, "\n\n")+"\n")
}

// without is the findings of packages other than pkgs.
func without(fs []harness.Finding, pkgs ...string) []harness.Finding {
	return slices.DeleteFunc(slices.Clone(fs), func(f harness.Finding) bool { return slices.Contains(pkgs, f.Package) })
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// copyTree copies the regular files and directories under from to to.
func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, p)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// buildClassic builds dir on e with the classic builder (as
// DOCKER_BUILDKIT=0 docker build) under a unique tag, removed at cleanup.
func buildClassic(t *testing.T, e *daemon, dir string) string {
	t.Helper()
	return harness.BuildImageT(t, e.cli, dir, "layerbridge-engine-test")
}

// buildWithBuildKit builds dir with `docker buildx build --load` on e's
// Docker 29 for the platforms given (none: the daemon's) under a unique
// tag, removed at cleanup.
func buildWithBuildKit(t *testing.T, e *daemon, dir string, platforms []string) string {
	t.Helper()
	tag := "layerbridge-engine-test:buildkit-" + strings.ReplaceAll(time.Now().Format("150405.000000000"), ".", "")
	ctx := withTimeout(t, 5*time.Minute)
	if err := e.dockerd.BuildxBuild(ctx, dir, tag, platforms, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := harness.RemoveImage(e.cli, tag); err != nil {
			t.Errorf("%v", err)
		}
	})
	return tag
}

// clairs is one Clair 4.9 and one v2 stand-in per feed.
type clairs struct {
	v4 map[string]*harness.Stack
	v2 map[string]*harness.Standin
}

func startClairs(t *testing.T) clairs {
	t.Helper()
	feeds := []string{recordedFeed, projectFeed}
	stacks := harness.StartManyT(t, harness.Options{FeedDir: feeds[0]}, harness.Options{FeedDir: feeds[1]})
	c := clairs{v4: map[string]*harness.Stack{}, v2: map[string]*harness.Standin{}}
	for i, f := range feeds {
		c.v4[f] = stacks[i]
		c.v2[f] = harness.StartStandinT(t, f)
	}
	return c
}

// scanOn scans ref on e (e nil: an archive or layout reference) with the
// Clair API api ("v4" or "v2") of c for feed, and returns the report.
func (c clairs) scanOn(t *testing.T, e *daemon, feed, api, ref string, extra ...string) jsonReport {
	t.Helper()
	url := c.v4[feed].Clair.URL
	if api == "v2" {
		url = c.v2[feed].URL
	}
	args := []string{"scan", "--clair", url, "--clair-api", api, "--cache-dir", t.TempDir(), "-f", "json"}
	if e != nil {
		args = append(args, "--docker-host", e.host)
	}
	args = append(append(args, extra...), ref)
	return decodeReport(t, layerbridge(t, withTimeout(t, 3*time.Minute), nil, args...))
}

// runEngineMatrix makes every image kind e can make, scans it and the same
// content on Docker 20.10, and compares.
func runEngineMatrix(t *testing.T, e, docker20 *daemon, c clairs) {
	for _, k := range imageKinds(t) {
		if k.buildKit && e.dockerd == nil || k.ociLoad && !e.loadsOCI {
			continue
		}
		t.Run(k.name, func(t *testing.T) {
			ref := k.make(t, e)
			if k.zstd && !e.exportsZstd {
				// Podman 4.3 converts an export through its Docker API to
				// docker media types, which have no zstd.
				r := layerbridge(t, withTimeout(t, time.Minute), nil, "inspect", "--docker-host", e.host, "--cache-dir", t.TempDir(), ref)
				if r.code != 1 || !strings.Contains(r.stderr, "zstd compression is not supported for docker images") {
					t.Errorf("exit %d, want 1 with the engine's reason", r.code)
				}
				t.Logf("RESULT engine=%q kind=%q clair=- export fails: %s", e.name, k.name, strings.TrimSpace(r.stderr))
				return
			}
			same := k.same(t, docker20)
			on20 := docker20
			if strings.HasPrefix(same, "oci-archive:") {
				on20 = nil // read by layerbridge without a daemon
			}
			for _, api := range []string{"v4", "v2"} {
				want := k.v4
				if api == "v2" {
					if want = k.v2; want == nil {
						continue
					}
				}
				compareScans(t, c, k.feed, api, want, e, ref, on20, same)
			}
		})
	}
}

// compareScans scans ref on e and same on docker20 (nil: same is an
// archive) with Clair API api, and checks that both find want. It returns
// the report of ref.
func compareScans(t *testing.T, c clairs, feed, api string, want []harness.Finding, e *daemon, ref string, docker20 *daemon, same string, extra ...string) jsonReport {
	t.Helper()
	rep := c.scanOn(t, e, feed, api, ref, extra...)
	got := rep.findings()
	what := strings.Join(append([]string{e.name, ref}, extra...), " ") + " via clair " + api
	checkFindings(t, what, got, want, len(want), harness.Vulnerabilities(want))
	rep20 := c.scanOn(t, docker20, feed, api, same)
	if got20 := rep20.findings(); !slices.Equal(got, got20) {
		t.Errorf("%s: %d findings, %d for the same content (%s) on docker 20.10", what, len(got), len(got20), same)
	}
	t.Logf("RESULT engine=%q test=%q ref=%s %s clair=%s findings=%d vulnerabilities=%d platform=%s warnings=%q",
		e.name, t.Name(), ref, strings.Join(extra, " "), api, len(got), harness.Vulnerabilities(got), rep.Image.Platform, rep.Warnings)
	return rep
}

// checkDoctor runs `layerbridge doctor` on e for ref and checks that it
// passes, naming the engine and its image store as wanted.
func checkDoctor(t *testing.T, e *daemon, c clairs, ref, reachable, storage string, image ...string) {
	t.Helper()
	r := layerbridge(t, withTimeout(t, 2*time.Minute), nil, "doctor", "--format", "json", "--docker-host", e.host,
		"--clair", c.v4[recordedFeed].Clair.URL, "--cache-dir", t.TempDir(), ref)
	if r.code != 0 {
		t.Errorf("exit %d, want 0 on a working setup\n%s", r.code, r.stdout)
	}
	results := decodeDoctor(t, r)
	expectCheck(t, results, "docker.reachable", "passed", reachable, "answered at "+e.host)
	expectCheck(t, results, "docker.storage", "passed", storage)
	expectCheck(t, results, "docker.image", "passed", image...)
	expectCheck(t, results, "reachability.fetch", "passed", "indexed the canary layer")
	t.Logf("RESULT engine=%q doctor: %s; %s; %s", e.name, results["docker.reachable"].Evidence, results["docker.storage"].Evidence, results["docker.image"].Evidence)
}

// checkInspect runs `layerbridge inspect` of ref on e twice: the first
// exports and lists layer, the second is a cache hit.
func checkInspect(t *testing.T, e *daemon, ref, layer string) {
	t.Helper()
	cache := t.TempDir()
	r := layerbridge(t, withTimeout(t, time.Minute), nil, "inspect", "--docker-host", e.host, "--cache-dir", cache, ref)
	if r.code != 0 || !strings.Contains(r.stdout, layer) || !strings.Contains(r.stdout, "daemon (exported)") {
		t.Errorf("inspect: exit %d, want 0 listing layer %s, exported:\n%s", r.code, layer, r.stdout)
	}
	r = layerbridge(t, withTimeout(t, time.Minute), nil, "inspect", "--docker-host", e.host, "--cache-dir", cache, ref)
	if r.code != 0 || !strings.Contains(r.stdout, "cache hit, not exported again") {
		t.Errorf("second inspect: exit %d, want a cache hit:\n%s", r.code, r.stdout)
	}
}

// TestDocker29 runs the image kinds on Docker Engine 29 (containerd image
// store, BuildKit), then a multi-platform image, inspect and doctor.
func TestDocker29(t *testing.T) {
	t.Parallel()
	e := docker29Engine(t)
	docker20 := docker20Engine(t)
	c := startClairs(t)
	runEngineMatrix(t, e, docker20, c)

	t.Run("BuildKit, multi-platform", func(t *testing.T) {
		dir, perPlatform := multiPlatformContext(t)
		ref := buildWithBuildKit(t, e, dir, []string{"linux/amd64", "linux/arm64"})
		arm64V4, arm64V2 := without(demoV4, "busybox"), without(demoV2, "busybox")
		for _, tc := range []struct {
			platform string // --platform, "" for none
			scanned  string
			v4, v2   []harness.Finding
		}{
			{"", "linux/amd64", demoV4, demoV2}, // this machine's platform
			{"linux/amd64", "linux/amd64", demoV4, demoV2},
			{"linux/arm64", "linux/arm64", arm64V4, arm64V2},
		} {
			var extra []string
			if tc.platform != "" {
				extra = []string{"--platform", tc.platform}
			}
			same := buildClassic(t, docker20, perPlatform[tc.scanned])
			for api, want := range map[string][]harness.Finding{"v4": tc.v4, "v2": tc.v2} {
				rep := compareScans(t, c, projectFeed, api, want, e, ref, docker20, same, extra...)
				if rep.Image.Platform != tc.scanned {
					t.Errorf("--platform %q scanned %s, want %s", tc.platform, rep.Image.Platform, tc.scanned)
				}
			}
		}
		r := layerbridge(t, withTimeout(t, time.Minute), nil, "scan", "--docker-host", e.host, "--clair", c.v4[projectFeed].Clair.URL,
			"--cache-dir", t.TempDir(), "--platform", "linux/s390x", ref)
		if r.code != 1 || !strings.Contains(r.stderr, "linux/amd64") || !strings.Contains(r.stderr, "linux/arm64") {
			t.Errorf("--platform linux/s390x: exit %d, want 1 naming the platforms the image has", r.code)
		}
		checkDoctor(t, e, c, ref, "Docker Engine 29.8.1 (linux; containerd 2.4.2", "containerd image store (snapshotter overlayfs",
			"platform(s) linux/amd64, linux/arm64")
	})

	t.Run("inspect and doctor", func(t *testing.T) {
		ref := loadFixture(t, e.cli, "alpine-3.11-docker-save.tar.gz")
		checkInspect(t, e, ref, alpineLayerSum)
		checkDoctor(t, e, c, ref, "Docker Engine 29.8.1 (linux; containerd 2.4.2", "containerd image store (snapshotter overlayfs",
			"alpine:3.11 is sha256:", "linux/amd64")
	})
}

// TestPodman runs the image kinds Podman can make through its Docker API
// service, then inspect and doctor.
func TestPodman(t *testing.T) {
	t.Parallel()
	e := podmanEngine(t)
	docker20 := docker20Engine(t)
	c := startClairs(t)
	runEngineMatrix(t, e, docker20, c)

	t.Run("inspect and doctor", func(t *testing.T) {
		ref := loadFixture(t, e.cli, "alpine-3.11-docker-save.tar.gz")
		if ref != "localhost/alpine:3.11" {
			t.Errorf("podman loaded %q, want localhost/alpine:3.11 (podman qualifies the name)", ref)
		}
		checkInspect(t, e, ref, alpineLayerSum)
		checkDoctor(t, e, c, ref, "Podman Engine 4.3.1 (linux)", "Podman's containers/storage (driver vfs)",
			"localhost/alpine:3.11 is sha256:a187dde48cd2", "linux/amd64")
	})
}

// The alpine 3.11 fixture's config digest, and the digest of the manifest
// containerd (and Docker 29) make for it on import.
const (
	alpineConfig   = "sha256:a187dde48cd289ac374ad8539930628314bc581a481cdb41409c9289419ddb72"
	alpineManifest = "sha256:244bc8b74c5345321e0e99b8c5dd1afeeaf55a4aed4e2d424d3f4af395822e1e"
	// alpineSynthesizedManifest is the manifest layerbridge writes for it
	// when it is exported without one (graphdriver engines, docker save).
	alpineSynthesizedManifest = "sha256:a7b891c632c48dedd869f649facad1026abad6bd77dcdcc0eef09dcba4b5c225"
)

// TestContainerdImport: the harness's containerd of its own (for the
// containerd: source) takes an image archive into a namespace, with its
// name and content, and nothing into the others.
func TestContainerdImport(t *testing.T) {
	t.Parallel()
	c := containerd.Get(t)
	ctx := withTimeout(t, 2*time.Minute)
	ns := "layerbridge-test-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	archive, err := filepath.Abs(alpineFixture)
	if err != nil {
		t.Fatal(err)
	}
	names, err := c.ImportImage(ctx, ns, archive)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, []string{"docker.io/library/alpine:3.11"}) {
		t.Errorf("imported %q, want docker.io/library/alpine:3.11", names)
	}
	t.Cleanup(func() {
		if _, err := c.Ctr(context.Background(), "--namespace", ns, "images", "remove", "--sync", names[0]); err != nil {
			t.Error(err)
		}
	})
	content, err := c.Ctr(ctx, "--namespace", ns, "content", "list", "--quiet")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{alpineLayerSum, alpineConfig, alpineManifest} {
		if !slices.Contains(strings.Fields(content), want) {
			t.Errorf("namespace %s lacks blob %s; it has:\n%s", ns, want, content)
		}
	}
	if other, err := c.Ctr(ctx, "--namespace", "k8s.io", "images", "list", "--quiet"); err != nil || strings.TrimSpace(other) != "" {
		t.Errorf("namespace k8s.io holds %q (%v), want nothing", other, err)
	}
}
