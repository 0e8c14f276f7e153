package report

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Severity is a normalised vulnerability severity, ordered as Clair orders
// them: Unknown < Negligible < Low < Medium < High < Critical < Defcon1.
// Clair v4 never reports Defcon1; Clair v2 may.
type Severity int

// The severities, lowest first.
const (
	Unknown Severity = iota
	Negligible
	Low
	Medium
	High
	Critical
	Defcon1
)

// Severities lists every severity, lowest first: the order of every summary.
var Severities = []Severity{Unknown, Negligible, Low, Medium, High, Critical, Defcon1}

var severityNames = [...]string{"Unknown", "Negligible", "Low", "Medium", "High", "Critical", "Defcon1"}

// String returns Clair's spelling of s ("Medium").
func (s Severity) String() string {
	if s < Unknown || s > Defcon1 {
		return fmt.Sprintf("Severity(%d)", int(s))
	}
	return severityNames[s]
}

// ParseSeverity reads a severity name, ignoring case. It accepts Clair's names
// and the common alias "moderate" (Medium), and rejects anything else.
func ParseSeverity(s string) (Severity, error) {
	v := strings.TrimSpace(s)
	for i, name := range severityNames {
		if strings.EqualFold(v, name) {
			return Severity(i), nil
		}
	}
	if strings.EqualFold(v, "moderate") {
		return Medium, nil
	}
	return Unknown, fmt.Errorf("unknown severity %q (want one of %s)", s, strings.Join(severityNames[:], ", "))
}

// MarshalText writes the severity's name.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a severity name.
func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Finding is one (package, installed version, vulnerability) pair.
type Finding struct {
	Name        string   `json:"name"`        // vulnerability id, e.g. "CVE-2021-3449"
	Package     string   `json:"package"`     // binary package name as installed
	Version     string   `json:"version"`     // installed version
	FixedIn     string   `json:"fixed_in"`    // first fixed version, "" when no fix is known
	Severity    Severity `json:"severity"`    // normalised severity
	Layer       string   `json:"layer"`       // digest of the layer that introduced the package, "" if unknown
	Link        string   `json:"link"`        // first advisory link, "" if none
	Description string   `json:"description"` // advisory text, may be empty
}

// Key identifies a finding for de-duplication and ignore matching.
func (f Finding) Key() string { return f.Package + "\x00" + f.Version + "\x00" + f.Name }

// Image describes the scanned image.
type Image struct {
	Ref            string `json:"ref"`
	ID             string `json:"id"`
	Platform       string `json:"platform"`
	ManifestDigest string `json:"manifest_digest"`
}

// Clair describes the Clair that produced the report.
type Clair struct {
	URL string `json:"url"`
	API string `json:"api"` // "v4" or "v2"
}

// Ignored is a finding that an ignore rule suppressed, with the rule's reason.
type Ignored struct {
	Finding
	Reason string `json:"reason,omitempty"`
}

// Report is the result of one scan, independent of the Clair API used.
type Report struct {
	Image    Image
	Clair    Clair
	Findings []Finding // one entry per distinct (package, version, vulnerability)
	Ignored  []Ignored // findings suppressed by ignore rules; never counted by Fails
	Warnings []string  // things the user must know, e.g. an empty vulnerability database
	Raw      json.RawMessage
}
