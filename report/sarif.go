package report

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"path"
	"strings"

	"github.com/distribution/reference"

	"github.com/layerbridge/layerbridge/imageref"
)

// SARIF 2.1.0 as code-scanning dashboards (GitHub, Azure DevOps, GitLab)
// read it. Conventions follow what trivy and grype emit for container
// images: one rule per vulnerability id with a "security-severity" score,
// one result per finding, and a physical location that is a path-like name
// of the image because dashboards insist on one (an image has no source
// line), with a logical location naming image, package and version.
const (
	sarifVersion = "2.1.0"
	sarifSchema  = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
	sarifInfoURI = "https://github.com/layerbridge/layerbridge"
)

type sarifLog struct {
	Version string     `json:"version"`
	Schema  string     `json:"$schema"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool              sarifTool          `json:"tool"`
	AutomationDetails *sarifAutomation   `json:"automationDetails,omitempty"`
	Invocations       []sarifInvocation  `json:"invocations,omitempty"`
	Results           []sarifResult      `json:"results"`
	Properties        sarifRunProperties `json:"properties"`
	ColumnKind        string             `json:"columnKind,omitempty"`
}

type sarifRunProperties struct {
	Image   Image          `json:"image"`
	Clair   Clair          `json:"clair"`
	Summary severityCounts `json:"summary"`
	Ignored int            `json:"ignored"`
}

type sarifAutomation struct {
	ID string `json:"id"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name           string      `json:"name"`
	Version        string      `json:"version,omitempty"`
	InformationURI string      `json:"informationUri"`
	Rules          []sarifRule `json:"rules"`
}

type sarifMessage struct {
	Text string `json:"text"`
}

type sarifMultiformat struct {
	Text     string `json:"text"`
	Markdown string `json:"markdown,omitempty"`
}

type sarifRule struct {
	ID                   string            `json:"id"`
	Name                 string            `json:"name"`
	ShortDescription     sarifMessage      `json:"shortDescription"`
	FullDescription      sarifMessage      `json:"fullDescription"`
	HelpURI              string            `json:"helpUri,omitempty"`
	Help                 sarifMultiformat  `json:"help"`
	DefaultConfiguration sarifRuleConfig   `json:"defaultConfiguration"`
	Properties           sarifRuleProperty `json:"properties"`
}

type sarifRuleConfig struct {
	Level string `json:"level"`
}

type sarifRuleProperty struct {
	Tags             []string `json:"tags"`
	SecuritySeverity string   `json:"security-severity,omitempty"`
}

type sarifInvocation struct {
	ExecutionSuccessful        bool                `json:"executionSuccessful"`
	ToolExecutionNotifications []sarifNotification `json:"toolExecutionNotifications,omitempty"`
}

type sarifNotification struct {
	Level   string       `json:"level"`
	Message sarifMessage `json:"message"`
}

type sarifResult struct {
	RuleID              string                `json:"ruleId"`
	RuleIndex           int                   `json:"ruleIndex"`
	Level               string                `json:"level"`
	Message             sarifMessage          `json:"message"`
	Locations           []sarifLocation       `json:"locations"`
	PartialFingerprints map[string]string     `json:"partialFingerprints"`
	Suppressions        []sarifSuppression    `json:"suppressions,omitempty"`
	Properties          sarifResultProperties `json:"properties"`
}

type sarifResultProperties struct {
	Package  string   `json:"package"`
	Version  string   `json:"version"`
	FixedIn  string   `json:"fixed_in"`
	Severity Severity `json:"severity"`
	Layer    string   `json:"layer,omitempty"`
}

type sarifLocation struct {
	PhysicalLocation sarifPhysical  `json:"physicalLocation"`
	LogicalLocations []sarifLogical `json:"logicalLocations"`
	Message          *sarifMessage  `json:"message,omitempty"`
}

type sarifPhysical struct {
	ArtifactLocation sarifArtifact `json:"artifactLocation"`
	Region           sarifRegion   `json:"region"`
}

type sarifArtifact struct {
	URI string `json:"uri"`
}

type sarifRegion struct {
	StartLine   int `json:"startLine"`
	StartColumn int `json:"startColumn"`
	EndLine     int `json:"endLine"`
	EndColumn   int `json:"endColumn"`
}

type sarifLogical struct {
	Name               string `json:"name"`
	FullyQualifiedName string `json:"fullyQualifiedName"`
}

type sarifSuppression struct {
	Kind          string `json:"kind"`
	Status        string `json:"status"`
	Justification string `json:"justification,omitempty"`
}

// sarifLevel maps a severity to a SARIF level as trivy does (High and above
// error, Medium warning, the rest note), then applies the threshold: at or
// above it is always error, below it never is.
func sarifLevel(s Severity, failOn *Severity) string {
	level := "note"
	switch {
	case s >= High:
		level = "error"
	case s == Medium:
		level = "warning"
	}
	if failOn == nil {
		return level
	}
	if s >= *failOn {
		return "error"
	}
	if level == "error" {
		return "warning"
	}
	return level
}

