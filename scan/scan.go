package scan

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
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
	Report     *report.Report
	Image      dockersave.Image
	API        string
	Advertised *url.URL
	Reason     string         // why that address
	Fetches    []bridge.Fetch // every layer request Clair made
}

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
	v4, v2 := cfg.Clair.V4, cfg.Clair.V2
	probeTimeout := cfg.ProbeTimeout
	if probeTimeout <= 0 {
		probeTimeout = DefaultProbeTimeout
	}

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
	stage(StageExporting)
	img, release, err := cfg.Loader.Load(ctx, cfg.Image, cfg.Platform)
	if err != nil {
		return res, err
	}
	// Runs last, after the grant is closed: no layer of the image is
	// evicted while Clair may still download it.
	defer release()
	res.Image = img
	if img.CacheHit {
		log.InfoContext(ctx, "image found in the cache, not exported again", "ref", cfg.Image, "id", img.ID)
	}
	if len(img.Manifest.Layers) == 0 {
		return res, fmt.Errorf("scan %s: the image has no layers, so clair has nothing to index", cfg.Image)
	}

	base, reason := cfg.Base, cmp.Or(cfg.Reason, "the layer server's configured address")
	res.Advertised, res.Reason = base, reason

	grant, err := cfg.Server.Register(base, cfg.Image, img.Blobs, img.Manifest.Layers)
	if err != nil {
		return res, err
	}
	defer grant.Revoke()

	var rep *report.Report
	switch api {
	case APIv4:
		rep, err = scanV4(ctx, v4, img, grant, stage, probeTimeout, log)
	case APIv2:
		rep, err = scanV2(ctx, v2, img, grant, stage, probeTimeout, log)
	}
	// Clair has answered: no request of its should still be running, but
	// one may finish its bookkeeping just after Clair has the last byte.
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	res.Fetches, _ = grant.Close(closeCtx)
	cancel()
	log.DebugContext(ctx, "layer requests from clair", "count", len(res.Fetches), "layers", len(img.Manifest.Layers), "advertised", base.String())
	if err != nil {
		if clairv4.IsLayerFetchError(err) || clairv2.IsLayerFetchError(err) {
			err = &LayerFetchError{Advertised: base.String(), Reason: reason, Fetches: res.Fetches, Err: err}
		}
		return res, fmt.Errorf("scan %s: %w", cfg.Image, err)
	}
	ref, _ := imageref.Parse(cfg.Image) // the loader parsed it already
	rep.Image = report.Image{
		Ref:            cfg.Image,
		Name:           ref.ImageName(img.RepoTags),
		ID:             img.ID.String(),
		Platform:       platforms.Format(img.Platform),
		ManifestDigest: img.ManifestDigest.String(),
	}
	rep.Clair = report.Clair{URL: redact(cfg.Clair.URL), API: api}
	rep.Normalize()
	res.Report = rep
	return res, nil
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

