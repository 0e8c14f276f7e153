package clairv2

// Private mirrors of Clair v2.1.7's api/v1/models.go, holding only the fields
// this package reads or writes; unknown fields (Metadata, IndexedByVersion …)
// are ignored. See ../testdata/clair-samples/v2.1.7 for recorded bodies.

type wireErrorEnvelope struct {
	Error *wireError `json:"Error"`
}

type wireError struct {
	Message string `json:"Message"`
	Type    string `json:"Type"`
}

type wireLayerEnvelope struct {
	Layer *wireLayer `json:"Layer"`
}

// wireLayer is both the POST /v1/layers request and the GET answer.
type wireLayer struct {
	Name          string            `json:"Name"`
	NamespaceName string            `json:"NamespaceName,omitempty"`
	Path          string            `json:"Path,omitempty"`
	Headers       map[string]string `json:"Headers,omitempty"`
	ParentName    string            `json:"ParentName,omitempty"`
	Format        string            `json:"Format,omitempty"`
	Features      []wireFeature     `json:"Features,omitempty"`
}

type wireFeature struct {
	Name            string              `json:"Name"`
	NamespaceName   string              `json:"NamespaceName"`
	VersionFormat   string              `json:"VersionFormat"`
	Version         string              `json:"Version"`
	Vulnerabilities []wireVulnerability `json:"Vulnerabilities"`
	AddedBy         string              `json:"AddedBy"`
}

type wireVulnerability struct {
	Name        string `json:"Name"`
	Description string `json:"Description"`
	Link        string `json:"Link"`
	Severity    string `json:"Severity"`
	FixedBy     string `json:"FixedBy"`
}

type wireNamespaceEnvelope struct {
	Namespaces *[]wireNamespace `json:"Namespaces"`
}

type wireNamespace struct {
	Name          string `json:"Name"`
	VersionFormat string `json:"VersionFormat"`
}

type wireVulnerabilityEnvelope struct {
	Vulnerabilities []wireVulnerability `json:"Vulnerabilities"`
}
