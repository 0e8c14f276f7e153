package clairv4

import (
	"cmp"
	"maps"
	"slices"
	"strings"

	"github.com/layerbridge/layerbridge/report"
)

// packages converts Clair's index data into report packages, in package id
// order: one entry per environment of a package (a package Clair found in
// two layers or two package databases is listed once for each), or one
// without layer and distribution when Clair gives it no environment.
//
// Name, Version and Arch are Clair's; Source is the source package's name.
// Layer is the environment's introduced_in; Distribution is the
// environment's distribution (did, and version_id, else version: Clair
// gives Alpine's release only as version), none for a language package
// even when Clair names the image's distribution. Type comes from the
// environment's repository, else its package database, else the
// distribution (see packageType).
func packages(pkgs map[string]wirePackage, envs map[string][]wireEnvironment, dists map[string]wireDistribution, repos map[string]wireRepository) []report.Package {
	out := []report.Package{}
	for _, id := range slices.SortedFunc(maps.Keys(pkgs), compareIDs) {
		p := pkgs[id]
		base := report.Package{Name: p.Name, Version: p.Version, Arch: p.Arch}
		if p.Source != nil {
			base.Source = p.Source.Name
		}
		list := envs[id]
		if len(list) == 0 {
			out = append(out, base)
			continue
		}
		for _, env := range list {
			rp := base
			rp.Layer = env.IntroducedIn
			d := dists[env.DistributionID]
			rp.Distribution = report.Distribution{ID: d.DID, VersionID: cmp.Or(d.VersionID, d.Version)}
			rp.Type = packageType(env, d.DID, repos)
			if _, language := languageTypes[rp.Type]; language {
				rp.Distribution = report.Distribution{}
			}
			out = append(out, rp)
		}
	}
	return out
}

// languageRepositories maps the names of the repositories claircore's
// language indexers attach to their packages to package URL types.
var languageRepositories = map[string]string{
	"pypi": "pypi", "maven": "maven", "npm": "npm", "rubygems": "gem", "go": "golang",
}

// languageTypes are the package types of languageRepositories.
var languageTypes = map[string]struct{}{"pypi": {}, "maven": {}, "npm": {}, "gem": {}, "golang": {}}

// packageDBPrefixes maps the prefix claircore gives a package_db (before
// the first colon) to a package URL type: language indexers name their
// ecosystem, the rpm indexer its database format.
var packageDBPrefixes = map[string]string{
	"python": "pypi", "maven": "maven", "jar": "maven", "nodejs": "npm", "ruby": "gem", "go": "golang",
	"bdb": "rpm", "sqlite": "rpm", "ndb": "rpm",
}

// distributionTypes maps os-release IDs to the package type of their
// package manager.
var distributionTypes = map[string]string{
	"alpine": "apk", "wolfi": "apk", "chainguard": "apk",
	"debian": "deb", "ubuntu": "deb",
	"rhel": "rpm", "centos": "rpm", "fedora": "rpm", "ol": "rpm", "amzn": "rpm", "rocky": "rpm",
	"almalinux": "rpm", "sles": "rpm", "opensuse-leap": "rpm", "opensuse-tumbleweed": "rpm", "photon": "rpm",
}

// packageType tells a package's ecosystem (as a package URL type) from
// where Clair found it: the language repository it belongs to, the prefix
// or path of its package database (lib/apk/db/installed, var/lib/dpkg/…,
// var/lib/rpm or bdb:/sqlite:/ndb:…), else the distribution of its
// environment. "" when none tells.
func packageType(env wireEnvironment, did string, repos map[string]wireRepository) string {
	for _, id := range env.RepositoryIDs {
		if t, ok := languageRepositories[repos[id].Name]; ok {
			return t
		}
	}
	db := env.PackageDB
	if prefix, _, ok := strings.Cut(db, ":"); ok {
		if t, ok := packageDBPrefixes[prefix]; ok {
			return t
		}
	}
	switch {
	case strings.Contains(db, "lib/apk/db"):
		return "apk"
	case strings.Contains(db, "var/lib/dpkg"):
		return "deb"
	case strings.Contains(db, "lib/rpm") || strings.Contains(db, "sysimage/rpm"):
		return "rpm"
	}
	return distributionTypes[did]
}
