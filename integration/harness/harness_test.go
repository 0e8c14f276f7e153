package harness

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"go.yaml.in/yaml/v3"
)

const (
	recordedFeed  = "../../testdata/secdb"
	projectFeed   = "../testdata/secdb"
	alpineFixture = "../../testdata/fixtures/alpine-3.11-docker-save.tar.gz"
)

func TestExpectedUpdaters(t *testing.T) {
	got, err := ExpectedUpdaters(recordedFeed)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for m := 3; m <= 11; m++ {
		want = append(want, "alpine-main-v3."+strconv.Itoa(m)+"-updater")
	}
	if !slices.Equal(got, want) {
		t.Errorf("shared feed: %v, want %v", got, want)
	}
	got, err = ExpectedUpdaters(projectFeed)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 10 || got[9] != "alpine-main-v3.12-updater" {
		t.Errorf("project feed: %v, want v3.3 to v3.12", got)
	}

	dir := t.TempDir()
	for _, f := range []string{"v3.3/main.json", "v3.4/main.json", "v3.4/community.json", "v3.6/main.json", "edge/main.json"} {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err = ExpectedUpdaters(dir)
	if err != nil {
		t.Fatal(err)
	}
	want = []string{"alpine-main-v3.3-updater", "alpine-main-v3.4-updater", "alpine-community-v3.4-updater", "alpine-main-edge-updater"}
	if !slices.Equal(got, want) {
		t.Errorf("gap at v3.5: %v, want %v (the walk stops at the first missing release)", got, want)
	}
	if _, err := ExpectedUpdaters(t.TempDir()); err == nil {
		t.Error("an empty feed gave no error")
	}
}

func TestPSKToken(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tok, err := TestPSK.Token(now)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q is not a JWS", tok)
	}
	key, _ := base64.StdEncoding.DecodeString(TestPSK.Key)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if base64.RawURLEncoding.EncodeToString(mac.Sum(nil)) != parts[2] {
		t.Error("signature is not HS256 over header.claims with the decoded key")
	}
	var claims map[string]any
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if err := json.Unmarshal(b, &claims); err != nil {
		t.Fatal(err)
	}
	if claims["iss"] != "layerbridge" || claims["exp"].(float64) != float64(now.Unix()+60) || claims["nbf"].(float64) != float64(now.Unix()-60) {
		t.Errorf("claims %v", claims)
	}
	if _, err := (PSK{Key: "not base64!", Issuer: "x"}).Token(now); err == nil {
		t.Error("a key that is not base64 was accepted")
	}
}

