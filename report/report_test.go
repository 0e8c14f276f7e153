package report_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/layerbridge/layerbridge/report"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// samples is where the recorded Clair exchanges live: testdata/ at the
// repository's root.
const samples = "../testdata/clair-samples"

// recordedBody returns the body of a recorded HTTP response.
func recordedBody(t *testing.T, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(samples, name))
	if err != nil {
		t.Fatalf("read recorded response: %v", err)
	}
	_, body, ok := bytes.Cut(raw, []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("%s: no header/body separator", name)
	}
	return body
}

const (
	alpineLayer    = "sha256:beee9f30bc1f711043e78d4a2be0668955d4b761d587d6f60c2c8dc081efb203"
	alpineManifest = "sha256:b405b26c31194489ba0b8cb27061fe75a963223bf924dd3998c975ac6fef347a"
	alpineID       = "sha256:a187dde48cd289ac374ad8539930628314bc581a481cdb41409c9289419ddb72"
)

// alpineFindings are the 17 (package, vulnerability) pairs Clair 4.9 reports
// for the layer of alpine:3.11 fed the shared Alpine SecDB
// (v4.9/GET-vulnerability_report.http), in Clair's own (map) order. The
// SecDB carries no severities, so Clair reports every one as Unknown and no
// descriptions.
func alpineFindings() []report.Finding {
	f := func(name, pkg, version, fixed string) report.Finding {
		return report.Finding{
			Name: name, Package: pkg, Version: version, FixedIn: fixed, Severity: report.Unknown,
			Layer: alpineLayer, Link: "https://security.alpinelinux.org/vuln/" + name,
		}
	}
	return []report.Finding{
		f("CVE-2020-28928", "musl", "1.1.24-r2", "1.1.24-r3"),
		f("CVE-2021-28831", "ssl_client", "1.31.1-r9", "1.31.1-r10"),
		f("CVE-2021-30139", "apk-tools", "2.10.4-r3", "2.10.6-r0"),
		f("CVE-2021-28831", "busybox", "1.31.1-r9", "1.31.1-r10"),
		f("CVE-2021-23840", "libssl1.1", "1.1.1d-r3", "1.1.1j-r0"),
		f("CVE-2021-23841", "libssl1.1", "1.1.1d-r3", "1.1.1j-r0"),
		f("CVE-2021-3449", "libssl1.1", "1.1.1d-r3", "1.1.1k-r0"),
		f("CVE-2021-3450", "libssl1.1", "1.1.1d-r3", "1.1.1k-r0"),
		f("CVE-2020-1967", "libssl1.1", "1.1.1d-r3", "1.1.1g-r0"),
		f("CVE-2020-1971", "libssl1.1", "1.1.1d-r3", "1.1.1i-r0"),
		f("CVE-2020-28928", "musl-utils", "1.1.24-r2", "1.1.24-r3"),
		f("CVE-2021-23840", "libcrypto1.1", "1.1.1d-r3", "1.1.1j-r0"),
		f("CVE-2021-23841", "libcrypto1.1", "1.1.1d-r3", "1.1.1j-r0"),
		f("CVE-2021-3449", "libcrypto1.1", "1.1.1d-r3", "1.1.1k-r0"),
		f("CVE-2021-3450", "libcrypto1.1", "1.1.1d-r3", "1.1.1k-r0"),
		f("CVE-2020-1967", "libcrypto1.1", "1.1.1d-r3", "1.1.1g-r0"),
		f("CVE-2020-1971", "libcrypto1.1", "1.1.1d-r3", "1.1.1i-r0"),
	}
}

