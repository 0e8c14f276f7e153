package doctor

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/engine"
	"github.com/layerbridge/layerbridge/internal/fakeclair"
	"github.com/layerbridge/layerbridge/internal/testwait"
	"github.com/layerbridge/layerbridge/scan"
)

const alpineInspect = `{"Id":"sha256:a187dde48cd289ac374ad8539930628314bc581a481cdb41409c9289419ddb72","RepoTags":["alpine:3.11"],
 "Os":"linux","Architecture":"amd64","Size":5611669,
 "RootFS":{"Type":"layers","Layers":["sha256:beee9f30bc1f711043e78d4a2be0668955d4b761d587d6f60c2c8dc081efb203"]}}`

// A multi-platform image on the containerd store: amd64 pulled, arm64 not.
const multiInspect = `{"Id":"sha256:1111111111111111111111111111111111111111111111111111111111111111","RepoTags":["multi:1"],
 "Os":"linux","Architecture":"amd64","Size":7340032,
 "Manifests":[
  {"ID":"sha256:2222222222222222222222222222222222222222222222222222222222222222","Available":true,"Kind":"image",
   "Descriptor":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222","size":500},
   "ImageData":{"Platform":{"os":"linux","architecture":"amd64"}}},
  {"ID":"sha256:3333333333333333333333333333333333333333333333333333333333333333","Available":false,"Kind":"image",
   "Descriptor":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:3333333333333333333333333333333333333333333333333333333333333333","size":500},
   "ImageData":{"Platform":{"os":"linux","architecture":"arm64","variant":"v8"}}}]}`

func healthyDaemon() *fakeDaemon {
	return &fakeDaemon{api: "1.51", driver: "overlay2", images: map[string]string{"alpine:3.11": alpineInspect}}
}

// baseConfig checks everything against a healthy daemon and the given
// Clair, serving the canary on loopback.
func baseConfig(t *testing.T, clair *url.URL) Config {
	return Config{
		Docker:   startDaemon(t, healthyDaemon()),
		Image:    "alpine:3.11",
		CacheDir: filepath.Join(t.TempDir(), "cache"),
		Clair:    clairAt(clair, ""),
		Listen:   "127.0.0.1:0",
		Wait:     20 * time.Second,
		TempDir:  t.TempDir(),
	}
}

