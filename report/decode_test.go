package report_test

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/layerbridge/layerbridge/report"
)

// A report that went through the json format and Decode renders, in every
// format, exactly as the original: nothing the renderers use is lost.
func TestDecodeRoundTrip(t *testing.T) {
	empty := &report.Report{}
	empty.Normalize()
	for name, r := range map[string]*report.Report{"alpine": alpineReport(t), "mixed": normalized(mixedReport()), "empty": empty} {
		t.Run(name, func(t *testing.T) {
			got, err := report.Decode(bytes.NewReader(render(t, report.Options{}, "json", r)))
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Raw) != 0 {
				t.Errorf("Raw = %q, want empty: the json format does not carry it", got.Raw)
			}
			want := *r
			want.Raw = nil
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("decoded report differs:\n got %+v\nwant %+v", *got, want)
			}
			got.Raw = r.Raw
			sev := report.High
			for _, o := range []report.Options{{}, {FailOn: &sev, ToolVersion: "v1.2.3"}} {
				for _, format := range report.Formats() {
					if format == "clair" && len(r.Raw) == 0 {
						continue
					}
					a, b := render(t, o, format, r), render(t, o, format, got)
					if !bytes.Equal(a, b) {
						t.Errorf("%s: the decoded report renders differently:\n%s\n---\n%s", format, b, a)
					}
				}
			}
		})
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
