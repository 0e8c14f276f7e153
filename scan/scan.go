package scan

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/bridge"
	"github.com/layerbridge/layerbridge/clairv2"
	"github.com/layerbridge/layerbridge/clairv4"
	"github.com/layerbridge/layerbridge/dockersave"
	"github.com/layerbridge/layerbridge/imageref"
	"github.com/layerbridge/layerbridge/platforms"
	"github.com/layerbridge/layerbridge/report"
)

// The Clair API generations.
const (
	APIAuto = "auto"
	APIv4   = "v4"
	APIv2   = "v2"
)

// ImageLoader loads an image; *dockersave.Loader is one. The image's blobs
// must stay available until release is called (dockersave pins them in the
// store): Run releases the image once Clair is done with its layers, so
// that no prune of the store (by this process or another sharing it) can
// delete a layer Clair is about to download. release must not be nil when
// err is nil.
type ImageLoader interface {
	Load(ctx context.Context, ref string, platform *ocispec.Platform, opts ...dockersave.LoadOption) (img dockersave.Image, release func(), err error)
}

// DefaultProbeTimeout bounds each probe of Clair when Config.ProbeTimeout
// is zero.
const DefaultProbeTimeout = 30 * time.Second

// Config is everything one scan needs. Loader, Clair, Server and Base
// are required.
type Config struct {
	Image    string            // reference, as imageref.Parse reads it
	Platform *ocispec.Platform // nil: the image's own / the host's
	// Loader loads the image; the layer server reads its layers with the
	// image's Blobs.
	Loader ImageLoader

	// Clair is the Clair to ask (NewClair).
	Clair Clair
	// Detected is the API Clair speaks when the caller already asked
	// (DetectAPI's answer, which the sidecar keeps): Run then sends no
	// probe before the scan. "" makes Run detect it, as Clair.API says.
	Detected string

	// Server is the layer server Run registers the image's layers on, for
	// the scan's time only (their URLs stop working when Run returns): the
	// caller runs it (bridge.NewHTTPServer) on a listener Clair reaches at
	// Base, and observes Clair's downloads with bridge.WithFetchObserver.
	Server *bridge.Server
	Base   *url.URL
	// Reason says why Clair should reach the server at Base (a clause, as
	// reach.Endpoint's Reason), for the error when Clair did not.
	Reason string

	// Stage, when set, is called as the scan enters each stage.
	Stage func(Stage)

	// ProbeTimeout bounds each probe of Clair (which API it speaks, whether
	// it has vulnerability data), retries included: a Clair that accepts
	// connections but never answers fails the scan with a
	// *ClairUnreachableError after it, instead of holding the scan until
	// ctx ends. 0 means DefaultProbeTimeout. The index request and the
	// reports are bounded by ctx only: indexing a large image legitimately
	// takes minutes, and Clair answers the index request only when done.
	ProbeTimeout time.Duration

	Logger *slog.Logger
}

// Stage is a step of a scan, in order.
type Stage string

// The stages Config.Stage reports.
const (
	StageExporting Stage = "exporting" // loading the image into the store
	StageIndexing  Stage = "indexing"  // Clair downloads and indexes the layers
	StageMatching  Stage = "matching"  // Clair matches vulnerabilities
)

// Result is what a scan produced besides its report.
type Result struct {
	Report *report.Report
	// Image is the image scanned. When AlreadyIndexed, only what inspect
	// told is set (ID, Platform, RepoTags, IndexDigest, DiffIDs): nothing
	// was loaded.
	Image      dockersave.Image
	API        string
	Advertised *url.URL
	Reason     string         // why that address
	Fetches    []bridge.Fetch // every layer request Clair made
	// AlreadyIndexed is true when Clair had indexed the image before: its
	// report was read without exporting the image.
	AlreadyIndexed bool
	// Timings says when each stage ran, from the start of Run. The stages
	// overlap: Clair indexes layers while later ones are still exported.
	Timings Timings
}

// Timings are the stages of a scan as they ran.
type Timings struct {
	// Export is loading the image (inspect, export into the store, or the
	// cache lookup), Index is Clair's indexing (from the submission of
	// the layers to Clair's answer; it starts before Export ends when the
	// layers are known early), Match is fetching the vulnerability report.
	Export, Index, Match Span
}

// Span is when a stage started and ended, from the start of Run; zero for a
// stage that did not run.
type Span struct{ Start, End time.Duration }

