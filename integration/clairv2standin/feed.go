package clairv2standin

import (
	"fmt"
	"io/fs"
	"sort"

	debversion "github.com/knqyf263/go-deb-version"
	"go.yaml.in/yaml/v3"
)

// secdbFile is the part of an Alpine SecDB YAML file that Clair v2's alpine
// updater reads.
type secdbFile struct {
	DistroVersion string `yaml:"distroversion"`
	Packages      []struct {
		Pkg struct {
			Name     string              `yaml:"name"`
			Secfixes map[string][]string `yaml:"secfixes"`
		} `yaml:"pkg"`
	} `yaml:"packages"`
}

// fix is one advisory for one package in one namespace: the package is
// affected below fixed.
type fix struct {
	vulnerability string
	fixed         string
	fixedVersion  debversion.Version
}

// advisories maps namespace ("alpine:v3.11") and binary package name to the
// fixes the feed lists for it.
type advisories map[string]map[string][]fix

// loadFeed reads every */main.yaml and */community.yaml of an Alpine SecDB
// tree, as Clair v2.1.7's updater does for each release it finds. Fix
// versions dpkg cannot parse are skipped, as Clair v2 skips them.
func loadFeed(feed fs.FS) (advisories, error) {
	var files []string
	for _, repo := range []string{"main", "community"} {
		m, err := fs.Glob(feed, "*/"+repo+".yaml")
		if err != nil {
			return nil, fmt.Errorf("list feed: %w", err)
		}
		files = append(files, m...)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("feed has no */main.yaml or */community.yaml")
	}
	sort.Strings(files)
	adv := advisories{}
	for _, name := range files {
		b, err := fs.ReadFile(feed, name)
		if err != nil {
			return nil, fmt.Errorf("read feed: %w", err)
		}
		var f secdbFile
		if err := yaml.Unmarshal(b, &f); err != nil {
			return nil, fmt.Errorf("parse feed %s: %w", name, err)
		}
		if f.DistroVersion == "" {
			return nil, fmt.Errorf("parse feed %s: no distroversion", name)
		}
		ns := "alpine:" + f.DistroVersion
		for _, p := range f.Packages {
			for fixed, ids := range p.Pkg.Secfixes {
				v, err := debversion.NewVersion(fixed)
				if err != nil {
					continue
				}
				for _, id := range ids {
					if adv[ns] == nil {
						adv[ns] = map[string][]fix{}
					}
					adv[ns][p.Pkg.Name] = append(adv[ns][p.Pkg.Name], fix{vulnerability: id, fixed: fixed, fixedVersion: v})
				}
			}
		}
	}
	for _, pkgs := range adv {
		for name, fixes := range pkgs {
			pkgs[name] = lowestFixPerVulnerability(fixes)
		}
	}
	return adv, nil
}

// lowestFixPerVulnerability keeps one fix per vulnerability: the lowest
// version that fixes it (Clair v2 keeps whichever its updater stored last,
// which depends on map order; the lowest is the deterministic reading).
func lowestFixPerVulnerability(fixes []fix) []fix {
	best := map[string]fix{}
	for _, f := range fixes {
		if b, ok := best[f.vulnerability]; !ok || f.fixedVersion.LessThan(b.fixedVersion) {
			best[f.vulnerability] = f
		}
	}
	out := make([]fix, 0, len(best))
	for _, f := range best {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].vulnerability < out[j].vulnerability })
	return out
}

// namespaces lists the namespaces that have at least one advisory: the ones
// Clair v2's updater creates.
func (a advisories) namespaces() []string {
	out := make([]string, 0, len(a))
	for ns := range a {
		out = append(out, ns)
	}
	return out
}

// affecting returns the fixes for pkg in ns whose fixed version is above
// version. An unparsable installed version matches nothing.
func (a advisories) affecting(ns, pkg, version string) []fix {
	v, err := debversion.NewVersion(version)
	if err != nil {
		return nil
	}
	var out []fix
	for _, f := range a[ns][pkg] {
		if v.LessThan(f.fixedVersion) {
			out = append(out, f)
		}
	}
	return out
}
