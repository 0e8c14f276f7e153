package report_test

import (
	"bytes"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/layerbridge/layerbridge/clairv2"
	"github.com/layerbridge/layerbridge/clairv4"
	"github.com/layerbridge/layerbridge/internal/httprec"
	"github.com/layerbridge/layerbridge/report"
)

// cdxSchema is the official CycloneDX 1.6 JSON schema with the two schemas
// it references, compiled once from testdata/cyclonedx (see its README).
var cdxSchema = sync.OnceValues(func() (*jsonschema.Schema, error) {
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	for _, name := range []string{"bom-1.6.schema.json", "spdx.schema.json", "jsf-0.82.schema.json"} {
		f, err := os.Open(filepath.Join("testdata", "cyclonedx", name))
		if err != nil {
			return nil, err
		}
		doc, err := jsonschema.UnmarshalJSON(f)
		f.Close()
		if err != nil {
			return nil, err
		}
		// The schemas reference each other by their $id URLs: serve them
		// from here, never from the network.
		if err := c.AddResource("http://cyclonedx.org/schema/"+name, doc); err != nil {
			return nil, err
		}
	}
	return c.Compile("http://cyclonedx.org/schema/bom-1.6.schema.json")
})

// checkBOM validates data against the schema and checks what the schema
// cannot: bom-refs are unique and every reference names one. It returns
// the BOM as cyclonedx-go decodes it.
func checkBOM(t *testing.T, data []byte) *cdx.BOM {
	t.Helper()
	sch, err := cdxSchema()
	if err != nil {
		t.Fatalf("compile the CycloneDX schema: %v", err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("the BOM is not JSON: %v", err)
	}
	if err := sch.Validate(doc); err != nil {
		t.Fatalf("the BOM does not validate against the CycloneDX 1.6 schema: %v\n%s", err, data)
	}
	var bom cdx.BOM
	if err := cdx.NewBOMDecoder(bytes.NewReader(data), cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
		t.Fatalf("cyclonedx-go cannot decode the BOM: %v", err)
	}
	refs := map[string]bool{bom.Metadata.Component.BOMRef: true}
	for _, c := range *bom.Components {
		if refs[c.BOMRef] {
			t.Errorf("bom-ref %q is not unique", c.BOMRef)
		}
		refs[c.BOMRef] = true
	}
	for _, d := range *bom.Dependencies {
		for _, ref := range append([]string{d.Ref}, *d.Dependencies...) {
			if !refs[ref] {
				t.Errorf("dependency names %q, which no component has", ref)
			}
		}
	}
	for _, v := range *bom.Vulnerabilities {
		if v.Affects == nil || len(*v.Affects) == 0 {
			t.Errorf("vulnerability %s affects nothing", v.ID)
			continue
		}
		for _, a := range *v.Affects {
			if !refs[a.Ref] {
				t.Errorf("vulnerability %s affects %q, which no component has", v.ID, a.Ref)
			}
		}
	}
	return &bom
}

// summary counts a BOM's components (packages, not the image or operating
// systems), vulnerabilities and VEX entries (vulnerabilities with an
// analysis).
func summary(bom *cdx.BOM) (packages, vulns, vex int) {
	for _, c := range *bom.Components {
		if c.Type == cdx.ComponentTypeLibrary {
			packages++
		}
	}
	for _, v := range *bom.Vulnerabilities {
		vulns++
		if v.Analysis != nil {
			vex++
		}
	}
	return packages, vulns, vex
}

// serve answers every request with a recorded response.
func serve(t *testing.T, recording string) *url.URL {
	t.Helper()
	rec, err := httprec.Load(filepath.Join(samples, recording))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	return u
}

// clair4Report is the report a scan of alpine:3.11 gets from Clair 4.9,
// converted by the real client from the recorded response.
func clair4Report(t *testing.T) *report.Report {
	vr, err := clairv4.New(serve(t, "v4.9/GET-vulnerability_report.http")).VulnerabilityReport(t.Context(), alpineManifest)
	if err != nil {
		t.Fatal(err)
	}
	r := &report.Report{
		Image:    report.Image{Ref: "alpine:3.11", Name: "docker.io/library/alpine:3.11", ID: alpineID, Platform: "linux/amd64", ManifestDigest: alpineManifest},
		Clair:    report.Clair{URL: "http://clair:6060", API: "v4"},
		Findings: vr.Findings, Packages: vr.Packages, Raw: vr.Raw,
	}
	r.Normalize()
	return r
}

// clair2Report is the same from Clair 2.1.7.
func clair2Report(t *testing.T) *report.Report {
	lr, err := clairv2.New(serve(t, "v2.1.7/GET-v1-layers-features-vulnerabilities.http")).LayerReport(t.Context(), alpineLayer)
	if err != nil {
		t.Fatal(err)
	}
	r := &report.Report{
		Image:    report.Image{Ref: "alpine:3.11", Name: "docker.io/library/alpine:3.11", ID: alpineID, Platform: "linux/amd64", ManifestDigest: alpineManifest},
		Clair:    report.Clair{URL: "http://clair:6060", API: "v2"},
		Findings: lr.Findings, Packages: lr.Packages, Raw: lr.Raw,
	}
	r.Normalize()
	return r
}

// vexRules ignores a vulnerability of each recording with an analysis of
// its own, one with the default state, and one that has expired.
const vexRules = `ignore:
  - id: CVE-2020-28928
    package: musl
    expires: 2027-01-31
    reason: "no DNS resolver in this image"
    vex-justification: code_not_reachable
  - id: CVE-2021-28831
    reason: "accepted until the base image moves"
    vex-state: exploitable
  - id: CVE-2021-30139
  - id: CVE-2020-1967
    expires: 2021-01-01
`

func applyRules(t *testing.T, r *report.Report, yaml string) *report.Report {
	t.Helper()
	rules, err := report.LoadIgnore(strings.NewReader(yaml))
	if err != nil {
		t.Fatal(err)
	}
	rules.Apply(goldenNow, r)
	return r
}

// Every BOM validates against the official schema: the golden report, the
// reports the real clients make from the Clair 4 and Clair 2 recordings,
// with and without ignore rules (VEX), and reports with hostile text,
// packages of every ecosystem, or nothing at all.
func TestCycloneDXValidates(t *testing.T) {
	reports := map[string]func(t *testing.T) *report.Report{
		"alpine golden":     alpineReport,
		"clair4":            clair4Report,
		"clair4 with rules": func(t *testing.T) *report.Report { return applyRules(t, clair4Report(t), vexRules) },
		"clair2":            clair2Report,
		"clair2 with rules": func(t *testing.T) *report.Report { return applyRules(t, clair2Report(t), vexRules) },
		"mixed":             func(*testing.T) *report.Report { return normalized(mixedReport()) },
		"ecosystems":        func(*testing.T) *report.Report { return ecosystemReport() },
		"empty": func(*testing.T) *report.Report {
			return normalized(&report.Report{Image: report.Image{Ref: "scratch-app"}})
		},
	}
	sev := report.Low
	for name, build := range reports {
		t.Run(name, func(t *testing.T) {
			r := build(t)
			for _, o := range []report.Options{{}, {Time: goldenNow, ToolVersion: "v1.2.3", FailOn: &sev}} {
				checkBOM(t, render(t, o, "cyclonedx", r))
			}
		})
	}
}

// The BOMs of the Clair 4 and Clair 2 recordings list the image's 14
// packages; every finding is a vulnerability, and each ignored one a VEX
// entry.
func TestCycloneDXFromRecordings(t *testing.T) {
	tests := []struct {
		name             string
		report           func(*testing.T) *report.Report
		vulns, pairs     int // without ignore rules: distinct ids, (package, id) pairs
		vulnsWithRules   int
		vexWithRules     int
		clairAPIProperty string
	}{
		// Clair 4: 17 pairs over 9 ids. With the rules, musl's
		// CVE-2020-28928 (musl-utils stays), CVE-2021-28831 (busybox and
		// ssl_client, one analysis) and CVE-2021-30139 are ignored: 9 - 2
		// ids still have findings, plus 3 VEX entries.
		{"clair4", clair4Report, 9, 17, 10, 3, "v4"},
		// Clair 2: 3 pairs over 3 ids, all ignored by the rules.
		{"clair2", clair2Report, 3, 3, 3, 3, "v2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bom := checkBOM(t, render(t, report.Options{}, "cyclonedx", tt.report(t)))
			packages, vulns, vex := summary(bom)
			if packages != 14 || vulns != tt.vulns || vex != 0 {
				t.Errorf("%d packages, %d vulnerabilities, %d VEX entries; want 14, %d, 0", packages, vulns, vex, tt.vulns)
			}
			pairs := 0
			for _, v := range *bom.Vulnerabilities {
				pairs += len(*v.Affects)
			}
			if pairs != tt.pairs {
				t.Errorf("%d affected components over all vulnerabilities, want Clair's %d pairs", pairs, tt.pairs)
			}
			for _, c := range *bom.Components {
				if c.Type != cdx.ComponentTypeLibrary {
					continue
				}
				if !strings.HasPrefix(c.PackageURL, "pkg:apk/alpine/"+c.Name+"@"+c.Version) || !strings.Contains(c.PackageURL, "distro=alpine-3.11") {
					t.Errorf("component %s %s has purl %q", c.Name, c.Version, c.PackageURL)
				}
				if !slices.Contains(*c.Properties, cdx.Property{Name: "layerbridge:layer:digest", Value: alpineLayer}) {
					t.Errorf("component %s does not name its layer: %+v", c.Name, *c.Properties)
				}
			}
			if tools := *bom.Metadata.Tools.Components; len(tools) != 2 || (*tools[1].Properties)[0].Value != tt.clairAPIProperty {
				t.Errorf("tools = %+v, want layerbridge and clair %s", tools, tt.clairAPIProperty)
			}

			withRules := checkBOM(t, render(t, report.Options{}, "cyclonedx", applyRules(t, tt.report(t), vexRules)))
			if _, vulns, vex := summary(withRules); vulns != tt.vulnsWithRules || vex != tt.vexWithRules {
				t.Errorf("with rules: %d vulnerabilities, %d VEX entries; want %d, %d", vulns, vex, tt.vulnsWithRules, tt.vexWithRules)
			}
		})
	}
}

