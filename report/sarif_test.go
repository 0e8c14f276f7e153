package report_test

import (
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/layerbridge/layerbridge/report"
)

// The subset of SARIF 2.1.0 that layerbridge emits and dashboards read,
// decoded strictly enough to catch a missing required property.
type sarifDoc struct {
	Version string `json:"version"`
	Schema  string `json:"$schema"`
	Runs    []struct {
		Tool struct {
			Driver struct {
				Name           string `json:"name"`
				InformationURI string `json:"informationUri"`
				Version        string `json:"version"`
				Rules          []struct {
					ID               string `json:"id"`
					ShortDescription *struct {
						Text string `json:"text"`
					} `json:"shortDescription"`
					FullDescription *struct {
						Text string `json:"text"`
					} `json:"fullDescription"`
					HelpURI string `json:"helpUri"`
					Help    *struct {
						Text     string `json:"text"`
						Markdown string `json:"markdown"`
					} `json:"help"`
					DefaultConfiguration struct {
						Level string `json:"level"`
					} `json:"defaultConfiguration"`
					Properties struct {
						Tags             []string `json:"tags"`
						SecuritySeverity string   `json:"security-severity"`
					} `json:"properties"`
				} `json:"rules"`
			} `json:"driver"`
		} `json:"tool"`
		AutomationDetails struct {
			ID string `json:"id"`
		} `json:"automationDetails"`
		Invocations []struct {
			ExecutionSuccessful        *bool `json:"executionSuccessful"`
			ToolExecutionNotifications []struct {
				Level   string `json:"level"`
				Message struct {
					Text string `json:"text"`
				} `json:"message"`
			} `json:"toolExecutionNotifications"`
		} `json:"invocations"`
		Results []struct {
			RuleID    string `json:"ruleId"`
			RuleIndex *int   `json:"ruleIndex"`
			Level     string `json:"level"`
			Message   *struct {
				Text string `json:"text"`
			} `json:"message"`
			Locations []struct {
				PhysicalLocation *struct {
					ArtifactLocation struct {
						URI string `json:"uri"`
					} `json:"artifactLocation"`
					Region struct {
						StartLine   int `json:"startLine"`
						StartColumn int `json:"startColumn"`
					} `json:"region"`
				} `json:"physicalLocation"`
				LogicalLocations []struct {
					Name               string `json:"name"`
					FullyQualifiedName string `json:"fullyQualifiedName"`
				} `json:"logicalLocations"`
			} `json:"locations"`
			PartialFingerprints map[string]string `json:"partialFingerprints"`
			Suppressions        []struct {
				Kind          string `json:"kind"`
				Status        string `json:"status"`
				Justification string `json:"justification"`
			} `json:"suppressions"`
			Properties struct {
				Package  string `json:"package"`
				Version  string `json:"version"`
				Severity string `json:"severity"`
			} `json:"properties"`
		} `json:"results"`
	} `json:"runs"`
}

var sarifLevels = map[string]bool{"none": true, "note": true, "warning": true, "error": true}