func TestWriteDirTar(t *testing.T) {
	root := t.TempDir()
	for name, content := range map[string]string{"etc/os-release": "ID=alpine\n", "a.txt": "a", "lib/apk/db/installed": "P:x\nV:1\n\n"} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var a, b bytes.Buffer
	if err := WriteDirTar(&a, root); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(filepath.Join(root, "a.txt"), time.Now(), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := WriteDirTar(&b, root); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("the same tree gave different bytes")
	}
	var names []string
	tr := tar.NewReader(&a)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if (h.Typeflag == tar.TypeDir && h.Mode != 0o755) || (h.Typeflag == tar.TypeReg && h.Mode != 0o644) || h.Uid != 0 || !h.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("%s: mode %o uid %d mtime %v", h.Name, h.Mode, h.Uid, h.ModTime)
		}
	}
	want := []string{"a.txt", "etc/", "etc/os-release", "lib/", "lib/apk/", "lib/apk/db/", "lib/apk/db/installed"}
	if !slices.Equal(names, want) {
		t.Errorf("entries %v, want %v", names, want)
	}
	// A file its owner may execute (a binary to COPY into an image) stays
	// executable, whatever its group and other bits.
	if err := os.WriteFile(filepath.Join(root, "tool"), []byte("#!/bin/sh\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	var c bytes.Buffer
	if err := WriteDirTar(&c, root); err != nil {
		t.Fatal(err)
	}
	for tr := tar.NewReader(&c); ; {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no tool entry: %v", err)
		}
		if h.Name == "tool" {
			if h.Mode != 0o755 {
				t.Errorf("tool: mode %o, want 755", h.Mode)
			}
			break
		}
	}
	if err := os.Symlink("a.txt", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	if err := WriteDirTar(io.Discard, root); err == nil {
		t.Error("a symlink was accepted")
	}
}

func TestExtractLegacyLayers(t *testing.T) {
	files, err := ExtractLegacyLayers(alpineFixture, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 {
		t.Fatalf("%d layers, want 1", len(files))
	}
	d, err := digestFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if d.String() != "sha256:beee9f30bc1f711043e78d4a2be0668955d4b761d587d6f60c2c8dc081efb203" {
		t.Errorf("digest %s", d)
	}
	if _, err := ExtractLegacyLayers(filepath.Join(recordedFeed, "last-update"), t.TempDir()); err == nil {
		t.Error("a file that is not a docker save was accepted")
	}
}

func TestLayerServer(t *testing.T) {
	file := filepath.Join(t.TempDir(), "layer.tar")
	content := bytes.Repeat([]byte("layer bytes "), 1000)
	if err := os.WriteFile(file, content, 0o644); err != nil {
		t.Fatal(err)
	}
	s := ServeLayersT(t, file)
	l := s.Layers()[0]
	if l.Digest.String() != "sha256:"+hexSHA256(content) || !strings.HasPrefix(l.URL, s.URL+"/sha256-") {
		t.Fatalf("layer %+v", l)
	}
	resp, err := http.Get(l.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/octet-stream" || resp.Header.Get("Content-Encoding") != "" || !bytes.Equal(body, content) {
		t.Errorf("GET: %d %v, %d bytes", resp.StatusCode, resp.Header, len(body))
	}
	req, _ := http.NewRequest(http.MethodGet, l.URL, nil)
	req.Header.Set("Range", "bytes=0-4")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || string(body) != "layer" {
		t.Errorf("range GET: %d %q", resp.StatusCode, body)
	}
	if resp, err := http.Head(l.URL); err != nil || resp.StatusCode != 200 {
		t.Errorf("HEAD: %v %v", resp, err)
	}
	if resp, err := http.Get(s.URL + "/sha256-" + strings.Repeat("0", 64)); err != nil || resp.StatusCode != 404 {
		t.Errorf("unknown layer: %v %v", resp, err)
	}
	if n := s.Gets(l.Digest); n != 2 {
		t.Errorf("Gets = %d, want 2 (HEAD not counted)", n)
	}
}

func hexSHA256(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func TestFeedServer(t *testing.T) {
	f, err := ServeFeed(t.Context(), recordedFeed)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for path, want := range map[string]int{"/last-update": 200, "/v3.3/": 200, "/v3.11/main.json": 200, "/v3.12/": 404, "/v3.11/community.json": 404} {
		resp, err := http.Head(f.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != want {
			t.Errorf("HEAD %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	if _, err := ServeFeed(t.Context(), t.TempDir()); err == nil {
		t.Error("a directory without last-update was served")
	}
}

func TestWriteClairConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	psk := TestPSK
	opts := ClairOptions{Binary: "clair", ConnString: "host=127.0.0.1 port=1 user=postgres dbname=clair sslmode=disable", FeedURL: "http://127.0.0.1:9/", PSK: &psk}
	for _, withPSK := range []bool{true, false} {
		if !withPSK {
			opts.PSK = nil
			opts.FeedURL = "http://127.0.0.1:9"
		}
		if err := writeClairConfig(path, opts, "127.0.0.1:6060", "127.0.0.1:8089", "/m.json"); err != nil {
			t.Fatal(err)
		}
		var c struct {
			HTTPListenAddr    string `yaml:"http_listen_addr"`
			IntrospectionAddr string `yaml:"introspection_addr"`
			Indexer           struct {
				Airgap  bool `yaml:"airgap"`
				Scanner struct {
					Repo    map[string]map[string]string `yaml:"repo"`
					Package map[string]map[string]string `yaml:"package"`
				} `yaml:"scanner"`
			} `yaml:"indexer"`
			Matcher struct {
				DisableUpdaters bool `yaml:"disable_updaters"`
			} `yaml:"matcher"`
			Updaters struct {
				Sets   []string                     `yaml:"sets"`
				Config map[string]map[string]string `yaml:"config"`
			} `yaml:"updaters"`
			Auth struct {
				PSK struct {
					Key string   `yaml:"key"`
					Iss []string `yaml:"iss"`
				} `yaml:"psk"`
			} `yaml:"auth"`
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(b, &c); err != nil {
			t.Fatal(err)
		}
		if c.HTTPListenAddr != "127.0.0.1:6060" || c.IntrospectionAddr != "127.0.0.1:8089" || !c.Indexer.Airgap || c.Matcher.DisableUpdaters {
			t.Errorf("config %s", b)
		}
		if c.Indexer.Scanner.Repo["rhel-repository-scanner"]["repo2cpe_mapping_file"] != "/m.json" ||
			c.Indexer.Scanner.Package["rhel_containerscanner"]["name2repos_mapping_file"] != "/m.json" {
			t.Errorf("mapping files not set: %s", b)
		}
		if !slices.Equal(c.Updaters.Sets, []string{"alpine"}) || c.Updaters.Config["alpine"]["url"] != "http://127.0.0.1:9/" {
			t.Errorf("updaters %+v", c.Updaters)
		}
		if withPSK && (c.Auth.PSK.Key != TestPSK.Key || !slices.Equal(c.Auth.PSK.Iss, []string{"layerbridge"})) {
			t.Errorf("psk %+v", c.Auth.PSK)
		}
		if !withPSK && strings.Contains(string(b), "auth") {
			t.Errorf("auth without a PSK: %s", b)
		}
	}
}

// alive reports whether pid exists and is not a zombie waiting for a
// reaper that may never come in a container.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

// waitGone polls until pid is gone or the deadline passes.
func waitGone(t *testing.T, pid int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still alive after %v", pid, d)
		}
		<-tick.C
	}
}

// startShell starts sh -c script as a process and returns it with the pid
// the script prints first (a child of the shell, in its group).
func startShell(t *testing.T, ctx context.Context, script string, grace time.Duration) (*process, int) {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p, err := startProcess(ctx, "sh", cmd, syscall.SIGINT, grace)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	line := make([]byte, 32)
	n, err := out.Read(line)
	if err != nil {
		t.Fatal(err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(string(line[:n])))
	if err != nil {
		t.Fatalf("script printed %q", line[:n])
	}
	return p, child
}

func TestProcessStopLeavesNoGroupMember(t *testing.T) {
	p, child := startShell(t, t.Context(), `sleep 300 & echo $!; wait`, 10*time.Second)
	if !alive(child) {
		t.Fatal("child not running")
	}
	p.stop()
	if exited, _ := p.exited(); !exited {
		t.Error("stop returned before the process exited")
	}
	waitGone(t, child, 5*time.Second)
}

func TestProcessKilledAfterGrace(t *testing.T) {
	start := time.Now()
	p, child := startShell(t, t.Context(), `trap "" INT; sh -c 'trap "" INT; sleep 300' & echo $!; wait`, 200*time.Millisecond)
	p.stop()
	waitGone(t, child, 5*time.Second)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stop took %v", d)
	}
}

func TestProcessStoppedWhenContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	p, child := startShell(t, ctx, `sleep 300 & echo $!; wait`, 10*time.Second)
	cancel()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("process still running 10s after its context ended")
	}
	waitGone(t, child, 5*time.Second)
}

// fakeBuilder answers ImageBuild with a canned JSON message stream and
// keeps the build context it was sent.
type fakeBuilder struct {
	stream  string
	context []string
}

func (f *fakeBuilder) ImageBuild(ctx context.Context, r io.Reader, opts client.ImageBuildOptions) (client.ImageBuildResult, error) {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return client.ImageBuildResult{}, err
		}
		f.context = append(f.context, h.Name)
	}
	return client.ImageBuildResult{Body: io.NopCloser(strings.NewReader(f.stream))}, nil
}

