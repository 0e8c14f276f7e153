package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/layerbridge/layerbridge/internal/fakeengine"
)

// TestHostileImagesReachNoEngine: an IMAGE outside the reference grammar is
// a usage error (exit 2) naming the rule it breaks, for every command that
// takes one, and the Docker daemon (a fake Engine API recording every
// request) gets no request at all.
func TestHostileImagesReachNoEngine(t *testing.T) {
	eng := fakeengine.Start(t, nil)
	e := testEnv(t, map[string]string{"DOCKER_HOST": eng.Host, "LAYERBRIDGE_CACHE_DIR": t.TempDir()})
	tests := []struct{ image, rule string }{
		{"..", `it has the path component ".."`},
		{"../images", `it has the path component ".."`},
		{"../distribution/127.0.0.1:1/x", `it has the path component ".."`},
		{"docker-daemon:../images", `it has the path component ".."`},
		{"%2e%2e", `character '%' at byte 0 is not allowed`},
		{"/", "it has an empty path component"},
		{"?", `character '?' at byte 0 is not allowed`},
		{"#", `character '#' at byte 0 is not allowed`},
		{strings.Repeat("a", 8<<10), "it is 8192 bytes long"},
	}
	for _, cmd := range [][]string{{"inspect"}, {"scan"}, {"scan", "--server", "http://127.0.0.1:1"}, {"doctor", "--clair", "http://127.0.0.1:1"}} {
		for _, tt := range tests {
			code, _, stderr := runCLI(t, e, append(slices.Clone(cmd), tt.image)...)
			if code != exitUsage || !strings.Contains(stderr, "layerbridge: error: invalid image reference ") ||
				!strings.Contains(stderr, tt.rule) || !strings.Contains(stderr, "layerbridge: hint: IMAGE is an image of the Docker daemon") {
				t.Errorf("%s %.40q: exit %d, stderr %.400q; want exit 2 naming the rule %q", cmd, tt.image, code, stderr, tt.rule)
			}
		}
	}
	if got := eng.Requests(); len(got) != 0 {
		t.Fatalf("refused images reached the engine: %q", got)
	}

	// A valid name does reach it, as an inspect of that name.
	code, _, stderr := runCLI(t, e, "inspect", "docker-daemon:nosuch:1")
	if code != exitError || !strings.Contains(stderr, "no such image") {
		t.Errorf("inspect of a missing image: exit %d, %s", code, stderr)
	}
	if got, want := eng.Requests(), []string{"HEAD /_ping", "GET /v1.41/images/nosuch:1/json"}; !slices.Equal(got, want) {
		t.Errorf("engine requests %q, want %q", got, want)
	}
}
