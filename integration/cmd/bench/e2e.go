package main

import (
	"context"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/bridge"
	"github.com/layerbridge/layerbridge/dockersave"
	"github.com/layerbridge/layerbridge/engine"
	"github.com/layerbridge/layerbridge/reach"
	"github.com/layerbridge/layerbridge/scan"
	"github.com/layerbridge/layerbridge/store"
)

// scanTiming is one end-to-end scan, split where scan.Run's Stage callback
// and its loader say.
type scanTiming struct {
	export   time.Duration // Loader.Load: docker save into the cache
	index    time.Duration // StageIndexing to StageMatching: Clair fetches the layers from the bridge and indexes them
	match    time.Duration // StageMatching to the report
	total    time.Duration // scan.Run, including Clair API detection and the layer server's start
	findings int
	fetched  int64 // layer bytes the bridge served to Clair
}

// timedLoader times the export inside a scan.
type timedLoader struct {
	l *dockersave.Loader
	d *time.Duration
}

func (t timedLoader) Load(ctx context.Context, ref string, p *ocispec.Platform, opts ...dockersave.LoadOption) (dockersave.Image, func(), error) {
	start := time.Now()
	img, release, err := t.l.Load(ctx, ref, p, opts...)
	*t.d = time.Since(start)
	return img, release, err
}

// runScan scans ref (already in the daemon) with a fresh, empty image cache
// in cacheDir against Clair at clairURL, as `layerbridge scan` does, and
// times its stages.
func runScan(ctx context.Context, eng engine.Client, ep engine.Endpoint, cacheDir string, clairURL *url.URL, ref string) (scanTiming, error) {
	cache, err := store.Open(cacheDir)
	if err != nil {
		return scanTiming{}, err
	}
	defer cache.Close()
	var t scanTiming
	var mu sync.Mutex
	var marks = map[scan.Stage]time.Time{}
	start := time.Now()
	// The layer server, as the scan command starts it.
	lep, err := reach.Listen(ctx, clairURL, reach.ListenOptions{})
	if err != nil {
		return scanTiming{}, err
	}
	layers := bridge.New()
	hs := bridge.NewHTTPServer(layers, nil, bridge.Limits{})
	served := make(chan error, 1)
	go func() { served <- hs.Serve(lep.Listener) }()
	res, err := scan.Run(ctx, scan.Config{
		Image:  ref,
		Loader: timedLoader{l: dockersave.NewLoader(cache, dockersave.WithEngine(eng, ep)), d: &t.export},
		Clair:  scan.NewClair(clairURL, scan.APIv4, scan.ClairOptions{}),
		Server: layers,
		Base:   lep.Base,
		Reason: lep.Reason,
		Stage: func(s scan.Stage) {
			mu.Lock()
			marks[s] = time.Now()
			mu.Unlock()
		},
	})
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	if hs.Shutdown(sctx) != nil {
		hs.Close()
	}
	cancel()
	<-served
	end := time.Now()
	if err != nil {
		return t, fmt.Errorf("scan %s: %w", ref, err)
	}
	t.total = end.Sub(start)
	t.index = marks[scan.StageMatching].Sub(marks[scan.StageIndexing])
	t.match = end.Sub(marks[scan.StageMatching])
	t.findings = len(res.Report.Findings)
	for _, f := range res.Fetches {
		t.fetched += f.Bytes
	}
	return t, nil
}

// rootfsFiles reads a directory tree into the files of one layer (sorted,
// directories first), for the scanned image.
func rootfsFiles(root string) ([]tarFile, error) {
	var files []tarFile
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch {
		case d.IsDir():
			files = append(files, tarFile{name: rel + "/", mode: 0o755})
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			files = append(files, tarFile{name: rel, mode: 0o644, body: b})
		default:
			return fmt.Errorf("%s: only directories and regular files", p)
		}
		return nil
	})
	sort.SliceStable(files, func(i, j int) bool { return files[i].name < files[j].name })
	return files, err
}

// scanImage is the image of one scan, one layer: the demo image's root file
// system (an Alpine package database with known vulnerable versions), a file
// naming n and a file of size random bytes seeded by n, so that Clair has
// never seen the layer and downloads size bytes of it from the bridge.
func scanImage(files []tarFile, n string, size int64) imageSpec {
	body := []byte(n + "\n")
	f := append(append([]tarFile(nil), files...), tarFile{name: "etc/layerbridge-bench-nonce", mode: 0o644, body: body})
	sort.SliceStable(f, func(i, j int) bool { return f[i].name < f[j].name })
	return imageSpec{name: "scan-" + n, layers: 1, layerSize: size, nonce: n, files: f}
}
