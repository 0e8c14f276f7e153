package report_test

import (
	"testing"

	"github.com/layerbridge/layerbridge/report"
)

// TestRenderersNameTheImageHoweverSpelled: SARIF's artifact and the
// CycloneDX image component name the image by its normalized name, so one
// image scanned under several spellings (or from an archive carrying its
// tag) is one image on a dashboard.
func TestRenderersNameTheImageHoweverSpelled(t *testing.T) {
	for _, img := range []report.Image{
		scanned(t, "alpine:3.11"),
		scanned(t, "docker.io/library/alpine:3.11"),
		scanned(t, "docker-daemon:library/alpine:3.11"),
		scanned(t, "index.docker.io/library/alpine:3.11"),
		scanned(t, "docker-archive:build/alpine.tar", "alpine:3.11"),
		scanned(t, "sha256:a187dde48cd289ac374ad8539930628314bc581a481cdb41409c9289419ddb72", "alpine:3.11"),
	} {
		img.ManifestDigest = alpineManifest
		r := &report.Report{Image: img, Findings: []report.Finding{finding("CVE-1", "p", report.Low)}}
		r.Normalize()
		doc := validateSARIF(t, render(t, report.Options{}, "sarif", r), r)
		if uri := doc.Runs[0].Results[0].Locations[0].PhysicalLocation.ArtifactLocation.URI; uri != "alpine" {
			t.Errorf("scan of %q: SARIF artifact %q, want alpine", img.Ref, uri)
		}
		c := checkBOM(t, render(t, report.Options{}, "cyclonedx", r)).Metadata.Component
		if c.Name != "alpine" || c.Version != "3.11" {
			t.Errorf("scan of %q: CycloneDX image %q version %q, want alpine 3.11", img.Ref, c.Name, c.Version)
		}
	}
}
