package report

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/distribution/reference"
	"go.yaml.in/yaml/v3"

	"github.com/layerbridge/layerbridge/imageref"
)

// IgnoreRule suppresses one vulnerability, optionally only in one package or
// one image, optionally only until Expires.
type IgnoreRule struct {
	ID      string    // vulnerability id, matched ignoring case ("CVE-2021-3449")
	Package string    // binary package name as Clair reports it, exact ("openssl" does not cover libssl1.1); "" matches every package
	Image   string    // image the rule is limited to, as written (see Matches); "" matches every image
	Expires time.Time // the rule stops applying at this instant; zero never expires
	Reason  string    // why, shown with every finding the rule suppresses
	Line    int       // line of the entry in the ignore file, 0 when not read from a file
	// VEXState is the CycloneDX impact analysis state the cyclonedx format
	// gives the findings the rule suppresses (one of VEXStates); "" means
	// "not_affected".
	VEXState string
	// VEXJustification is the CycloneDX justification of a not_affected
	// state (one of VEXJustifications); "" gives none.
	VEXJustification string
}

// VEXStates are the CycloneDX 1.6 impact analysis states an ignore rule may
// name (vex-state).
var VEXStates = []string{"not_affected", "false_positive", "exploitable", "in_triage", "resolved", "resolved_with_pedigree"}

// VEXJustifications are the CycloneDX 1.6 justifications of a not_affected
// state an ignore rule may name (vex-justification).
var VEXJustifications = []string{
	"code_not_present", "code_not_reachable", "requires_configuration", "requires_dependency",
	"requires_environment", "protected_by_compiler", "protected_at_runtime", "protected_at_perimeter",
	"protected_by_mitigating_control",
}

// Active reports whether the rule still applies at now: Expires is zero or
// later than now.
func (ru IgnoreRule) Active(now time.Time) bool {
	return ru.Expires.IsZero() || now.Before(ru.Expires)
}

// Matches reports whether the rule covers finding f of the scanned image
// img, regardless of expiry. Image is an image reference (imageref.Parse),
// compared, normalized, with img.Name, so that however either side is
// spelled ("alpine", "library/alpine", "docker.io/library/alpine",
// "docker-daemon:alpine"), it names the same repository:
//
//   - a repository without tag or digest matches every tag and digest of
//     it: "alpine" matches "alpine:3.11", "alpine@sha256:…" and "alpine"
//     (which is alpine:latest); "registry:5000/app" matches
//     "registry:5000/app:1.0" (the port is not mistaken for a tag);
//   - a tag matches that tag ("alpine:latest" matches a scan of "alpine"),
//     a digest that digest (as the scan named it), a tag and a digest both;
//   - an image ID (sha256:<hex>, or a prefix of it written with "sha256:")
//     matches the image with that ID, however it was named;
//   - a file (docker-archive:PATH, oci-archive:PATH, oci:DIR) matches scans
//     of that file as named on the command line.
//
// An image without a name (an archive that carries no tag, or several; see
// imageref.Ref.ImageName) is matched by its ID or file only.
func (ru IgnoreRule) Matches(img Image, f Finding) bool {
	return ru.matches(imageMatcher(ru.Image), img, f)
}

func (ru IgnoreRule) matches(image func(Image) bool, img Image, f Finding) bool {
	if !strings.EqualFold(ru.ID, f.Name) {
		return false
	}
	if ru.Package != "" && ru.Package != f.Package {
		return false
	}
	return image(img)
}

// describe names the rule in warnings: "CVE-2021-3449 in package musl (line 4)".
func (ru IgnoreRule) describe() string {
	var b strings.Builder
	b.WriteString(ru.ID)
	if ru.Package != "" {
		fmt.Fprintf(&b, " in package %s", ru.Package)
	}
	if ru.Image != "" {
		fmt.Fprintf(&b, " for image %s", ru.Image)
	}
	if ru.Line > 0 {
		fmt.Fprintf(&b, " (line %d)", ru.Line)
	}
	return b.String()
}

// IgnoreRules is a parsed ignore file. The zero value and a nil
// *IgnoreRules ignore nothing.
type IgnoreRules struct {
	Rules []IgnoreRule // in file order; the first matching active rule gives the reason
}

