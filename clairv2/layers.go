package clairv2

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/layerbridge/layerbridge/report"
)

// Layer is what PostLayer sends.
type Layer struct {
	// Name is Clair's global key for the layer: a name Clair already has is
	// answered at once, without download, keeping the parent and content it
	// was first posted with. Use LayerNames. At most 128 bytes, no "/".
	Name string
	// Path is the absolute http or https URL Clair downloads the layer from
	// (reachable from Clair). Clair v2 checks no digest and ignores
	// Content-Type; it reads gzip, bzip2, xz or plain tar, not zstd.
	Path string
	// Headers are sent with Clair's GET, one value each.
	Headers map[string]string
	// ParentName is the previous layer's Name, "" for the base layer. The
	// parent must have been posted first.
	ParentName string
	// Format is "Docker" when empty. Clair v2 knows "Docker" and "ACI" only
	// (OCI layers are Docker format to it).
	Format string
}

// maxNameLength is the size of Clair v2's layer.name column (VARCHAR(128)).
const maxNameLength = 128

// namePrefix marks layer names made by LayerNames, so they never coincide
// with the bare digests other Clair v2 clients use as names.
const namePrefix = "layerbridge-"

// LayerNames returns the Clair v2 name of each layer of an image, given its
// layer digests oldest first (the order Clair must receive them in):
// "layerbridge-" followed by the hex SHA-256 of the digests of that layer and
// all below it, joined by single spaces:
//
//	name[i] = "layerbridge-" + hex(sha256(layers[0] + " " + … + " " + layers[i]))
//
// A name therefore identifies a content chain, like an OCI ChainID: the same
// layer on top of different parents gets different names (Clair v2 stores
// each layer's content relative to its parent, so reusing a name across
// parents would report the wrong packages), while images sharing a base
// share its names and Clair skips those downloads. The names are 76 bytes,
// within Clair's 128. The caller maps a finding's Layer (Clair's AddedBy,
// a name) back to a digest by position.
func LayerNames(layers []digest.Digest) []string {
	names := make([]string, len(layers))
	var chain strings.Builder
	for i, d := range layers {
		if i > 0 {
			chain.WriteByte(' ')
		}
		chain.WriteString(d.String())
		sum := sha256.Sum256([]byte(chain.String()))
		names[i] = namePrefix + hex.EncodeToString(sum[:])
	}
	return names
}

// checkName rejects names Clair would store but the GET route could not
// address, or that its database column would refuse.
func checkName(what, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%s is empty", what)
	case len(name) > maxNameLength:
		return fmt.Errorf("%s %q is longer than clair's %d bytes", what, name, maxNameLength)
	case strings.Contains(name, "/"), name == ".", name == "..":
		return fmt.Errorf("%s %q cannot be used in a url path", what, name)
	}
	return nil
}

// PostLayer asks Clair to download and analyse one layer. It returns when
// Clair has done so: the Path must stay servable until then. Posts are never
// repeated on failure.
//
// Errors: ErrLayerFetch (Clair could not download Path), ErrParentUnknown,
// ErrUnsupportedLayer (422), ErrWrongAPI (the bare 404 a Clair v4 gives),
// otherwise an *APIError with Clair's message.
func (c *Client) PostLayer(ctx context.Context, l Layer) error {
	if c.err != nil {
		return c.err
	}
	if err := checkName("layer name", l.Name); err != nil {
		return fmt.Errorf("post layer: %w", err)
	}
	if l.ParentName != "" {
		if err := checkName("parent name", l.ParentName); err != nil {
			return fmt.Errorf("post layer %s: %w", l.Name, err)
		}
	}
	u, err := url.Parse(l.Path)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("post layer %s: path %q must be an absolute http or https url", l.Name, l.Path)
	}
	w := wireLayer{Name: l.Name, Path: l.Path, Headers: l.Headers, ParentName: l.ParentName, Format: cmp.Or(l.Format, "Docker")}
	body, err := json.Marshal(wireLayerEnvelope{Layer: &w})
	if err != nil {
		return fmt.Errorf("post layer %s: %w", l.Name, err)
	}
	ep := c.endpoint("v1", "layers")
	r, err := c.send(ctx, http.MethodPost, ep, body)
	if err != nil {
		return err
	}
	if r.Status < 200 || r.Status > 299 {
		return newAPIError(http.MethodPost, ep.Redacted(), r)
	}
	return nil
}