// securitySeverity is GitHub's numeric severity (critical >= 9.0, high
// 7.0-8.9, medium 4.0-6.9, low 0.1-3.9); "" for Unknown, which is left to
// the level.
func securitySeverity(s Severity) string {
	switch {
	case s >= Defcon1:
		return "10.0"
	case s == Critical:
		return "9.0"
	case s == High:
		return "7.0"
	case s == Medium:
		return "4.0"
	case s == Low:
		return "2.0"
	case s == Negligible:
		return "0.1"
	default:
		return ""
	}
}

func renderSARIF(w io.Writer, r *Report, o Options) error {
	imgPath := imageURIPath(r.Image)
	imgName := firstNonEmpty(r.Image.displayName(), imgPath)

	type entry struct {
		f       Finding
		ignored *Ignored
	}
	entries := make([]entry, 0, len(r.Findings)+len(r.Ignored))
	for _, f := range r.Findings {
		entries = append(entries, entry{f: f})
	}
	for i := range r.Ignored {
		entries = append(entries, entry{f: r.Ignored[i].Finding, ignored: &r.Ignored[i]})
	}

	// One rule per vulnerability id, in first-seen order; its level and
	// score are those of the most severe finding with that id.
	ruleIndex := map[string]int{}
	var groups [][]Finding
	for _, e := range entries {
		i, ok := ruleIndex[e.f.Name]
		if !ok {
			i = len(groups)
			ruleIndex[e.f.Name] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], e.f)
	}
	rules := make([]sarifRule, 0, len(groups))
	for _, g := range groups {
		rules = append(rules, sarifRuleFor(g, o))
	}

	results := make([]sarifResult, 0, len(entries))
	for _, e := range entries {
		f := e.f
		res := sarifResult{
			RuleID:    f.Name,
			RuleIndex: ruleIndex[f.Name],
			Level:     sarifLevel(f.Severity, o.FailOn),
			Message:   sarifMessage{Text: findingSentence(f)},
			Locations: []sarifLocation{{
				PhysicalLocation: sarifPhysical{
					ArtifactLocation: sarifArtifact{URI: imgPath},
					Region:           sarifRegion{StartLine: 1, StartColumn: 1, EndLine: 1, EndColumn: 1},
				},
				LogicalLocations: []sarifLogical{{
					Name:               f.Package,
					FullyQualifiedName: imgName + "/" + f.Package + "@" + f.Version,
				}},
				Message: &sarifMessage{Text: fmt.Sprintf("%s: %s@%s", imgName, f.Package, f.Version)},
			}},
			// Stable across rebuilds and tags of the image, unique within
			// the run (Normalize leaves one finding per key).
			PartialFingerprints: map[string]string{
				"primaryLocationLineHash": fingerprint(imgPath, f.Package, f.Version, f.Name) + ":1",
			},
			Properties: sarifResultProperties{
				Package: f.Package, Version: f.Version, FixedIn: f.FixedIn, Severity: f.Severity, Layer: f.Layer,
			},
		}
		if e.ignored != nil {
			res.Suppressions = []sarifSuppression{{
				Kind: "external", Status: "accepted", Justification: e.ignored.Reason,
			}}
		}
		results = append(results, res)
	}

	run := sarifRun{
		Tool: sarifTool{Driver: sarifDriver{
			Name:           "layerbridge",
			Version:        o.ToolVersion,
			InformationURI: sarifInfoURI,
			Rules:          rules,
		}},
		// Dashboards keep one analysis per category: one per image.
		AutomationDetails: &sarifAutomation{ID: "layerbridge/" + imgPath + "/"},
		Results:           results,
		Properties: sarifRunProperties{
			Image: r.Image, Clair: r.Clair,
			Summary: severityCounts(r.Summary().Counts), Ignored: len(r.Ignored),
		},
		ColumnKind: "utf16CodeUnits",
	}
	if len(r.Warnings) > 0 {
		inv := sarifInvocation{ExecutionSuccessful: true}
		for _, warn := range r.Warnings {
			inv.ToolExecutionNotifications = append(inv.ToolExecutionNotifications,
				sarifNotification{Level: "warning", Message: sarifMessage{Text: warn}})
		}
		run.Invocations = []sarifInvocation{inv}
	}

	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(sarifLog{Version: sarifVersion, Schema: sarifSchema, Runs: []sarifRun{run}})
}

