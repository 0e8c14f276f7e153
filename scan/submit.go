package scan

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/blobs"
	"github.com/layerbridge/layerbridge/bridge"
	"github.com/layerbridge/layerbridge/clairv2"
	"github.com/layerbridge/layerbridge/clairv4"
	"github.com/layerbridge/layerbridge/dockersave"
	"github.com/layerbridge/layerbridge/report"
)

// ErrAlreadyIndexed ends the load of an image that Clair has indexed
// already: the scan reads Clair's report for it without exporting it. A
// loader wrapping dockersave's sees it as the load's error.
var ErrAlreadyIndexed = errors.New("clair has indexed this image already")

// submission is one image's way to Clair: it asks whether Clair knows the
// image before it is read, and hands Clair the layers as soon as their
// digests are known, while they are still being read (see
// dockersave.Watcher). The load calls Identified and Layers; Run calls the
// rest.
type submission struct {
	ctx    context.Context // the scan's; cancelled when it ends
	api    string
	clair  Clair
	server *bridge.Server
	base   *url.URL
	label  string
	probe  time.Duration
	log    *slog.Logger
	epoch  time.Time // Run's start, for Timings

	mu       sync.Mutex
	identity *dockersave.Identity
	known    *report.Report // Clair's report of an image it had indexed
	knownIR  *clairv4.IndexReport
	started  bool
	key      digest.Digest        // the manifest hash given to Clair 4
	layers   []ocispec.Descriptor // as served
	names    []string             // Clair 2's layer names
	grant    *bridge.Grant
	cancel   context.CancelCauseFunc
	done     chan struct{} // closed when Clair answered the submission
	err      error
	indexed  *clairv4.IndexReport
	span     Span
}

// Identified asks Clair whether it has indexed the image already
// (dockersave.Watcher): Clair 4 by the digest it indexes the image under,
// Clair 2 by its top layer's name. If so, the load stops with
// ErrAlreadyIndexed. Any doubt (an unknown digest, a failed or unfinished
// index, Clair not answering) lets the load go on.
func (s *submission) Identified(ctx context.Context, id dockersave.Identity) error {
	s.mu.Lock()
	s.identity = &id
	s.mu.Unlock()
	pctx, cancel := context.WithTimeout(ctx, s.probe)
	defer cancel()
	switch s.api {
	case APIv4:
		if id.IndexDigest == "" {
			s.log.DebugContext(ctx, "cannot ask clair before exporting: the image's index digest is known only from its export", "ref", s.label)
			return nil
		}
		ir, err := s.clair.V4.IndexReport(pctx, id.IndexDigest)
		switch {
		case clairv4.IsNotFound(err):
			s.log.DebugContext(ctx, "clair has not indexed this image: exporting it", "ref", s.label, "manifest", id.IndexDigest)
			return nil
		case err != nil:
			s.log.DebugContext(ctx, "cannot tell whether clair indexed this image: exporting it", "ref", s.label, "manifest", id.IndexDigest, "err", err)
			return nil
		case ir.State != clairv4.StateIndexFinished || !ir.Success:
			s.log.DebugContext(ctx, "clair's index of this image did not finish: exporting it", "ref", s.label, "manifest", id.IndexDigest, "state", ir.State, "err", ir.Message)
			return nil
		}
		s.mu.Lock()
		s.knownIR = ir
		s.mu.Unlock()
		s.log.DebugContext(ctx, "clair's index of this image is finished: the load stops", "ref", s.label, "manifest", id.IndexDigest, "packages", ir.Packages)
		return ErrAlreadyIndexed
	case APIv2:
		if len(id.DiffIDs) == 0 {
			return nil
		}
		names := clairv2.LayerNames(id.DiffIDs)
		lr, err := s.clair.V2.LayerReport(pctx, names[len(names)-1])
		switch {
		case clairv2.IsNotFound(err):
			s.log.DebugContext(ctx, "clair v2 does not know this image's top layer: exporting it", "ref", s.label, "layer", names[len(names)-1])
			return nil
		case err != nil:
			s.log.DebugContext(ctx, "cannot tell whether clair v2 knows this image: exporting it", "ref", s.label, "err", err)
			return nil
		}
		s.mu.Lock()
		s.names = names
		s.known = v2Report(lr, names, id.DiffIDs)
		s.mu.Unlock()
		s.log.DebugContext(ctx, "clair v2 knows this image's top layer: the load stops", "ref", s.label, "layer", names[len(names)-1])
		return ErrAlreadyIndexed
	}
	return nil
}

// Layers hands the layers to Clair while the load is still reading them
// (dockersave.Watcher), when the digest Clair indexes the image under is
// known already; otherwise Run submits once the load is done.
func (s *submission) Layers(ctx context.Context, layers []ocispec.Descriptor, opener blobs.Opener) {
	s.mu.Lock()
	id := s.identity
	s.mu.Unlock()
	if id == nil || (s.api == APIv4 && id.IndexDigest == "") || len(id.DiffIDs) != len(layers) {
		return
	}
	if err := s.start(id.IndexDigest, id.DiffIDs, layers, opener); err != nil {
		s.log.DebugContext(ctx, "cannot hand clair the layers before the load ends", "ref", s.label, "err", err)
		return
	}
	s.log.DebugContext(ctx, "layers handed to clair while the image is read", "ref", s.label, "layers", len(layers))
}

