package report_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/layerbridge/layerbridge/report"
)

// hostile is what a compromised or careless advisory feed could put into
// Clair's report: markup, script, ANSI escapes, control characters.
const hostile = "<script>alert(\"x\")</script> & <img src=https://evil.example/x.png> \x1b[2J\x1b]0;pwned\x07 \x00end"

// mixedReport has every severity, a finding without a fix, hostile text, an
// ignored finding and a warning.
func mixedReport() *report.Report {
	r := &report.Report{
		Image: report.Image{
			Ref: "registry.example:5000/team/app:1.0", Name: "registry.example:5000/team/app:1.0",
			ID: alpineID, Platform: "linux/arm64", ManifestDigest: alpineManifest,
		},
		Clair: report.Clair{URL: "http://clair:6060", API: "v2"},
		Findings: []report.Finding{
			{Name: "CVE-2024-0001", Package: "openssl", Version: "3.0.1-r0", FixedIn: "3.0.2-r0", Severity: report.Critical,
				Layer: alpineLayer, Link: "javascript:alert(1)", Description: hostile},
			{Name: "CVE-2024-0002", Package: "busybox", Version: "1.36.1-r2", FixedIn: "1.36.1-r5", Severity: report.High,
				Link: "https://security.alpinelinux.org/vuln/CVE-2024-0002", Description: "A use-after-free in awk."},
			{Name: "CVE-2024-0003", Package: "zlib", Version: "1.2.13-r0", Severity: report.Medium},
			{Name: "CVE-2024-0004", Package: "pkg\twith\ttabs\x1b[31m", Version: "1", FixedIn: "2", Severity: report.Low},
			{Name: "CVE-2024-0005", Package: "musl", Version: "1.2.4-r1", FixedIn: "1.2.4-r2", Severity: report.Negligible},
			{Name: "CVE-2024-0006", Package: "musl", Version: "1.2.4-r1", Severity: report.Unknown},
			{Name: "CVE-2024-0007", Package: "x", Version: "1", Severity: report.Defcon1},
			{Name: "CVE-2024-0002", Package: "ssl_client", Version: "1.36.1-r2", FixedIn: "1.36.1-r5", Severity: report.High},
		},
		Ignored: []report.Ignored{{
			Finding: report.Finding{Name: "CVE-2024-0008", Package: "curl", Version: "8.0.0-r0", Severity: report.High},
			Reason:  "only used at build time <b>honest</b>",
		}},
		Warnings: []string{"Clair's vulnerability database is empty: every image looks clean <until updated>"},
		Raw:      []byte(`{"Layer":{}}`),
	}
	r.Normalize()
	return r
}

func TestFormats(t *testing.T) {
	formats := report.Formats()
	want := []string{"table", "json", "clair", "html", "sarif", "junit", "cyclonedx"}
	if strings.Join(formats, ",") != strings.Join(want, ",") {
		t.Errorf("Formats() = %q, want %q", formats, want)
	}
	if formats[0] != report.DefaultFormat {
		t.Errorf("the default format %q is not listed first", report.DefaultFormat)
	}
	formats[0] = "changed"
	if report.Formats()[0] != report.DefaultFormat {
		t.Errorf("Formats() returns shared state")
	}
	for _, f := range want {
		if err := report.CheckFormat(f); err != nil {
			t.Errorf("CheckFormat(%q) = %v", f, err)
		}
	}
}

func TestRenderErrors(t *testing.T) {
	var buf bytes.Buffer
	err := report.Render(&buf, "xml", mixedReport())
	if !errors.Is(err, report.ErrUnknownFormat) || !strings.Contains(err.Error(), "table, json, clair, html, sarif, junit") {
		t.Errorf("unknown format: err = %v, want ErrUnknownFormat listing the formats", err)
	}
	if err := report.CheckFormat("JSON"); !errors.Is(err, report.ErrUnknownFormat) {
		t.Errorf("CheckFormat is not exact: %v", err)
	}
	if err := report.Render(&buf, "table", nil); err == nil {
		t.Errorf("rendering a nil report succeeded")
	}
	r := mixedReport()
	r.Raw = nil
	if err := report.Render(&buf, "clair", r); err == nil || !strings.Contains(err.Error(), "Raw is empty") {
		t.Errorf("clair format without Raw: err = %v", err)
	}
	if buf.Len() != 0 {
		t.Errorf("failed renders wrote %q", buf.String())
	}
}

func TestRenderClairIsByteForByte(t *testing.T) {
	want := recordedBody(t, "v4.9/GET-vulnerability_report.http")
	r := alpineReport(t)
	if got := render(t, report.Options{}, "clair", r); !bytes.Equal(got, want) {
		t.Errorf("clair format is not Clair's response body byte for byte (%d vs %d bytes)", len(got), len(want))
	}
}

// Every format renders an empty report (a clean image or an empty
// vulnerability database) without error, and says what it must.
func TestRenderEmptyReport(t *testing.T) {
	r := &report.Report{
		Image:    report.Image{Ref: "scratch-app:latest"},
		Warnings: []string{"no vulnerability data"},
		Raw:      []byte(`{}`),
	}
	r.Normalize()
	for _, format := range report.Formats() {
		out := string(render(t, report.Options{}, format, r))
		if format != "clair" && !strings.Contains(out, "no vulnerability data") {
			t.Errorf("%s: the warning is missing:\n%s", format, out)
		}
	}
}
