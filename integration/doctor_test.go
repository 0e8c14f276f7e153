package integration_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/layerbridge/layerbridge/integration/harness"
)

// doctorResult is one entry of `layerbridge doctor --format json`.
type doctorResult struct {
	Check    string `json:"check"`
	Status   string `json:"status"`
	Evidence string `json:"evidence"`
	Fix      string `json:"fix"`
}

func decodeDoctor(t *testing.T, r run) map[string]doctorResult {
	t.Helper()
	var list []doctorResult
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		t.Fatalf("doctor json: %v\n%s", err, r.stdout)
	}
	out := map[string]doctorResult{}
	for _, d := range list {
		out[d.Check] = d
	}
	return out
}

func expectCheck(t *testing.T, results map[string]doctorResult, check, status string, evidence ...string) {
	t.Helper()
	r, ok := results[check]
	if !ok {
		t.Errorf("no result for %s", check)
		return
	}
	if r.Status != status {
		t.Errorf("%s: %s, want %s (%s; fix: %s)", check, r.Status, status, r.Evidence, r.Fix)
	}
	for _, e := range evidence {
		if !strings.Contains(r.Evidence, e) {
			t.Errorf("%s: evidence %q lacks %q", check, r.Evidence, e)
		}
	}
}

// TestDoctorWithRealDockerAndClair runs `layerbridge doctor` against the
// real Docker daemon and real Clair 4.9: it tells Clair's version from its
// OpenAPI document, and real Clair downloads and indexes the canary layer;
// then, advertised on a closed port, the canary is never fetched and doctor
// quotes Clair's own error.
func TestDoctorWithRealDockerAndClair(t *testing.T) {
	t.Parallel()
	stack := harness.StartT(t, harness.Options{FeedDir: recordedFeed})
	docker := harness.DockerT(t)
	ref := loadFixture(t, docker, "alpine-3.11-docker-save.tar.gz")
	cache := t.TempDir()

	r := layerbridge(t, withTimeout(t, 2*time.Minute), nil,
		"doctor", "--format", "json", "--clair", stack.Clair.URL, "--cache-dir", cache, ref)
	if r.code != 0 {
		t.Errorf("exit %d, want 0 on a working setup\n%s", r.code, r.stdout)
	}
	results := decodeDoctor(t, r)
	expectCheck(t, results, "docker.reachable", "passed", "Docker Engine")
	expectCheck(t, results, "docker.permission", "passed", "docker.sock")
	expectCheck(t, results, "docker.image", "passed", "alpine:3.11 is sha256:", "linux/amd64")
	expectCheck(t, results, "store.space", "passed", "the image needs about")
	expectCheck(t, results, "clair.api", "passed", "v4 (Clair 4)")
	expectCheck(t, results, "clair.version", "passed", "Clair 4.9 or later", "info.version 1.2.0")
	expectCheck(t, results, "clair.vulndb", "passed")
	expectCheck(t, results, "reachability.fetch", "passed", "Clair reached http://127.0.0.1:", "indexed the canary layer")

	r = layerbridge(t, withTimeout(t, 2*time.Minute), nil,
		"doctor", "--format", "json", "--clair", stack.Clair.URL, "--cache-dir", cache,
		"--listen", "127.0.0.1:0", "--advertise", "http://127.0.0.1:1")
	if r.code != 1 {
		t.Errorf("exit %d, want 1 when clair cannot reach the advertised address", r.code)
	}
	expectCheck(t, decodeDoctor(t, r), "reachability.fetch", "failed",
		"no request from Clair arrived at http://127.0.0.1:1", "Clair said:", "failed to fetch layers", "connection refused")
}
