package clairv2

import (
	"cmp"
	"strings"

	"github.com/layerbridge/layerbridge/report"
)

// packages converts features into report packages. A feature without a
// namespace of its own takes the layer's.
func packages(layerNamespace string, features []wireFeature) []report.Package {
	out := make([]report.Package, 0, len(features))
	for _, feat := range features {
		d, typ := namespaceDistribution(cmp.Or(feat.NamespaceName, layerNamespace), feat.VersionFormat)
		out = append(out, report.Package{
			Name:         feat.Name,
			Version:      feat.Version,
			Type:         typ,
			Distribution: d,
			Layer:        feat.AddedBy,
		})
	}
	return out
}

// namespaceIDs maps Clair 2's namespace names to os-release IDs where they
// differ.
var namespaceIDs = map[string]string{"oracle": "ol", "amazon": "amzn"}

// namespaceTypes maps os-release IDs to the package type of their package
// manager.
var namespaceTypes = map[string]string{
	"alpine": "apk", "debian": "deb", "ubuntu": "deb",
	"centos": "rpm", "rhel": "rpm", "ol": "rpm", "amzn": "rpm", "fedora": "rpm", "opensuse": "rpm", "sles": "rpm",
}

// namespaceDistribution reads a Clair 2 namespace ("alpine:v3.11",
// "debian:12", "centos:7", "oracle:8") as a distribution, and tells the
// package type from it; failing that, from the version format ("rpm";
// "dpkg" says nothing, since Clair 2 compares Alpine versions as dpkg's).
func namespaceDistribution(namespace, versionFormat string) (report.Distribution, string) {
	name, version, _ := strings.Cut(namespace, ":")
	id := cmp.Or(namespaceIDs[name], name)
	if id == "alpine" {
		version = strings.TrimPrefix(version, "v")
	}
	typ := namespaceTypes[id]
	if typ == "" && versionFormat == "rpm" {
		typ = "rpm"
	}
	return report.Distribution{ID: id, VersionID: version}, typ
}
