package report

import (
	"bytes"
	"cmp"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/distribution/reference"
	"github.com/package-url/packageurl-go"
)

// The cyclonedx format is a CycloneDX 1.6 JSON BOM of the scanned image:
//
//   - metadata.component is the image (type container): its name and tag
//     (or manifest digest) as scanned, with the image ID, manifest digest and
//     platform as properties; metadata.tools names layerbridge and Clair;
//     each warning is a metadata property layerbridge:warning.
//   - components are every package of Report.Packages (type library), one
//     per package URL, with the layers that introduced it and its source
//     package as properties, and one operating-system component per
//     distribution. A finding whose package is not among them (a report
//     without packages) gets a component of its own (pkg:generic).
//   - vulnerabilities are the findings, one entry per vulnerability id:
//     source and rating from Clair, affects naming the components by bom-ref
//     with the installed version affected and the fixed one unaffected, and
//     the fixed versions as recommendation. Ignored findings are listed too,
//     in entries of their own that carry an analysis (VEX): the rule's state
//     (not_affected unless it names another) and justification, its reason
//     as detail, and its expiry as detail and as a property.
//
// Deterministic: the same report rendered with the same Options gives the
// same bytes. The serial number is a name-based (version 5) UUID of the
// manifest digest and the rest of the BOM, so it changes whenever anything
// else does, Options.Time included; the timestamp is Options.Time, left out
// when zero.

// cdxSchema is the JSON schema the BOM declares.
const cdxSchema = "http://cyclonedx.org/schema/bom-1.6.schema.json"

// Property names layerbridge writes, in its own namespace of the CycloneDX
// property taxonomy.
const (
	propImageRef       = "layerbridge:image:ref"
	propImageID        = "layerbridge:image:id"
	propManifestDigest = "layerbridge:image:manifest_digest"
	propPlatform       = "layerbridge:image:platform"
	propLayer          = "layerbridge:layer:digest"
	propSourcePackage  = "layerbridge:package:source"
	propClairAPI       = "layerbridge:clair:api"
	propClairSeverity  = "layerbridge:clair:severity"
	propIgnoreExpires  = "layerbridge:ignore:expires"
	propWarning        = "layerbridge:warning"
)

// cdxSeverities maps Clair's severities to CycloneDX's. The five names both
// have map to themselves. Negligible (Clair: "technically a security
// problem, but only theoretical in nature") is info. Defcon1, above
// Critical, has no CycloneDX counterpart and is critical. Clair's own name
// stays in the property layerbridge:clair:severity.
var cdxSeverities = [...]cdx.Severity{
	Unknown:    cdx.SeverityUnknown,
	Negligible: cdx.SeverityInfo,
	Low:        cdx.SeverityLow,
	Medium:     cdx.SeverityMedium,
	High:       cdx.SeverityHigh,
	Critical:   cdx.SeverityCritical,
	Defcon1:    cdx.SeverityCritical,
}

// cdxSeverity returns the CycloneDX severity of a Clair severity;
// out-of-range values are unknown.
func cdxSeverity(s Severity) cdx.Severity {
	if s < Unknown || s > Defcon1 {
		return cdx.SeverityUnknown
	}
	return cdxSeverities[s]
}

func renderCycloneDX(w io.Writer, r *Report, o Options) error {
	bom := buildBOM(r, o)
	var body bytes.Buffer
	if err := encodeBOM(&body, bom); err != nil {
		return err
	}
	bom.SerialNumber = serialNumber(r.Image, body.Bytes())
	return encodeBOM(w, bom)
}

func encodeBOM(w io.Writer, bom *cdx.BOM) error {
	return cdx.NewBOMEncoder(w, cdx.BOMFileFormatJSON).SetPretty(true).SetEscapeHTML(false).Encode(bom)
}

