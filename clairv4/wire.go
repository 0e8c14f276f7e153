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
	Distributions          map[string]wireDistribution  `json:"distributions"`
	Repositories           map[string]wireRepository    `json:"repository"`
	Environments           map[string][]wireEnvironment `json:"environments"`
	Vulnerabilities        map[string]wireVulnerability `json:"vulnerabilities"`
	PackageVulnerabilities map[string][]string          `json:"package_vulnerabilities"`
}

type wirePackage struct {
	ID      string       `json:"id"`
	Name    string       `json:"name"`
	Version string       `json:"version"`
	Arch    string       `json:"arch"`
	Source  *wirePackage `json:"source"`
}

type wireDistribution struct {
	DID        string `json:"did"`
	Name       string `json:"name"`
	Version    string `json:"version"`
	VersionID  string `json:"version_id"`
	PrettyName string `json:"pretty_name"`
}

type wireEnvironment struct {
	PackageDB      string   `json:"package_db"`
	IntroducedIn   string   `json:"introduced_in"`
	DistributionID string   `json:"distribution_id"`
	RepositoryIDs  []string `json:"repository_ids"`
}

type wireRepository struct {
	Name string `json:"name"`
	URI  string `json:"uri"`
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