func TestEveryCheckReportedOnceInOrder(t *testing.T) {
	results := Run(t.Context(), Config{})
	want := []string{
		CheckDockerEndpoint, CheckDockerReachable, CheckDockerPermission, CheckDockerAPI, CheckDockerStorage, CheckDockerImage,
		CheckContainerdReachable, CheckContainerdNamespace, CheckContainerdImage,
		CheckStoreWritable, CheckStoreSpace,
		CheckClairReachable, CheckClairAPI, CheckClairVersion, CheckClairAuth, CheckClairVulnDB,
		CheckReachAddress, CheckReachFetch, CheckReachNetworks,
	}
	var got []string
	for _, r := range results {
		got = append(got, r.Check)
		if r.Status != Skipped {
			t.Errorf("%s: %s with nothing configured, want skipped", r.Check, r.Status)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("checks = %v, want %v", got, want)
	}
}

func TestHealthySetupV4(t *testing.T) {
	fake := &fakeclair.V4{}
	cfg := baseConfig(t, startV4(t, fake))
	results := Run(t.Context(), cfg)
	if f := Failures(results); len(f) > 0 {
		dump(t, results)
		t.Fatalf("failures on a healthy setup: %+v", f)
	}
	expect(t, results, CheckDockerEndpoint, Passed, []string{"unix://", "chosen by the DOCKER_HOST variable"}, nil)
	expect(t, results, CheckDockerReachable, Passed, []string{"Docker Engine 28.5.1"}, nil)
	expect(t, results, CheckDockerPermission, Passed, []string{"you are uid", "owned by", "with mode srw"}, nil)
	expect(t, results, CheckDockerAPI, Passed, []string{"Engine API 1.51"}, nil)
	expect(t, results, CheckDockerStorage, Passed, []string{"graphdriver store (overlay2)"}, nil)
	expect(t, results, CheckDockerImage, Passed, []string{"alpine:3.11 is sha256:a187dde48cd2", "5.61MB", "linux/amd64"}, nil)
	expect(t, results, CheckStoreWritable, Passed, []string{"does not exist yet"}, nil)
	expect(t, results, CheckStoreSpace, Passed, []string{"free", "the image needs about 5.61MB"}, nil)
	expect(t, results, CheckClairAPI, Passed, []string{"v4 (Clair 4)", "a v2 client (POST /v1/layers) would get 404"}, nil)
	expect(t, results, CheckClairVersion, Passed, []string{"Clair 4.9 or later", "info.version 1.2.0"}, nil)
	expect(t, results, CheckClairAuth, Passed, []string{"no authentication"}, nil)
	expect(t, results, CheckClairVulnDB, Passed, nil, nil)
	expect(t, results, CheckReachAddress, Passed, []string{"http://127.0.0.1:", "on loopback"}, nil)
	expect(t, results, CheckReachFetch, Passed, []string{"Clair reached http://127.0.0.1:", "downloaded", "bytes (HTTP 200", "indexed the canary"}, nil)
	expect(t, results, CheckReachNetworks, Skipped, nil, nil)
	if fake.Downloads() != 1 {
		t.Errorf("clair downloaded %d layers, want the one canary", fake.Downloads())
	}
}

// The canary is new every run, so Clair really fetches it every time (a
// layer it has seen is never fetched again).
func TestCanaryIsNewEachRun(t *testing.T) {
	fake := &fakeclair.V4{}
	cfg := baseConfig(t, startV4(t, fake))
	cfg.Docker = nil
	for range 2 {
		expect(t, Run(t.Context(), cfg), CheckReachFetch, Passed, []string{"downloaded"}, nil)
	}
	if fake.Downloads() != 2 || fake.IndexPosts() != 2 {
		t.Errorf("%d downloads in %d index requests, want 2 of each", fake.Downloads(), fake.IndexPosts())
	}
}

func TestHealthySetupV2(t *testing.T) {
	fake, u := startV2(t)
	results := Run(t.Context(), baseConfig(t, u))
	if f := Failures(results); len(f) > 0 {
		dump(t, results)
		t.Fatalf("failures on a healthy setup: %+v", f)
	}
	expect(t, results, CheckClairAPI, Passed, []string{"v2 (Clair 2)"}, nil)
	expect(t, results, CheckClairVersion, Passed, []string{"Clair 2"}, nil)
	expect(t, results, CheckClairAuth, Skipped, nil, nil)
	expect(t, results, CheckReachFetch, Passed, []string{"Clair reached", "analysed the canary"}, nil)
	if posted, _ := fake.Posted(); len(posted) != 1 || !strings.HasPrefix(posted[0], "layerbridge-") {
		t.Errorf("clair 2 was posted %q, want one uniquely named canary layer", posted)
	}
}

func TestNoSocket(t *testing.T) {
	dir := shortTempDir(t)
	missing := filepath.Join(dir, "missing.sock")
	// A rootless daemon's socket exists elsewhere: doctor offers it.
	rootless := filepath.Join(dir, "rootless.sock")
	serveUnix(t, rootless, healthyDaemon())
	results := Run(t.Context(), Config{
		Docker:           daemonAt("unix://"+missing, "DOCKER_HOST"),
		SocketCandidates: []string{rootless},
		Image:            "alpine:3.11",
	})
	expect(t, results, CheckDockerEndpoint, Passed, []string{"unix://" + missing, "DOCKER_HOST"}, nil)
	expect(t, results, CheckDockerReachable, Failed, []string{"no socket at " + missing},
		[]string{"start the Docker daemon", "DOCKER_HOST", "a Docker socket exists at " + rootless + ": export DOCKER_HOST=unix://" + rootless})
	expect(t, results, CheckDockerPermission, Skipped, nil, nil)
	expect(t, results, CheckDockerImage, Skipped, nil, nil)
}

func TestStaleSocket(t *testing.T) {
	sock := filepath.Join(shortTempDir(t), "docker.sock")
	if err := os.WriteFile(sock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	results := Run(t.Context(), Config{Docker: daemonAt("unix://"+sock, "--docker-host")})
	expect(t, results, CheckDockerReachable, Failed, []string{sock, "not a socket"}, []string{"start the Docker daemon"})
}

// An archive needs no daemon: Docker problems are then warnings.
func TestArchiveNeedsNoDaemon(t *testing.T) {
	archive := "docker-archive:../testdata/fixtures/alpine-3.11-docker-save.tar.gz"
	results := Run(t.Context(), Config{
		Docker:   daemonAt("unix://"+filepath.Join(shortTempDir(t), "missing.sock"), "default"),
		Image:    archive,
		CacheDir: t.TempDir(),
	})
	if f := Failures(results); len(f) > 0 {
		t.Errorf("failures for an archive scan without a daemon: %+v", f)
	}
	expect(t, results, CheckDockerReachable, Warning, []string{"no socket at"}, nil)
	expect(t, results, CheckDockerImage, Passed, []string{archive, "read without Docker"}, nil)
	expect(t, results, CheckStoreWritable, Passed, []string{"created and removed a file"}, nil)
	expect(t, results, CheckStoreSpace, Passed, []string{"the image needs about"}, nil)
}

func TestEndpointNotChosen(t *testing.T) {
	results := Run(t.Context(), Config{Docker: func() (_ engine.Client, ep engine.Endpoint, _ error) {
		return nil, ep, errString(`choose the docker daemon: docker context "gone" not found`)
	}})
	expect(t, results, CheckDockerEndpoint, Failed, []string{`context "gone" not found`}, []string{"DOCKER_CONTEXT", "docker context ls"})
	expect(t, results, CheckDockerReachable, Skipped, nil, nil)
}

func TestImageNotInDaemon(t *testing.T) {
	cfg := Config{Docker: startDaemon(t, healthyDaemon()), Image: "myapp:latest"}
	expect(t, Run(t.Context(), cfg), CheckDockerImage, Failed, []string{`has no image "myapp:latest"`, "graphdriver"},
		[]string{"docker images", "docker pull myapp:latest", "DOCKER_CONTEXT"})
}

func TestImagePlatforms(t *testing.T) {
	d := &fakeDaemon{api: "1.51", driver: "overlayfs", containerd: true, images: map[string]string{"multi:1": multiInspect}}
	docker := startDaemon(t, d)
	results := Run(t.Context(), Config{Docker: docker, Image: "multi:1"})
	expect(t, results, CheckDockerStorage, Passed, []string{"containerd image store"}, nil)
	expect(t, results, CheckDockerImage, Passed, []string{"linux/amd64, linux/arm64 (not pulled)"}, nil)

	arm := ocispec.Platform{OS: "linux", Architecture: "arm64"}
	expect(t, Run(t.Context(), Config{Docker: docker, Image: "multi:1", Platform: &arm}), CheckDockerImage, Failed,
		[]string{"none is the requested linux/arm64"}, []string{"--platform", "docker pull --platform linux/arm64 multi:1"})
}

func TestDaemonTooOld(t *testing.T) {
	d := healthyDaemon()
	d.api = "1.24"
	results := Run(t.Context(), Config{Docker: startDaemon(t, d)})
	expect(t, results, CheckDockerAPI, Failed, []string{"1.24", "1.40"}, []string{"upgrade Docker Engine"})
}

func TestCacheDirIsAFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "cache")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	expect(t, Run(t.Context(), Config{CacheDir: file}), CheckStoreWritable, Failed, []string{"not a directory"}, []string{"--cache-dir"})
}