// validateSARIF checks the structure SARIF 2.1.0 requires and code-scanning
// uploads rely on, and returns the decoded log.
func validateSARIF(t *testing.T, out []byte, r *report.Report) sarifDoc {
	t.Helper()
	var doc sarifDoc
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("SARIF is not JSON: %v", err)
	}
	if doc.Version != "2.1.0" || !strings.Contains(doc.Schema, "sarif-schema-2.1.0") {
		t.Errorf("version %q, $schema %q", doc.Version, doc.Schema)
	}
	if len(doc.Runs) != 1 {
		t.Fatalf("%d runs, want 1", len(doc.Runs))
	}
	run := doc.Runs[0]
	d := run.Tool.Driver
	if d.Name != "layerbridge" || d.InformationURI == "" {
		t.Errorf("driver name %q, informationUri %q", d.Name, d.InformationURI)
	}
	rules := map[string]int{}
	for i, rule := range d.Rules {
		if rule.ID == "" || rule.ShortDescription == nil || rule.ShortDescription.Text == "" ||
			rule.FullDescription == nil || rule.FullDescription.Text == "" || rule.Help == nil || rule.Help.Text == "" {
			t.Errorf("rule %d lacks id, descriptions or help: %+v", i, rule)
		}
		if _, dup := rules[rule.ID]; dup {
			t.Errorf("rule %s defined twice", rule.ID)
		}
		rules[rule.ID] = i
		if !sarifLevels[rule.DefaultConfiguration.Level] {
			t.Errorf("rule %s level %q", rule.ID, rule.DefaultConfiguration.Level)
		}
		if s := rule.Properties.SecuritySeverity; s != "" {
			if v, err := strconv.ParseFloat(s, 64); err != nil || v < 0 || v > 10 {
				t.Errorf("rule %s security-severity %q is not a score in 0-10", rule.ID, s)
			}
		}
		if rule.HelpURI != "" {
			if u, err := url.Parse(rule.HelpURI); err != nil || !u.IsAbs() {
				t.Errorf("rule %s helpUri %q is not an absolute URI", rule.ID, rule.HelpURI)
			}
		}
	}
	if want := len(r.Findings) + len(r.Ignored); len(run.Results) != want {
		t.Errorf("%d results, want one per finding and ignored finding (%d)", len(run.Results), want)
	}
	fingerprints := map[string]bool{}
	suppressed := 0
	for i, res := range run.Results {
		idx, ok := rules[res.RuleID]
		if !ok || res.RuleIndex == nil || *res.RuleIndex != idx {
			t.Errorf("result %d: ruleId %q, ruleIndex %v do not name one rule", i, res.RuleID, res.RuleIndex)
		}
		if !sarifLevels[res.Level] || res.Message == nil || res.Message.Text == "" {
			t.Errorf("result %d: level %q, message %+v", i, res.Level, res.Message)
		}
		if len(res.Locations) != 1 || res.Locations[0].PhysicalLocation == nil {
			t.Fatalf("result %d: want one physical location", i)
		}
		loc := res.Locations[0]
		uri := loc.PhysicalLocation.ArtifactLocation.URI
		if u, err := url.Parse(uri); uri == "" || err != nil || u.IsAbs() || strings.HasPrefix(uri, "/") {
			t.Errorf("result %d: artifact uri %q is not a relative reference", i, uri)
		}
		if loc.PhysicalLocation.Region.StartLine < 1 || loc.PhysicalLocation.Region.StartColumn < 1 {
			t.Errorf("result %d: region %+v", i, loc.PhysicalLocation.Region)
		}
		if len(loc.LogicalLocations) != 1 || loc.LogicalLocations[0].Name != res.Properties.Package ||
			!strings.Contains(loc.LogicalLocations[0].FullyQualifiedName, res.Properties.Package+"@"+res.Properties.Version) {
			t.Errorf("result %d: logical location %+v does not name the package", i, loc.LogicalLocations)
		}
		fp := res.PartialFingerprints["primaryLocationLineHash"]
		if fp == "" || fingerprints[fp] {
			t.Errorf("result %d: fingerprint %q missing or shared", i, fp)
		}
		fingerprints[fp] = true
		for _, s := range res.Suppressions {
			if s.Kind != "external" || s.Status != "accepted" {
				t.Errorf("result %d: suppression %+v", i, s)
			}
		}
		if len(res.Suppressions) > 0 {
			suppressed++
		}
	}
	if suppressed != len(r.Ignored) {
		t.Errorf("%d suppressed results, want one per ignored finding (%d)", suppressed, len(r.Ignored))
	}
	return doc
}

func TestSARIFStructure(t *testing.T) {
	for name, r := range map[string]*report.Report{"alpine": alpineReport(t), "mixed": mixedReport(), "empty": {}} {
		t.Run(name, func(t *testing.T) {
			validateSARIF(t, render(t, report.Options{ToolVersion: "0.1.0"}, "sarif", r), r)
		})
	}
}

