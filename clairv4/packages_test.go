package clairv4

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/layerbridge/layerbridge/report"
)

func TestVulnerabilityReportPackagesRecorded(t *testing.T) {
	f, srv := newFakeClair(t)
	f.mux.Handle(vulnReportPath+string(sampleManifest), loadExchange(t, "v4.9/GET-vulnerability_report.http"))
	rep, err := newTestClient(t, srv).VulnerabilityReport(t.Context(), sampleManifest)
	if err != nil {
		t.Fatal(err)
	}
	// Clair 4.9 found the 14 packages of alpine:3.11's apk database, all in
	// its one layer.
	if len(rep.Packages) != 14 {
		t.Fatalf("%d packages, want 14: %+v", len(rep.Packages), rep.Packages)
	}
	alpine := report.Distribution{ID: "alpine", VersionID: "3.11"}
	layer := "sha256:beee9f30bc1f711043e78d4a2be0668955d4b761d587d6f60c2c8dc081efb203"
	var libssl *report.Package
	for i, p := range rep.Packages {
		if p.Type != "apk" || p.Distribution != alpine || p.Arch != "x86_64" || p.Layer != layer || p.Source == "" {
			t.Errorf("package %+v: want an x86_64 apk of alpine 3.11 with its source, from the image's layer", p)
		}
		if p.Name == "libssl1.1" {
			libssl = &rep.Packages[i]
		}
	}
	want := report.Package{Name: "libssl1.1", Version: "1.1.1d-r3", Source: "openssl", Arch: "x86_64", Type: "apk", Distribution: alpine, Layer: layer}
	if libssl == nil || *libssl != want {
		t.Errorf("libssl1.1 = %+v, want %+v", libssl, want)
	}
}

func TestPackagesConversion(t *testing.T) {
	layer := func(c string) string { return "sha256:" + strings.Repeat(c, 64) }
	body := map[string]any{
		"manifest_hash": string(sampleManifest),
		"packages": map[string]any{
			"1":  map[string]any{"id": "1", "name": "libc6", "version": "2.36-9+deb12u4", "arch": "amd64", "source": map[string]any{"name": "glibc"}},
			"2":  map[string]any{"id": "2", "name": "openssl-libs", "version": "1:3.0.7-27.el9", "arch": "x86_64", "source": map[string]any{"name": "openssl"}},
			"3":  map[string]any{"id": "3", "name": "requests", "version": "2.31.0", "source": map[string]any{}},
			"4":  map[string]any{"id": "4", "name": "golang.org/x/net", "version": "v0.17.0"},
			"5":  map[string]any{"id": "5", "name": "org.apache.logging.log4j:log4j-core", "version": "2.14.1"},
			"6":  map[string]any{"id": "6", "name": "zlib", "version": "1.2.13"},
			"7":  map[string]any{"id": "7", "name": "left-pad", "version": "1.3.0"},
			"10": map[string]any{"id": "10", "name": "bash", "version": "5.2.15-3", "arch": "amd64"},
		},
		"distributions": map[string]any{
			"1": map[string]any{"id": "1", "did": "debian", "version": "12 (bookworm)", "version_id": "12"},
			"2": map[string]any{"id": "2", "did": "rhel", "version_id": "9"},
		},
		"repository": map[string]any{
			"5": map[string]any{"id": "5", "name": "pypi", "uri": "https://pypi.org/simple"},
		},
		"environments": map[string]any{
			"1": []any{map[string]any{"package_db": "var/lib/dpkg/status", "introduced_in": layer("a"), "distribution_id": "1"}},
			"2": []any{map[string]any{"package_db": "sqlite:var/lib/rpm", "introduced_in": layer("b"), "distribution_id": "2"}},
			"3": []any{map[string]any{"package_db": "usr/lib/python3/site-packages", "introduced_in": layer("c"), "distribution_id": "1", "repository_ids": []string{"5"}}},
			"4": []any{map[string]any{"package_db": "go:usr/bin/app", "introduced_in": layer("d")}},
			"5": []any{map[string]any{"package_db": "jar:opt/app.jar", "introduced_in": layer("d")}},
			"6": []any{map[string]any{"package_db": "usr/lib/pkgconfig", "introduced_in": layer("e")}},
			"7": []any{
				map[string]any{"package_db": "nodejs:app/node_modules/left-pad/package.json", "introduced_in": layer("e")},
				map[string]any{"package_db": "nodejs:srv/node_modules/left-pad/package.json", "introduced_in": layer("f")},
			},
		},
		"vulnerabilities":         map[string]any{},
		"package_vulnerabilities": map[string]any{},
	}
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := decodeVulnerabilityReport(b)
	if err != nil {
		t.Fatal(err)
	}
	debian := report.Distribution{ID: "debian", VersionID: "12"}
	want := []report.Package{
		{Name: "libc6", Version: "2.36-9+deb12u4", Source: "glibc", Arch: "amd64", Type: "deb", Distribution: debian, Layer: layer("a")},
		{Name: "openssl-libs", Version: "1:3.0.7-27.el9", Source: "openssl", Arch: "x86_64", Type: "rpm", Distribution: report.Distribution{ID: "rhel", VersionID: "9"}, Layer: layer("b")},
		// A language package names no distribution, even when Clair does.
		{Name: "requests", Version: "2.31.0", Type: "pypi", Layer: layer("c")},
		{Name: "golang.org/x/net", Version: "v0.17.0", Type: "golang", Layer: layer("d")},
		{Name: "org.apache.logging.log4j:log4j-core", Version: "2.14.1", Type: "maven", Layer: layer("d")},
		// Nothing tells what zlib from a pkg-config directory is.
		{Name: "zlib", Version: "1.2.13", Layer: layer("e")},
		// One entry per environment.
		{Name: "left-pad", Version: "1.3.0", Type: "npm", Layer: layer("e")},
		{Name: "left-pad", Version: "1.3.0", Type: "npm", Layer: layer("f")},
		// No environment: no layer, no type.
		{Name: "bash", Version: "5.2.15-3", Arch: "amd64"},
	}
	if !reflect.DeepEqual(rep.Packages, want) {
		t.Errorf("packages:\n got %+v\nwant %+v", rep.Packages, want)
	}
}
