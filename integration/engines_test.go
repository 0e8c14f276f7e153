package integration_test

import (
	"os"
	"path/filepath"
	"slices"
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

// engine is a daemon that speaks the Docker Engine API.
type engine struct {
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

func docker20Engine(t *testing.T) *engine {
	t.Helper()
	cli := harness.DockerT(t)
	return &engine{name: "docker " + serverVersion(t, cli), host: cli.DaemonHost(), cli: cli}
}

func docker29Engine(t *testing.T) *engine {
	t.Helper()
	d := docker29.Get(t)
	cli, err := d.Client(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return &engine{name: "docker " + serverVersion(t, cli), host: d.Host, cli: cli, dockerd: d, loadsOCI: true, exportsZstd: true}
}

func podmanEngine(t *testing.T) *engine {
	t.Helper()
	p := podman.Get(t)
	cli, err := p.Client(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return &engine{name: "podman " + serverVersion(t, cli), host: p.Host, cli: cli, loadsOCI: true}
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
	make func(t *testing.T, e *engine) string
	// same makes the same content on Docker 20.10, or names an archive of
	// it, and returns that reference.
	same func(t *testing.T, docker20 *engine) string
	// buildKit: only an engine with BuildKit makes it; ociLoad: only one
	// that loads OCI archives.
	buildKit, ociLoad bool
	// zstd: the image has zstd layers (see engine.exportsZstd).
	zstd bool
}

func imageKinds(t *testing.T) []imageKind {
	mixed := alpineMixedContext(t)
	demo := demoContext(t)
	noOpenSSL := without(alpine311V4, "libcrypto1.1", "libssl1.1")
	load := func(fixture string) func(*testing.T, *engine) string {
		return func(t *testing.T, e *engine) string { return loadFixture(t, e.cli, fixture) }
	}
	archive := func(ref string) func(*testing.T, *engine) string {
		return func(*testing.T, *engine) string { return ref }
	}
	classic := func(dir string) func(*testing.T, *engine) string {
		return func(t *testing.T, e *engine) string {
			loadFixture(t, e.cli, "alpine-3.11-docker-save.tar.gz") // the base of FROM alpine:3.11
			return buildClassic(t, e, dir)
		}
	}
	buildKit := func(dir string) func(*testing.T, *engine) string {
		return func(t *testing.T, e *engine) string {
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
		{name: "load dive-test (oci, gzip)", feed: recordedFeed, v4: []harness.Finding{}, ociLoad: true,
			make: load("dive-test-oci-gzip-image.tar"), same: archive("oci-archive:" + fixture("dive-test-oci-gzip-image.tar"))},
		{name: "load dive-test (oci, zstd)", feed: recordedFeed, v4: []harness.Finding{}, ociLoad: true, zstd: true,
			make: load("dive-test-oci-zstd-image.tar"), same: archive("oci-archive:" + fixture("dive-test-oci-zstd-image.tar"))},
		{name: "load dive-test (oci, uncompressed)", feed: recordedFeed, v4: []harness.Finding{}, ociLoad: true,
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
func buildClassic(t *testing.T, e *engine, dir string) string {
	t.Helper()
	return harness.BuildImageT(t, e.cli, dir, "layerbridge-engine-test")
}

// buildWithBuildKit builds dir with `docker buildx build --load` on e's
// Docker 29 for the platforms given (none: the daemon's) under a unique
// tag, removed at cleanup.
func buildWithBuildKit(t *testing.T, e *engine, dir string, platforms []string) string {
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
func (c clairs) scanOn(t *testing.T, e *engine, feed, api, ref string, extra ...string) jsonReport {
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
func runEngineMatrix(t *testing.T, e *engine) {
	docker20 := docker20Engine(t)
	c := startClairs(t)
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
			apis := map[string][]harness.Finding{"v4": k.v4}
			if k.v2 != nil {
				apis["v2"] = k.v2
			}
			for _, api := range []string{"v4", "v2"} {
				want, ok := apis[api]
				if !ok {
					continue
				}
				rep := c.scanOn(t, e, k.feed, api, ref)
				got := rep.findings()
				checkFindings(t, e.name+" "+api, got, want, len(want), harness.Vulnerabilities(want))
				rep20 := c.scanOn(t, on20, k.feed, api, same)
				if got20 := rep20.findings(); !slices.Equal(got, got20) {
					t.Errorf("%s via clair %s: %d findings on %s, %d on %s (%s)", k.name, api, len(got), e.name, len(got20), docker20.name, same)
				}
				t.Logf("RESULT engine=%q kind=%q clair=%s findings=%d vulnerabilities=%d platform=%s warnings=%q",
					e.name, k.name, api, len(got), harness.Vulnerabilities(got), rep.Image.Platform, rep.Warnings)
			}
		})
	}
}

// TestDocker29 runs the image kinds on Docker Engine 29 (containerd image
// store, BuildKit), then a multi-platform image, inspect and doctor.
func TestDocker29(t *testing.T) {
	t.Parallel()
	e := docker29Engine(t)
	runEngineMatrix(t, e)
}

// TestPodman runs the image kinds Podman can make through its Docker API
// service, then inspect and doctor.
func TestPodman(t *testing.T) {
	t.Parallel()
	e := podmanEngine(t)
	runEngineMatrix(t, e)
}