func TestSARIFLevels(t *testing.T) {
	high, low := report.High, report.Low
	tests := []struct {
		name   string
		failOn *report.Severity
		want   map[string]string // severity -> level
	}{
		{"no threshold", nil, map[string]string{
			"Defcon1": "error", "Critical": "error", "High": "error", "Medium": "warning",
			"Low": "note", "Negligible": "note", "Unknown": "note",
		}},
		{"fail on High", &high, map[string]string{
			"Defcon1": "error", "Critical": "error", "High": "error", "Medium": "warning",
			"Low": "note", "Negligible": "note", "Unknown": "note",
		}},
		{"fail on Low", &low, map[string]string{
			"Defcon1": "error", "Critical": "error", "High": "error", "Medium": "error",
			"Low": "error", "Negligible": "note", "Unknown": "note",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mixedReport()
			doc := validateSARIF(t, render(t, report.Options{FailOn: tt.failOn}, "sarif", r), r)
			for _, res := range doc.Runs[0].Results {
				if len(res.Suppressions) > 0 {
					continue
				}
				if want := tt.want[res.Properties.Severity]; res.Level != want {
					t.Errorf("%s (%s): level %q, want %q", res.RuleID, res.Properties.Severity, res.Level, want)
				}
			}
		})
	}
	critical := report.Critical
	r := mixedReport()
	doc := validateSARIF(t, render(t, report.Options{FailOn: &critical}, "sarif", r), r)
	for _, res := range doc.Runs[0].Results {
		if res.Properties.Severity == "High" && len(res.Suppressions) == 0 && res.Level != "warning" {
			t.Errorf("a High finding below a Critical threshold has level %q, want warning", res.Level)
		}
	}
}

func TestSARIFWarningsAndRun(t *testing.T) {
	r := mixedReport()
	doc := validateSARIF(t, render(t, report.Options{ToolVersion: "1.2.3"}, "sarif", r), r)
	run := doc.Runs[0]
	if run.Tool.Driver.Version != "1.2.3" {
		t.Errorf("driver version %q", run.Tool.Driver.Version)
	}
	if len(run.Invocations) != 1 || run.Invocations[0].ExecutionSuccessful == nil ||
		len(run.Invocations[0].ToolExecutionNotifications) != 1 ||
		run.Invocations[0].ToolExecutionNotifications[0].Level != "warning" ||
		run.Invocations[0].ToolExecutionNotifications[0].Message.Text != r.Warnings[0] {
		t.Errorf("warnings are not tool notifications: %+v", run.Invocations)
	}
	if run.AutomationDetails.ID != "layerbridge/registry.example_5000/team/app/" {
		t.Errorf("automationDetails.id = %q", run.AutomationDetails.ID)
	}
	for _, rule := range run.Tool.Driver.Rules {
		if rule.ID == "CVE-2024-0001" && rule.HelpURI != "" {
			t.Errorf("a javascript: link became helpUri %q", rule.HelpURI)
		}
		if rule.ID == "CVE-2024-0002" && !strings.Contains(rule.ShortDescription.Text, "busybox, ssl_client") {
			t.Errorf("rule for two packages: %q", rule.ShortDescription.Text)
		}
		if strings.Contains(rule.Help.Markdown, "<script>") {
			t.Errorf("help markdown carries raw markup: %q", rule.Help.Markdown)
		}
	}
}

func TestSARIFArtifactURI(t *testing.T) {
	tests := []struct {
		image report.Image
		want  string
	}{
		{scanned(t, "alpine:3.11"), "alpine"},
		{scanned(t, "docker.io/library/alpine:3.12"), "alpine"},
		{scanned(t, "docker-daemon:alpine"), "alpine"},
		{scanned(t, "alpine@sha256:"+strings.Repeat("a", 64)), "alpine"},
		{scanned(t, "registry.example:5000/team/app:1.0"), "registry.example_5000/team/app"},
		{scanned(t, "docker-archive:/tmp/images/alpine.tar"), "alpine.tar"},
		{scanned(t, "docker-archive:/tmp/images/a.tar", "alpine:3.11"), "alpine"},
		{scanned(t, "oci:/srv/layout:v1"), "layout"},
		{report.Image{Ref: "", ID: alpineID}, "image/a187dde48cd2"},
		{report.Image{Ref: alpineID, ID: alpineID}, "image/a187dde48cd2"},
		{report.Image{}, "image"},
		// Hostile text is never a path: a reference is not parsed by
		// hand, and a file's base name keeps only safe bytes.
		{report.Image{Ref: "../../etc/passwd"}, "image"},
		{scanned(t, "docker-archive:../../etc/pass?wd"), "pass_wd"},
	}
	for _, tt := range tests {
		r := &report.Report{Image: tt.image, Findings: []report.Finding{finding("CVE-1", "p", report.Low)}}
		doc := validateSARIF(t, render(t, report.Options{}, "sarif", r), r)
		if got := doc.Runs[0].Results[0].Locations[0].PhysicalLocation.ArtifactLocation.URI; got != tt.want {
			t.Errorf("image %+v: uri %q, want %q", tt.image, got, tt.want)
		}
	}
}