func scanV4(ctx context.Context, c *clairv4.Client, img dockersave.Image, g *bridge.Grant, stage func(Stage), probeTimeout time.Duration, log *slog.Logger) (*report.Report, error) {
	urls, err := layerURLs(g, img.Manifest.Layers)
	if err != nil {
		return nil, err
	}
	m := clairv4.Manifest{Hash: img.ManifestDigest}
	for i, l := range img.Manifest.Layers {
		m.Layers = append(m.Layers, clairv4.Layer{Hash: l.Digest, URI: urls[i]})
		log.DebugContext(ctx, "layer for clair", "layer", i+1, "digest", l.Digest, "size", l.Size, "media_type", l.MediaType)
	}
	var warnings []string
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	present, err := c.VulnerabilityDataPresent(pctx)
	cancel()
	switch {
	case err != nil:
		log.DebugContext(ctx, "cannot tell whether clair has vulnerability data", "err", err)
	case present:
		log.DebugContext(ctx, "clair has vulnerability data")
	case !present:
		warnings = append(warnings, "clair reports no finished vulnerability update: its database is empty or still loading, so this image may look cleaner than it is")
		log.WarnContext(ctx, "clair's vulnerability database is empty: no updater has finished yet; the report waits for it")
	}
	stage(StageIndexing)
	log.DebugContext(ctx, "submitting manifest to clair", "manifest", m.Hash, "layers", len(m.Layers))
	start := time.Now()
	ir, err := c.Index(ctx, m)
	if err != nil {
		return nil, err
	}
	log.InfoContext(ctx, "clair indexed the image", "manifest", img.ManifestDigest, "state", ir.State,
		"packages", ir.Packages, "distributions", ir.Distributions, "duration", time.Since(start).Round(time.Millisecond))
	if ir.Packages == 0 {
		warnings = append(warnings, "clair found no packages in this image (no supported package database): an empty report does not mean the image is safe")
	}
	stage(StageMatching)
	start = time.Now()
	vr, err := c.VulnerabilityReport(ctx, img.ManifestDigest)
	if err != nil {
		if clairv4.IsNoVulnerabilityData(err) {
			return nil, fmt.Errorf("%w: clair answered 202 until the scan gave up: %v", ErrNoVulnerabilityData, err)
		}
		return nil, err
	}
	log.InfoContext(ctx, "clair matched vulnerabilities", "findings", len(vr.Findings), "duration", time.Since(start).Round(time.Millisecond))
	return &report.Report{Findings: vr.Findings, Packages: vr.Packages, Raw: vr.Raw, Warnings: warnings}, nil
}

func scanV2(ctx context.Context, c *clairv2.Client, img dockersave.Image, g *bridge.Grant, stage func(Stage), probeTimeout time.Duration, log *slog.Logger) (*report.Report, error) {
	urls, err := layerURLs(g, img.Manifest.Layers)
	if err != nil {
		return nil, err
	}
	digests := make([]digest.Digest, len(img.Manifest.Layers))
	for i, l := range img.Manifest.Layers {
		digests[i] = l.Digest
	}
	names := clairv2.LayerNames(digests)
	var warnings []string
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	present, err := c.VulnerabilityDataPresent(pctx)
	cancel()
	if err != nil {
		log.DebugContext(ctx, "cannot tell whether clair has vulnerability data", "err", err)
	} else if present {
		log.DebugContext(ctx, "clair has vulnerability data")
	} else {
		warnings = append(warnings, "clair v2 has no vulnerabilities in any namespace: its updaters have not run, so this image will look clean")
		log.WarnContext(ctx, "clair v2's vulnerability database is empty: every image will look clean")
	}
	stage(StageIndexing)
	start := time.Now()
	for i, name := range names {
		l := clairv2.Layer{Name: name, Path: urls[i], Format: "Docker"}
		if i > 0 {
			l.ParentName = names[i-1]
		}
		log.DebugContext(ctx, "posting layer to clair", "layer", i+1, "of", len(names), "digest", digests[i], "name", name, "parent", l.ParentName)
		if err := c.PostLayer(ctx, l); err != nil {
			return nil, fmt.Errorf("layer %d of %d (%s): %w", i+1, len(names), digests[i], err)
		}
	}
	log.InfoContext(ctx, "clair indexed the layers", "layers", len(names), "duration", time.Since(start).Round(time.Millisecond))
	stage(StageMatching)
	start = time.Now()
	lr, err := c.LayerReport(ctx, names[len(names)-1])
	if err != nil {
		return nil, err
	}
	log.InfoContext(ctx, "clair reported vulnerabilities", "findings", len(lr.Findings), "namespace", lr.Namespace, "duration", time.Since(start).Round(time.Millisecond))
	byName := make(map[string]string, len(names))
	for i, n := range names {
		byName[n] = digests[i].String()
	}
	for i := range lr.Findings {
		if d, ok := byName[lr.Findings[i].Layer]; ok {
			lr.Findings[i].Layer = d
		}
	}
	for i := range lr.Packages {
		if d, ok := byName[lr.Packages[i].Layer]; ok {
			lr.Packages[i].Layer = d
		}
	}
	if lr.Namespace == "" {
		warnings = append(warnings, "clair v2 detected no operating system namespace in this image: an empty report does not mean the image is safe")
	}
	return &report.Report{Findings: lr.Findings, Packages: lr.Packages, Raw: lr.Raw, Warnings: warnings}, nil
}
