package report_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/layerbridge/layerbridge/report"
)

// jsonDoc is the documented JSON report shape, decoded strictly.
type jsonDoc struct {
	Image           report.Image     `json:"image"`
	Clair           report.Clair     `json:"clair"`
	Summary         map[string]int   `json:"summary"`
	Vulnerabilities []report.Finding `json:"vulnerabilities"`
	Ignored         []report.Ignored `json:"ignored"`
	Warnings        []string         `json:"warnings"`
}

func decodeJSONReport(t *testing.T, b []byte) jsonDoc {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var doc jsonDoc
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("decode JSON report: %v\n%s", err, b)
	}
	return doc
}

func TestJSONRoundTrip(t *testing.T) {
	r := mixedReport()
	doc := decodeJSONReport(t, render(t, report.Options{}, "json", r))
	if doc.Image != r.Image || doc.Clair != r.Clair {
		t.Errorf("image/clair = %+v %+v, want %+v %+v", doc.Image, doc.Clair, r.Image, r.Clair)
	}
	if !reflect.DeepEqual(doc.Vulnerabilities, r.Findings) {
		t.Errorf("vulnerabilities differ:\n got %+v\nwant %+v", doc.Vulnerabilities, r.Findings)
	}
	if !reflect.DeepEqual(doc.Ignored, r.Ignored) || !reflect.DeepEqual(doc.Warnings, r.Warnings) {
		t.Errorf("ignored/warnings = %+v %q", doc.Ignored, doc.Warnings)
	}
	want := map[string]int{"Unknown": 1, "Negligible": 1, "Low": 1, "Medium": 1, "High": 2, "Critical": 1, "Defcon1": 1}
	if !reflect.DeepEqual(doc.Summary, want) {
		t.Errorf("summary = %v, want %v (ignored findings are not counted)", doc.Summary, want)
	}
}

// `jq -r '.vulnerabilities[].name'` must work, on an empty report too.
func TestJSONShapeForJQ(t *testing.T) {
	for _, r := range []*report.Report{alpineReport(t), {}} {
		out := render(t, report.Options{}, "json", r)
		var generic map[string]any
		if err := json.Unmarshal(out, &generic); err != nil {
			t.Fatal(err)
		}
		vulns, ok := generic["vulnerabilities"].([]any)
		if !ok {
			t.Fatalf("vulnerabilities is %T, want an array (never null):\n%s", generic["vulnerabilities"], out)
		}
		var names []string
		for _, v := range vulns {
			names = append(names, v.(map[string]any)["name"].(string))
		}
		var want []string
		for _, f := range r.Findings {
			want = append(want, f.Name)
		}
		if !slices.Equal(names, want) {
			t.Errorf(".vulnerabilities[].name = %q, want %q", names, want)
		}
		for _, key := range []string{"ignored", "warnings"} {
			if _, ok := generic[key].([]any); !ok {
				t.Errorf("%s is %T, want an array", key, generic[key])
			}
		}
		for _, v := range vulns {
			for _, key := range []string{"name", "package", "version", "fixed_in", "severity", "layer", "link", "description"} {
				if _, ok := v.(map[string]any)[key]; !ok {
					t.Errorf("vulnerability lacks %q: %v", key, v)
				}
			}
		}
	}
}

func TestJSONSummaryInClairOrder(t *testing.T) {
	out := string(render(t, report.Options{}, "json", &report.Report{}))
	last := -1
	for _, sev := range report.Severities {
		i := strings.Index(out, `"`+sev.String()+`": 0`)
		if i < 0 || i < last {
			t.Fatalf("summary key %s missing or out of Clair's order:\n%s", sev, out)
		}
		last = i
	}
}
