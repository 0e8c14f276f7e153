// Package report holds the one vulnerability report model that both Clair
// clients produce and every renderer consumes: severities in Clair's order,
// findings, ignore rules, and the renderers (table, json, clair, html, sarif,
// junit).
//
// It must not import the Clair clients, dockersave or bridge: they depend on
// it, never the reverse.
package report
