// Package clairv2standin stands in for Clair v2.1.7, which cannot be built
// here (it is not on the Go module proxy): an http.Handler serving the part
// of the /v1 API that layerbridge's clairv2 client uses, built from the
// exchanges recorded from a real v2.1.7 in ../../testdata/clair-samples/v2.1.7
// and the research notes on its source.
//
// Inputs: an Alpine SecDB feed (the vX.Y/main.yaml files Clair v2's alpine
// updater reads) and the layers named in POST /v1/layers, which the stand-in
// really downloads from the Path it is given (http, https or a plain file
// path), decompresses (gzip, bzip2 or plain tar) and reads
// (etc/alpine-release, lib/apk/db/installed). Outputs: the recorded JSON
// shapes, status codes and error messages.
//
// It knows only Alpine: the alpine-release namespace detector and the apk
// feature lister. Versions are compared the way Clair v2 compares them for
// Alpine, with Debian's (dpkg) algorithm, and features are matched to
// advisories by binary package name only.
//
// It must not import layerbridge's own packages (it is a peer the product is
// tested against, not a user of the product) nor Clair or claircore.
package clairv2standin