// start registers the layers on the layer server and submits them to Clair
// in the background; wait waits for Clair's answer.
func (s *submission) start(key digest.Digest, diffIDs []digest.Digest, layers []ocispec.Descriptor, opener blobs.Opener) error {
	g, err := s.server.Register(s.base, s.label, opener, layers)
	if err != nil {
		return err
	}
	urls, err := layerURLs(g, layers)
	if err != nil {
		g.Revoke()
		return err
	}
	ctx, cancel := context.WithCancelCause(s.ctx)
	s.mu.Lock()
	s.started, s.key, s.layers, s.grant, s.cancel = true, key, layers, g, cancel
	s.names = clairv2.LayerNames(diffIDs)
	s.done = make(chan struct{})
	s.span.Start = time.Since(s.epoch)
	names := s.names
	s.mu.Unlock()
	go func() {
		var ir *clairv4.IndexReport
		var err error
		switch s.api {
		case APIv4:
			ir, err = s.submitV4(ctx, key, layers, urls)
		case APIv2:
			err = s.submitV2(ctx, names, layers, urls)
		}
		s.mu.Lock()
		s.indexed, s.err = ir, err
		s.span.End = time.Since(s.epoch)
		s.mu.Unlock()
		close(s.done)
	}()
	return nil
}

func (s *submission) submitV4(ctx context.Context, key digest.Digest, layers []ocispec.Descriptor, urls []string) (*clairv4.IndexReport, error) {
	m := clairv4.Manifest{Hash: key}
	for i, l := range layers {
		m.Layers = append(m.Layers, clairv4.Layer{Hash: l.Digest, URI: urls[i]})
		s.log.DebugContext(ctx, "layer for clair", "layer", i+1, "digest", l.Digest, "size", l.Size, "media_type", l.MediaType)
	}
	s.log.DebugContext(ctx, "submitting manifest to clair", "manifest", m.Hash, "layers", len(m.Layers))
	start := time.Now()
	ir, err := s.clair.V4.Index(ctx, m)
	if err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "clair indexed the image", "manifest", key, "state", ir.State,
		"packages", ir.Packages, "distributions", ir.Distributions, "duration", time.Since(start).Round(time.Millisecond))
	return ir, nil
}

// submitV2 posts the layers parent first: Clair 2 downloads each before it
// answers, so each waits for its layer's bytes, while the next is read.
func (s *submission) submitV2(ctx context.Context, names []string, layers []ocispec.Descriptor, urls []string) error {
	start := time.Now()
	for i, name := range names {
		l := clairv2.Layer{Name: name, Path: urls[i], Format: "Docker"}
		if i > 0 {
			l.ParentName = names[i-1]
		}
		s.log.DebugContext(ctx, "posting layer to clair", "layer", i+1, "of", len(names), "digest", layers[i].Digest, "name", name, "parent", l.ParentName)
		if err := s.clair.V2.PostLayer(ctx, l); err != nil {
			return fmt.Errorf("layer %d of %d (%s): %w", i+1, len(names), layers[i].Digest, err)
		}
	}
	s.log.InfoContext(ctx, "clair indexed the layers", "layers", len(names), "duration", time.Since(start).Round(time.Millisecond))
	return nil
}

// wait waits for Clair's answer to the submission.
func (s *submission) wait(ctx context.Context) error {
	select {
	case <-s.done:
	case <-ctx.Done():
		s.cancel(context.Cause(ctx))
		<-s.done
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// abort stops a submission whose load failed: Clair's downloads of layers
// not read yet fail at once (the opener fails with the load), the request
// to Clair is cancelled, and its layers are no longer served.
func (s *submission) abort(cause error) {
	s.mu.Lock()
	started := s.started
	s.mu.Unlock()
	if !started {
		return
	}
	s.cancel(cause)
	<-s.done
	s.grant.Revoke()
}

// close ends the serving of the layers once Clair is done and returns
// every request Clair made for them.
func (s *submission) close(ctx context.Context) []bridge.Fetch {
	if s.grant == nil {
		return nil
	}
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	fetches, _ := s.grant.Close(closeCtx)
	return fetches
}

// v2Report converts Clair 2's report of the top layer, mapping its layer
// names back to the layers' digests.
func v2Report(lr *clairv2.Report, names []string, digests []digest.Digest) *report.Report {
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
	var warnings []string
	if lr.Namespace == "" {
		warnings = append(warnings, "clair v2 detected no operating system namespace in this image: an empty report does not mean the image is safe")
	}
	return &report.Report{Findings: lr.Findings, Packages: lr.Packages, Raw: lr.Raw, Warnings: warnings}
}