// LoadIgnore reads an ignore file (YAML). Accepted shapes, which may be
// combined in one file:
//
//	ignore:                      # or the same list at the top level
//	  - CVE-2021-3449            # a bare id: every package, never expires
//	  - id: CVE-2020-28928
//	    package: musl            # only this binary package
//	    image: alpine            # only this image (repository, or full reference)
//	    expires: 2027-01-31      # stops applying at 00:00 UTC that day (or an RFC 3339 time)
//	    reason: "not reachable"
//	    vex-state: not_affected  # cyclonedx: the analysis state (VEXStates; default not_affected)
//	    vex-justification: code_not_reachable  # cyclonedx: why not affected (VEXJustifications)
//	generalwhitelist:            # clair-scanner's whitelist: id -> reason
//	  CVE-2017-6055: XML
//	images:                      # clair-scanner: image -> id -> reason
//	  ubuntu:
//	    CVE-2017-5230: Java
//
// An empty file is no rules. Unknown keys, wrong types, missing ids, bad
// dates, repeated keys, aliases and more than one YAML document are errors
// that name the line; the caller adds the file name. Expired entries load
// fine: Apply skips them and warns.
func LoadIgnore(r io.Reader) (*IgnoreRules, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxIgnoreFile+1))
	if err != nil {
		return nil, fmt.Errorf("ignore rules: %w", err)
	}
	if len(data) > maxIgnoreFile {
		return nil, fmt.Errorf("ignore rules: larger than %d bytes", maxIgnoreFile)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return &IgnoreRules{}, nil
		}
		return nil, fmt.Errorf("ignore rules: %w", syntaxError(data, err))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, fmt.Errorf("ignore rules: %w", syntaxError(data, err))
		}
		return nil, fmt.Errorf("ignore rules: line %d: a second YAML document; put every rule in one", extra.Line)
	}
	rules := &IgnoreRules{}
	if len(doc.Content) == 0 {
		return rules, nil
	}
	if err := rules.parseTop(doc.Content[0]); err != nil {
		return nil, fmt.Errorf("ignore rules: %w", err)
	}
	return rules, nil
}

// maxIgnoreFile bounds what LoadIgnore reads: ignore files are hand-written.
const maxIgnoreFile = 1 << 20

// syntaxError restates a YAML syntax error with the line that causes it.
// yaml.v3 reports the start of the enclosing block, often a line or more
// above the mistake (a tab on line 3 is "line 2"), so the first prefix of
// the file that fails with the same message names the line instead. If none
// does, yaml's own error stands.
func syntaxError(data []byte, err error) error {
	msg := yamlMessage(err)
	lines := bytes.SplitAfter(data, []byte("\n"))
	if len(lines) > 5000 {
		return err
	}
	end := 0
	for i, line := range lines {
		end += len(line)
		var n yaml.Node
		dec := yaml.NewDecoder(bytes.NewReader(data[:end]))
		for {
			perr := dec.Decode(&n)
			if perr == nil {
				continue
			}
			if !errors.Is(perr, io.EOF) && yamlMessage(perr) == msg {
				return fmt.Errorf("line %d: invalid YAML: %s", i+1, msg)
			}
			break
		}
	}
	return err
}

// yamlMessage strips yaml.v3's "yaml: line N: " prefix.
func yamlMessage(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if _, after, ok := strings.Cut(rest, ": "); ok {
			return after
		}
	}
	return msg
}

// lineError is an ignore file error at one line.
func lineError(n *yaml.Node, format string, args ...any) error {
	return fmt.Errorf("line %d: %s", n.Line, fmt.Sprintf(format, args...))
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing"
		}
		return fmt.Sprintf("%q", n.Value)
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.AliasNode:
		return "an alias (*" + n.Value + "), which ignore files do not support"
	default:
		return "a document"
	}
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// mappingPairs returns the key/value pairs of a mapping node, rejecting
// repeated and non-scalar keys.
func mappingPairs(n *yaml.Node) ([][2]*yaml.Node, error) {
	var pairs [][2]*yaml.Node
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
			return nil, lineError(k, "want a plain key, got %s", kindName(k))
		}
		if seen[k.Value] {
			return nil, lineError(k, "key %q repeated", k.Value)
		}
		seen[k.Value] = true
		pairs = append(pairs, [2]*yaml.Node{k, v})
	}
	return pairs, nil
}

