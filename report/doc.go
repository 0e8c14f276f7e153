// Package report holds the one vulnerability report model that both Clair
// clients produce and every renderer consumes: severities in Clair's order,
// findings, ignore rules, and the renderers (table, json, clair, html, sarif,
// junit).
//
// Inputs: a *Report filled by a Clair client (clairv4 or clairv2), an
// optional ignore file (LoadIgnore). Outputs: the normalised report
// (Normalize, Apply), its verdict (Summary, Fails) and its rendering in one
// of Formats (Render). Nothing here does I/O beyond the io.Reader and
// io.Writer it is handed, reads the clock (Apply takes now) or logs.
//
// It must not import the Clair clients, dockersave, bridge or any other
// package of this module: they depend on it, never the reverse. Its only
// dependency outside the standard library is go.yaml.in/yaml/v3 for ignore
// files (deps_test.go enforces both).
package report
