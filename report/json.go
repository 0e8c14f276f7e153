package report

import (
	"bytes"
	"encoding/json"
	"io"
	"strconv"
)

// jsonReport is the normalised JSON report. Its shape is a promise to users'
// jq scripts: add keys, never rename or remove them.
type jsonReport struct {
	Image           Image          `json:"image"`
	Clair           Clair          `json:"clair"`
	Summary         severityCounts `json:"summary"`
	Vulnerabilities []Finding      `json:"vulnerabilities"` // never null
	Ignored         []Ignored      `json:"ignored"`         // never null
	Warnings        []string       `json:"warnings"`        // never null
	// Packages is only written with Options.Packages; then never null.
	Packages *[]Package `json:"packages,omitempty"`
}

// severityCounts marshals as {"Unknown": n, ..., "Defcon1": n}, every
// severity present, in Clair's order rather than encoding/json's sorted one.
type severityCounts [Defcon1 + 1]int

func (c severityCounts) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, sev := range Severities {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Quote(sev.String()))
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(c[sev]))
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func renderJSON(w io.Writer, r *Report, o Options) error {
	doc := jsonReport{
		Image:           r.Image,
		Clair:           r.Clair,
		Summary:         severityCounts(r.Summary().Counts),
		Vulnerabilities: nonNil(r.Findings),
		Ignored:         nonNil(r.Ignored),
		Warnings:        nonNil(r.Warnings),
	}
	if o.Packages {
		pkgs := nonNil(r.Packages)
		doc.Packages = &pkgs
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(doc)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