// alpinePackages are the 14 packages Clair 4.9 lists for the layer of
// alpine:3.11 (v4.9/GET-vulnerability_report.http, "packages" and
// "environments"), in Clair's package id order.
func alpinePackages() []report.Package {
	p := func(name, version, source string) report.Package {
		return report.Package{
			Name: name, Version: version, Source: source, Arch: "x86_64", Type: "apk",
			Distribution: report.Distribution{ID: "alpine", VersionID: "3.11"}, Layer: alpineLayer,
		}
	}
	return []report.Package{
		p("alpine-keys", "2.1-r2", "alpine-keys"),
		p("libtls-standalone", "2.9.1-r0", "libtls-standalone"),
		p("musl", "1.1.24-r2", "musl"),
		p("busybox", "1.31.1-r9", "busybox"),
		p("alpine-baselayout", "3.2.0-r3", "alpine-baselayout"),
		p("libcrypto1.1", "1.1.1d-r3", "openssl"),
		p("libssl1.1", "1.1.1d-r3", "openssl"),
		p("ca-certificates-cacert", "20191127-r1", "ca-certificates"),
		p("ssl_client", "1.31.1-r9", "busybox"),
		p("zlib", "1.2.11-r3", "zlib"),
		p("apk-tools", "2.10.4-r3", "apk-tools"),
		p("scanelf", "1.2.4-r0", "pax-utils"),
		p("musl-utils", "1.1.24-r2", "musl"),
		p("libc-utils", "0.7.2-r0", "libc-dev"),
	}
}

// goldenNow is the clock the golden reports are rendered at: after the
// expiry of the CVE-2021-3449 rule in testdata/alpine311-ignore.yaml, before
// that of the musl rule.
var goldenNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// alpineReport is the report a Clair 4.9 scan of alpine:3.11 produces, as
// the CLI would hand it to a renderer: normalised, with the ignore file
// applied.
func alpineReport(t *testing.T) *report.Report {
	t.Helper()
	r := &report.Report{
		Image: report.Image{
			Ref: "alpine:3.11", Name: "docker.io/library/alpine:3.11",
			ID: alpineID, Platform: "linux/amd64", ManifestDigest: alpineManifest,
		},
		Clair:    report.Clair{URL: "http://127.0.0.1:6060", API: "v4"},
		Findings: alpineFindings(),
		Packages: alpinePackages(),
		Raw:      recordedBody(t, "v4.9/GET-vulnerability_report.http"),
	}
	r.Normalize()
	f, err := os.Open("testdata/alpine311-ignore.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rules, err := report.LoadIgnore(f)
	if err != nil {
		t.Fatalf("LoadIgnore: %v", err)
	}
	rules.Apply(goldenNow, r)
	return r
}

// render renders r in format, failing the test on error.
func render(t *testing.T, o report.Options, format string, r *report.Report) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := o.Render(&buf, format, r); err != nil {
		t.Fatalf("render %s: %v", format, err)
	}
	return buf.Bytes()
}

// checkGolden compares got with testdata/name, rewriting it under -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./report -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test ./report -update rewrites it after review)\ngot:\n%s", name, got)
	}
}

func TestAlpineReportMatchesClair(t *testing.T) {
	r := alpineReport(t)
	// 17 pairs over 9 vulnerabilities, one pair ignored by a rule limited to
	// musl (musl-utils, same vulnerability, stays), one rule expired.
	if got := len(r.Findings) + len(r.Ignored); got != 17 {
		t.Errorf("findings+ignored = %d, want Clair's 17 pairs", got)
	}
	names := map[string]bool{}
	for _, f := range r.Findings {
		names[f.Name] = true
	}
	for _, ig := range r.Ignored {
		names[ig.Name] = true
	}
	if len(names) != 9 {
		t.Errorf("%d distinct vulnerabilities, want 9", len(names))
	}
	if len(r.Ignored) != 1 || r.Ignored[0].Package != "musl" || r.Ignored[0].Name != "CVE-2020-28928" {
		t.Errorf("Ignored = %+v, want only CVE-2020-28928 in musl", r.Ignored)
	}
	if len(r.Warnings) != 1 {
		t.Errorf("Warnings = %q, want one for the expired CVE-2021-3449 rule", r.Warnings)
	}
}

func TestGolden(t *testing.T) {
	r := alpineReport(t)
	for _, format := range report.Formats() {
		t.Run(format, func(t *testing.T) {
			checkGolden(t, "alpine311."+format+".golden", render(t, report.Options{}, format, r))
		})
	}
}