func TestBuildImage(t *testing.T) {
	ok := &fakeBuilder{stream: `{"stream":"Step 1/2 : FROM scratch\n"}` + "\n" + `{"aux":{"ID":"sha256:abc"}}` + "\n" + `{"stream":"Successfully built abc\n"}`}
	var progress bytes.Buffer
	id, err := BuildImage(t.Context(), ok, "../testdata/demo-image", "layerbridge-demo:test", &progress)
	if err != nil {
		t.Fatal(err)
	}
	if id != "sha256:abc" || !strings.Contains(progress.String(), "Step 1/2") {
		t.Errorf("id %q, progress %q", id, progress.String())
	}
	if !slices.Contains(ok.context, "Dockerfile") || !slices.Contains(ok.context, "rootfs/lib/apk/db/installed") {
		t.Errorf("build context %v", ok.context)
	}

	failing := &fakeBuilder{stream: `{"stream":"Step 1/2\n"}` + "\n" + `{"errorDetail":{"message":"COPY failed: no source files"},"error":"COPY failed: no source files"}`}
	if _, err := BuildImage(t.Context(), failing, "../testdata/demo-image", "x", nil); err == nil || !strings.Contains(err.Error(), "COPY failed") {
		t.Errorf("error %v, want the daemon's message", err)
	}
	if _, err := BuildImage(t.Context(), ok, t.TempDir(), "x", nil); err == nil {
		t.Error("a context without a Dockerfile was sent")
	}
}

func TestBuildClairOutsideTheModule(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/x\n\ngo 1.26\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := BuildClair(t.Context(), dir, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "inside the integration module") {
		t.Errorf("error %v", err)
	}
}

func TestBuildEngineOutsideTheModule(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/x\n\ngo 1.26\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := BuildContainerd(t.Context(), dir, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "inside the integration module") {
		t.Errorf("error %v", err)
	}
}