func TestClairDown(t *testing.T) {
	u := serve(t, http.NotFoundHandler())
	closed := *u
	// Nothing listens on port 1 of loopback.
	closed.Host = "127.0.0.1:1"
	results := Run(t.Context(), Config{Clair: clairAt(&closed, "")})
	expect(t, results, CheckClairReachable, Failed, []string{"cannot reach clair at http://127.0.0.1:1", "connection refused"},
		[]string{"start Clair", "--clair", "publish its port"})
	for _, c := range []string{CheckClairAPI, CheckReachAddress, CheckReachFetch} {
		expect(t, results, c, Skipped, nil, nil)
	}
}

func TestNotClair(t *testing.T) {
	results := Run(t.Context(), Config{Clair: clairAt(serve(t, http.NotFoundHandler()), "")})
	expect(t, results, CheckClairReachable, Passed, nil, nil)
	expect(t, results, CheckClairAPI, Failed, []string{"neither Clair 4", "nor Clair 2"}, []string{"--clair", "health port"})
}

// A v2 client against Clair 4 is the classic "receiving http error: 404".
func TestV2ClientAgainstClair4(t *testing.T) {
	fake := &fakeclair.V4{}
	cfg := baseConfig(t, startV4(t, fake))
	cfg.Docker, cfg.Clair.API = nil, "v2"
	results := Run(t.Context(), cfg)
	expect(t, results, CheckClairAPI, Failed, []string{"--clair-api v2 asked", "is Clair 4", "404 page not found", "receiving http error: 404"},
		[]string{"--clair-api v4", "auto"})
	// The rest is checked against the API Clair does speak.
	expect(t, results, CheckClairVersion, Passed, []string{"Clair 4.9"}, nil)
	expect(t, results, CheckReachFetch, Passed, []string{"downloaded"}, nil)
}

