package report

import (
	"cmp"
	"slices"
	"strings"
)

// Normalize returns findings with one entry per (package, version,
// vulnerability), in the order every renderer shows them: severity
// descending, then vulnerability name, package and installed version, names
// and versions compared with digit runs as numbers (CVE-2021-3449 before
// CVE-2021-23840, 1.31.1-r9 before 1.31.1-r10).
//
// Of duplicates, the one with the highest severity wins; its empty FixedIn,
// Layer, Link and Description are filled from the others. The result does
// not depend on the input order. The input slice is not modified; the result
// is never nil.
func Normalize(findings []Finding) []Finding {
	sorted := slices.Clone(findings)
	slices.SortFunc(sorted, compareFindings)
	out := make([]Finding, 0, len(sorted))
	seen := make(map[string]int, len(sorted))
	for _, f := range sorted {
		i, dup := seen[f.Key()]
		if !dup {
			seen[f.Key()] = len(out)
			out = append(out, f)
			continue
		}
		kept := &out[i]
		fill(&kept.FixedIn, f.FixedIn)
		fill(&kept.Layer, f.Layer)
		fill(&kept.Link, f.Link)
		fill(&kept.Description, f.Description)
	}
	return out
}

// Normalize de-duplicates and sorts r.Findings and r.Ignored in place (see
// the function Normalize), and r.Packages (by type, distribution, name,
// version, architecture, source and layer; exact duplicates dropped).
// Clients call it once after filling r; renderers show r in the order it
// leaves. Of duplicate ignored entries the first in that order (then by
// reason) is kept. Nil Packages stay nil.
func (r *Report) Normalize() {
	r.Findings = Normalize(r.Findings)
	r.Ignored = normalizeIgnored(r.Ignored)
	r.Packages = normalizePackages(r.Packages)
}

func normalizePackages(pkgs []Package) []Package {
	if pkgs == nil {
		return nil
	}
	sorted := slices.Clone(pkgs)
	slices.SortFunc(sorted, comparePackages)
	return slices.Compact(sorted)
}

// comparePackages is a total order over every field of Package.
func comparePackages(a, b Package) int {
	if c := strings.Compare(a.Type, b.Type); c != 0 {
		return c
	}
	if c := strings.Compare(a.Distribution.ID, b.Distribution.ID); c != 0 {
		return c
	}
	for _, p := range [][2]string{
		{a.Distribution.VersionID, b.Distribution.VersionID}, {a.Name, b.Name}, {a.Version, b.Version},
	} {
		if c := compareNatural(p[0], p[1]); c != 0 {
			return c
		}
	}
	for _, p := range [][2]string{{a.Arch, b.Arch}, {a.Source, b.Source}, {a.Layer, b.Layer}} {
		if c := strings.Compare(p[0], p[1]); c != 0 {
			return c
		}
	}
	return 0
}

func normalizeIgnored(ignored []Ignored) []Ignored {
	sorted := slices.Clone(ignored)
	slices.SortStableFunc(sorted, func(a, b Ignored) int {
		if c := compareFindings(a.Finding, b.Finding); c != 0 {
			return c
		}
		return strings.Compare(a.Reason, b.Reason)
	})
	out := make([]Ignored, 0, len(sorted))
	seen := make(map[string]bool, len(sorted))
	for _, ig := range sorted {
		if seen[ig.Key()] {
			continue
		}
		seen[ig.Key()] = true
		out = append(out, ig)
	}
	return out
}

func fill(dst *string, src string) {
	if *dst == "" {
		*dst = src
	}
}

// compareFindings is a total order: the display order first, then every
// other field, so that sorting is deterministic whatever the input order.
func compareFindings(a, b Finding) int {
	if c := cmp.Compare(b.Severity, a.Severity); c != 0 {
		return c
	}
	if c := compareNatural(a.Name, b.Name); c != 0 {
		return c
	}
	if c := compareNatural(a.Package, b.Package); c != 0 {
		return c
	}
	if c := compareNatural(a.Version, b.Version); c != 0 {
		return c
	}
	// Among duplicates, prefer the entry that knows a fix, then any order.
	if c := cmp.Compare(boolRank(a.FixedIn == ""), boolRank(b.FixedIn == "")); c != 0 {
		return c
	}
	for _, p := range [][2]string{
		{a.FixedIn, b.FixedIn}, {a.Layer, b.Layer}, {a.Link, b.Link}, {a.Description, b.Description},
	} {
		if c := strings.Compare(p[0], p[1]); c != 0 {
			return c
		}
	}
	return 0
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}

// compareNatural compares strings with runs of ASCII digits compared as
// numbers; strings that compare equal that way ("01", "1") fall back to a
// byte comparison so the order stays total.
func compareNatural(a, b string) int {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		if isDigit(a[i]) && isDigit(b[j]) {
			si, sj := i, j
			for i < len(a) && isDigit(a[i]) {
				i++
			}
			for j < len(b) && isDigit(b[j]) {
				j++
			}
			na := strings.TrimLeft(a[si:i], "0")
			nb := strings.TrimLeft(b[sj:j], "0")
			if c := cmp.Compare(len(na), len(nb)); c != 0 {
				return c
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			continue
		}
		if c := cmp.Compare(a[i], b[j]); c != 0 {
			return c
		}
		i++
		j++
	}
	if c := cmp.Compare(len(a)-i, len(b)-j); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
