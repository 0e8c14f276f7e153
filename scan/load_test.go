package scan

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.uber.org/goleak"

	"github.com/layerbridge/layerbridge/bridge"
	"github.com/layerbridge/layerbridge/dockersave"
	"github.com/layerbridge/layerbridge/internal/fakeclair"
	"github.com/layerbridge/layerbridge/internal/testwait"
	"github.com/layerbridge/layerbridge/store"
)

// layerOf is an uncompressed layer holding one file of random bytes.
func layerOf(t *testing.T, name string, size int) []byte {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(size)})
	tw.Write(data)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// dockerArchive writes a docker save archive of one linux/amd64 image made
// of layers (oldest first) and returns its reference.
func dockerArchive(t *testing.T, tag string, layers ...[]byte) string {
	t.Helper()
	var diffIDs, paths []string
	type entry struct {
		name string
		body []byte
	}
	var entries []entry
	for i, l := range layers {
		diffIDs = append(diffIDs, `"`+digest.FromBytes(l).String()+`"`)
		p := digest.FromString(fmt.Sprint(tag, i)).Encoded() + "/layer.tar"
		paths = append(paths, `"`+p+`"`)
		entries = append(entries, entry{p, l})
	}
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[` + join(diffIDs) + `]}}`)
	cfgName := digest.FromBytes(cfg).Encoded() + ".json"
	entries = append(entries, entry{cfgName, cfg},
		entry{"manifest.json", []byte(`[{"Config":"` + cfgName + `","RepoTags":["` + tag + `"],"Layers":[` + join(paths) + `]}]`)})
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for _, e := range entries {
		tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body))})
		tw.Write(e.body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "image.tar")
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return "docker-archive:" + path
}

func join(s []string) string {
	var b bytes.Buffer
	for i, x := range s {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(x)
	}
	return b.String()
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count file descriptors: %v", err)
	}
	return len(fds)
}

// TestLoadDownloadsScansAndEviction puts the layer server, the store and
// the scan under load at once, with -race: 200 layer downloads started
// together, scans of several images (sharing a base layer) by concurrent
// workers on the same layer server, and the store pruned to zero in a loop
// all the while. No operation may fail, every body must be the blob its URL
// names, and once everything is closed no goroutine and no file
// descriptor is left over (both measured, with a settle loop bounded by a
// deadline for what closes asynchronously).
func TestLoadDownloadsScansAndEviction(t *testing.T) {
	const (
		images     = 6
		workers    = 4
		rounds     = 2 // scans of every image per worker
		downloads  = 200
		layerBytes = 48 << 10
	)
	base := layerOf(t, "base.bin", layerBytes)
	var refs []string
	for i := range images {
		refs = append(refs, dockerArchive(t, fmt.Sprintf("load:%d", i), base, layerOf(t, "app.bin", layerBytes+i)))
	}

	ignore := goleak.IgnoreCurrent()
	fdsBefore := openFDs(t)

	cache, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	loader := dockersave.NewLoader(cache)
	srv := bridge.New()
	layerServer := httptest.NewServer(srv)
	baseURL, _ := url.Parse(layerServer.URL)
	clair := httptest.NewServer(&fakeclair.V4{Samples: samples})
	clairURL, _ := url.Parse(clair.URL)
	// One Clair value for every scan, as the sidecar has.
	conn := NewClair(clairURL, APIAuto, ClairOptions{Backoff: noWait})
	ctx := testwait.Context(t)

	// Pruning to zero, all the time.
	stop := make(chan struct{})
	var prunes, evictions atomic.Int64
	var pruner sync.WaitGroup
	pruner.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			res, err := cache.Prune(ctx, 0)
			if err != nil {
				t.Errorf("prune: %v", err)
				return
			}
			prunes.Add(1)
			evictions.Add(int64(len(res.Evicted)))
		}
	})

	// The downloads: every layer of every image, pinned and registered
	// under one grant, fetched by 200 clients at once.
	var pins []func()
	var descs []ocispec.Descriptor
	for _, ref := range refs[:3] {
		img, release, err := loader.Load(ctx, ref, nil)
		if err != nil {
			t.Fatal(err)
		}
		pins = append(pins, release)
		descs = append(descs, img.Manifest.Layers...)
	}
	grant, err := srv.Register(baseURL, "load", cache, descs)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: downloads}}
	start := make(chan struct{})
	var wg sync.WaitGroup
	var fetched atomic.Int64
	for i := range downloads {
		d := descs[i%len(descs)]
		wg.Go(func() {
			<-start
			u, err := grant.URL(d.Digest)
			if err != nil {
				t.Error(err)
				return
			}
			req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
			resp, err := client.Do(req)
			if err != nil {
				t.Errorf("download %d: %v", i, err)
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != 200 || digest.FromBytes(body) != d.Digest || int64(len(body)) != d.Size {
				t.Errorf("download %d of %s: status %d, %d bytes hashing to %s (%v)", i, d.Digest, resp.StatusCode, len(body), digest.FromBytes(body), err)
				return
			}
			fetched.Add(1)
		})
	}

	// The scans: each worker scans every image in turn, twice.
	var scans atomic.Int64
	for w := range workers {
		wg.Go(func() {
			<-start
			for i := range images * rounds {
				ref := refs[(w+i)%images]
				res, err := Run(ctx, Config{
					Image: ref, Loader: loader, Clair: conn,
					Server: srv, Base: baseURL,
				})
				if err != nil {
					t.Errorf("worker %d scan %s: %v", w, ref, err)
					return
				}
				for _, f := range res.Fetches {
					if f.Status != 200 || f.Err != nil {
						t.Errorf("worker %d scan %s: clair's fetch %+v", w, ref, f)
					}
				}
				scans.Add(1)
			}
		})
	}
	close(start)
	testwait.Wait(t, &wg, "the downloads and scans")
	close(stop)
	testwait.Wait(t, &pruner, "the pruner")
	t.Logf("%d downloads, %d scans, %d prunes evicting %d images", fetched.Load(), scans.Load(), prunes.Load(), evictions.Load())
	if fetched.Load() != downloads || scans.Load() != workers*images*rounds {
		t.Fatalf("%d of %d downloads and %d of %d scans succeeded", fetched.Load(), downloads, scans.Load(), workers*images*rounds)
	}
	if evictions.Load() == 0 {
		t.Error("no image was evicted while the scans ran")
	}

	// Everything released, a last prune empties the store.
	if _, err := grant.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for _, release := range pins {
		release()
	}
	if res, err := cache.Prune(ctx, 0); err != nil || res.After != 0 {
		t.Fatalf("final prune: %d bytes left, %v", res.After, err)
	}

	client.CloseIdleConnections()
	layerServer.Close()
	clair.Close()
	// fakeclair and the Clair clients use the default transport.
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	cache.Close()

	deadline := time.Now().Add(10 * time.Second)
	for n := openFDs(t); n != fdsBefore; n = openFDs(t) {
		if time.Now().After(deadline) {
			t.Fatalf("%d file descriptors open after the load, %d before", n, fdsBefore)
		}
		time.Sleep(10 * time.Millisecond)
	}
	goleak.VerifyNone(t, ignore)
}
