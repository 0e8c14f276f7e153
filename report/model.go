package report

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/distribution/reference"
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
	// Ref is the reference as the user gave it ("alpine:3.11",
	// "docker-archive:build/app.tar").
	Ref string `json:"ref"`
	// Name is the image's normalized name, imageref.Ref.ImageName: the
	// reference's name with the default tag ("docker.io/library/alpine:3.11";
	// "alpine" is docker.io/library/alpine:latest), or for an image ID or an
	// archive the image's one tag; "" when it has none. Ignore rules match
	// it, and renderers name the image by it.
	Name           string `json:"name"`
	ID             string `json:"id"`
	Platform       string `json:"platform"`
	ManifestDigest string `json:"manifest_digest"`
}

// displayName names the image for people and dashboards: Name in its
// familiar form ("alpine:3.11", whichever way the reference was spelled),
// else Ref as given, else ID; "" when all are empty.
func (img Image) displayName() string {
	if n, err := reference.ParseNormalizedNamed(img.Name); err == nil {
		return reference.FamiliarString(n)
	}
	return firstNonEmpty(img.Ref, img.ID)
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
	// Rule is the ignore rule that suppressed the finding (its expiry and
	// VEX state go into the cyclonedx format); nil when unknown, as in a
	// report read back with Decode.
	Rule *IgnoreRule `json:"-"`
}

// Package is one package Clair found in the image, whether or not a
// vulnerability applies to it: an entry of a distribution's package database
// (apk, dpkg, rpm) or a language package Clair 4 indexes (Python, Java, Go,
// Node.js, Ruby).
type Package struct {
	Name    string `json:"name"`    // as installed, e.g. "libssl1.1"
	Version string `json:"version"` // installed version, as the package manager spells it
	// Source is the source package it was built from ("openssl"); "" when
	// Clair does not say (Clair 2 never does).
	Source string `json:"source,omitempty"`
	// Arch is the architecture as the package database spells it
	// ("x86_64", "amd64", "noarch"); "" when unknown (always, from Clair 2).
	Arch string `json:"arch,omitempty"`
	// Type is the package's ecosystem, spelled as a package URL type: apk,
	// deb and rpm for distribution packages; pypi, maven, npm, gem and golang
	// for language packages; "" when the client could not tell.
	Type string `json:"type,omitempty"`
	// Distribution is the distribution the package belongs to; zero for
	// language packages and when unknown.
	Distribution Distribution `json:"distribution,omitzero"`
	Layer        string       `json:"layer"` // digest of the layer that introduced it, "" if unknown
}

// Distribution names an operating system release as its os-release file
// does.
type Distribution struct {
	ID        string `json:"id"`         // os-release ID: "alpine", "debian", "ubuntu", "rhel"
	VersionID string `json:"version_id"` // os-release VERSION_ID: "3.11", "12", "22.04"; "" if unknown
}

// IsZero reports whether d names no distribution.
func (d Distribution) IsZero() bool { return d.ID == "" && d.VersionID == "" }

// Report is the result of one scan, independent of the Clair API used.
type Report struct {
	Image    Image
	Clair    Clair
	Findings []Finding // one entry per distinct (package, version, vulnerability)
	Ignored  []Ignored // findings suppressed by ignore rules; never counted by Fails
	// Packages lists every package Clair found, one entry per (package,
	// layer that introduced it); nil when the client could not list them
	// (a json report read back with Decode lists them only if it was
	// rendered with Options.Packages).
	Packages []Package
	Warnings []string // things the user must know, e.g. an empty vulnerability database
	Raw      json.RawMessage
}