// serialNumber is a version 5 UUID (RFC 4122: SHA-1, in the URL namespace)
// of the image's manifest digest (else its ID, else its reference) and the
// BOM's content without the serial number.
func serialNumber(img Image, body []byte) string {
	sum := sha256.Sum256(body)
	name := "layerbridge:cyclonedx:" + cmp.Or(img.ManifestDigest, img.ID, img.Ref) + ":" + hex.EncodeToString(sum[:])
	urlNamespace := [16]byte{0x6b, 0xa7, 0xb8, 0x11, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}
	h := sha1.New()
	h.Write(urlNamespace[:])
	h.Write([]byte(name))
	u := h.Sum(nil)[:16]
	u[6] = u[6]&0x0f | 0x50 // version 5
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	return fmt.Sprintf("urn:uuid:%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

func buildBOM(r *Report, o Options) *cdx.BOM {
	comps := newComponentSet()
	for _, p := range r.Packages {
		comps.addPackage(p)
	}
	for _, f := range r.Findings {
		comps.ensure(f)
	}
	for _, ig := range r.Ignored {
		comps.ensure(ig.Finding)
	}
	image := imageComponent(r.Image)
	list := comps.all()
	refs := make([]string, len(list))
	for i, c := range list {
		refs[i] = c.BOMRef
	}
	vulns := vulnerabilities(r, comps)
	bom := &cdx.BOM{
		JSONSchema:  cdxSchema,
		BOMFormat:   cdx.BOMFormat,
		SpecVersion: cdx.SpecVersion1_6,
		Version:     1,
		Metadata: &cdx.Metadata{
			Tools:      tools(r.Clair, o.ToolVersion),
			Component:  &image,
			Properties: properties(propWarning, r.Warnings...),
		},
		Components:      &list,
		Dependencies:    &[]cdx.Dependency{{Ref: image.BOMRef, Dependencies: &refs}},
		Vulnerabilities: &vulns,
	}
	if !o.Time.IsZero() {
		bom.Metadata.Timestamp = o.Time.UTC().Format(time.RFC3339)
	}
	return bom
}

func tools(c Clair, version string) *cdx.ToolsChoice {
	tc := []cdx.Component{{Type: cdx.ComponentTypeApplication, Name: "layerbridge", Version: version}}
	if c.API != "" {
		tc = append(tc, cdx.Component{
			Type: cdx.ComponentTypeApplication, Name: "clair",
			Properties: properties(propClairAPI, c.API),
		})
	}
	return &cdx.ToolsChoice{Components: &tc}
}

// properties returns one property named name per non-empty value, nil when
// there is none.
func properties(name string, values ...string) *[]cdx.Property {
	var ps []cdx.Property
	for _, v := range values {
		if v != "" {
			ps = append(ps, cdx.Property{Name: name, Value: v})
		}
	}
	if ps == nil {
		return nil
	}
	return &ps
}

func appendProperties(dst *[]cdx.Property, name string, values ...string) *[]cdx.Property {
	add := properties(name, values...)
	switch {
	case add == nil:
		return dst
	case dst == nil:
		return add
	}
	all := append(*dst, *add...)
	return &all
}

// imageComponent describes the image: name and version from the reference
// as scanned (repository and tag; the manifest digest when there is no tag).
func imageComponent(img Image) cdx.Component {
	name, version := imageNameTag(img)
	c := cdx.Component{
		BOMRef:  cmp.Or(img.ManifestDigest, img.ID, "image"),
		Type:    cdx.ComponentTypeContainer,
		Name:    cmp.Or(name, img.ID, "image"),
		Version: cmp.Or(version, img.ManifestDigest, img.ID),
	}
	ps := properties(propImageRef, img.Ref)
	ps = appendProperties(ps, propImageID, img.ID)
	ps = appendProperties(ps, propManifestDigest, img.ManifestDigest)
	c.Properties = appendProperties(ps, propPlatform, img.Platform)
	return c
}

// imageNameTag is the image's repository and tag ("" if none), from
// Image.Name: ("alpine", "3.11") for alpine:3.11 however it was spelled,
// ("registry:5000/app", "") for registry:5000/app@sha256:…. An image
// without a name (an image ID, a file) is named by its reference as given.
func imageNameTag(img Image) (name, tag string) {
	n, err := reference.ParseNormalizedNamed(img.Name)
	if err != nil {
		return img.Ref, ""
	}
	if t, ok := n.(reference.Tagged); ok {
		tag = t.Tag()
	}
	return reference.FamiliarName(n), tag
}

// componentSet collects the BOM's components, one per package URL.
type componentSet struct {
	packages []cdx.Component
	systems  []cdx.Component
	byRef    map[string]int      // index into packages
	byName   map[string][]string // package name and version -> bom-refs
	seenOS   map[string]bool
}

func newComponentSet() *componentSet {
	return &componentSet{byRef: map[string]int{}, byName: map[string][]string{}, seenOS: map[string]bool{}}
}

func nameVersion(name, version string) string { return name + "\x00" + version }

// addPackage adds p, or its layer to the component of the same package URL.
func (s *componentSet) addPackage(p Package) {
	purl := packageURL(p)
	ref := cmp.Or(purl, fmt.Sprintf("package:%d", len(s.packages)+1))
	if i, ok := s.byRef[ref]; ok {
		c := &s.packages[i]
		if p.Layer != "" && (c.Properties == nil || !slices.Contains(*c.Properties, cdx.Property{Name: propLayer, Value: p.Layer})) {
			c.Properties = appendProperties(c.Properties, propLayer, p.Layer)
		}
		return
	}
	c := cdx.Component{
		BOMRef:     ref,
		Type:       cdx.ComponentTypeLibrary,
		Name:       p.Name,
		Version:    p.Version,
		PackageURL: purl,
		Properties: appendProperties(properties(propSourcePackage, p.Source), propLayer, p.Layer),
	}
	s.byRef[ref] = len(s.packages)
	s.packages = append(s.packages, c)
	key := nameVersion(p.Name, p.Version)
	s.byName[key] = append(s.byName[key], ref)
	if d := p.Distribution; d.ID != "" && !s.seenOS[osRef(d)] {
		s.seenOS[osRef(d)] = true
		s.systems = append(s.systems, cdx.Component{
			BOMRef: osRef(d), Type: cdx.ComponentTypeOS, Name: d.ID, Version: d.VersionID,
		})
	}
}

// ensure adds a component for f's package unless one exists: a report
// without packages still names what each vulnerability affects.
func (s *componentSet) ensure(f Finding) {
	if len(s.byName[nameVersion(f.Package, f.Version)]) == 0 {
		s.addPackage(Package{Name: f.Package, Version: f.Version, Layer: f.Layer})
	}
}

// refs returns the bom-refs of the components of package name at version.
func (s *componentSet) refs(name, version string) []string {
	return s.byName[nameVersion(name, version)]
}

// all returns the operating systems, sorted, then the packages in the
// order added.
func (s *componentSet) all() []cdx.Component {
	all := append([]cdx.Component{}, s.systems...)
	slices.SortFunc(all, func(a, b cdx.Component) int { return strings.Compare(a.BOMRef, b.BOMRef) })
	return append(all, s.packages...)
}

func osRef(d Distribution) string { return "os:" + distroQualifier(d) }

// distroQualifier is the distro qualifier of a package URL: "alpine-3.11".
func distroQualifier(d Distribution) string {
	if d.ID == "" || d.VersionID == "" {
		return d.ID
	}
	return d.ID + "-" + d.VersionID
}

// rpmVendors maps os-release IDs to the vendors rpm package URLs name as
// their namespace; an ID not listed is its own vendor.
var rpmVendors = map[string]string{
	"rhel": "redhat", "ol": "oracle", "amzn": "amazon", "sles": "suse", "sled": "suse",
	"opensuse-leap": "opensuse", "opensuse-tumbleweed": "opensuse",
}

// packageURL returns p's package URL in canonical form, following the purl
// specification's rules for each type: apk, deb and rpm are namespaced by
// their distribution (rpm by its vendor, the epoch of a version as the
// epoch qualifier) and qualified with arch and distro ("alpine-3.11");
// maven splits "group:artifact", npm a "@scope/", golang the module path's
// last element. An unknown type is pkg:generic. "" if p cannot have one (no
// name).
func packageURL(p Package) string {
	typ, ns, name, version := p.Type, "", p.Name, p.Version
	q := map[string]string{}
	switch typ {
	case packageurl.TypeApk, packageurl.TypeDebian, packageurl.TypeRPM:
		q["arch"] = p.Arch
		q["distro"] = distroQualifier(p.Distribution)
		switch typ {
		case packageurl.TypeApk:
			ns = cmp.Or(p.Distribution.ID, "alpine")
		case packageurl.TypeDebian:
			ns = cmp.Or(p.Distribution.ID, "debian")
		case packageurl.TypeRPM:
			ns = cmp.Or(rpmVendors[p.Distribution.ID], p.Distribution.ID)
			if epoch, rest, ok := strings.Cut(version, ":"); ok && epoch != "" && strings.Trim(epoch, "0123456789") == "" {
				q["epoch"], version = epoch, rest
			}
		}
	case packageurl.TypeMaven:
		if group, artifact, ok := strings.Cut(name, ":"); ok {
			ns, name = group, artifact
		}
	case packageurl.TypeNPM:
		if scope, rest, ok := strings.Cut(name, "/"); ok && strings.HasPrefix(scope, "@") {
			ns, name = scope, rest
		}
	case packageurl.TypeGolang:
		if i := strings.LastIndexByte(name, '/'); i >= 0 {
			ns, name = name[:i], name[i+1:]
		}
	case packageurl.TypePyPi, packageurl.TypeGem:
	default:
		typ = packageurl.TypeGeneric
	}
	u := packageurl.PackageURL{Type: typ, Namespace: ns, Name: name, Version: version, Qualifiers: packageurl.QualifiersFromMap(q)}
	if err := u.Normalize(); err != nil {
		return ""
	}
	return u.ToString()
}

// vulnGroup is the findings one vulnerability entry covers: those of one id,
// not ignored or ignored with the same analysis.
type vulnGroup struct {
	id       string
	ignored  bool
	reason   string
	rule     *IgnoreRule
	findings []Finding
}

func vulnerabilities(r *Report, comps *componentSet) []cdx.Vulnerability {
	var groups []*vulnGroup
	at := map[string]*vulnGroup{}
	add := func(key string, f Finding, g vulnGroup) {
		if have, ok := at[key]; ok {
			have.findings = append(have.findings, f)
			return
		}
		g.findings = []Finding{f}
		at[key] = &g
		groups = append(groups, &g)
	}
	for _, f := range r.Findings {
		add("finding\x00"+f.Name, f, vulnGroup{id: f.Name})
	}
	for _, ig := range r.Ignored {
		g := vulnGroup{id: ig.Name, ignored: true, reason: ig.Reason, rule: ig.Rule}
		state, justification, expires := analysisOf(g)
		add(strings.Join([]string{"ignored", ig.Name, ig.Reason, state, justification, expires}, "\x00"), ig.Finding, g)
	}
	out := make([]cdx.Vulnerability, 0, len(groups))
	for _, g := range groups {
		out = append(out, g.vulnerability(comps))
	}
	return out
}

// analysisOf returns the VEX state, justification and expiry ("" if none)
// of an ignored group.
func analysisOf(g vulnGroup) (state, justification, expires string) {
	state = "not_affected"
	if g.rule != nil {
		state = cmp.Or(g.rule.VEXState, state)
		justification = g.rule.VEXJustification
		if !g.rule.Expires.IsZero() {
			expires = formatExpiry(g.rule.Expires)
		}
	}
	return state, justification, expires
}

func (g *vulnGroup) vulnerability(comps *componentSet) cdx.Vulnerability {
	sev := Unknown
	var description string
	var fixes []string
	var affects []cdx.Affects
	seen := map[string]bool{}
	for _, f := range g.findings {
		sev = max(sev, f.Severity)
		description = cmp.Or(description, f.Description)
		if f.FixedIn != "" {
			if fix := f.Package + " to " + f.FixedIn; !slices.Contains(fixes, fix) {
				fixes = append(fixes, fix)
			}
		}
		versions := []cdx.AffectedVersions{{Version: f.Version, Status: cdx.VulnerabilityStatusAffected}}
		if f.FixedIn != "" {
			versions = append(versions, cdx.AffectedVersions{Version: f.FixedIn, Status: cdx.VulnerabilityStatusNotAffected})
		}
		for _, ref := range comps.refs(f.Package, f.Version) {
			if !seen[ref] {
				seen[ref] = true
				affects = append(affects, cdx.Affects{Ref: ref, Range: &versions})
			}
		}
	}
	v := cdx.Vulnerability{
		ID:          g.id,
		Source:      vulnSource(firstLink(g.findings)),
		Ratings:     &[]cdx.VulnerabilityRating{{Severity: cdxSeverity(sev), Method: cdx.ScoringMethodOther}},
		Description: description,
		Affects:     &affects,
		Properties:  properties(propClairSeverity, sev.String()),
	}
	if len(fixes) > 0 {
		v.Recommendation = "Upgrade " + strings.Join(fixes, ", ") + "."
	}
	if g.ignored {
		state, justification, expires := analysisOf(*g)
		detail := cmp.Or(g.reason, "ignored by an ignore rule that gives no reason")
		if expires != "" {
			detail += " (ignored until " + expires + ")"
		}
		v.Analysis = &cdx.VulnerabilityAnalysis{
			State:         cdx.ImpactAnalysisState(state),
			Justification: cdx.ImpactAnalysisJustification(justification),
			Detail:        detail,
		}
		v.Properties = appendProperties(v.Properties, propIgnoreExpires, expires)
	}
	return v
}

// vulnSource is the advisory's link (an absolute http(s) URL: firstLink),
// its publisher named by the link's host; nil without a link.
func vulnSource(link string) *cdx.Source {
	u, err := url.Parse(link)
	if link == "" || err != nil {
		return nil
	}
	return &cdx.Source{Name: u.Hostname(), URL: link}
}
