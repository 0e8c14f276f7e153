package report_test

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/layerbridge/layerbridge/report"
)

func TestNormalizeOrder(t *testing.T) {
	in := []report.Finding{
		{Name: "CVE-2021-23840", Package: "libssl1.1", Version: "1.1.1d-r3", Severity: report.Low},
		{Name: "CVE-2021-3449", Package: "libssl1.1", Version: "1.1.1d-r3", Severity: report.Low},
		{Name: "CVE-2021-3449", Package: "libcrypto1.1", Version: "1.1.1d-r3", Severity: report.Low},
		{Name: "CVE-2020-1", Package: "busybox", Version: "1.31.1-r10", Severity: report.Low},
		{Name: "CVE-2020-1", Package: "busybox", Version: "1.31.1-r9", Severity: report.Low},
		{Name: "CVE-2019-9", Package: "zlib", Version: "1", Severity: report.Critical},
		{Name: "CVE-2022-1", Package: "musl", Version: "1", Severity: report.Unknown},
		{Name: "CVE-2018-1", Package: "x", Version: "1", Severity: report.Defcon1},
	}
	want := []string{
		"CVE-2018-1 x 1",                       // Defcon1 first
		"CVE-2019-9 zlib 1",                    // Critical
		"CVE-2020-1 busybox 1.31.1-r9",         // Low, by name, then version with r9 < r10
		"CVE-2020-1 busybox 1.31.1-r10",        //
		"CVE-2021-3449 libcrypto1.1 1.1.1d-r3", // 3449 < 23840 numerically
		"CVE-2021-3449 libssl1.1 1.1.1d-r3",    //
		"CVE-2021-23840 libssl1.1 1.1.1d-r3",   //
		"CVE-2022-1 musl 1",                    // Unknown last
	}
	got := report.Normalize(in)
	var keys []string
	for _, f := range got {
		keys = append(keys, f.Name+" "+f.Package+" "+f.Version)
	}
	if !slices.Equal(keys, want) {
		t.Errorf("order:\n got %q\nwant %q", keys, want)
	}
	if in[0].Name != "CVE-2021-23840" {
		t.Errorf("Normalize modified its input")
	}
}

func TestNormalizeDeduplicates(t *testing.T) {
	in := []report.Finding{
		{Name: "CVE-1", Package: "p", Version: "1", Severity: report.Low, Link: "https://a.example/CVE-1"},
		{Name: "CVE-1", Package: "p", Version: "1", Severity: report.High, Description: "from the second source"},
		{Name: "CVE-1", Package: "p", Version: "1", Severity: report.Medium, FixedIn: "2", Layer: "sha256:aa"},
		{Name: "CVE-1", Package: "p", Version: "2", Severity: report.Low}, // another version: kept
		{Name: "CVE-1", Package: "q", Version: "1", Severity: report.Low}, // another package: kept
	}
	got := report.Normalize(in)
	if len(got) != 3 {
		t.Fatalf("got %d findings, want 3: %+v", len(got), got)
	}
	want := report.Finding{
		Name: "CVE-1", Package: "p", Version: "1", Severity: report.High, FixedIn: "2",
		Layer: "sha256:aa", Link: "https://a.example/CVE-1", Description: "from the second source",
	}
	if got[0] != want {
		t.Errorf("merged duplicate = %+v, want %+v", got[0], want)
	}
}

// The result must not depend on the order the client produced (Clair's
// JSON maps have none).
func TestNormalizeIsOrderIndependent(t *testing.T) {
	in := append(alpineFindings(), alpineFindings()[3:9]...) // with duplicates
	in[20].FixedIn = ""                                      // a duplicate that knows less
	want := report.Normalize(in)
	if len(want) != 17 {
		t.Fatalf("got %d findings, want 17", len(want))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 50 {
		shuffled := slices.Clone(in)
		rng.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		if got := report.Normalize(shuffled); !reflect.DeepEqual(got, want) {
			t.Fatalf("shuffle %d: result differs:\n got %+v\nwant %+v", i, got, want)
		}
	}
}

func TestNormalizeEmpty(t *testing.T) {
	if got := report.Normalize(nil); got == nil || len(got) != 0 {
		t.Errorf("Normalize(nil) = %#v, want an empty non-nil slice", got)
	}
}

func TestReportNormalizeIgnored(t *testing.T) {
	r := &report.Report{Ignored: []report.Ignored{
		{Finding: finding("CVE-2", "a", report.Low), Reason: "b"},
		{Finding: finding("CVE-1", "a", report.Low), Reason: "z"},
		{Finding: finding("CVE-1", "a", report.Low), Reason: "y"},
	}}
	r.Normalize()
	if len(r.Ignored) != 2 || r.Ignored[0].Name != "CVE-1" || r.Ignored[0].Reason != "y" || r.Ignored[1].Name != "CVE-2" {
		t.Errorf("Ignored = %+v", r.Ignored)
	}
	if r.Findings == nil {
		t.Errorf("Findings is nil after Normalize")
	}
}

func TestReportNormalizePackages(t *testing.T) {
	alpine := report.Distribution{ID: "alpine", VersionID: "3.11"}
	p := func(typ, name, version, layer string) report.Package {
		return report.Package{Type: typ, Name: name, Version: version, Distribution: alpine, Layer: layer}
	}
	want := []report.Package{
		p("apk", "musl", "1.1.24-r2", "sha256:a"),
		p("apk", "musl", "1.1.24-r2", "sha256:b"),
		p("apk", "musl", "1.1.24-r10", "sha256:a"),
		p("apk", "zlib", "1.2.11-r3", "sha256:a"),
		{Type: "pypi", Name: "requests", Version: "2.31.0"},
	}
	in := []report.Package{want[4], want[3], want[1], want[0], want[2], want[0]}
	r := &report.Report{Packages: in}
	r.Normalize()
	if !reflect.DeepEqual(r.Packages, want) {
		t.Errorf("Packages:\n got %+v\nwant %+v (sorted, the exact duplicate dropped)", r.Packages, want)
	}
	if in[0] != want[4] {
		t.Errorf("Normalize changed the caller's slice")
	}
	none := &report.Report{}
	none.Normalize()
	if none.Packages != nil {
		t.Errorf("Packages = %#v after Normalize, want nil (unknown) to stay nil", none.Packages)
	}
}
