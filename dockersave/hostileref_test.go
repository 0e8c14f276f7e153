package dockersave

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/layerbridge/layerbridge/engine"
	"github.com/layerbridge/layerbridge/imageref"
	"github.com/layerbridge/layerbridge/internal/fakeengine"
)

// hostileRefs are daemon references that, joined into an Engine API path by
// the Docker client (which cleans dot segments), would reach another
// endpoint or another host: "../images" became GET /v1.41/images/json, and
// "../distribution/HOST:PORT/x" made dockerd connect to HOST.
var hostileRefs = []string{
	"..",
	"../images",
	"docker-daemon:../images",
	"../distribution/127.0.0.1:1/x",
	"alpine/../../containers/json",
	"%2e%2e",
	"%2e%2e/images",
	"/",
	"/images/json",
	"?",
	"alpine?all=1",
	"#",
	"alpine#frag",
	"alpine\\..\\images",
	"alpine\x00",
	strings.Repeat("a", 4<<10),
	strings.Repeat("a/", 2<<10) + "a",
}

// TestHostileReferencesReachNoEngine: a reference outside the grammar is
// refused before the engine is even opened, with the real Docker client
// against a fake Engine API that records every request; a valid one makes
// exactly the requests of a load.
func TestHostileReferencesReachNoEngine(t *testing.T) {
	f := newFakeEngine(t)
	eng := fakeengine.Start(t, fakeDaemonHandler("1.41", f))
	ep := engine.Endpoint{Host: eng.Host, Source: "--docker-host"}
	opened := 0
	l := NewLoader(openTestStore(t), WithEngineFunc(func() (engine.Client, engine.Endpoint, error) {
		opened++
		c, err := engine.NewClient(ep)
		if err == nil {
			t.Cleanup(func() { c.Close() })
		}
		return c, ep, err
	}))
	for _, ref := range hostileRefs {
		_, err := l.loadReleased(t.Context(), ref, nil)
		var re *imageref.Error
		if !errors.As(err, &re) {
			t.Errorf("Load(%.40q) = %v, want an *imageref.Error", ref, err)
		}
	}
	if got := eng.Requests(); len(got) != 0 || opened != 0 {
		t.Fatalf("hostile references reached the engine (opened %d times): %q", opened, got)
	}

	if _, err := l.loadReleased(t.Context(), "app:1", nil); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"HEAD /_ping",
		"GET /v1.41/images/app:1/json",
		"GET /v1.41/images/get?names=" + strings.Replace(f.inspect.ID, ":", "%3A", 1),
	}
	if got := eng.Requests(); !slices.Equal(got, want) {
		t.Errorf("requests of a load:\n got %q\nwant %q", got, want)
	}
}
