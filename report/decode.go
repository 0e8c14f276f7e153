package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// decodedReport is the json format as Decode reads it. Keys the json
// renderer may add later are ignored; "summary" is ignored because it is
// derived from the findings.
type decodedReport struct {
	Image           Image      `json:"image"`
	Clair           Clair      `json:"clair"`
	Vulnerabilities *[]Finding `json:"vulnerabilities"`
	Ignored         []Ignored  `json:"ignored"`
	Warnings        []string   `json:"warnings"`
	Packages        []Package  `json:"packages"`
}

// Decode reads a report in the json format (what Render writes for "json",
// and what the sidecar API embeds) back into a Report, so that ignore rules,
// --fail-on and any other format can be applied to it as to a fresh one.
//
// Raw is never filled: the json format does not carry Clair's own response,
// so a decoded report cannot be rendered in the clair format until the
// caller sets Raw. Packages is filled when the report was rendered with
// Options.Packages (as the sidecar does), else nil. Findings and Ignored are kept in the order read (the
// renderer wrote them normalised) and are never nil, as after Normalize;
// Warnings is nil when empty. An unknown severity name is an error, and so
// is a document without a "vulnerabilities" array or with data after it.
func Decode(r io.Reader) (*Report, error) {
	dec := json.NewDecoder(r)
	var doc decodedReport
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("decode json report: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("decode json report: data after the report")
	}
	if doc.Vulnerabilities == nil {
		return nil, errors.New(`decode json report: no "vulnerabilities" array: not a layerbridge json report`)
	}
	rep := &Report{
		Image:    doc.Image,
		Clair:    doc.Clair,
		Findings: nonNil(*doc.Vulnerabilities),
		Ignored:  nonNil(doc.Ignored),
	}
	if len(doc.Warnings) > 0 {
		rep.Warnings = doc.Warnings
	}
	rep.Packages = doc.Packages
	return rep, nil
}
