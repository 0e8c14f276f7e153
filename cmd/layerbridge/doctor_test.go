package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/layerbridge/layerbridge/internal/fakeclair"
	"github.com/layerbridge/layerbridge/internal/fakeengine"
)

// TestDoctorJSON: the json format is a list of objects with exactly the
// keys check, status, evidence and fix; a run without failures exits 0 even
// with warnings (no daemon is needed to scan an archive).
func TestDoctorJSON(t *testing.T) {
	clair := httptest.NewServer(&fakeclair.V4{Samples: samples})
	defer clair.Close()
	dir := shortDir(t)
	e := testEnv(t, map[string]string{"DOCKER_HOST": "unix://" + filepath.Join(dir, "missing.sock")})
	code, stdout, stderr := runCLI(t, e, "doctor", "--format", "json", "--clair", clair.URL, "--listen", "127.0.0.1:0",
		"--cache-dir", filepath.Join(t.TempDir(), "cache"), alpineArchive)
	if code != 0 {
		t.Fatalf("exit %d, want 0\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	var results []map[string]string
	if err := json.Unmarshal([]byte(stdout), &results); err != nil {
		t.Fatalf("stdout is not a json list: %v\n%s", err, stdout)
	}
	status := map[string]string{}
	for _, r := range results {
		if len(r) != 4 || r["check"] == "" || r["status"] == "" {
			t.Errorf("result %v: want exactly check, status, evidence, fix", r)
		}
		if _, ok := r["fix"]; !ok {
			t.Errorf("result %v has no fix key", r)
		}
		status[r["check"]] = r["status"]
	}
	for check, want := range map[string]string{
		"docker.reachable":   "warning",
		"docker.image":       "passed",
		"clair.api":          "passed",
		"reachability.fetch": "passed",
	} {
		if status[check] != want {
			t.Errorf("%s: %s, want %s", check, status[check], want)
		}
	}
}

// TestDoctorChecklist: a failure prints its evidence and fix, and the run
// exits 1 naming the failed checks.
func TestDoctorChecklist(t *testing.T) {
	clair := httptest.NewServer(&fakeclair.V4{Samples: samples})
	defer clair.Close()
	e := testEnv(t, map[string]string{"DOCKER_HOST": "unix://" + filepath.Join(shortDir(t), "missing.sock")})
	code, stdout, stderr := runCLI(t, e, "doctor", "--clair", clair.URL, "--listen", "127.0.0.1:0", "--advertise", "http://127.0.0.1:1",
		"--cache-dir", filepath.Join(t.TempDir(), "cache"))
	if code != 1 {
		t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	for _, re := range []string{
		`(?m)^FAILED   reachability\.fetch +no request from Clair arrived at http://127\.0\.0\.1:1 \(the address was chosen because it was given with --advertise\); Clair said: .*connection refused`,
		`(?m)^ +fix: nothing listens on that address as Clair sees it; give an address Clair can reach: --advertise`,
		`(?m)^passed   clair\.api +v4 \(Clair 4\)`,
	} {
		if !regexp.MustCompile(re).MatchString(stdout) {
			t.Errorf("stdout does not match %s:\n%s", re, stdout)
		}
	}
	if !strings.Contains(stderr, "layerbridge: error: 2 check(s) failed: docker.reachable, reachability.fetch") {
		t.Errorf("stderr:\n%s", stderr)
	}
}

// TestScanDebugLogExplainsEveryDecision reads a scan's --log-level debug
// output: a daemon image (exported, then a cache hit) against Clair 4 and an
// archive against Clair 2 and against an unreachable advertised address.
func TestScanDebugLogExplainsEveryDecision(t *testing.T) {
	v4 := httptest.NewServer(&fakeclair.V4{Samples: samples})
	defer v4.Close()
	v2 := httptest.NewServer(&fakeclair.V2{Samples: samples})
	defer v2.Close()
	sock := serveFakeDaemon(t)
	e := testEnv(t, map[string]string{"DOCKER_HOST": "unix://" + sock})
	cache := filepath.Join(t.TempDir(), "cache")

	scanLog := func(wantCode int, args ...string) string {
		t.Helper()
		code, _, stderr := runCLI(t, e, append([]string{"scan", "--log-level", "debug", "--cache-dir", cache}, args...)...)
		if code != wantCode {
			t.Fatalf("exit %d, want %d\n%s", code, wantCode, stderr)
		}
		return stderr
	}
	has := func(log string, res ...string) {
		t.Helper()
		for _, re := range res {
			if !regexp.MustCompile(re).MatchString(log) {
				t.Errorf("the log has no line matching %s", re)
			}
		}
		if t.Failed() {
			t.Logf("log:\n%s", log)
		}
	}

	first := scanLog(0, "--clair", v4.URL, "alpine:3.11")
	has(first,
		// daemon and why
		`msg="docker daemon" host=unix://\S+docker.sock chosen_by=DOCKER_HOST`,
		`msg="docker daemon" .*api_version=1.41`,
		// image ID, platform, export
		`msg=inspected ref=alpine:3.11 id=sha256:a187dde48cd2\S+ platform=linux/amd64`,
		`msg=export ref=alpine:3.11 id=sha256:a187dde48cd2`,
		`msg="image loaded" .*cache_hit=false`,
		// clair api and every request
		`msg="clair api" url=http://127.0.0.1:\d+ api=v4 asked=auto psk=false`,
		`msg="clair request" method=GET url=http://127.0.0.1:\d+/indexer/api/v1/index_state status=200 duration=`,
		`msg="clair request" method=POST url=http://127.0.0.1:\d+/indexer/api/v1/index_report status=201 duration=`,
		`msg="clair request" method=GET url=http://127.0.0.1:\d+/matcher/api/v1/vulnerability_report/sha256:\w+ status=200 duration=`,
		// advertised url and why
		`msg="advertised address" url=http://127.0.0.1:\d+ listen=127.0.0.1:\d+ why="clair's url 127.0.0.1:\d+ is on loopback`,
		`msg="submitting manifest to clair" manifest=sha256:\w+ layers=1`,
		// every fetch by clair
		`msg="layer fetched" grant=alpine:3.11 digest=sha256:beee9f30\w+ client=127.0.0.1:\d+ method=GET status=200 bytes=5861888`,
		`msg="layer requests from clair" count=\d+ layers=1 advertised=http://127.0.0.1:\d+`,
		`msg="clair matched vulnerabilities" findings=17`,
	)
	has(first,
		// Clair asked first whether it knows the image
		`msg="clair request" method=GET url=http://127.0.0.1:\d+/indexer/api/v1/index_report/sha256:a187dde48cd2\w+ status=404`,
		`msg="clair has not indexed this image: exporting it" ref=alpine:3.11 manifest=sha256:a187dde48cd2`,
	)
	// The same image again: Clair has indexed it, so nothing is exported,
	// nor even looked up in the cache.
	again := scanLog(0, "--clair", v4.URL, "alpine:3.11")
	has(again,
		`msg="clair has indexed this image already: not exported" ref=alpine:3.11 manifest=sha256:a187dde48cd2`,
		`msg="clair matched vulnerabilities" findings=17`,
	)
	if strings.Contains(again, "msg=export") || strings.Contains(again, `msg="cache hit"`) {
		t.Errorf("a scan of an image Clair knows loaded it:\n%s", again)
	}
	// Another Clair, which never saw it: the image comes from the cache.
	other := httptest.NewServer(&fakeclair.V4{Samples: samples})
	defer other.Close()
	has(scanLog(0, "--clair", other.URL, "alpine:3.11"),
		`msg="cache hit" ref=alpine:3.11 id=sha256:a187dde48cd2`,
		`msg="image loaded" .*cache_hit=true`,
	)
	has(scanLog(0, "--clair", v2.URL, alpineArchive),
		`msg="read archive"`,
		`msg="clair api" url=\S+ api=v2`,
		`msg="posting layer to clair" layer=1 of=1 digest=sha256:beee9f30\w+ name=layerbridge-\w+ parent=""`,
		`msg="clair request" method=POST url=http://127.0.0.1:\d+/v1/layers status=201`,
		`msg="layer fetched" .*status=200 bytes=5861888`,
		`msg="clair reported vulnerabilities" findings=3 namespace=alpine:v3.11`,
	)
	// Clair's own message reaches the user.
	has(scanLog(1, "--clair", v4.URL, "--listen", "127.0.0.1:0", "--advertise", "http://127.0.0.1:1", alpineArchive),
		`msg="advertised address" url=http://127.0.0.1:1 listen=127.0.0.1:\d+ why="it was given with --advertise"`,
		`msg="clair request" method=POST url=\S+/indexer/api/v1/index_report status=500`,
		`msg="layer requests from clair" count=0`,
		`layerbridge: error: .*clair could not download the layers from http://127.0.0.1:1 .*failed to fetch layers: .*connection refused`,
	)
}

// shortDir returns a directory whose path fits a unix socket name.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "lbcmd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// serveFakeDaemon answers, on a unix socket, the Engine API calls a scan of
// alpine:3.11 makes, exporting the fixture's docker save archive, like a
// Docker 20.10 daemon on the graphdriver store.
func serveFakeDaemon(t *testing.T) (sock string) {
	t.Helper()
	f, err := os.Open("../../testdata/fixtures/alpine-3.11-docker-save.tar.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	archive, err := io.ReadAll(gz)
	if err != nil {
		t.Fatal(err)
	}
	const id = "sha256:a187dde48cd289ac374ad8539930628314bc581a481cdb41409c9289419ddb72"
	inspect := `{"Id":"` + id + `","RepoTags":["alpine:3.11"],"Os":"linux","Architecture":"amd64","Size":5611669,
		"RootFS":{"Type":"layers","Layers":["sha256:beee9f30bc1f711043e78d4a2be0668955d4b761d587d6f60c2c8dc081efb203"]}}`
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		switch {
		case p == "/_ping":
			w.Header().Set("Api-Version", "1.41")
			w.Header().Set("Ostype", "linux")
			io.WriteString(w, "OK")
		case strings.HasSuffix(p, "/info"):
			io.WriteString(w, `{"ServerVersion":"20.10.24","Driver":"overlay2","DriverStatus":[]}`)
		case strings.HasSuffix(p, "/containers/json"):
			io.WriteString(w, `[]`)
		case strings.HasSuffix(p, "/images/alpine:3.11/json"), strings.HasSuffix(p, "/images/"+id+"/json"):
			io.WriteString(w, inspect)
		case strings.HasSuffix(p, "/images/get") && r.URL.Query().Get("names") == id:
			w.Header().Set("Content-Type", "application/x-tar")
			io.Copy(w, bytes.NewReader(archive))
		default:
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"message":"not found"}`)
		}
	})
	return strings.TrimPrefix(fakeengine.Start(t, h).Host, "unix://")
}
