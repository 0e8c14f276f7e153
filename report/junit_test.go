package report_test

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"

	"github.com/layerbridge/layerbridge/report"
)

type junitDoc struct {
	XMLName  xml.Name `xml:"testsuites"`
	Tests    int      `xml:"tests,attr"`
	Failures int      `xml:"failures,attr"`
	Skipped  int      `xml:"skipped,attr"`
	Suites   []struct {
		Name       string `xml:"name,attr"`
		Tests      int    `xml:"tests,attr"`
		Failures   int    `xml:"failures,attr"`
		Errors     int    `xml:"errors,attr"`
		Skipped    int    `xml:"skipped,attr"`
		Properties []struct {
			Name  string `xml:"name,attr"`
			Value string `xml:"value,attr"`
		} `xml:"properties>property"`
		Cases []struct {
			Classname string `xml:"classname,attr"`
			Name      string `xml:"name,attr"`
			Failure   *struct {
				Message string `xml:"message,attr"`
				Type    string `xml:"type,attr"`
				Body    string `xml:",chardata"`
			} `xml:"failure"`
			Skipped *struct {
				Message string `xml:"message,attr"`
			} `xml:"skipped"`
			SystemOut string `xml:"system-out"`
		} `xml:"testcase"`
		SystemErr string `xml:"system-err"`
	} `xml:"testsuite"`
}

// parseJUnit parses the XML back with a strict decoder and checks that the
// counts agree with the cases.
func parseJUnit(t *testing.T, out []byte) junitDoc {
	t.Helper()
	if !bytes.HasPrefix(out, []byte(xml.Header)) {
		t.Errorf("no XML declaration")
	}
	var doc junitDoc
	dec := xml.NewDecoder(bytes.NewReader(out))
	dec.Strict = true
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("JUnit XML does not parse: %v\n%s", err, out)
	}
	if len(doc.Suites) != 1 {
		t.Fatalf("%d testsuites, want one per image", len(doc.Suites))
	}
	s := doc.Suites[0]
	failures, skipped := 0, 0
	for _, c := range s.Cases {
		if c.Failure != nil {
			failures++
		}
		if c.Skipped != nil {
			skipped++
		}
		if c.Failure != nil && c.Skipped != nil {
			t.Errorf("case %q is both failed and skipped", c.Name)
		}
	}
	if s.Tests != len(s.Cases) || s.Failures != failures || s.Skipped != skipped || s.Errors != 0 {
		t.Errorf("suite counts tests=%d failures=%d skipped=%d errors=%d, cases say %d/%d/%d/0",
			s.Tests, s.Failures, s.Skipped, s.Errors, len(s.Cases), failures, skipped)
	}
	if doc.Tests != s.Tests || doc.Failures != s.Failures || doc.Skipped != s.Skipped {
		t.Errorf("testsuites counts %d/%d/%d disagree with the suite", doc.Tests, doc.Failures, doc.Skipped)
	}
	return doc
}

func TestJUnitAlpine(t *testing.T) {
	r := alpineReport(t)
	unknown := report.Unknown
	doc := parseJUnit(t, render(t, report.Options{FailOn: &unknown}, "junit", r))
	s := doc.Suites[0]
	if s.Name != "alpine:3.11" || s.Tests != 17 || s.Failures != 16 || s.Skipped != 1 {
		t.Errorf("suite %q tests=%d failures=%d skipped=%d; want alpine:3.11 17/16/1", s.Name, s.Tests, s.Failures, s.Skipped)
	}
	props := map[string]string{}
	for _, p := range s.Properties {
		props[p.Name] = p.Value
	}
	if props["image.manifest_digest"] != alpineManifest || props["clair.api"] != "v4" {
		t.Errorf("properties = %v", props)
	}
	if !strings.Contains(s.SystemErr, "CVE-2021-3449") {
		t.Errorf("the expired-rule warning is not in system-err: %q", s.SystemErr)
	}
	last := s.Cases[len(s.Cases)-1]
	if last.Skipped == nil || last.Classname != "musl" || !strings.Contains(last.Skipped.Message, "no DNS resolver") {
		t.Errorf("ignored finding: %+v, want a skipped musl case with the reason", last)
	}
	first := s.Cases[0]
	if first.Classname != "libcrypto1.1" || first.Name != "CVE-2020-1967 in libcrypto1.1 1.1.1d-r3" ||
		first.Failure == nil || !strings.Contains(first.Failure.Body, "Fixed in: 1.1.1g-r0") {
		t.Errorf("first case = %+v", first)
	}
}

func TestJUnitThreshold(t *testing.T) {
	high := report.High
	r := mixedReport()
	doc := parseJUnit(t, render(t, report.Options{FailOn: &high}, "junit", r))
	s := doc.Suites[0]
	// Defcon1, Critical and two High fail; Medium, Low, Negligible and
	// Unknown pass; the ignored High is skipped, never failed.
	if s.Tests != 9 || s.Failures != 4 || s.Skipped != 1 {
		t.Errorf("tests=%d failures=%d skipped=%d, want 9/4/1", s.Tests, s.Failures, s.Skipped)
	}
	for _, c := range s.Cases {
		if c.Failure != nil && c.Failure.Type != "High" && c.Failure.Type != "Critical" && c.Failure.Type != "Defcon1" {
			t.Errorf("%s failed with severity %s below High", c.Name, c.Failure.Type)
		}
		if c.Failure == nil && c.Skipped == nil && !strings.Contains(c.SystemOut, "below the fail threshold High") {
			t.Errorf("passing case %s does not say why: %q", c.Name, c.SystemOut)
		}
		if strings.Contains(c.Name, "CVE-2024-0001") && !strings.Contains(c.Failure.Body, "<script>") {
			t.Errorf("description lost in the failure body: %q", c.Failure.Body)
		}
	}
}

// TestJUnitFailuresAgreeWithTheExitCode: a CI dashboard is red exactly when
// the scan exits 3, so the failures are the findings Report.Fails counts:
// none without --fail-on, those at or above it with one.
func TestJUnitFailuresAgreeWithTheExitCode(t *testing.T) {
	thresholds := []*report.Severity{nil}
	for s := report.Unknown; s <= report.Defcon1; s++ {
		thresholds = append(thresholds, &s)
	}
	for _, r := range []*report.Report{alpineReport(t), mixedReport()} {
		for _, failOn := range thresholds {
			doc := parseJUnit(t, render(t, report.Options{FailOn: failOn}, "junit", r))
			want := 0
			for _, f := range r.Findings {
				if failOn != nil && f.Severity >= *failOn {
					want++
				}
			}
			name := "no --fail-on"
			if failOn != nil {
				name = "--fail-on " + failOn.String()
			}
			if doc.Failures != want {
				t.Errorf("%s, %s: %d failures, want %d", r.Image.Ref, name, doc.Failures, want)
			}
			if exit3 := failOn != nil && r.Fails(*failOn); exit3 != (doc.Failures > 0) {
				t.Errorf("%s, %s: %d failures but exit 3 is %v", r.Image.Ref, name, doc.Failures, exit3)
			}
			for _, c := range doc.Suites[0].Cases {
				if failOn == nil && c.Failure == nil && c.Skipped == nil && !strings.Contains(c.SystemOut, "no fail threshold") {
					t.Errorf("%s, %s: passing case %s does not say why: %q", r.Image.Ref, name, c.Name, c.SystemOut)
				}
			}
		}
	}
}
