package harness

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
)

// FeedServer serves an Alpine SecDB directory over HTTP on loopback (or on
// the address given to ServeFeedOn), the
// way secdb.alpinelinux.org does for Clair v4's alpine updater: files as
// they are, directories (v3.3/, v3.4/, ...) answering 200.
type FeedServer struct {
	// URL is the base URL, without a trailing slash.
	URL string
	// Dir is the directory served.
	Dir string

	srv *loopbackServer
}

// ServeFeed serves dir until Close or the end of ctx. dir must hold
// last-update and the vX.Y/ release directories (see ExpectedUpdaters).
func ServeFeed(ctx context.Context, dir string) (*FeedServer, error) {
	return ServeFeedOn(ctx, dir, netip.AddrFrom4([4]byte{127, 0, 0, 1}))
}

// ServeFeedOn is ServeFeed on a free port of addr instead of loopback: the
// gateway of a Network, for a Clair in a container on it. addr must be an
// address of this host; every client that can reach it can read the feed.
func ServeFeedOn(ctx context.Context, dir string, addr netip.Addr) (*FeedServer, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("serve feed: %w", err)
	}
	if _, err := os.Stat(filepath.Join(abs, "last-update")); err != nil {
		return nil, fmt.Errorf("serve feed %s: not an Alpine SecDB directory: %w", abs, err)
	}
	srv, err := serveOn(ctx, addr, http.FileServer(http.Dir(abs)))
	if err != nil {
		return nil, fmt.Errorf("serve feed: %w", err)
	}
	return &FeedServer{URL: srv.url, Dir: abs, srv: srv}, nil
}

// Close stops serving.
func (f *FeedServer) Close() error { return f.srv.close() }

// ExpectedUpdaters names the updaters Clair v4.9's alpine updater set builds
// from the feed in dir: it walks v3.3/, v3.4/, ... until the first missing
// release (so every release from v3.3 up must exist), then v4.0/, ...; and
// for each release found, plus edge/, one updater per main.json and
// community.json present ("alpine-main-v3.11-updater"). A feed whose walk
// finds nothing is an error: Clair would load no vulnerabilities.
func ExpectedUpdaters(dir string) ([]string, error) {
	var releases []string
	for major := 3; ; major++ {
		minor := 0
		if major == 3 {
			minor = 3
		}
		found := false
		for ; ; minor++ {
			r := fmt.Sprintf("v%d.%d", major, minor)
			if fi, err := os.Stat(filepath.Join(dir, r)); err != nil || !fi.IsDir() {
				break
			}
			found = true
			releases = append(releases, r)
		}
		if !found {
			break
		}
	}
	var names []string
	for _, r := range append(releases, "edge") {
		for _, repo := range []string{"main", "community"} {
			if _, err := os.Stat(filepath.Join(dir, r, repo+".json")); err == nil {
				names = append(names, "alpine-"+repo+"-"+r+"-updater")
			}
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("feed %s: no vX.Y/main.json from v3.3 up: Clair's alpine updater would find nothing", dir)
	}
	return names, nil
}
