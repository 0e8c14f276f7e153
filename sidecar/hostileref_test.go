package sidecar_test

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/layerbridge/layerbridge/dockersave"
	"github.com/layerbridge/layerbridge/engine"
	"github.com/layerbridge/layerbridge/internal/fakeengine"
	"github.com/layerbridge/layerbridge/sidecar"
)

// TestHostileImagesReachNoEngine: through the API, with the token, an image
// name outside the reference grammar is answered 400 naming the rule it
// breaks, and the Docker daemon (a fake Engine API recording every request,
// reached by the real loader and client) gets no request at all. A valid
// name reaches it as an inspect of that name.
func TestHostileImagesReachNoEngine(t *testing.T) {
	eng := fakeengine.Start(t, nil)
	useEngine := func(e *env) {
		ep := engine.Endpoint{Host: eng.Host, Source: "--docker-host"}
		e.cfg.Loader = dockersave.NewLoader(e.store, dockersave.WithEngineFunc(func() (engine.Client, engine.Endpoint, error) {
			c, err := engine.NewClient(ep)
			return c, ep, err
		}))
	}
	e := newEnv(t, withToken(t), useEngine)
	tests := []struct{ image, rule string }{
		{"..", `path component \"..\"`},
		{"../images", `path component \"..\"`},
		{"../distribution/127.0.0.1:1/x", `path component \"..\"`},
		{"docker-daemon:../images", `path component \"..\"`},
		{"%2e%2e", `character '%' at byte 0 is not allowed`},
		{"/", "empty path component"},
		{"?", `character '?' at byte 0 is not allowed`},
		{"alpine?all=1", `character '?' at byte 6 is not allowed`},
		{"#", `character '#' at byte 0 is not allowed`},
		{"alpine\x00", `character '\\x00' at byte 6 is not allowed`},
		{strings.Repeat("a", 8<<10), "it is 8192 bytes long; a daemon reference is at most 1024"},
		{"Alpine", "has capitals"},
	}
	for _, tt := range tests {
		body, err := json.Marshal(sidecar.Request{Image: tt.image})
		if err != nil {
			t.Fatal(err)
		}
		resp, got := e.do(t, "POST", "/api/v1/scans", string(body))
		if resp.StatusCode != 400 || !bytes.Contains(got, []byte("invalid image reference")) || !bytes.Contains(got, []byte(tt.rule)) {
			t.Errorf("POST %.40q: %d %.300s; want 400 naming the rule %q", tt.image, resp.StatusCode, got, tt.rule)
		}
	}
	if got := eng.Requests(); len(got) != 0 {
		t.Fatalf("refused requests reached the engine: %q", got)
	}

	st := e.wait(t, e.post(t, "docker-daemon:nosuch:1").ID)
	if st.State != sidecar.StateFailed || !strings.Contains(st.Error, "no such image") {
		t.Errorf("scan of an image the daemon lacks: %s %q", st.State, st.Error)
	}
	if got, want := eng.Requests(), []string{"HEAD /_ping", "GET /v1.41/images/nosuch:1/json"}; !slices.Equal(got, want) {
		t.Errorf("engine requests %q, want %q", got, want)
	}
}