// The analysis of an ignored finding is its rule's: state (not_affected
// unless the rule names one), justification, reason and expiry.
func TestCycloneDXVEX(t *testing.T) {
	bom := checkBOM(t, render(t, report.Options{}, "cyclonedx", applyRules(t, clair4Report(t), vexRules)))
	type analysis struct {
		state         cdx.ImpactAnalysisState
		justification cdx.ImpactAnalysisJustification
		detail        string
		expires       string
		affects       int
	}
	got := map[string]analysis{}
	for _, v := range *bom.Vulnerabilities {
		if v.Analysis == nil {
			continue
		}
		a := analysis{state: v.Analysis.State, justification: v.Analysis.Justification, detail: v.Analysis.Detail, affects: len(*v.Affects)}
		for _, p := range *v.Properties {
			if p.Name == "layerbridge:ignore:expires" {
				a.expires = p.Value
			}
		}
		got[v.ID] = a
	}
	want := map[string]analysis{
		"CVE-2020-28928": {cdx.IASNotAffected, cdx.IAJCodeNotReachable, "no DNS resolver in this image (ignored until 2027-01-31)", "2027-01-31", 1},
		"CVE-2021-28831": {cdx.IASExploitable, "", "accepted until the base image moves", "", 2},
		"CVE-2021-30139": {cdx.IASNotAffected, "", "ignored by an ignore rule that gives no reason", "", 1},
	}
	if len(got) != len(want) {
		t.Errorf("VEX entries for %v, want %v (the expired rule for CVE-2020-1967 ignores nothing)", slices.Sorted(mapKeys(got)), slices.Sorted(mapKeys(want)))
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("%s: analysis %+v, want %+v", id, got[id], w)
		}
	}
	// musl-utils is not covered by the rule limited to musl: its
	// CVE-2020-28928 stays a vulnerability without analysis.
	n := 0
	for _, v := range *bom.Vulnerabilities {
		if v.ID == "CVE-2020-28928" && v.Analysis == nil {
			n++
			if len(*v.Affects) != 1 || !strings.Contains((*v.Affects)[0].Ref, "/musl-utils@") {
				t.Errorf("active CVE-2020-28928 affects %+v, want musl-utils only", *v.Affects)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d active CVE-2020-28928 entries, want 1", n)
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// The BOM survives cyclonedx-go: decoded and encoded again, it is the same
// bytes, so nothing in it is outside the library's model of CycloneDX 1.6.
func TestCycloneDXRoundTrip(t *testing.T) {
	for name, r := range map[string]*report.Report{
		"alpine":     alpineReport(t),
		"mixed":      normalized(mixedReport()),
		"ecosystems": ecosystemReport(),
	} {
		t.Run(name, func(t *testing.T) {
			data := render(t, report.Options{Time: goldenNow, ToolVersion: "v1.2.3"}, "cyclonedx", r)
			var bom cdx.BOM
			if err := cdx.NewBOMDecoder(bytes.NewReader(data), cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
				t.Fatal(err)
			}
			var again bytes.Buffer
			if err := cdx.NewBOMEncoder(&again, cdx.BOMFileFormatJSON).SetPretty(true).SetEscapeHTML(false).Encode(&bom); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again.Bytes(), data) {
				t.Errorf("the BOM changes through cyclonedx-go:\n%s\n---\n%s", again.Bytes(), data)
			}
		})
	}
}

// The alpine golden BOM: the image as metadata component, 14 packages and
// the operating system, 9 vulnerabilities with findings and 1 VEX entry.
func TestCycloneDXAlpine(t *testing.T) {
	bom := checkBOM(t, render(t, report.Options{}, "cyclonedx", alpineReport(t)))
	if packages, vulns, vex := summary(bom); packages != 14 || vulns != 10 || vex != 1 {
		t.Errorf("%d packages, %d vulnerabilities, %d VEX; want 14, 10, 1", packages, vulns, vex)
	}
	img := bom.Metadata.Component
	if img.Type != cdx.ComponentTypeContainer || img.Name != "alpine" || img.Version != "3.11" || img.BOMRef != alpineManifest {
		t.Errorf("metadata component = %+v", img)
	}
	for _, want := range []cdx.Property{
		{Name: "layerbridge:image:id", Value: alpineID},
		{Name: "layerbridge:image:manifest_digest", Value: alpineManifest},
		{Name: "layerbridge:image:platform", Value: "linux/amd64"},
	} {
		if !slices.Contains(*img.Properties, want) {
			t.Errorf("image properties %+v lack %+v", *img.Properties, want)
		}
	}
	os := (*bom.Components)[0]
	if os.Type != cdx.ComponentTypeOS || os.Name != "alpine" || os.Version != "3.11" {
		t.Errorf("first component = %+v, want the operating system alpine 3.11", os)
	}
	var libssl *cdx.Component
	for i, c := range *bom.Components {
		if c.Name == "libssl1.1" {
			libssl = &(*bom.Components)[i]
		}
	}
	if libssl == nil || libssl.PackageURL != "pkg:apk/alpine/libssl1.1@1.1.1d-r3?arch=x86_64&distro=alpine-3.11" ||
		!slices.Contains(*libssl.Properties, cdx.Property{Name: "layerbridge:package:source", Value: "openssl"}) {
		t.Errorf("libssl1.1 = %+v", libssl)
	}
	for _, v := range *bom.Vulnerabilities {
		if v.ID != "CVE-2021-3449" {
			continue
		}
		if v.Source == nil || v.Source.URL != "https://security.alpinelinux.org/vuln/CVE-2021-3449" {
			t.Errorf("CVE-2021-3449 source = %+v", v.Source)
		}
		if v.Recommendation != "Upgrade libcrypto1.1 to 1.1.1k-r0, libssl1.1 to 1.1.1k-r0." {
			t.Errorf("CVE-2021-3449 recommendation = %q", v.Recommendation)
		}
		want := []cdx.AffectedVersions{{Version: "1.1.1d-r3", Status: cdx.VulnerabilityStatusAffected}, {Version: "1.1.1k-r0", Status: cdx.VulnerabilityStatusNotAffected}}
		if a := *v.Affects; len(a) != 2 || !slices.Equal(*a[0].Range, want) {
			t.Errorf("CVE-2021-3449 affects %+v", a)
		}
	}
}

var uuidV5 = regexp.MustCompile(`^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// Without a time the BOM depends on the report alone; the serial number
// changes with anything in it, the time included.
func TestCycloneDXSerialAndTimestamp(t *testing.T) {
	r := alpineReport(t)
	decode := func(o report.Options, r *report.Report) *cdx.BOM { return checkBOM(t, render(t, o, "cyclonedx", r)) }
	a, b := render(t, report.Options{}, "cyclonedx", r), render(t, report.Options{}, "cyclonedx", alpineReport(t))
	if !bytes.Equal(a, b) {
		t.Fatal("two renders of the same report differ")
	}
	plain := decode(report.Options{}, r)
	if !uuidV5.MatchString(plain.SerialNumber) {
		t.Errorf("serial number %q is not a version 5 UUID URN", plain.SerialNumber)
	}
	if plain.Metadata.Timestamp != "" {
		t.Errorf("timestamp %q without Options.Time", plain.Metadata.Timestamp)
	}
	timed := decode(report.Options{Time: goldenNow.In(time.FixedZone("CET", 3600))}, r)
	if timed.Metadata.Timestamp != "2026-03-01T12:00:00Z" {
		t.Errorf("timestamp = %q, want Options.Time in UTC", timed.Metadata.Timestamp)
	}
	other := alpineReport(t)
	other.Findings = other.Findings[1:]
	serials := map[string]string{
		"plain": plain.SerialNumber, "timed": timed.SerialNumber, "one finding less": decode(report.Options{}, other).SerialNumber,
	}
	seen := map[string]string{}
	for what, s := range serials {
		if prev, dup := seen[s]; dup {
			t.Errorf("%s and %s have the same serial number %s", prev, what, s)
		}
		seen[s] = what
	}
}

// Clair's severities map to CycloneDX's as the README says, and Clair's own
// name stays as a property.
func TestCycloneDXSeverities(t *testing.T) {
	want := map[report.Severity]cdx.Severity{
		report.Unknown: cdx.SeverityUnknown, report.Negligible: cdx.SeverityInfo, report.Low: cdx.SeverityLow,
		report.Medium: cdx.SeverityMedium, report.High: cdx.SeverityHigh, report.Critical: cdx.SeverityCritical,
		report.Defcon1: cdx.SeverityCritical,
	}
	r := &report.Report{Image: report.Image{Ref: "app:1"}}
	for _, sev := range report.Severities {
		r.Findings = append(r.Findings, report.Finding{Name: "CVE-" + sev.String(), Package: "p", Version: "1", Severity: sev})
	}
	r.Normalize()
	bom := checkBOM(t, render(t, report.Options{}, "cyclonedx", r))
	for _, v := range *bom.Vulnerabilities {
		sev, err := report.ParseSeverity(strings.TrimPrefix(v.ID, "CVE-"))
		if err != nil {
			t.Fatal(err)
		}
		if got := (*v.Ratings)[0].Severity; got != want[sev] {
			t.Errorf("%s: CycloneDX severity %q, want %q", sev, got, want[sev])
		}
		if p := (*v.Properties)[0]; p != (cdx.Property{Name: "layerbridge:clair:severity", Value: sev.String()}) {
			t.Errorf("%s: property %+v", sev, p)
		}
	}
}

// ecosystemReport has a package of every type a Clair client reports, and
// a finding on a package Clair did not list.
func ecosystemReport() *report.Report {
	debian := report.Distribution{ID: "debian", VersionID: "12"}
	r := &report.Report{
		Image: report.Image{
			Ref:  "registry.example:5000/team/app@sha256:" + strings.Repeat("e", 64),
			Name: "registry.example:5000/team/app@sha256:" + strings.Repeat("e", 64), ManifestDigest: alpineManifest,
		},
		Clair: report.Clair{API: "v4"},
		Packages: []report.Package{
			{Name: "libc6", Version: "2.36-9+deb12u4", Source: "glibc", Arch: "amd64", Type: "deb", Distribution: debian, Layer: alpineLayer},
			{Name: "libc6", Version: "2.36-9+deb12u4", Source: "glibc", Arch: "amd64", Type: "deb", Distribution: debian, Layer: "sha256:" + strings.Repeat("f", 64)},
			{Name: "attr", Version: "1:2.5.1-4", Arch: "amd64", Type: "deb", Distribution: report.Distribution{ID: "ubuntu", VersionID: "22.04"}},
			{Name: "openssl-libs", Version: "1:3.0.7-27.el9", Arch: "x86_64", Type: "rpm", Distribution: report.Distribution{ID: "rhel", VersionID: "9"}},
			{Name: "bash", Version: "4.2.46-35.el7_9", Type: "rpm", Distribution: report.Distribution{ID: "centos", VersionID: "7"}},
			{Name: "Django_Rest", Version: "3.14.0", Type: "pypi"},
			{Name: "org.apache.logging.log4j:log4j-core", Version: "2.14.1", Type: "maven"},
			{Name: "@babel/core", Version: "7.23.0", Type: "npm"},
			{Name: "golang.org/x/net", Version: "v0.17.0", Type: "golang"},
			{Name: "rack", Version: "2.2.8", Type: "gem"},
			{Name: "zlib", Version: "1.2.13"},
		},
		Findings: []report.Finding{
			{Name: "CVE-2023-44487", Package: "golang.org/x/net", Version: "v0.17.0", Severity: report.High},
			{Name: "CVE-2021-44228", Package: "org.apache.logging.log4j:log4j-core", Version: "2.14.1", FixedIn: "2.15.0", Severity: report.Critical},
			{Name: "CVE-2024-1", Package: "not listed", Version: "1 0", Severity: report.Low},
		},
	}
	r.Normalize()
	return r
}

// Package URLs follow the purl specification's rules for each type.
func TestCycloneDXPackageURLs(t *testing.T) {
	bom := checkBOM(t, render(t, report.Options{}, "cyclonedx", ecosystemReport()))
	var purls []string
	layers := map[string]int{}
	for _, c := range *bom.Components {
		if c.Type != cdx.ComponentTypeLibrary {
			continue
		}
		purls = append(purls, c.PackageURL)
		if c.BOMRef != c.PackageURL {
			t.Errorf("bom-ref %q is not the purl %q", c.BOMRef, c.PackageURL)
		}
		if c.Properties != nil {
			for _, p := range *c.Properties {
				if p.Name == "layerbridge:layer:digest" {
					layers[c.Name]++
				}
			}
		}
	}
	want := []string{
		"pkg:generic/zlib@1.2.13",
		"pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12",
		"pkg:deb/ubuntu/attr@1:2.5.1-4?arch=amd64&distro=ubuntu-22.04",
		"pkg:gem/rack@2.2.8",
		"pkg:golang/golang.org/x/net@v0.17.0",
		"pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1",
		"pkg:npm/%40babel/core@7.23.0",
		"pkg:pypi/django-rest@3.14.0",
		"pkg:rpm/centos/bash@4.2.46-35.el7_9?distro=centos-7",
		"pkg:rpm/redhat/openssl-libs@3.0.7-27.el9?arch=x86_64&distro=rhel-9&epoch=1",
		// A finding on a package Clair did not list gets one of its own.
		"pkg:generic/not%20listed@1%200",
	}
	if !slices.Equal(purls, want) {
		t.Errorf("purls:\n got %q\nwant %q", purls, want)
	}
	// libc6, found in two layers, is one component naming both.
	if layers["libc6"] != 2 {
		t.Errorf("libc6 names %d layers, want 2", layers["libc6"])
	}
	img := bom.Metadata.Component
	if img.Name != "registry.example:5000/team/app" || img.Version != alpineManifest {
		t.Errorf("image %q version %q: want the repository, and the manifest digest for want of a tag", img.Name, img.Version)
	}
}
