package clairv4

import "time"

// Private mirrors of the JSON Clair v4 sends (claircore's IndexReport,
// VulnerabilityReport, driver.UpdateOperation), holding only the fields this
// package reads; unknown fields are ignored, so newer claircore additions
// (enrichments, Self/Aliases, PackageNotVulnerable …) do no harm. See
// ../testdata/clair-samples/v4.9 for recorded bodies.

type wireIndexState struct {
	State string `json:"state"`
}

type wireIndexReport struct {
	ManifestHash  string                       `json:"manifest_hash"`
	State         string                       `json:"state"`
	Packages      map[string]wirePackage       `json:"packages"`
	Distributions map[string]wireDistribution  `json:"distributions"`
	Environments  map[string][]wireEnvironment `json:"environments"`
	Success       bool                         `json:"success"`
	Err           string                       `json:"err"`
}

type wireVulnerabilityReport struct {
	ManifestHash           string                       `json:"manifest_hash"`
	Packages               map[string]wirePackage       `json:"packages"`
	Environments           map[string][]wireEnvironment `json:"environments"`
	Vulnerabilities        map[string]wireVulnerability `json:"vulnerabilities"`
	PackageVulnerabilities map[string][]string          `json:"package_vulnerabilities"`
}

type wirePackage struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Version string `json:"version"`
}

type wireDistribution struct {
	Name       string `json:"name"`
	Version    string `json:"version"`
	VersionID  string `json:"version_id"`
	PrettyName string `json:"pretty_name"`
}

type wireEnvironment struct {
	IntroducedIn string `json:"introduced_in"`
}

type wireVulnerability struct {
	ID                 string `json:"id"`
	Name               string `json:"name"`
	Description        string `json:"description"`
	Links              string `json:"links"`
	Severity           string `json:"severity"`
	NormalizedSeverity string `json:"normalized_severity"`
	FixedInVersion     string `json:"fixed_in_version"`
}

type wireUpdateOperation struct {
	Ref         string    `json:"ref"`
	Updater     string    `json:"updater"`
	Fingerprint string    `json:"fingerprint"`
	Date        time.Time `json:"date"`
	Kind        string    `json:"kind"`
}