// Run performs one scan. On error the Result may be partially filled (the
// image and the advertised address, when known) for diagnostics.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Loader == nil || cfg.Server == nil || cfg.Base == nil {
		return nil, errors.New("scan: Loader, Server and Base are required")
	}
	if err := cfg.Clair.check(); err != nil {
		return nil, fmt.Errorf("scan: %w", err)
	}
	v4 := cfg.Clair.V4
	probeTimeout := cfg.ProbeTimeout
	if probeTimeout <= 0 {
		probeTimeout = DefaultProbeTimeout
	}

	start := time.Now()
	res := &Result{}
	api := cfg.Detected
	switch api {
	case "":
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		var err error
		api, err = DetectAPI(pctx, cfg.Clair)
		cancel()
		if err != nil {
			return res, err
		}
		log.DebugContext(ctx, "clair api", "url", redact(cfg.Clair.URL), "api", api, "asked", orAuto(cfg.Clair.API), "psk", v4.Issuer() != "")
	case APIv4, APIv2:
		log.DebugContext(ctx, "clair api, as detected before", "url", redact(cfg.Clair.URL), "api", api)
	default:
		return res, fmt.Errorf("scan: detected clair api %q: want v4 or v2", api)
	}
	res.API = api

	stage := cfg.Stage
	if stage == nil {
		stage = func(Stage) {}
	}
	base, reason := cfg.Base, cmp.Or(cfg.Reason, "the layer server's configured address")
	res.Advertised, res.Reason = base, reason
	// Whether Clair has vulnerability data at all, asked while the image
	// loads.
	warned := make(chan []string, 1)
	go func() { warned <- dataWarnings(ctx, cfg.Clair, api, probeTimeout, log) }()

	sctx, stop := context.WithCancel(ctx)
	defer stop()
	sub := &submission{ctx: sctx, api: api, clair: cfg.Clair, server: cfg.Server, base: base, label: cfg.Image,
		probe: probeTimeout, log: log, epoch: start}
	stage(StageExporting)
	img, release, err := cfg.Loader.Load(ctx, cfg.Image, cfg.Platform, dockersave.WithWatcher(sub))
	res.Timings.Export = Span{Start: 0, End: time.Since(start)}
	if errors.Is(err, ErrAlreadyIndexed) {
		return known(ctx, cfg, res, sub, <-warned, stage, start, log)
	}
	if err != nil {
		sub.abort(err)
		res.Fetches = sub.close(ctx)
		return res, err
	}
	// Runs last, after the grant is closed: no layer of the image is
	// evicted while Clair may still download it.
	defer release()
	if img.IndexDigest == "" {
		img.IndexDigest = img.ManifestDigest // a loader of its own
	}
	res.Image = img
	if img.CacheHit {
		log.InfoContext(ctx, "image found in the cache, not exported again", "ref", cfg.Image, "id", img.ID)
	}
	if len(img.Manifest.Layers) == 0 {
		sub.abort(errors.New("the image has no layers"))
		return res, fmt.Errorf("scan %s: the image has no layers, so clair has nothing to index", cfg.Image)
	}
	if sub.started && (sub.key != img.IndexDigest || !sameDigests(sub.layers, img.Manifest.Layers)) {
		// The export is not what inspect promised: submit what was read.
		log.WarnContext(ctx, "the image read differs from the one handed to clair early: submitting it again", "ref", cfg.Image,
			"early", sub.key, "read", img.IndexDigest)
		sub.abort(errors.New("the image read differs from the one inspected"))
		sub.close(ctx)
		sub = &submission{ctx: sctx, api: api, clair: cfg.Clair, server: cfg.Server, base: base, label: cfg.Image,
			probe: probeTimeout, log: log, epoch: start}
	}
	if !sub.started {
		if err := sub.start(img.IndexDigest, img.DiffIDs, img.Manifest.Layers, img.Blobs); err != nil {
			return res, err
		}
	}
	stage(StageIndexing)
	err = sub.wait(ctx)
	res.Timings.Index = sub.span
	// Clair has answered: no request of its should still be running, but
	// one may finish its bookkeeping just after Clair has the last byte.
	res.Fetches = sub.close(ctx)
	log.DebugContext(ctx, "layer requests from clair", "count", len(res.Fetches), "layers", len(img.Manifest.Layers), "advertised", base.String())
	if err != nil {
		if clairv4.IsLayerFetchError(err) || clairv2.IsLayerFetchError(err) {
			err = &LayerFetchError{Advertised: base.String(), Reason: reason, Fetches: res.Fetches, Err: err}
		}
		return res, fmt.Errorf("scan %s: %w", cfg.Image, err)
	}
	warnings := <-warned
	if sub.indexed != nil && sub.indexed.Packages == 0 {
		warnings = append(warnings, noPackagesWarning)
	}
	stage(StageMatching)
	matchStart := time.Since(start)
	rep, err := fetchReport(ctx, cfg.Clair, api, sub.key, sub.names, layerDigests(img.Manifest.Layers), log)
	res.Timings.Match = Span{Start: matchStart, End: time.Since(start)}
	if err != nil {
		return res, fmt.Errorf("scan %s: %w", cfg.Image, err)
	}
	rep.Warnings = append(warnings, rep.Warnings...)
	res.Report = finish(rep, cfg, img.ID, img.Platform, img.RepoTags, img.IndexDigest, api)
	return res, nil
}

