// Package clairv2 is the client for the Clair v2 API (v2.1.x, /v1 routes).
// Its one job: post an image's layers one at a time, parent first, under
// names derived from their content chain (LayerNames), fetch the top layer's
// report and convert it to report.Finding values and the image's
// report.Package values (its features), keeping Clair's raw response for
// renderers that want it unchanged.
//
// It also answers what a scan must settle before trusting a clean report:
// is this Clair v2 at all (Probe), does it hold any vulnerability data
// (VulnerabilityDataPresent), and why did a layer fail (errors.go: Clair could
// not download it, unsupported archive or OS, the other API generation's 404).
//
// It depends only on the standard library, go-digest and report. It must not
// import dockersave, bridge or clairv4.
package clairv2
