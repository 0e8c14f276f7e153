// Package report holds the one vulnerability report model that both Clair
// clients produce and every renderer consumes: severities in Clair's order,
// findings, the image's packages, ignore rules, and the renderers (table,
// json, clair, html, sarif, junit, cyclonedx).
//
// Inputs: a *Report filled by a Clair client (clairv4 or clairv2), an
// optional ignore file (LoadIgnore). Outputs: the normalised report
// (Normalize, Apply), its verdict (Summary, Fails) and its rendering in one
// of Formats (Render). Nothing here does I/O beyond the io.Reader and
// io.Writer it is handed, reads the clock (Apply takes now) or logs.
//
// It must not import the Clair clients, dockersave, bridge or any other
// package of this module but imageref, which parses the image references of
// ignore rules as the scan's own was parsed: they depend on it, never the
// reverse. Outside the standard library it uses go.yaml.in/yaml/v3 for
// ignore files, github.com/distribution/reference for image names, and
// github.com/CycloneDX/cyclonedx-go and github.com/package-url/packageurl-go
// for the cyclonedx format (internal/layering enforces both).
package report