// A build for other inputs is removed only once unused for staleBuild:
// another checkout may still use it.
func TestPruneBuilds(t *testing.T) {
	dir := t.TempDir()
	mk := func(name string, age time.Duration) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, nil, 0o755); err != nil {
			t.Fatal(err)
		}
		when := time.Now().Add(-age)
		if err := os.Chtimes(p, when, when); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keep := mk("clair-v4.9.0-aaaa", 30*24*time.Hour)
	recent := mk("clair-v4.9.0-bbbb", time.Hour)
	stale := mk("clair-v4.9.0-cccc", staleBuild+time.Hour)
	other := mk("clair-static-v4.9.0-dddd", staleBuild+time.Hour)
	pruneBuilds(filepath.Join(dir, "clair-v*"), keep)
	for p, want := range map[string]bool{keep: true, recent: true, stale: false, other: true} {
		_, err := os.Stat(p)
		if got := err == nil; got != want {
			t.Errorf("%s kept: %v, want %v", filepath.Base(p), got, want)
		}
	}
}

func TestPostgresLifecycle(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pg, err := StartPostgres(ctx, nil)
	if errors.Is(err, ErrUnavailable) {
		Unavailable(t, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	pid := pg.proc.cmd.Process.Pid
	if conn, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(pg.Port)); err != nil {
		t.Fatalf("postgres not listening: %v", err)
	} else {
		conn.Close()
	}
	if fi, err := os.Stat(pg.dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("temp dir %v %v", fi, err)
	}
	cancel()
	select {
	case <-pg.proc.done:
	case <-time.After(30 * time.Second):
		t.Fatal("postgres still running 30s after its context ended")
	}
	waitGone(t, pid, 5*time.Second)
	if err := pg.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pg.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temp dir left behind: %v", err)
	}
}

// TestStackCloseRemovesEverything starts the whole harness, closes it, and
// checks nothing is left: no process, no listener, no directory.
func TestStackCloseRemovesEverything(t *testing.T) {
	s, err := Start(t.Context(), Options{FeedDir: projectFeed, ModuleDir: "."})
	if errors.Is(err, ErrUnavailable) {
		Unavailable(t, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("timings %+v", s.Timings)
	pids := []int{s.Postgres.proc.cmd.Process.Pid, s.Clair.proc.cmd.Process.Pid}
	dirs := []string{s.Postgres.dir, s.Clair.dir}
	addrs := []string{"127.0.0.1:" + strconv.Itoa(s.Postgres.Port), strings.TrimPrefix(s.Clair.URL, "http://"),
		strings.TrimPrefix(s.Clair.IntrospectionURL, "http://"), strings.TrimPrefix(s.Feed.URL, "http://"),
		strings.TrimPrefix(s.Clair.trap.url, "http://")}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("pid %d alive after Close", pid)
		}
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

// TestClairExternalRequestsAreRecorded points Clair's updater at a public
// host: the request must reach the trap proxy (refused, recorded) instead
// of the network, which is what makes an empty ExternalRequests meaningful.
func TestClairExternalRequestsAreRecorded(t *testing.T) {
	pg, err := StartPostgres(t.Context(), nil)
	if errors.Is(err, ErrUnavailable) {
		Unavailable(t, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Close() })
	b, err := BuildClair(t.Context(), ".", "")
	if err != nil {
		t.Fatal(err)
	}
	c, err := StartClair(t.Context(), ClairOptions{Binary: b.Path, ConnString: pg.ConnString(pg.Database), FeedURL: "https://secdb.example.invalid/"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	deadline := time.Now().Add(2 * time.Minute)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for len(c.ExternalRequests()) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no external request recorded; clair log:\n%s", c.LogTail(8192))
		}
		<-tick.C
	}
	if got := c.ExternalRequests(); got[0] != "CONNECT secdb.example.invalid:443" {
		t.Errorf("recorded %v", got)
	}
}

func TestFindingsV4(t *testing.T) {
	report := `{"manifest_hash":"sha256:aa","packages":{"1":{"id":"1","name":"musl","version":"1.1.24-r2"},"2":{"id":"2","name":"zlib","version":"1.2.11-r3"}},
		"vulnerabilities":{"10":{"id":"10","name":"CVE-2020-28928"},"11":{"id":"11","name":"CVE-2020-28928"}},
		"package_vulnerabilities":{"1":["10","11"],"2":[]}}`
	got, err := FindingsV4([]byte(report))
	if err != nil {
		t.Fatal(err)
	}
	if want := []Finding{{"musl", "1.1.24-r2", "CVE-2020-28928"}}; !slices.Equal(got, want) {
		t.Errorf("findings %v, want %v (duplicates merged)", got, want)
	}
	for _, bad := range []string{
		`{"packages":{},"vulnerabilities":{"10":{"name":"x"}},"package_vulnerabilities":{"1":["10"]}}`,
		`{"packages":{"1":{"name":"musl"}},"vulnerabilities":{},"package_vulnerabilities":{"1":["10"]}}`,
		`not json`,
	} {
		if _, err := FindingsV4([]byte(bad)); err == nil {
			t.Errorf("FindingsV4(%s) accepted", bad)
		}
	}
}