func TestV4ClientAgainstClair2(t *testing.T) {
	_, u := startV2(t)
	cfg := baseConfig(t, u)
	cfg.Docker, cfg.Clair.API = nil, "v4"
	results := Run(t.Context(), cfg)
	expect(t, results, CheckClairAPI, Failed, []string{"--clair-api v4 asked", "is Clair 2", "404"}, []string{"--clair-api v2"})
	expect(t, results, CheckReachFetch, Passed, []string{"analysed"}, nil)
}

func TestAuthRejected(t *testing.T) {
	u := startV4(t, &fakeclair.V4{PSK: testPSK})
	wrong := "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk=" // base64 of another key
	results := Run(t.Context(), Config{Clair: clairAt(u, "", scan.ClairOptions{PSK: wrong, PSKIssuer: "layerbridge"})})
	expect(t, results, CheckClairReachable, Passed, []string{"401"}, nil)
	expect(t, results, CheckClairAPI, Passed, []string{"v4"}, nil)
	expect(t, results, CheckClairAuth, Failed, []string{"401", `issuer "layerbridge"`, "not the one in its auth.psk"},
		[]string{"auth.psk.key", "--clair-psk", "--clair-psk-issuer", "auth.psk.iss"})
	expect(t, results, CheckReachFetch, Skipped, nil, nil)
}

func TestAuthMissing(t *testing.T) {
	u := startV4(t, &fakeclair.V4{PSK: testPSK})
	expect(t, Run(t.Context(), Config{Clair: clairAt(u, "")}), CheckClairAuth, Failed, []string{"without a token", "auth.psk"}, []string{"--clair-psk"})
}

func TestAuthAccepted(t *testing.T) {
	fake := &fakeclair.V4{PSK: testPSK}
	cfg := baseConfig(t, startV4(t, fake))
	cfg.Docker, cfg.Clair = nil, clairAt(cfg.Clair.URL, "", scan.ClairOptions{PSK: testPSKBase64, PSKIssuer: "layerbridge"})
	results := Run(t.Context(), cfg)
	expect(t, results, CheckClairAuth, Passed, []string{"accepted a token"}, nil)
	expect(t, results, CheckReachFetch, Passed, []string{"downloaded"}, nil)
}

func TestEmptyVulnerabilityDatabase(t *testing.T) {
	cfg := baseConfig(t, startV4(t, &fakeclair.V4{EmptyDB: true}))
	cfg.Docker = nil
	results := Run(t.Context(), cfg)
	expect(t, results, CheckClairVulnDB, Warning, []string{"no vulnerability updater has finished", "every image will look clean"},
		[]string{"updaters", "clairctl import-updaters"})
	if f := Failures(results); len(f) > 0 {
		t.Errorf("an empty database is a warning, not a failure: %+v", f)
	}
}

// The fake Clair really tries to download from the advertised address,
// where nothing listens.
func TestAdvertisedAddressUnreachable(t *testing.T) {
	fake := &fakeclair.V4{}
	cfg := baseConfig(t, startV4(t, fake))
	cfg.Docker = nil
	cfg.Advertise, _ = url.Parse("http://127.0.0.1:1")
	results := Run(t.Context(), cfg)
	expect(t, results, CheckReachAddress, Passed, []string{"http://127.0.0.1:1", "given with --advertise"}, nil)
	expect(t, results, CheckReachFetch, Failed,
		[]string{"no request from Clair arrived at http://127.0.0.1:1", "given with --advertise", "Clair said:", "failed to fetch layers", "connection refused", "/layers/<capability>/"},
		[]string{"nothing listens on that address as Clair sees it", "--advertise", "--listen", "Docker network", "publish"})
	if fake.Downloads() != 1 {
		t.Errorf("clair tried %d downloads, want 1", fake.Downloads())
	}
	if r := result(t, results, CheckReachFetch); strings.Contains(r.Evidence, "/layers/") && !strings.Contains(r.Evidence, "<capability>") {
		t.Errorf("the capability leaked into the evidence: %s", r.Evidence)
	}
}

