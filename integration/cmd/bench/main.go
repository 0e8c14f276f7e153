package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/moby/moby/client"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/dockersave"
	"github.com/layerbridge/layerbridge/engine"
	"github.com/layerbridge/layerbridge/integration/harness"
	"github.com/layerbridge/layerbridge/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: go run ./cmd/bench --layerbridge PATH [flags]

Builds the benchmark images in the local Docker daemon (once: they are kept,
labelled ` + benchLabel + `), measures docker save, the naive save-and-untar,
layerbridge inspect cold and warm, the bridge serving layers on loopback and
end-to-end scans against Clair v4 started on loopback, and prints one table
with the targets of issues 8 and 18. Run in the integration module directory; the
drop-caches modes need root. Progress goes to stderr, the table to stdout.

flags:
`

// Engines of the scan rows (--scan-engine).
const (
	scanEngineDaemon   = "daemon"
	scanEngineDocker29 = "docker29"
)

// Page cache modes: measure with whatever the page cache holds, or empty it
// before every export and download, or both.
const (
	cacheKeep = "keep"
	cacheDrop = "drop"
	cacheBoth = "both"
)

type options struct {
	layerbridge  string
	baseline     string
	scanSize     int64
	scanLayers   int
	scanEngine   string
	runs         int
	images       []string
	pageCache    string
	workDir      string
	feed         string
	demoRootfs   string
	clairCache   string
	profileDir   string
	skipExport   bool
	skipServe    bool
	skipScan     bool
	skipBound    bool
	scanLog      string
	removeImages bool
}

func parse(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	var names []string
	for _, s := range benchImages {
		names = append(names, s.name)
	}
	images := strings.Join(names, ",")
	fs.StringVar(&o.layerbridge, "layerbridge", "", "the layerbridge binary to run (required)")
	fs.StringVar(&o.baseline, "baseline", "", "another layerbridge binary (for example the previous version) measured cold and warm alongside, for before/after comparisons")
	fs.Int64Var(&o.scanSize, "scan-size", 64<<20, "bytes of random content in each random layer of the scanned images, so that Clair downloads that much per layer from the bridge")
	fs.IntVar(&o.scanLayers, "scan-layers", 6, "random layers of the scanned images, on top of their base layer")
	fs.StringVar(&o.scanEngine, "scan-engine", scanEngineDaemon, "engine the scanned images are loaded into and exported from: "+scanEngineDaemon+
		" (the local Docker daemon, as for the other rows) or "+scanEngineDocker29+" (a Docker Engine 29.8.1 with the containerd image store, built and started as make test does; root)")
	fs.IntVar(&o.runs, "runs", 5, "runs of every measurement (each figure is their median)")
	fs.StringVar(&images, "images", images, "benchmark images to measure, comma-separated")
	fs.StringVar(&o.pageCache, "page-cache", cacheBoth, "before each export and download: keep the page cache, drop it (sync; echo 3 > /proc/sys/vm/drop_caches), or both (two sets of rows)")
	fs.StringVar(&o.workDir, "work-dir", os.TempDir(), "where cache directories and naive extractions go (pick the file system layerbridge's cache is on)")
	fs.StringVar(&o.feed, "feed", "testdata/secdb", "Alpine SecDB directory Clair is fed")
	fs.StringVar(&o.demoRootfs, "scan-rootfs", "testdata/demo-image/rootfs", "root file system of the image scanned end to end")
	fs.StringVar(&o.clairCache, "clair-cache-dir", "", "where the Clair binary is cached (default ~/.cache/layerbridge)")
	fs.StringVar(&o.profileDir, "profile", "", "also write pprof profiles (cpu and alloc of an in-process cold export of the first image, cpu of serving, cpu of the first end-to-end scan) to this directory")
	fs.BoolVar(&o.skipExport, "skip-export", false, "do not measure exports (the images are still stored once, for serving)")
	fs.BoolVar(&o.skipServe, "skip-serve", false, "do not measure serving")
	fs.BoolVar(&o.skipScan, "skip-scan", false, "do not start Clair nor scan")
	fs.BoolVar(&o.skipBound, "skip-bound", false, "do not measure the bound of a first scan (docker save while Clair indexes the same layers from a warm cache; an image more per round)")
	fs.StringVar(&o.scanLog, "scan-log", "", "append each scan's debug log (JSON lines, with the time since the scan started as since_ms) to this file: what was exported and served when")
	fs.BoolVar(&o.removeImages, "remove-images", false, "remove every benchmark image from the daemon and exit")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return o, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if o.removeImages {
		return o, nil
	}
	o.images = strings.Split(images, ",")
	for _, n := range o.images {
		if !slices.Contains(names, n) {
			return o, fmt.Errorf("--images: unknown image %q (have %s)", n, strings.Join(names, ", "))
		}
	}
	if o.runs < 1 {
		return o, fmt.Errorf("--runs %d: want at least 1", o.runs)
	}
	if !slices.Contains([]string{cacheKeep, cacheDrop, cacheBoth}, o.pageCache) {
		return o, fmt.Errorf("--page-cache %q: want keep, drop or both", o.pageCache)
	}
	if o.pageCache != cacheKeep && os.Geteuid() != 0 {
		return o, fmt.Errorf("--page-cache %s needs root (to write /proc/sys/vm/drop_caches); use --page-cache keep", o.pageCache)
	}
	if o.layerbridge == "" {
		fs.Usage()
		return o, errors.New("--layerbridge is required")
	}
	p, err := exec.LookPath(o.layerbridge)
	if err != nil {
		return o, fmt.Errorf("--layerbridge %s: not an executable file (make build first): %w", o.layerbridge, err)
	}
	if o.layerbridge, err = filepath.Abs(p); err != nil {
		return o, err
	}
	if o.baseline != "" {
		p, err := exec.LookPath(o.baseline)
		if err != nil {
			return o, fmt.Errorf("--baseline %s: not an executable file: %w", o.baseline, err)
		}
		if o.baseline, err = filepath.Abs(p); err != nil {
			return o, err
		}
		if o.baseline == o.layerbridge {
			return o, errors.New("--baseline is the same binary as --layerbridge")
		}
	}
	if o.scanSize < 0 {
		return o, fmt.Errorf("--scan-size %d: negative", o.scanSize)
	}
	if o.scanEngine != scanEngineDaemon && o.scanEngine != scanEngineDocker29 {
		return o, fmt.Errorf("--scan-engine %q: want %s or %s", o.scanEngine, scanEngineDaemon, scanEngineDocker29)
	}
	if o.scanLayers < 0 || o.scanLayers > 100 {
		return o, fmt.Errorf("--scan-layers %d: want 0 to 100", o.scanLayers)
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "bench: error:", err)
		return 2
	}
	log := harness.ProgressLogger(stderr)
	start := time.Now()
	t, err := bench(ctx, o, log)
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "bench: interrupted")
		return 130
	}
	if err != nil {
		fmt.Fprintln(stderr, "bench: error:", err)
		return 1
	}
	if t != nil {
		t.footer = append(t.footer, fmt.Sprintf("bench wall time: %s", time.Since(start).Round(time.Second)))
		if err := t.render(stdout); err != nil {
			fmt.Fprintln(stderr, "bench: error:", err)
			return 1
		}
	}
	return 0
}

// key names the samples of one measurement.
type key struct{ mode, image, what string }

// bench does everything and returns the table (nil for --remove-images).
func bench(ctx context.Context, o options, log *slog.Logger) (*table, error) {
	loadStart := loadAvg()
	docker, err := harness.DockerClient(ctx)
	if err != nil {
		return nil, err
	}
	defer docker.Close()
	if o.removeImages {
		n, err := removeImages(ctx, docker, nil)
		log.Info("removed benchmark images", "count", n)
		return nil, err
	}

	// The images, built once and then found again by ID.
	var built []*builtImage
	keep := map[digest.Digest]bool{}
	for _, s := range benchImages {
		if !slices.Contains(o.images, s.name) {
			continue
		}
		b, err := describe(s)
		if err != nil {
			return nil, fmt.Errorf("generate %s: %w", s.tag(), err)
		}
		start := time.Now()
		loaded, err := ensureImage(ctx, docker, b)
		if err != nil {
			return nil, err
		}
		log.Info("benchmark image", "tag", s.tag(), "id", b.id, "layers", s.layers, "bytes", s.totalBytes(), "loaded_now", loaded, "took", time.Since(start).Round(time.Millisecond))
		built = append(built, b)
		keep[b.id] = true
	}
	// Leftovers of interrupted runs (scan images) and older generators.
	if _, err := removeImages(ctx, docker, keep); err != nil {
		return nil, err
	}

	work, err := os.MkdirTemp(o.workDir, "layerbridge-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	warm := map[string]string{o.layerbridge: filepath.Join(work, "warm")}
	if o.baseline != "" {
		warm[o.baseline] = filepath.Join(work, "warm-baseline")
	}
	for bin, dir := range warm {
		for _, b := range built {
			r, err := runInspect(ctx, bin, dir, b.spec.tag())
			if err == nil {
				err = checkInspect(b, r.out)
			}
			if err != nil {
				return nil, err
			}
		}
	}
	warmDir := warm[o.layerbridge]

	modes := []string{o.pageCache}
	if o.pageCache == cacheBoth {
		modes = []string{cacheKeep, cacheDrop}
	}
	data := map[key]samples{}
	add := func(mode, image, what string, v float64) {
		k := key{mode, image, what}
		data[k] = append(data[k], v)
	}
	if !o.skipExport {
		if err := measureExports(ctx, o, log, docker, built, modes, work, warm, add); err != nil {
			return nil, err
		}
	}
	// Ratios per round: both sides were measured minutes apart at most.
	for _, mode := range modes {
		for _, b := range built {
			fl, cold, naive := data[key{mode, b.spec.name, "floor"}], data[key{mode, b.spec.name, "cold"}], data[key{mode, b.spec.name, "naive"}]
			base := data[key{mode, b.spec.name, "base-cold"}]
			for i := range fl {
				add(mode, b.spec.name, "cold/floor", cold[i]/fl[i])
				add(mode, b.spec.name, "naive/floor", naive[i]/fl[i])
				if i < len(base) {
					add(mode, b.spec.name, "base-cold/floor", base[i]/fl[i])
				}
			}
		}
	}
	var serveErrs map[key][]error
	if !o.skipServe {
		if serveErrs, err = measureServing(ctx, o, log, built, modes, warmDir, add); err != nil {
			return nil, err
		}
	}
	var timings *harness.Timings
	if !o.skipScan {
		if timings, err = measureScans(ctx, o, log, docker, work, add); err != nil {
			return nil, err
		}
	}
	if o.profileDir != "" {
		if err := profileExport(ctx, o, log, built[0], work); err != nil {
			return nil, err
		}
	}
	info, err := docker.Info(ctx, client.InfoOptions{})
	if err != nil {
		return nil, err
	}
	return buildTable(o, tableInput{
		built: built, modes: modes, data: data, serveErrs: serveErrs, clair: timings,
		docker:  fmt.Sprintf("docker %s (api %s, %s storage driver)", info.Info.ServerVersion, docker.ClientVersion(), info.Info.Driver),
		version: layerbridgeVersion(ctx, o.layerbridge), loadStart: loadStart, loadEnd: loadAvg(),
	}), nil
}

// measureExports runs the interleaved rounds: in each, every image and every
// contender once, in an order rotated from round to round. warm maps a
// binary to its warm store.
func measureExports(ctx context.Context, o options, log *slog.Logger, docker dockerAPI, built []*builtImage, modes []string, work string, warm map[string]string, add func(mode, image, what string, v float64)) error {
	contenders := []string{"floor", "naive", "cold", "warm"}
	if o.baseline != "" {
		contenders = append(contenders, "base-cold", "base-warm")
	}
	daemons := dockerPIDs()
	seq := 0
	for r := range o.runs {
		roundStart := time.Now()
		for i := range built {
			b := built[(i+r)%len(built)]
			for _, mode := range rotate(modes, r) {
				drop := mode == cacheDrop
				for _, c := range rotate(contenders, r+i) {
					if err := ctx.Err(); err != nil {
						return err
					}
					if err := settle(drop && !strings.HasSuffix(c, "warm")); err != nil {
						return err
					}
					seq++
					name := b.spec.name
					before := sampleCPU(daemons)
					var wall time.Duration
					switch c {
					case "floor":
						d, n, err := measureFloor(ctx, docker, b.id)
						if err != nil {
							return err
						}
						if n == 0 {
							return fmt.Errorf("save %s: empty stream", b.spec.tag())
						}
						wall = d
					case "naive":
						dir := filepath.Join(work, fmt.Sprintf("naive-%d", seq))
						if err := os.Mkdir(dir, 0o755); err != nil {
							return err
						}
						d, err := measureNaive(ctx, docker, b.id, dir)
						os.RemoveAll(dir)
						if err != nil {
							return err
						}
						wall = d
					case "cold", "base-cold":
						bin := o.layerbridge
						if c == "base-cold" {
							bin = o.baseline
						}
						dir := filepath.Join(work, fmt.Sprintf("cold-%d", seq))
						res, err := runInspect(ctx, bin, dir, b.spec.tag())
						if err == nil {
							err = checkInspect(b, res.out)
						}
						os.RemoveAll(dir)
						if err != nil {
							return err
						}
						wall = res.wall
						add(mode, name, c+"-rss", float64(res.maxRSS))
						add(mode, name, c+"-cpu", res.cpu.Seconds())
					case "warm", "base-warm":
						bin := o.layerbridge
						if c == "base-warm" {
							bin = o.baseline
						}
						res, err := runInspect(ctx, bin, warm[bin], b.spec.tag())
						if err == nil {
							err = checkInspect(b, res.out)
						}
						if err != nil {
							return err
						}
						if res.written > 1<<20 {
							return fmt.Errorf("warm inspect of %s wrote %d bytes: it exported again", b.spec.tag(), res.written)
						}
						wall = res.wall
					}
					add(mode, name, c, wall.Seconds())
					add(mode, name, c+"-other", otherCores(before, sampleCPU(daemons), wall))
				}
			}
		}
		log.Info("export round done", "round", r+1, "of", o.runs, "took", time.Since(roundStart).Round(time.Second), "load", loadAvg())
	}
	return nil
}

func rotate[T any](s []T, n int) []T {
	n %= len(s)
	return append(slices.Clone(s[n:]), s[:n]...)
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// measureServing downloads from the bridge serving the warm store: one
// client reading the 1 GiB layer, and 64 clients each reading one of the
// 100 MiB layers, every body re-hashed.
func measureServing(ctx context.Context, o options, log *slog.Logger, built []*builtImage, modes []string, warmDir string, add func(mode, image, what string, v float64)) (map[key][]error, error) {
	var plans []servePlan
	for _, b := range built {
		var descs []ocispec.Descriptor
		for i, d := range b.diffIDs {
			descs = append(descs, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d, Size: b.sizes[i]})
		}
		switch b.spec.name {
		case "1x1gib":
			plans = append(plans, servePlan{name: b.spec.name, clients: 1, layers: descs},
				servePlan{name: b.spec.name, clients: 1, layers: descs, rehash: true})
		case "10x100mib":
			plans = append(plans, servePlan{name: b.spec.name, clients: 64, layers: descs, rehash: true})
		}
	}
	if len(plans) == 0 {
		return nil, nil
	}
	cache, err := store.Open(warmDir)
	if err != nil {
		return nil, err
	}
	defer cache.Close()
	srv, err := startLayerServer(cache)
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	var stopProfile func() error
	if o.profileDir != "" {
		if stopProfile, err = startCPUProfile(filepath.Join(o.profileDir, "serve-cpu.pprof")); err != nil {
			return nil, err
		}
	}
	errs := map[key][]error{}
	daemons := dockerPIDs()
	for r := range o.runs {
		for _, mode := range rotate(modes, r) {
			for _, p := range rotate(plans, r) {
				if err := settle(mode == cacheDrop); err != nil {
					return nil, err
				}
				if mode == cacheKeep {
					// Stores written with direct I/O leave nothing in the
					// page cache, and a drop-mode run may have emptied it:
					// "kept" means served from memory, so read each blob
					// once first (not measured).
					if _, err := measureServe(ctx, srv, servePlan{name: p.name + "-warmup", clients: len(p.layers), layers: p.layers, rehash: true}); err != nil {
						return nil, err
					}
				}
				before := sampleCPU(daemons)
				res, err := measureServe(ctx, srv, p)
				if err != nil {
					return nil, err
				}
				k := key{mode, p.name, fmt.Sprintf("serve-%d-rehash=%v", p.clients, p.rehash)}
				add(k.mode, k.image, k.what, res.gibPerSec())
				add(k.mode, k.image, k.what+"-other", otherCores(before, sampleCPU(daemons), res.wall))
				add(k.mode, k.image, k.what+"-errors", float64(len(res.errors)))
				errs[k] = append(errs[k], res.errors...)
				log.Info("served", "clients", p.clients, "rehash", p.rehash, "image", p.name, "page_cache", mode, "bytes", res.bytes,
					"took", res.wall.Round(time.Millisecond), "gib_per_s", fmt.Sprintf("%.2f", res.gibPerSec()), "errors", len(res.errors))
			}
		}
	}
	if stopProfile != nil {
		if err := stopProfile(); err != nil {
			return nil, err
		}
	}
	return errs, nil
}

// measureScans starts PostgreSQL, the feed and Clair, then scans a fresh
// image (never seen by Clair) per run with an empty image cache.
func measureScans(ctx context.Context, o options, log *slog.Logger, docker dockerAPI, work string, add func(mode, image, what string, v float64)) (*harness.Timings, error) {
	files, err := rootfsFiles(o.demoRootfs)
	if err != nil {
		return nil, fmt.Errorf("--scan-rootfs: %w", err)
	}
	getenv := os.Getenv
	if o.scanEngine == scanEngineDocker29 {
		log.Info("starting a docker engine 29 with the containerd image store (building it the first time takes minutes)")
		d, err := harness.StartDockerd(ctx, harness.EngineOptions{Logger: log})
		if err != nil {
			return nil, err
		}
		defer d.Close()
		cli, err := d.Client(ctx)
		if err != nil {
			return nil, err
		}
		defer cli.Close()
		docker = cli
		getenv = func(k string) string {
			if k == "DOCKER_HOST" {
				return d.Host
			}
			return os.Getenv(k)
		}
	}
	home, _ := os.UserHomeDir()
	ep, err := engine.ResolveEndpoint("", getenv, engine.DockerConfigDir(getenv, home))
	if err != nil {
		return nil, err
	}
	eng, err := engine.NewClient(ep)
	if err != nil {
		return nil, err
	}
	defer eng.Close()
	log.Info("starting postgres, the feed and clair (building clair the first time takes minutes)")
	stack, err := harness.Start(ctx, harness.Options{FeedDir: o.feed, CacheDir: o.clairCache, Logger: log})
	if err != nil {
		return nil, err
	}
	defer stack.Close()
	clairURL, err := url.Parse(stack.Clair.URL)
	if err != nil {
		return nil, err
	}
	var scanLog io.Writer
	if o.scanLog != "" {
		f, err := os.OpenFile(o.scanLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("--scan-log: %w", err)
		}
		defer f.Close()
		scanLog = f
	}
	// withNewImage runs fn on an image Clair has never seen, loaded for it
	// and removed after.
	withNewImage := func(fn func(b *builtImage) error) error {
		b, err := describe(scanImage(files, nonce(), o.scanLayers, o.scanSize))
		if err != nil {
			return err
		}
		if _, err := ensureImage(ctx, docker, b); err != nil {
			return err
		}
		err = fn(b)
		if _, rerr := docker.ImageRemove(ctx, b.spec.tag(), imageRemoveOptions()); rerr != nil && err == nil {
			err = rerr
		}
		return err
	}
	for r := range o.runs {
		if err := withNewImage(func(b *builtImage) error {
			return scanRound(ctx, r, log, docker, eng, ep, clairURL, work, b, scanLog, o.profileDir, add)
		}); err != nil {
			return nil, err
		}
		if o.skipBound {
			continue
		}
		if err := withNewImage(func(b *builtImage) error {
			return boundRound(ctx, log, docker, eng, ep, clairURL, work, b, r, add)
		}); err != nil {
			return nil, err
		}
	}
	return &stack.Timings, nil
}

// scanRound measures one new image (never seen by Clair): the floor
// (docker save to discard), its first scan with an empty cache, and a
// re-scan with another empty cache, which Clair answers from its index. The
// floor runs first in even rounds and last in odd ones.
func scanRound(ctx context.Context, r int, log *slog.Logger, docker dockerAPI, eng engine.Client, ep engine.Endpoint, clairURL *url.URL, work string, b *builtImage, scanLog io.Writer, profileDir string, add func(mode, image, what string, v float64)) error {
	id, err := engineID(ctx, docker, b)
	if err != nil {
		return err
	}
	floor := func() (time.Duration, error) { return scanFloor(ctx, docker, id, b.spec.tag()) }
	scanOnce := func(name string) (scanTiming, error) {
		if err := settle(false); err != nil {
			return scanTiming{}, err
		}
		dir := filepath.Join(work, fmt.Sprintf("scan-%d-%s", r, name))
		defer os.RemoveAll(dir)
		if profileDir != "" && r == 0 && name == "first" {
			stop, err := startCPUProfile(filepath.Join(profileDir, "scan-cpu.pprof"))
			if err != nil {
				return scanTiming{}, err
			}
			defer stop()
		}
		return runScan(ctx, eng, ep, dir, clairURL, b.spec.tag(), scanLog)
	}
	var fl time.Duration
	if r%2 == 0 {
		if fl, err = floor(); err != nil {
			return err
		}
	}
	first, err := scanOnce("first")
	if err != nil {
		return err
	}
	switch {
	case first.alreadyIndexed:
		return fmt.Errorf("scan %s: clair says it indexed an image it has never seen", b.spec.tag())
	case first.findings == 0:
		return fmt.Errorf("scan %s: clair reported no findings; the demo root file system has known vulnerable packages", b.spec.tag())
	}
	again, err := scanOnce("again")
	if err != nil {
		return err
	}
	switch {
	case !again.alreadyIndexed:
		return fmt.Errorf("re-scan %s: exported again, though clair had indexed it", b.spec.tag())
	case again.fetched != 0:
		return fmt.Errorf("re-scan %s: clair fetched %d layer bytes", b.spec.tag(), again.fetched)
	case again.findings != first.findings:
		return fmt.Errorf("re-scan %s: %d findings, the first scan had %d", b.spec.tag(), again.findings, first.findings)
	}
	if r%2 == 1 {
		if fl, err = floor(); err != nil {
			return err
		}
	}
	tm := first.timings
	for what, v := range map[string]time.Duration{
		"floor": fl, "first": first.total, "again": again.total,
		"export-end": tm.Export.End, "index-start": tm.Index.Start, "index-end": tm.Index.End,
		"match-start": tm.Match.Start, "match-end": tm.Match.End,
	} {
		add("", "scan", what, v.Seconds())
	}
	add("", "scan", "first/floor", first.total.Seconds()/fl.Seconds())
	add("", "scan", "again/floor", again.total.Seconds()/fl.Seconds())
	add("", "scan", "findings", float64(first.findings))
	add("", "scan", "fetched", float64(first.fetched))
	log.Info("scanned", "image", b.spec.tag(), "floor", fl.Round(time.Millisecond), "first", first.total.Round(time.Millisecond),
		"export_end", tm.Export.End.Round(time.Millisecond), "index", fmt.Sprintf("%s..%s", tm.Index.Start.Round(time.Millisecond), tm.Index.End.Round(time.Millisecond)),
		"match_end", tm.Match.End.Round(time.Millisecond), "again", again.total.Round(time.Millisecond), "findings", first.findings, "served_bytes", first.fetched)
	return nil
}

// scanFloor is the floor of a scan of image id (tagged tag): docker save to
// discard, after the machine settled.
func scanFloor(ctx context.Context, docker dockerAPI, id digest.Digest, tag string) (time.Duration, error) {
	if err := settle(false); err != nil {
		return 0, err
	}
	d, n, err := measureFloor(ctx, docker, id)
	if err == nil && n == 0 {
		err = fmt.Errorf("save %s: empty stream", tag)
	}
	return d, err
}

// boundRound measures, for a new image b, the floor and the bound of a
// first scan (measureBound), in alternating order.
func boundRound(ctx context.Context, log *slog.Logger, docker dockerAPI, eng engine.Client, ep engine.Endpoint, clairURL *url.URL, work string, b *builtImage, r int, add func(mode, image, what string, v float64)) error {
	id, err := engineID(ctx, docker, b)
	if err != nil {
		return err
	}
	floor := func() (time.Duration, error) { return scanFloor(ctx, docker, id, b.spec.tag()) }
	var fl, bound time.Duration
	if r%2 == 1 {
		if fl, err = floor(); err != nil {
			return err
		}
	}
	dir := filepath.Join(work, fmt.Sprintf("bound-%d", r))
	defer os.RemoveAll(dir)
	if bound, err = measureBound(ctx, docker, eng, ep, dir, clairURL, b.spec.tag(), id); err != nil {
		return err
	}
	if r%2 == 0 {
		if fl, err = floor(); err != nil {
			return err
		}
	}
	add("", "scan", "bound-floor", fl.Seconds())
	add("", "scan", "bound", bound.Seconds())
	add("", "scan", "bound/floor", bound.Seconds()/fl.Seconds())
	log.Info("bound", "image", b.spec.tag(), "floor", fl.Round(time.Millisecond), "bound", bound.Round(time.Millisecond))
	return nil
}

// layerbridgeVersion is the first line of `layerbridge version`.
func layerbridgeVersion(ctx context.Context, bin string) string {
	out, err := exec.CommandContext(ctx, bin, "version").Output()
	if err != nil {
		return "layerbridge (version unknown: " + err.Error() + ")"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// startCPUProfile profiles this process until the returned function is
// called.
func startCPUProfile(path string) (func() error, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}

// profileExport runs one cold export of b in this process, with the same
// dockersave code the binary links, under the CPU profiler, then writes the
// allocation profile.
func profileExport(ctx context.Context, o options, log *slog.Logger, b *builtImage, work string) error {
	home, _ := os.UserHomeDir()
	ep, err := engine.ResolveEndpoint("", os.Getenv, engine.DockerConfigDir(os.Getenv, home))
	if err != nil {
		return err
	}
	eng, err := engine.NewClient(ep)
	if err != nil {
		return err
	}
	defer eng.Close()
	dir := filepath.Join(work, "profile-cache")
	defer os.RemoveAll(dir)
	cache, err := store.Open(dir)
	if err != nil {
		return err
	}
	defer cache.Close()
	if err := settle(false); err != nil {
		return err
	}
	runtime.GC()
	stop, err := startCPUProfile(filepath.Join(o.profileDir, "export-cpu.pprof"))
	if err != nil {
		return err
	}
	start := time.Now()
	_, release, err := dockersave.NewLoader(cache, dockersave.WithEngine(eng, ep)).Load(ctx, b.spec.tag(), nil)
	took := time.Since(start)
	if err == nil {
		release()
	}
	if serr := stop(); err == nil {
		err = serr
	}
	if err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(o.profileDir, "export-alloc.pprof"))
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	log.Info("profiled an in-process cold export", "image", b.spec.tag(), "took", took.Round(time.Millisecond), "dir", o.profileDir)
	return f.Close()
}