// known is the end of a scan of an image Clair had indexed already: its
// report, read without exporting the image.
func known(ctx context.Context, cfg Config, res *Result, sub *submission, warnings []string, stage func(Stage), start time.Time, log *slog.Logger) (*Result, error) {
	id := sub.identity
	log.InfoContext(ctx, "clair has indexed this image already: not exported", "ref", cfg.Image, "manifest", id.IndexDigest, "id", id.ID)
	res.AlreadyIndexed = true
	res.Image = dockersave.Image{Ref: cfg.Image, Source: dockersave.SourceDaemon, ID: id.ID, Platform: id.Platform,
		RepoTags: id.RepoTags, IndexDigest: id.IndexDigest, DiffIDs: id.DiffIDs}
	stage(StageMatching)
	matchStart := time.Since(start)
	rep := sub.known
	if rep == nil {
		if sub.knownIR != nil && sub.knownIR.Packages == 0 {
			warnings = append(warnings, noPackagesWarning)
		}
		var err error
		rep, err = fetchReport(ctx, cfg.Clair, APIv4, id.IndexDigest, nil, nil, log)
		if err != nil {
			return res, fmt.Errorf("scan %s: %w", cfg.Image, err)
		}
	}
	res.Timings.Match = Span{Start: matchStart, End: time.Since(start)}
	rep.Warnings = append(warnings, rep.Warnings...)
	res.Report = finish(rep, cfg, id.ID, id.Platform, id.RepoTags, id.IndexDigest, sub.api)
	return res, nil
}

// finish fills in what the report says of the image and of Clair.
func finish(rep *report.Report, cfg Config, id digest.Digest, p ocispec.Platform, tags []string, indexed digest.Digest, api string) *report.Report {
	ref, _ := imageref.Parse(cfg.Image) // the loader parsed it already
	rep.Image = report.Image{
		Ref:            cfg.Image,
		Name:           ref.ImageName(tags),
		ID:             id.String(),
		Platform:       platforms.Format(p),
		ManifestDigest: indexed.String(),
	}
	rep.Clair = report.Clair{URL: redact(cfg.Clair.URL), API: api}
	rep.Normalize()
	return rep
}

const noPackagesWarning = "clair found no packages in this image (no supported package database): an empty report does not mean the image is safe"

// dataWarnings asks Clair whether it has any vulnerability data: without,
// every image looks clean.
func dataWarnings(ctx context.Context, c Clair, api string, probeTimeout time.Duration, log *slog.Logger) []string {
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var present bool
	var err error
	if api == APIv4 {
		present, err = c.V4.VulnerabilityDataPresent(pctx)
	} else {
		present, err = c.V2.VulnerabilityDataPresent(pctx)
	}
	switch {
	case err != nil:
		log.DebugContext(ctx, "cannot tell whether clair has vulnerability data", "err", err)
	case present:
		log.DebugContext(ctx, "clair has vulnerability data")
	case api == APIv4:
		log.WarnContext(ctx, "clair's vulnerability database is empty: no updater has finished yet; the report waits for it")
		return []string{"clair reports no finished vulnerability update: its database is empty or still loading, so this image may look cleaner than it is"}
	default:
		log.WarnContext(ctx, "clair v2's vulnerability database is empty: every image will look clean")
		return []string{"clair v2 has no vulnerabilities in any namespace: its updaters have not run, so this image will look clean"}
	}
	return nil
}

// fetchReport reads Clair's vulnerability report: Clair 4's for the
// manifest hash key, Clair 2's for the top layer of names (whose layer
// digests are digests, in order).
func fetchReport(ctx context.Context, c Clair, api string, key digest.Digest, names []string, digests []digest.Digest, log *slog.Logger) (*report.Report, error) {
	start := time.Now()
	if api == APIv2 {
		lr, err := c.V2.LayerReport(ctx, names[len(names)-1])
		if err != nil {
			return nil, err
		}
		log.InfoContext(ctx, "clair reported vulnerabilities", "findings", len(lr.Findings), "namespace", lr.Namespace, "duration", time.Since(start).Round(time.Millisecond))
		return v2Report(lr, names, digests), nil
	}
	vr, err := c.V4.VulnerabilityReport(ctx, key)
	if err != nil {
		if clairv4.IsNoVulnerabilityData(err) {
			return nil, fmt.Errorf("%w: clair answered 202 until the scan gave up: %v", ErrNoVulnerabilityData, err)
		}
		return nil, err
	}
	log.InfoContext(ctx, "clair matched vulnerabilities", "findings", len(vr.Findings), "duration", time.Since(start).Round(time.Millisecond))
	return &report.Report{Findings: vr.Findings, Packages: vr.Packages, Raw: vr.Raw}, nil
}

func layerDigests(layers []ocispec.Descriptor) []digest.Digest {
	out := make([]digest.Digest, len(layers))
	for i, l := range layers {
		out[i] = l.Digest
	}
	return out
}

func sameDigests(a, b []ocispec.Descriptor) bool {
	return slices.EqualFunc(a, b, func(x, y ocispec.Descriptor) bool { return x.Digest == y.Digest })
}

func orAuto(s string) string {
	if s == "" {
		return APIAuto
	}
	return s
}

func layerURLs(g *bridge.Grant, layers []ocispec.Descriptor) ([]string, error) {
	urls := make([]string, len(layers))
	for i, l := range layers {
		u, err := g.URL(l.Digest)
		if err != nil {
			return nil, err
		}
		urls[i] = u
	}
	return urls, nil
}