func TestAdvertisedAddressUnreachableV2(t *testing.T) {
	_, u := startV2(t)
	cfg := baseConfig(t, u)
	cfg.Docker = nil
	cfg.Advertise, _ = url.Parse("http://127.0.0.1:1")
	expect(t, Run(t.Context(), cfg), CheckReachFetch, Failed,
		[]string{"no request from Clair arrived at http://127.0.0.1:1", "could not find layer", "Clair 2 says this for every download failure"},
		[]string{"--advertise"})
}

// A Clair whose connection to the advertised address hangs (a firewall
// dropping packets) never answers the index request.
func TestNoFetchWithinWait(t *testing.T) {
	inner := &fakeclair.V4{Samples: samples}
	hang := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" && r.URL.Path == "/indexer/api/v1/index_report" {
			io.Copy(io.Discard, r.Body)
			<-r.Context().Done()
			return
		}
		inner.ServeHTTP(w, r)
	})
	cfg := baseConfig(t, serve(t, hang))
	cfg.Docker, cfg.Wait = nil, 500*time.Millisecond
	expect(t, Run(t.Context(), cfg), CheckReachFetch, Failed,
		[]string{"no request from Clair arrived at http://127.0.0.1:", "within 500ms", "on loopback"}, []string{"--advertise"})
}

// A Clair that downloads the canary but cannot index it (an offline Clair
// whose rhel scanner cannot fetch its mapping file fails every index) has
// not proven anything: the check fails, quoting Clair's state and error.
func TestCanaryDownloadedButNotIndexed(t *testing.T) {
	const clairErr = "rhel: unable to create a mappingFile object"
	fake := &fakeclair.V4{IndexError: clairErr}
	cfg := baseConfig(t, startV4(t, fake))
	cfg.Docker = nil
	results := Run(t.Context(), cfg)
	expect(t, results, CheckReachFetch, Failed,
		[]string{"Clair reached http://127.0.0.1:", "downloaded", "bytes (HTTP 200", "could not index the canary layer",
			`its index report is in state IndexError with error "` + clairErr + `"`},
		[]string{"Clair's indexer fails", "Clair's log"})
	if fake.Downloads() != 1 {
		t.Errorf("clair downloaded %d layers, want the canary", fake.Downloads())
	}
	if len(Failures(results)) == 0 {
		t.Error("doctor would exit 0")
	}
}

func TestCanaryDownloadedButNotAnalysedV2(t *testing.T) {
	const clairErr = "could not extract: unexpected EOF"
	u := serve(t, &fakeclair.V2{Samples: samples, AnalysisError: clairErr})
	cfg := baseConfig(t, u)
	cfg.Docker = nil
	expect(t, Run(t.Context(), cfg), CheckReachFetch, Failed,
		[]string{"Clair reached http://127.0.0.1:", "downloaded", "could not analyse the canary layer",
			`POST /v1/layers answered 500 Internal Server Error with error "` + clairErr + `"`},
		[]string{"Clair's log"})
}

// A Clair that downloads the canary and then never finishes indexing it
// has not proven anything either.
func TestCanaryDownloadedIndexNotFinished(t *testing.T) {
	inner := &fakeclair.V4{Samples: samples}
	downloaded := make(chan error, 1)
	hang := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" && r.URL.Path == "/indexer/api/v1/index_report" {
			var m struct{ Layers []struct{ URI string } }
			json.NewDecoder(r.Body).Decode(&m)
			resp, err := http.Get(m.Layers[0].URI)
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			downloaded <- err
			<-r.Context().Done() // indexing, until doctor gives up
			return
		}
		inner.ServeHTTP(w, r)
	})
	cfg := baseConfig(t, serve(t, hang))
	cfg.Docker, cfg.Wait = nil, 500*time.Millisecond
	expect(t, Run(t.Context(), cfg), CheckReachFetch, Failed,
		[]string{"Clair reached http://127.0.0.1:", "downloaded", "did not finish indexing the canary layer within 500ms: Clair has no index report for it"},
		[]string{"its log says what it is doing", "--wait"})
	if err := testwait.Recv(t, downloaded, "the fake Clair's download"); err != nil {
		t.Errorf("the fake Clair's download: %v", err)
	}
}