func (rules *IgnoreRules) parseTop(n *yaml.Node) error {
	switch {
	case isNull(n):
		return nil
	case n.Kind == yaml.SequenceNode:
		return rules.parseList(n)
	case n.Kind != yaml.MappingNode:
		return lineError(n, "want a mapping with an ignore list, or a list, got %s", kindName(n))
	}
	pairs, err := mappingPairs(n)
	if err != nil {
		return err
	}
	for _, p := range pairs {
		k, v := p[0], p[1]
		switch k.Value {
		case "ignore":
			if isNull(v) {
				continue
			}
			if v.Kind != yaml.SequenceNode {
				return lineError(v, "ignore: want a list, got %s", kindName(v))
			}
			if err := rules.parseList(v); err != nil {
				return err
			}
		case "generalwhitelist":
			if err := rules.parseWhitelist(v, ""); err != nil {
				return err
			}
		case "images":
			if err := rules.parseImages(v); err != nil {
				return err
			}
		default:
			return lineError(k, "unknown key %q (want ignore, generalwhitelist or images)", k.Value)
		}
	}
	return nil
}

func (rules *IgnoreRules) parseList(n *yaml.Node) error {
	for _, e := range n.Content {
		switch e.Kind {
		case yaml.ScalarNode:
			id := strings.TrimSpace(e.Value)
			if isNull(e) || id == "" {
				return lineError(e, "empty entry: want a vulnerability id")
			}
			rules.Rules = append(rules.Rules, IgnoreRule{ID: id, Line: e.Line})
		case yaml.MappingNode:
			ru, err := parseEntry(e)
			if err != nil {
				return err
			}
			rules.Rules = append(rules.Rules, ru)
		default:
			return lineError(e, "want a vulnerability id or a mapping with id, got %s", kindName(e))
		}
	}
	return nil
}

func parseEntry(n *yaml.Node) (IgnoreRule, error) {
	ru := IgnoreRule{Line: n.Line}
	pairs, err := mappingPairs(n)
	if err != nil {
		return ru, err
	}
	for _, p := range pairs {
		k, v := p[0], p[1]
		if v.Kind != yaml.ScalarNode {
			return ru, lineError(v, "%s: want a single value, got %s", k.Value, kindName(v))
		}
		val := v.Value
		if isNull(v) {
			val = ""
		}
		switch k.Value {
		case "id":
			ru.ID = strings.TrimSpace(val)
		case "package":
			ru.Package = strings.TrimSpace(val)
		case "image":
			ru.Image = strings.TrimSpace(val)
			if _, err := imageref.Parse(ru.Image); err != nil {
				return ru, lineError(v, "image: %v", err)
			}
		case "reason":
			ru.Reason = strings.TrimSpace(val)
		case "expires":
			t, err := parseExpiry(val)
			if err != nil {
				return ru, lineError(v, "expires: %v", err)
			}
			ru.Expires = t
		case "vex-state":
			ru.VEXState = strings.TrimSpace(val)
			if !slices.Contains(VEXStates, ru.VEXState) {
				return ru, lineError(v, "vex-state: %q is not a CycloneDX analysis state (want one of %s)", val, strings.Join(VEXStates, ", "))
			}
		case "vex-justification":
			ru.VEXJustification = strings.TrimSpace(val)
			if !slices.Contains(VEXJustifications, ru.VEXJustification) {
				return ru, lineError(v, "vex-justification: %q is not a CycloneDX justification (want one of %s)", val, strings.Join(VEXJustifications, ", "))
			}
		default:
			return ru, lineError(k, "unknown key %q (want id, package, image, expires, reason, vex-state or vex-justification)", k.Value)
		}
	}
	if ru.ID == "" {
		return ru, lineError(n, "entry without an id")
	}
	if ru.VEXJustification != "" && ru.VEXState != "" && ru.VEXState != "not_affected" {
		return ru, lineError(n, "vex-justification %s explains a not_affected state, not %s", ru.VEXJustification, ru.VEXState)
	}
	return ru, nil
}

// parseExpiry reads a date (2027-01-31, meaning 00:00 UTC that day) or an
// RFC 3339 time.
func parseExpiry(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is not a date (want YYYY-MM-DD)", s)
}

// parseWhitelist reads clair-scanner's "id: reason" mapping.
func (rules *IgnoreRules) parseWhitelist(n *yaml.Node, image string) error {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return lineError(n, "want a mapping of vulnerability id to reason, got %s", kindName(n))
	}
	pairs, err := mappingPairs(n)
	if err != nil {
		return err
	}
	for _, p := range pairs {
		k, v := p[0], p[1]
		if v.Kind != yaml.ScalarNode {
			return lineError(v, "%s: want a reason, got %s", k.Value, kindName(v))
		}
		id := strings.TrimSpace(k.Value)
		if id == "" {
			return lineError(k, "empty vulnerability id")
		}
		reason := v.Value
		if isNull(v) {
			reason = ""
		}
		rules.Rules = append(rules.Rules, IgnoreRule{ID: id, Image: image, Reason: strings.TrimSpace(reason), Line: k.Line})
	}
	return nil
}