// Report is Clair v2's report for one layer and everything below it.
type Report struct {
	Name      string // the layer queried
	Namespace string // the namespace Clair detected, e.g. "alpine:v3.11"; "" if none
	// Findings has one entry per distinct (feature name, version,
	// vulnerability name), sorted by package, version, then vulnerability.
	// FixedIn is Clair's FixedBy, Severity its Severity (Unknown if
	// unreadable), Link its single Link. Layer is Clair's AddedBy: a layer
	// NAME, not a digest; map it back with the names given to PostLayer.
	Findings []report.Finding
	// Packages has one entry per feature (Clair 2's word for a package) of
	// the layer and those below it, in Clair's order: Name and Version as
	// Clair gives them, Distribution and Type from the feature's namespace
	// (see namespaceDistribution), Layer is AddedBy (a layer name, as for
	// Findings). Clair 2 knows no source package or architecture. Never nil.
	Packages []report.Package
	Raw      json.RawMessage // Clair's body, unchanged
}

// LayerReport fetches GET /v1/layers/{name}?features&vulnerabilities. Ask for
// the top layer: its report covers the whole image. An unknown layer matches
// ErrNotFound.
func (c *Client) LayerReport(ctx context.Context, name string) (*Report, error) {
	if c.err != nil {
		return nil, c.err
	}
	if err := checkName("layer name", name); err != nil {
		return nil, fmt.Errorf("layer report: %w", err)
	}
	ep := c.endpoint("v1", "layers", name)
	ep.RawQuery = "features&vulnerabilities"
	r, err := c.send(ctx, http.MethodGet, ep, nil)
	if err != nil {
		return nil, err
	}
	if r.Status != http.StatusOK {
		return nil, newAPIError(http.MethodGet, ep.Redacted(), r)
	}
	rep, err := decodeLayerReport(r.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", ep.Redacted(), err)
	}
	return rep, nil
}

func decodeLayerReport(body []byte) (*Report, error) {
	var env wireLayerEnvelope
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, fmt.Errorf("decode layer report: %w", err)
	}
	if env.Layer == nil {
		return nil, errors.New("decode layer report: no Layer in the answer")
	}
	return &Report{
		Name:      env.Layer.Name,
		Namespace: env.Layer.NamespaceName,
		Findings:  findings(env.Layer.Features),
		Packages:  packages(env.Layer.NamespaceName, env.Layer.Features),
		Raw:       json.RawMessage(body),
	}, nil
}

// findings converts features into findings. When the same pair appears twice
// (a feature listed in two namespaces), the entries are merged: the highest
// severity wins and empty fields are filled from the other.
func findings(features []wireFeature) []report.Finding {
	out := []report.Finding{}
	at := map[string]int{}
	for _, feat := range features {
		for _, v := range feat.Vulnerabilities {
			sev, err := report.ParseSeverity(v.Severity)
			if err != nil {
				sev = report.Unknown
			}
			f := report.Finding{
				Name:        v.Name,
				Package:     feat.Name,
				Version:     feat.Version,
				FixedIn:     v.FixedBy,
				Severity:    sev,
				Layer:       feat.AddedBy,
				Link:        v.Link,
				Description: v.Description,
			}
			if i, dup := at[f.Key()]; dup {
				g := &out[i]
				g.Severity = max(g.Severity, f.Severity)
				g.FixedIn = cmp.Or(g.FixedIn, f.FixedIn)
				g.Layer = cmp.Or(g.Layer, f.Layer)
				g.Link = cmp.Or(g.Link, f.Link)
				g.Description = cmp.Or(g.Description, f.Description)
				continue
			}
			at[f.Key()] = len(out)
			out = append(out, f)
		}
	}
	slices.SortFunc(out, func(a, b report.Finding) int {
		return cmp.Or(strings.Compare(a.Package, b.Package), strings.Compare(a.Version, b.Version), strings.Compare(a.Name, b.Name))
	})
	return out
}