// sarifRuleFor builds the rule for one vulnerability id from every finding
// (ignored ones included) that has it.
func sarifRuleFor(fs []Finding, o Options) sarifRule {
	top := fs[0]
	for _, f := range fs[1:] {
		if f.Severity > top.Severity {
			top = f
		}
	}
	var pkgs []string
	seen := map[string]bool{}
	for _, f := range fs {
		if !seen[f.Package] {
			seen[f.Package] = true
			pkgs = append(pkgs, f.Package)
		}
	}
	short := fmt.Sprintf("%s (severity %s) in %s", top.Name, top.Severity, strings.Join(pkgs, ", "))
	full := firstNonEmpty(firstDescription(fs), short)

	var text, md strings.Builder
	fmt.Fprintf(&text, "Vulnerability %s\nSeverity: %s\n", top.Name, top.Severity)
	fmt.Fprintf(&md, "**Vulnerability %s**\n\nSeverity: %s\n\n| Package | Installed | Fixed in |\n| --- | --- | --- |\n",
		mdEscape(top.Name), top.Severity)
	for _, f := range fs {
		fmt.Fprintf(&text, "Package: %s %s, fixed in %s\n", f.Package, f.Version, firstNonEmpty(f.FixedIn, "no known version"))
		fmt.Fprintf(&md, "| %s | %s | %s |\n", mdEscape(f.Package), mdEscape(f.Version), mdEscape(firstNonEmpty(f.FixedIn, "-")))
	}
	link := firstLink(fs)
	if link != "" {
		fmt.Fprintf(&text, "Link: %s\n", link)
		fmt.Fprintf(&md, "\n[%s](%s)\n", mdEscape(top.Name), strings.NewReplacer("(", "%28", ")", "%29", " ", "%20").Replace(link))
	}
	if d := firstDescription(fs); d != "" {
		fmt.Fprintf(&text, "\n%s\n", d)
		fmt.Fprintf(&md, "\n%s\n", mdEscape(d))
	}

	props := sarifRuleProperty{
		Tags:             []string{"vulnerability", "security", top.Severity.String()},
		SecuritySeverity: securitySeverity(top.Severity),
	}
	level := sarifLevel(top.Severity, o.FailOn)
	return sarifRule{
		ID:                   top.Name,
		Name:                 "PackageVulnerability",
		ShortDescription:     sarifMessage{Text: short},
		FullDescription:      sarifMessage{Text: full},
		HelpURI:              link,
		Help:                 sarifMultiformat{Text: text.String(), Markdown: md.String()},
		DefaultConfiguration: sarifRuleConfig{Level: level},
		Properties:           props,
	}
}

// findingSentence describes one finding in a line.
func findingSentence(f Finding) string {
	fix := "no fixed version known"
	if f.FixedIn != "" {
		fix = "fixed in " + f.FixedIn
	}
	return fmt.Sprintf("%s in %s %s (severity %s), %s", f.Name, f.Package, f.Version, f.Severity, fix)
}

func firstDescription(fs []Finding) string {
	for _, f := range fs {
		if d := strings.TrimSpace(f.Description); d != "" {
			return d
		}
	}
	return ""
}

// firstLink returns the first absolute http(s) link, the only kind a
// dashboard should render as helpUri.
func firstLink(fs []Finding) string {
	for _, f := range fs {
		u, err := url.Parse(f.Link)
		if err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" {
			return f.Link
		}
	}
	return ""
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

func fingerprint(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// mdEscape keeps advisory text from breaking the markdown table or
// injecting markup.
func mdEscape(s string) string {
	r := strings.NewReplacer(
		"\\", "\\\\", "|", "\\|", "<", "&lt;", ">", "&gt;", "[", "\\[", "]", "\\]",
		"*", "\\*", "_", "\\_", "`", "\\`", "\r", " ", "\n", " ")
	return r.Replace(s)
}

// imageURIPath turns the scanned image into a relative URI path that names
// its repository without tag or digest, stable across tags so dashboards
// track alerts per image: Image.Name's familiar name ("alpine";
// registry:5000/team/app:1.0 is "registry_5000/team/app"). An image
// without a name uses its file's name for archives and layouts
// ("docker-archive:/tmp/x.tar" is "x.tar"; a ":reference" after a layout
// directory, as skopeo writes them, is left out), else
// "image/<12 hex digits of its ID>".
func imageURIPath(img Image) string {
	if n, err := reference.ParseNormalizedNamed(img.Name); err == nil {
		return sanitizePath(reference.FamiliarName(n))
	}
	if r, err := imageref.Parse(img.Ref); err == nil && r.Kind != imageref.Daemon {
		base := path.Base(strings.TrimRight(r.Name, "/"))
		if i := strings.IndexByte(base, ':'); i > 0 {
			base = base[:i]
		}
		return sanitizePath(base)
	}
	if hexID := shortDigest(img.ID); hexID != "" {
		return "image/" + sanitizePath(hexID)
	}
	return "image"
}

// sanitizePath keeps [A-Za-z0-9._/-] and maps every other byte to '_' so
// the result is a valid relative URI path whose first segment has no colon.
func sanitizePath(s string) string {
	b := []byte(s)
	for i, c := range b {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '_' || c == '-' || c == '/'
		if !ok {
			b[i] = '_'
		}
	}
	out := strings.Trim(path.Clean("/"+string(b)), "/")
	if out == "" || out == "." {
		return "image"
	}
	return out
}