func TestListenImpossible(t *testing.T) {
	cfg := baseConfig(t, startV4(t, &fakeclair.V4{}))
	cfg.Docker, cfg.Listen = nil, "192.0.2.1:0" // TEST-NET-1: not an address of this host
	results := Run(t.Context(), cfg)
	expect(t, results, CheckReachAddress, Failed, []string{"no address to serve layers on", "192.0.2.1"}, []string{"--listen", "--advertise"})
	expect(t, results, CheckReachFetch, Skipped, nil, nil)
}

// Clair in a container that publishes its port on this host: doctor lists
// its networks and where layerbridge sits.
func TestClairContainerNetworks(t *testing.T) {
	u := startV4(t, &fakeclair.V4{})
	p, err := strconv.ParseUint(u.Port(), 10, 16)
	if err != nil {
		t.Fatal(err)
	}
	clair := engine.Container{
		ID:    "0123456789abcdef0123456789abcdef",
		Names: []string{"clair"},
		Networks: []engine.ContainerNetwork{
			{Name: "clair_default", IP: mustAddr("172.20.0.3"), Gateway: mustAddr("172.20.0.1")},
		},
		Ports: []engine.PublishedPort{{HostPort: uint16(p), ContainerPort: 6060}},
	}
	cfg := baseConfig(t, u)
	cfg.Docker = nil
	cfg.Containers = staticContainers{clair}
	// Detection would advertise the network's gateway, which is not an
	// address of this test machine: advertise loopback instead.
	cfg.Advertise, _ = url.Parse("http://127.0.0.1:" + freePort(t))
	cfg.Listen = cfg.Advertise.Host
	results := Run(t.Context(), cfg)
	expect(t, results, CheckReachNetworks, Passed,
		[]string{"clair's container clair is on network(s) clair_default (172.20.0.3, gateway 172.20.0.1)", "layerbridge runs on the host", "gateway 172.20.0.1", "--advertise http://127.0.0.1:"}, nil)
	expect(t, results, CheckReachFetch, Passed, []string{"downloaded"}, nil)

	// The tutorial mistake: advertising loopback to a Clair in a container.
	cfg.Advertise, _ = url.Parse("http://127.0.0.1:1")
	cfg.Listen = "127.0.0.1:0"
	expect(t, Run(t.Context(), cfg), CheckReachFetch, Failed, []string{"no request from Clair arrived at http://127.0.0.1:1"},
		[]string{"127.0.0.1 is loopback: if Clair runs in a container or on another host, it is Clair's own loopback", "--advertise"})
}

type errString string

func (e errString) Error() string { return string(e) }

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// freePort returns a loopback port nothing listens on (now).
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// layerbridge in a container on another network than Clair's container:
// Clair cannot reach it, and doctor says which networks each is on.
func TestLayerbridgeOnAnotherNetwork(t *testing.T) {
	self := localAddr(t)
	u := startV4(t, &fakeclair.V4{})
	p, err := strconv.ParseUint(u.Port(), 10, 16)
	if err != nil {
		t.Fatal(err)
	}
	containers := staticContainers{
		{ID: "0123456789abcdef0123456789abcdef", Names: []string{"clair"},
			Networks: []engine.ContainerNetwork{{Name: "clair_default", IP: mustAddr("172.20.0.3"), Gateway: mustAddr("172.20.0.1")}},
			Ports:    []engine.PublishedPort{{HostPort: uint16(p), ContainerPort: 6060}}},
		{ID: "fedcba9876543210fedcba9876543210", Names: []string{"ci-runner"},
			Networks: []engine.ContainerNetwork{{Name: "ci_net", IP: self, Gateway: mustAddr("172.30.0.1")}}},
	}
	cfg := baseConfig(t, u)
	cfg.Docker, cfg.Listen, cfg.Containers = nil, "", containers
	results := Run(t.Context(), cfg)
	expect(t, results, CheckReachAddress, Failed, []string{"shares no docker network", "ci-runner (networks ci_net)", "clair (networks clair_default)"},
		[]string{"docker network connect"})
	expect(t, results, CheckReachFetch, Skipped, nil, nil)
	expect(t, results, CheckReachNetworks, Failed, []string{"another network"}, []string{"docker network connect"})
}

// localAddr returns a non-loopback address of this machine, which a fake
// container can claim as its own to stand for layerbridge's container.
func localAddr(t *testing.T) netip.Addr {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && !p.Addr().IsLoopback() && p.Addr().Is4() {
			return p.Addr()
		}
	}
	t.Skip("no non-loopback address on this machine")
	return netip.Addr{}
}
