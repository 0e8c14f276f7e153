package report

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
)

// JUnit XML in the shape Jenkins, GitLab and Azure DevOps read (gotestsum's
// junitxml as the model): one <testsuite> per image, one <testcase> per
// finding. Per finding rather than per package because that is what a CI
// test view lists, counts and tracks between runs: a failing case reads
// "CVE-2021-3449 in libssl1.1 1.1.1d-r3", one package with six
// vulnerabilities is six failures as in the summary, and an ignored finding
// is one skipped case with its reason, which a per-package case could not
// express when only some of a package's findings are ignored.
//
// A CI dashboard turns red on failures, so failures are exactly what makes
// the scan exit 3: the findings at or above --fail-on. Findings below it,
// and every finding when there is no --fail-on, are passed cases with their
// details in system-out.

type junitTestSuites struct {
	XMLName  xml.Name         `xml:"testsuites"`
	Name     string           `xml:"name,attr"`
	Tests    int              `xml:"tests,attr"`
	Failures int              `xml:"failures,attr"`
	Errors   int              `xml:"errors,attr"`
	Skipped  int              `xml:"skipped,attr"`
	Time     string           `xml:"time,attr"`
	Suites   []junitTestSuite `xml:"testsuite"`
}

type junitTestSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Properties []junitProperty `xml:"properties>property"`
	Cases      []junitTestCase `xml:"testcase"`
	SystemErr  string          `xml:"system-err,omitempty"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitTestCase struct {
	Classname string        `xml:"classname,attr"`
	Name      string        `xml:"name,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
	Skipped   *junitSkipped `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Body    string `xml:",chardata"`
}

type junitSkipped struct {
	Message string `xml:"message,attr"`
}

func renderJUnit(w io.Writer, r *Report, o Options) error {
	suiteName := firstNonEmpty(r.Image.displayName(), "image")
	threshold := "none: no finding fails"
	if o.FailOn != nil {
		threshold = o.FailOn.String()
	}
	suite := junitTestSuite{
		Name: suiteName,
		Time: "0",
		Properties: []junitProperty{
			{"image.ref", r.Image.Ref},
			{"image.name", r.Image.Name},
			{"image.id", r.Image.ID},
			{"image.platform", r.Image.Platform},
			{"image.manifest_digest", r.Image.ManifestDigest},
			{"clair.url", r.Clair.URL},
			{"clair.api", r.Clair.API},
			{"fail_on", threshold},
		},
	}
	for _, f := range r.Findings {
		tc := junitCase(f)
		if o.failing(f) {
			tc.Failure = &junitFailure{
				Message: findingSentence(f),
				Type:    f.Severity.String(),
				Body:    findingDetails(f),
			}
			suite.Failures++
		} else if o.FailOn != nil {
			tc.SystemOut = fmt.Sprintf("below the fail threshold %s\n%s", *o.FailOn, findingDetails(f))
		} else {
			tc.SystemOut = "no fail threshold (--fail-on)\n" + findingDetails(f)
		}
		suite.Cases = append(suite.Cases, tc)
	}
	for _, ig := range r.Ignored {
		tc := junitCase(ig.Finding)
		msg := "ignored"
		if ig.Reason != "" {
			msg += ": " + ig.Reason
		}
		tc.Skipped = &junitSkipped{Message: msg}
		suite.Skipped++
		suite.Cases = append(suite.Cases, tc)
	}
	suite.Tests = len(suite.Cases)
	if len(r.Warnings) > 0 {
		var b strings.Builder
		for _, warn := range r.Warnings {
			fmt.Fprintf(&b, "WARNING: %s\n", warn)
		}
		suite.SystemErr = b.String()
	}
	doc := junitTestSuites{
		Name:     "layerbridge",
		Tests:    suite.Tests,
		Failures: suite.Failures,
		Skipped:  suite.Skipped,
		Time:     "0",
		Suites:   []junitTestSuite{suite},
	}
	out, err := xml.MarshalIndent(doc, "", "\t")
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	out = append(out, '\n')
	_, err = w.Write(out)
	return err
}

func junitCase(f Finding) junitTestCase {
	return junitTestCase{
		Classname: f.Package,
		Name:      fmt.Sprintf("%s in %s %s", f.Name, f.Package, f.Version),
		Time:      "0",
	}
}

// findingDetails is the multi-line account of a finding for CI logs.
func findingDetails(f Finding) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Vulnerability: %s\n", f.Name)
	fmt.Fprintf(&b, "Package: %s\n", f.Package)
	fmt.Fprintf(&b, "Installed: %s\n", f.Version)
	fmt.Fprintf(&b, "Fixed in: %s\n", firstNonEmpty(f.FixedIn, "no fixed version known"))
	fmt.Fprintf(&b, "Severity: %s\n", f.Severity)
	if f.Layer != "" {
		fmt.Fprintf(&b, "Layer: %s\n", f.Layer)
	}
	if f.Link != "" {
		fmt.Fprintf(&b, "Link: %s\n", f.Link)
	}
	if d := strings.TrimSpace(f.Description); d != "" {
		fmt.Fprintf(&b, "\n%s\n", d)
	}
	return b.String()
}