// parseImages reads clair-scanner's "image: {id: reason}" mapping.
func (rules *IgnoreRules) parseImages(n *yaml.Node) error {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return lineError(n, "images: want a mapping of image name to whitelist, got %s", kindName(n))
	}
	pairs, err := mappingPairs(n)
	if err != nil {
		return err
	}
	for _, p := range pairs {
		name := strings.TrimSpace(p[0].Value)
		if name == "" {
			return lineError(p[0], "images: empty image name")
		}
		if _, err := imageref.Parse(name); err != nil {
			return lineError(p[0], "images: %v", err)
		}
		if err := rules.parseWhitelist(p[1], name); err != nil {
			return err
		}
	}
	return nil
}

// Apply moves every finding of r that an active rule matches into r.Ignored,
// with the first matching rule's reason, and appends to r.Warnings one
// warning per expired rule (whether or not it would have matched: the file
// needs cleaning up either way). Expired rules suppress nothing. now decides
// expiry; pass time.Now() outside tests. Call it once per report, after the
// client filled r: a second call warns again. A nil rules does nothing.
// r.Ignored is kept in Normalize's order.
func (rules *IgnoreRules) Apply(now time.Time, r *Report) {
	if rules == nil || len(rules.Rules) == 0 {
		return
	}
	var (
		active []IgnoreRule
		images []func(Image) bool // parallel to active
	)
	for _, ru := range rules.Rules {
		if ru.Active(now) {
			active = append(active, ru)
			images = append(images, imageMatcher(ru.Image))
			continue
		}
		r.Warnings = append(r.Warnings, fmt.Sprintf(
			"ignore rule for %s expired on %s: it no longer applies; renew or remove it",
			ru.describe(), formatExpiry(ru.Expires)))
	}
	if len(active) == 0 {
		return
	}
	kept := r.Findings[:0:0]
	moved := false
	for _, f := range r.Findings {
		i := -1
		for j, ru := range active {
			if ru.matches(images[j], r.Image, f) {
				i = j
				break
			}
		}
		if i < 0 {
			kept = append(kept, f)
			continue
		}
		r.Ignored = append(r.Ignored, Ignored{Finding: f, Reason: active[i].Reason, Rule: &active[i]})
		moved = true
	}
	r.Findings = kept
	if moved {
		r.Ignored = normalizeIgnored(r.Ignored)
	}
}

func formatExpiry(t time.Time) string {
	u := t.UTC()
	if u.Hour() == 0 && u.Minute() == 0 && u.Second() == 0 && u.Nanosecond() == 0 {
		return u.Format(time.DateOnly)
	}
	return t.Format(time.RFC3339)
}

// imageMatcher returns what the rule image (as written, "" for none)
// matches, as Matches documents.
func imageMatcher(rule string) func(Image) bool {
	if rule == "" {
		return func(Image) bool { return true }
	}
	want, err := imageref.Parse(rule)
	switch {
	case err != nil: // LoadIgnore refuses it; a rule built by hand matches nothing
		return func(Image) bool { return false }
	case want.Kind != imageref.Daemon:
		return func(img Image) bool {
			got, err := imageref.Parse(img.Ref)
			return err == nil && got.Kind == want.Kind && filepath.Clean(got.Name) == filepath.Clean(want.Name)
		}
	case want.Named == nil:
		return func(img Image) bool { return img.ID != "" && strings.HasPrefix(img.ID, want.ID) }
	}
	return func(img Image) bool {
		got, err := reference.ParseNormalizedNamed(img.Name)
		if err != nil || got.Name() != want.Named.Name() {
			return false
		}
		if t, ok := want.Named.(reference.Tagged); ok {
			if g, ok := got.(reference.Tagged); !ok || g.Tag() != t.Tag() {
				return false
			}
		}
		if d, ok := want.Named.(reference.Digested); ok {
			if g, ok := got.(reference.Digested); !ok || g.Digest() != d.Digest() {
				return false
			}
		}
		return true
	}
}
