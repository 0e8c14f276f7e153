package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/layerbridge/layerbridge/bridge"
	"github.com/layerbridge/layerbridge/dockersave"
	"github.com/layerbridge/layerbridge/engine"
	"github.com/layerbridge/layerbridge/reach"
	"github.com/layerbridge/layerbridge/scan"
	"github.com/layerbridge/layerbridge/store"
)

// scanTiming is one end-to-end scan: scan.Run's stages, which overlap
// (Clair indexes the layers read so far while the export goes on), from
// the start of the scan.
type scanTiming struct {
	timings        scan.Timings
	total          time.Duration // the layer server's start and scan.Run
	alreadyIndexed bool          // Clair knew the image: nothing exported
	findings       int
	fetched        int64 // layer bytes the bridge served to Clair
}

// runScan scans ref (already in the daemon) with a fresh, empty image cache
// in cacheDir against Clair at clairURL, as `layerbridge scan` does, and
// times its stages.
func runScan(ctx context.Context, eng engine.Client, ep engine.Endpoint, cacheDir string, clairURL *url.URL, ref string, logTo io.Writer) (scanTiming, error) {
	cache, err := store.Open(cacheDir)
	if err != nil {
		return scanTiming{}, err
	}
	defer cache.Close()
	var t scanTiming
	start := time.Now()
	log := slog.New(slog.DiscardHandler)
	if logTo != nil {
		log = slog.New(slog.NewJSONHandler(logTo, &slog.HandlerOptions{
			Level: slog.LevelDebug,
			ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
				if len(groups) == 0 && a.Key == slog.TimeKey {
					return slog.Int64("since_ms", time.Since(start).Milliseconds())
				}
				return a
			},
		})).With("scan", ref, "cache", filepath.Base(cacheDir))
		log.Debug("scan started", "at", start.Format(time.RFC3339Nano))
	}
	ls, err := startScanLayerServer(ctx, clairURL, log)
	if err != nil {
		return scanTiming{}, err
	}
	res, err := scan.Run(ctx, scan.Config{
		Image:  ref,
		Loader: dockersave.NewLoader(cache, dockersave.WithEngine(eng, ep), dockersave.WithLogger(log)),
		Clair:  scan.NewClair(clairURL, scan.APIv4, scan.ClairOptions{}),
		Server: ls.layers,
		Base:   ls.ep.Base,
		Reason: ls.ep.Reason,
		Logger: log,
	})
	t.total = time.Since(start)
	ls.stop(ctx)
	if err != nil {
		return t, fmt.Errorf("scan %s: %w", ref, err)
	}
	t.timings = res.Timings
	t.alreadyIndexed = res.AlreadyIndexed
	t.findings = len(res.Report.Findings)
	for _, f := range res.Fetches {
		t.fetched += f.Bytes
	}
	return t, nil
}

// scanLayerServer is the layer server of one scan, on the address Clair
// reaches, started as the scan command starts it (serve.go's layerServer
// is the one on loopback of the serving rows).
type scanLayerServer struct {
	layers *bridge.Server
	ep     reach.Endpoint
	hs     *http.Server
	served chan error
}

func startScanLayerServer(ctx context.Context, clairURL *url.URL, log *slog.Logger) (*scanLayerServer, error) {
	ep, err := reach.Listen(ctx, clairURL, reach.ListenOptions{})
	if err != nil {
		return nil, err
	}
	layers := bridge.New(bridge.WithLogger(log))
	ls := &scanLayerServer{layers: layers, ep: ep, hs: bridge.NewHTTPServer(layers, nil, bridge.Limits{}), served: make(chan error, 1)}
	go func() { ls.served <- ls.hs.Serve(ep.Listener) }()
	return ls, nil
}

// stop shuts the server down, closing it when requests still run after 10 s.
func (ls *scanLayerServer) stop(ctx context.Context) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if ls.hs.Shutdown(sctx) != nil {
		ls.hs.Close()
	}
	<-ls.served
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

// scanImage is the image of one scan: a base layer (the demo image's root
// file system, an Alpine package database with known vulnerable versions,
// and a file naming n) and layers of size random bytes each, seeded by n, so
// that Clair has never seen any layer and downloads all of them from the
// bridge.
func scanImage(files []tarFile, n string, layers int, size int64) imageSpec {
	body := []byte(n + "\n")
	f := append(append([]tarFile(nil), files...), tarFile{name: "etc/layerbridge-bench-nonce", mode: 0o644, body: body})
	sort.SliceStable(f, func(i, j int) bool { return f[i].name < f[j].name })
	return imageSpec{name: "scan-" + n, layers: 1 + layers, layerSize: size, nonce: n, files: f, baseLayer: true}
}

// measureBound times what no client of `docker save` and Clair can beat on
// this machine: the export of ref, read to discard as the floor reads it,
// while Clair indexes the very same layers from the moment the export's
// first byte arrives, served from a cache filled beforehand (untimed) and
// read into the page cache, so that the client costs nothing: no reading
// of the stream into files, no hashing, and every layer available to Clair
// at once instead of in the order the export brings them. It returns when
// both are done.
func measureBound(ctx context.Context, docker dockerAPI, eng engine.Client, ep engine.Endpoint, cacheDir string, clairURL *url.URL, ref string, id digest.Digest) (time.Duration, error) {
	cache, err := store.Open(cacheDir)
	if err != nil {
		return 0, err
	}
	defer cache.Close()
	loader := dockersave.NewLoader(cache, dockersave.WithEngine(eng, ep))
	img, release, err := loader.Load(ctx, ref, nil)
	if err != nil {
		return 0, fmt.Errorf("fill the cache with %s: %w", ref, err)
	}
	release()
	for _, l := range img.Manifest.Layers {
		f, err := cache.OpenBlob(l.Digest)
		if err != nil {
			return 0, err
		}
		_, err = io.CopyBuffer(discard{}, f, make([]byte, copyBuffer))
		f.Close()
		if err != nil {
			return 0, err
		}
	}
	if err := settle(false); err != nil {
		return 0, err
	}
	ls, err := startScanLayerServer(ctx, clairURL, slog.New(slog.DiscardHandler))
	if err != nil {
		return 0, err
	}
	defer ls.stop(ctx)

	start := time.Now()
	rc, err := docker.ImageSave(ctx, []string{id.String()})
	if err != nil {
		return 0, fmt.Errorf("save %s: %w", id, err)
	}
	defer rc.Close()
	first := make([]byte, 1)
	if _, err := io.ReadFull(rc, first); err != nil {
		return 0, fmt.Errorf("save %s: %w", id, err)
	}
	saved := make(chan error, 1)
	go func() {
		_, err := io.CopyBuffer(discard{}, rc, make([]byte, copyBuffer))
		saved <- err
	}()
	res, err := scan.Run(ctx, scan.Config{
		Image:  ref,
		Loader: loader,
		Clair:  scan.NewClair(clairURL, scan.APIv4, scan.ClairOptions{}),
		Server: ls.layers,
		Base:   ls.ep.Base,
		Reason: ls.ep.Reason,
	})
	if serr := <-saved; serr != nil && err == nil {
		err = fmt.Errorf("save %s: %w", id, serr)
	}
	took := time.Since(start)
	if err != nil {
		return 0, err
	}
	if res.AlreadyIndexed || !res.Image.CacheHit {
		return 0, fmt.Errorf("bound %s: clair knew the image (%v) or the cache missed it (hit %v)", ref, res.AlreadyIndexed, res.Image.CacheHit)
	}
	return took, nil
}
