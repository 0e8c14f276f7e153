package report_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/layerbridge/layerbridge/report"
)

func TestTableAlignedAndClean(t *testing.T) {
	out := string(render(t, report.Options{}, "table", mixedReport()))
	if strings.ContainsAny(out, "\x1b\x00\x07\t") {
		t.Errorf("plain table contains control characters:\n%q", out)
	}
	lines := strings.Split(out, "\n")
	head := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "VULNERABILITY") })
	if head < 0 {
		t.Fatalf("no table header:\n%s", out)
	}
	col := strings.Index(lines[head], "SEVERITY")
	wantOrder := []string{"Defcon1", "Critical", "High", "High", "Medium", "Low", "Negligible", "Unknown"}
	for i, sev := range wantOrder {
		row := lines[head+1+i]
		if got := strings.TrimSpace(row[min(col, len(row)):]); got != sev {
			t.Errorf("row %d %q: severity column holds %q, want %q (misaligned or misordered)", i, row, got, sev)
		}
	}
	for _, want := range []string{
		"WARNING: Clair's vulnerability database is empty",
		"Summary: Unknown: 1, Negligible: 1, Low: 1, Medium: 1, High: 2, Critical: 1, Defcon1: 1 (8 findings, 1 ignored)",
		"Image:    registry.example:5000/team/app:1.0",
		"Clair:    http://clair:6060 (API v2)",
		"Ignored: 1",
		"only used at build time <b>honest</b>",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	// No fix known shows as "-".
	zlib := lines[slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "CVE-2024-0003") })]
	if !strings.Contains(zlib, "  -  ") {
		t.Errorf("finding without a fix: %q, want - in FIXED IN", zlib)
	}
}

func TestTableColor(t *testing.T) {
	plain := string(render(t, report.Options{}, "table", mixedReport()))
	color := string(render(t, report.Options{Color: true}, "table", mixedReport()))
	if !strings.Contains(color, "\x1b[1m\x1b[31mCritical\x1b[0m") {
		t.Errorf("coloured table does not colour Critical:\n%q", color)
	}
	// Colour only wraps text: stripping it gives the plain table back, so
	// the columns stay aligned.
	stripped := color
	for _, esc := range []string{"\x1b[0m", "\x1b[1m", "\x1b[2m", "\x1b[31m", "\x1b[33m", "\x1b[36m"} {
		stripped = strings.ReplaceAll(stripped, esc, "")
	}
	if stripped != plain {
		t.Errorf("coloured table differs from the plain one beyond colour codes:\n%s\n---\n%s", stripped, plain)
	}
}

func TestTableEmpty(t *testing.T) {
	out := string(render(t, report.Options{}, "table", &report.Report{}))
	for _, want := range []string{"No vulnerabilities found.", "Unknown: 0", "Defcon1: 0 (0 findings, 0 ignored)", "Ignored: 0"} {
		if !strings.Contains(out, want) {
			t.Errorf("empty table lacks %q:\n%s", want, out)
		}
	}
}
