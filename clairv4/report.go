package clairv4

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/layerbridge/layerbridge/report"
)

// Report is Clair's vulnerability report for one manifest, converted.
type Report struct {
	Manifest digest.Digest // manifest_hash
	// Findings has one entry per distinct (package name, installed version,
	// vulnerability name), sorted by package, version, then vulnerability.
	// Package and Version come from "packages"; Layer is the digest of the
	// layer that introduced the package (the first environment's
	// introduced_in); Severity is normalized_severity, or severity when the
	// normalised one is Unknown or unreadable; Link is the first of the
	// space-separated "links". When Clair lists the same pair twice (two
	// updaters, two package databases), the entries are merged: the highest
	// severity wins and empty fields are filled from the other.
	Findings []report.Finding
	// Packages is every package of the image as the report embeds Clair's
	// index report ("packages", "environments", "distributions",
	// "repository"), whether or not a vulnerability applies to it: one entry
	// per package and environment (see packages.go), never nil.
	Packages []report.Package
	Raw      json.RawMessage // Clair's body, unchanged
}

func decodeVulnerabilityReport(body []byte) (*Report, error) {
	var w wireVulnerabilityReport
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, fmt.Errorf("decode vulnerability report: %w", err)
	}
	fs, err := findings(&w)
	if err != nil {
		return nil, fmt.Errorf("decode vulnerability report: %w", err)
	}
	return &Report{
		Manifest: digest.Digest(w.ManifestHash),
		Findings: fs,
		Packages: packages(w.Packages, w.Environments, w.Distributions, w.Repositories),
		Raw:      json.RawMessage(body),
	}, nil
}

// findings converts package_vulnerabilities into findings. A reference to a
// package or vulnerability the report does not define is an error: dropping
// the pair silently would under-report.
func findings(w *wireVulnerabilityReport) ([]report.Finding, error) {
	out := []report.Finding{}
	at := map[string]int{}
	for _, pid := range slices.SortedFunc(maps.Keys(w.PackageVulnerabilities), compareIDs) {
		p, ok := w.Packages[pid]
		if !ok {
			return nil, fmt.Errorf("package_vulnerabilities names package %q, absent from packages", pid)
		}
		var layer string
		if envs := w.Environments[pid]; len(envs) > 0 {
			layer = envs[0].IntroducedIn
		}
		for _, vid := range w.PackageVulnerabilities[pid] {
			v, ok := w.Vulnerabilities[vid]
			if !ok {
				return nil, fmt.Errorf("package_vulnerabilities names vulnerability %q, absent from vulnerabilities", vid)
			}
			f := report.Finding{
				Name:        v.Name,
				Package:     p.Name,
				Version:     p.Version,
				FixedIn:     v.FixedInVersion,
				Severity:    severity(v),
				Layer:       layer,
				Link:        firstLink(v.Links),
				Description: v.Description,
			}
			if i, dup := at[f.Key()]; dup {
				merge(&out[i], f)
				continue
			}
			at[f.Key()] = len(out)
			out = append(out, f)
		}
	}
	slices.SortFunc(out, func(a, b report.Finding) int {
		return cmp.Or(strings.Compare(a.Package, b.Package), strings.Compare(a.Version, b.Version), strings.Compare(a.Name, b.Name))
	})
	return out, nil
}

// compareIDs orders Clair's numeric string ids numerically, others as text.
func compareIDs(a, b string) int {
	x, errA := strconv.ParseUint(a, 10, 64)
	y, errB := strconv.ParseUint(b, 10, 64)
	if errA == nil && errB == nil {
		return cmp.Compare(x, y)
	}
	return strings.Compare(a, b)
}

func severity(v wireVulnerability) report.Severity {
	if s, err := report.ParseSeverity(v.NormalizedSeverity); err == nil && s != report.Unknown {
		return s
	}
	if s, err := report.ParseSeverity(v.Severity); err == nil {
		return s
	}
	return report.Unknown
}

func firstLink(links string) string {
	if f := strings.Fields(links); len(f) > 0 {
		return f[0]
	}
	return ""
}

// merge folds a duplicate finding into f.
func merge(f *report.Finding, dup report.Finding) {
	f.Severity = max(f.Severity, dup.Severity)
	f.FixedIn = cmp.Or(f.FixedIn, dup.FixedIn)
	f.Layer = cmp.Or(f.Layer, dup.Layer)
	f.Link = cmp.Or(f.Link, dup.Link)
	f.Description = cmp.Or(f.Description, dup.Description)
}
