package report_test

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/layerbridge/layerbridge/report"
)

// A report that went through the json format (with Options.Packages, as the
// sidecar renders it) and Decode renders, in every format, exactly as the
// original: nothing the renderers use is lost but the ignore rules behind
// Ignored, which cyclonedx reads (their expiry and VEX state) and which the
// json format does not carry.
func TestDecodeRoundTrip(t *testing.T) {
	empty := &report.Report{}
	empty.Normalize()
	for name, r := range map[string]*report.Report{"alpine": alpineReport(t), "mixed": normalized(mixedReport()), "empty": empty} {
		t.Run(name, func(t *testing.T) {
			got, err := report.Decode(bytes.NewReader(render(t, report.Options{Packages: true}, "json", r)))
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Raw) != 0 {
				t.Errorf("Raw = %q, want empty: the json format does not carry it", got.Raw)
			}
			want := withoutRules(r)
			want.Raw = nil
			if want.Packages == nil {
				want.Packages = []report.Package{}
			}
			if !reflect.DeepEqual(*got, *want) {
				t.Errorf("decoded report differs:\n got %+v\nwant %+v", *got, *want)
			}
			got.Raw = r.Raw
			sev := report.High
			for _, o := range []report.Options{{}, {FailOn: &sev, ToolVersion: "v1.2.3"}} {
				for _, format := range report.Formats() {
					if format == "clair" && len(r.Raw) == 0 {
						continue
					}
					orig := r
					if format == "cyclonedx" {
						orig = withoutRules(r)
					}
					a, b := render(t, o, format, orig), render(t, o, format, got)
					if !bytes.Equal(a, b) {
						t.Errorf("%s: the decoded report renders differently:\n%s\n---\n%s", format, b, a)
					}
				}
			}
		})
	}
}

// withoutRules is a copy of r whose ignored findings do not know their rule.
func withoutRules(r *report.Report) *report.Report {
	c := *r
	c.Ignored = nil
	for _, ig := range r.Ignored {
		ig.Rule = nil
		c.Ignored = append(c.Ignored, ig)
	}
	if r.Ignored != nil && c.Ignored == nil {
		c.Ignored = []report.Ignored{}
	}
	return &c
}

// The json format lists the packages only when asked to, so that its shape
// stays what users' scripts know.
func TestJSONPackagesOnlyWhenAsked(t *testing.T) {
	r := alpineReport(t)
	plain := render(t, report.Options{}, "json", r)
	if bytes.Contains(plain, []byte(`"packages"`)) {
		t.Errorf("json without Options.Packages lists packages")
	}
	got, err := report.Decode(bytes.NewReader(plain))
	if err != nil {
		t.Fatal(err)
	}
	if got.Packages != nil {
		t.Errorf("decoded Packages = %+v, want nil from a report without them", got.Packages)
	}
	with := render(t, report.Options{Packages: true}, "json", r)
	if !bytes.Contains(with, []byte(`"source": "openssl"`)) || !bytes.Contains(with, []byte(`"distribution": {`)) {
		t.Errorf("json with Options.Packages lacks the packages:\n%s", with)
	}
	empty := &report.Report{}
	if !bytes.Contains(render(t, report.Options{Packages: true}, "json", empty), []byte(`"packages": []`)) {
		t.Errorf("json with Options.Packages of a report without packages: want an empty array")
	}
}

func normalized(r *report.Report) *report.Report {
	r.Normalize()
	return r
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct{ name, doc, want string }{
		{"not json", "<html>", "decode json report"},
		{"no vulnerabilities", `{"image":{},"clair":{}}`, `no "vulnerabilities" array`},
		{"null vulnerabilities", `{"vulnerabilities":null}`, `no "vulnerabilities" array`},
		{"unknown severity", `{"vulnerabilities":[{"name":"CVE-1","severity":"Severe"}]}`, `unknown severity "Severe"`},
		{"two documents", `{"vulnerabilities":[]} {}`, "data after the report"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := report.Decode(strings.NewReader(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// Keys a later version adds are ignored; the summary is recomputed, not
// trusted.
func TestDecodeIgnoresUnknownKeysAndTheSummary(t *testing.T) {
	r, err := report.Decode(strings.NewReader(`{"summary":{"High":5},"future":{"x":1},"vulnerabilities":[{"name":"CVE-1","package":"p","severity":"Low","new_field":true}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Findings) != 1 || r.Findings[0].Severity != report.Low || r.Summary().Count(report.High) != 0 {
		t.Errorf("decoded %+v", r)
	}
}
