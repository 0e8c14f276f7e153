package report_test

import (
	"testing"

	"github.com/layerbridge/layerbridge/report"
)

func finding(name, pkg string, sev report.Severity) report.Finding {
	return report.Finding{Name: name, Package: pkg, Version: "1.0-r0", Severity: sev}
}

func TestSummary(t *testing.T) {
	r := &report.Report{
		Findings: []report.Finding{
			finding("CVE-1", "a", report.High),
			finding("CVE-2", "a", report.High),
			finding("CVE-3", "b", report.Unknown),
			finding("CVE-4", "c", report.Defcon1),
			finding("CVE-5", "d", report.Severity(42)), // out of range: counted as Unknown
		},
		Ignored: []report.Ignored{{Finding: finding("CVE-6", "e", report.Critical), Reason: "accepted"}},
	}
	s := r.Summary()
	want := map[report.Severity]int{report.Unknown: 2, report.High: 2, report.Defcon1: 1}
	for _, sev := range report.Severities {
		if got := s.Count(sev); got != want[sev] {
			t.Errorf("Count(%s) = %d, want %d", sev, got, want[sev])
		}
	}
	if s.Count(report.Critical) != 0 {
		t.Errorf("the ignored Critical finding was counted")
	}
	if s.Total() != 5 || s.Ignored != 1 {
		t.Errorf("Total() = %d, Ignored = %d; want 5 and 1", s.Total(), s.Ignored)
	}
	if s.Count(report.Severity(-1)) != 0 || s.Count(report.Severity(99)) != 0 {
		t.Errorf("Count of an out-of-range severity is not 0")
	}
}

func TestFails(t *testing.T) {
	r := &report.Report{
		Findings: []report.Finding{finding("CVE-1", "a", report.Low), finding("CVE-2", "b", report.Medium)},
		Ignored:  []report.Ignored{{Finding: finding("CVE-3", "c", report.Critical)}},
	}
	tests := []struct {
		threshold report.Severity
		want      bool
	}{
		{report.Unknown, true},
		{report.Negligible, true},
		{report.Low, true},
		{report.Medium, true},         // at the threshold fails
		{report.High, false},          // the Critical finding is ignored
		{report.Critical, false},      // ... and never trips Fails
		{report.Defcon1, false},       //
		{report.Severity(-5), true},   // below Unknown: everything fails
		{report.Severity(100), false}, // above Defcon1: nothing does
	}
	for _, tt := range tests {
		if got := r.Fails(tt.threshold); got != tt.want {
			t.Errorf("Fails(%s) = %v, want %v", tt.threshold, got, tt.want)
		}
	}
	empty := &report.Report{Warnings: []string{"the vulnerability database is empty"}}
	if empty.Fails(report.Unknown) {
		t.Errorf("a report without findings fails")
	}
}
