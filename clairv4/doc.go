// Package clairv4 is the client for the Clair v4 HTTP API (indexer and
// matcher, Clair 4.2 through 4.9). Its one job: post a manifest whose layer
// URIs point wherever the caller serves them, wait for the index to finish,
// fetch the vulnerability report and convert it to report.Finding values
// and the image's report.Package values (the index report it embeds),
// keeping Clair's raw response for renderers that want it unchanged.
//
// It also answers the questions a scan must settle before trusting a clean
// report: is this Clair v4 at all (Probe), does its matcher hold any
// vulnerability data (VulnerabilityDataPresent), and why did an index fail
// (the errors in errors.go: a layer Clair could not fetch, rejected
// credentials, the other API generation's 404).
//
// It depends only on the standard library, go-digest and report. It must not
// import dockersave, bridge or clairv2: it knows URLs, not files, and the two
// Clair clients never depend on each other.
package clairv4
