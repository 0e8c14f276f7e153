package harness

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"time"

	"github.com/opencontainers/go-digest"
)

// Finding is one (package, version, vulnerability) triple of a report: the
// unit in which layerbridge's findings are compared with Clair's own.
type Finding struct {
	Package       string
	Version       string
	Vulnerability string
}

func (f Finding) String() string { return f.Package + " " + f.Version + " " + f.Vulnerability }

// Vulnerabilities counts the distinct vulnerability names among findings.
func Vulnerabilities(findings []Finding) int {
	seen := map[string]bool{}
	for _, f := range findings {
		seen[f.Vulnerability] = true
	}
	return len(seen)
}

func sortFindings(fs []Finding) []Finding {
	sort.Slice(fs, func(i, j int) bool {
		a, b := fs[i], fs[j]
		if a.Package != b.Package {
			return a.Package < b.Package
		}
		if a.Version != b.Version {
			return a.Version < b.Version
		}
		return a.Vulnerability < b.Vulnerability
	})
	out := fs[:0]
	for i, f := range fs {
		if i == 0 || f != fs[i-1] {
			out = append(out, f)
		}
	}
	return out
}

// ReferenceManifestHash is the manifest hash ReferenceV4 submits for these
// layers: derived from their digests, so that it never equals an image's
// real manifest digest.
func ReferenceManifestHash(layers []Layer) digest.Digest {
	h := sha256.New()
	h.Write([]byte("layerbridge reference findings v4\n"))
	for _, l := range layers {
		h.Write([]byte(l.Digest.String() + "\n"))
	}
	return digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(h.Sum(nil)))
}

// ReferenceV4 returns what Clair v4 at clairURL reports for layers (base
// first, as served by a LayerServer): it posts a manifest of them to the
// indexer, then reads the vulnerability report (waiting while the matcher
// answers 202, no vulnerability data yet) and returns its findings, sorted.
// client must authenticate if Clair wants it (Clair.HTTPClient does).
//
// Clair never downloads a layer it has indexed before, whatever the
// manifest: computing references on the Clair that then scans the same
// layers through layerbridge means layerbridge's blob server is never
// asked for them. Use a separate Clair, or compute references afterwards.
func ReferenceV4(ctx context.Context, client *http.Client, clairURL string, layers []Layer) ([]Finding, error) {
	type wireLayer struct {
		Hash    string              `json:"hash"`
		URI     string              `json:"uri"`
		Headers map[string][]string `json:"headers"`
	}
	manifest := struct {
		Hash   string      `json:"hash"`
		Layers []wireLayer `json:"layers"`
	}{Hash: ReferenceManifestHash(layers).String()}
	for _, l := range layers {
		manifest.Layers = append(manifest.Layers, wireLayer{Hash: l.Digest.String(), URI: l.URL, Headers: map[string][]string{}})
	}
	body, err := json.Marshal(manifest)
	if err != nil {
		return nil, err
	}
	var index struct {
		State   string `json:"state"`
		Success bool   `json:"success"`
		Err     string `json:"err"`
	}
	status, raw, err := doJSON(ctx, client, http.MethodPost, clairURL+"/indexer/api/v1/index_report", body, &index)
	if err != nil {
		return nil, fmt.Errorf("reference v4: index: %w", err)
	}
	if (status != http.StatusCreated && status != http.StatusOK) || !index.Success {
		return nil, fmt.Errorf("reference v4: index: status %d: %s", status, tail(raw, 2048))
	}
	var report vulnerabilityReport
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		status, raw, err = doJSON(ctx, client, http.MethodGet, clairURL+"/matcher/api/v1/vulnerability_report/"+manifest.Hash, nil, &report)
		if err != nil {
			return nil, fmt.Errorf("reference v4: vulnerability report: %w", err)
		}
		if status == http.StatusOK {
			break
		}
		if status != http.StatusAccepted {
			return nil, fmt.Errorf("reference v4: vulnerability report: status %d: %s", status, tail(raw, 2048))
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("reference v4: vulnerability report still 202 (no vulnerability data): %w", context.Cause(ctx))
		case <-tick.C:
		}
	}
	out, err := report.findings()
	if err != nil {
		return nil, fmt.Errorf("reference v4: %w", err)
	}
	return out, nil
}

// vulnerabilityReport is the part of Clair v4's vulnerability report (GET
// /matcher/api/v1/vulnerability_report/..., clairctl report -o json) that
// findings come from.
type vulnerabilityReport struct {
	Packages map[string]struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	} `json:"packages"`
	Vulnerabilities map[string]struct {
		Name string `json:"name"`
	} `json:"vulnerabilities"`
	PackageVulnerabilities map[string][]string `json:"package_vulnerabilities"`
}

func (r vulnerabilityReport) findings() ([]Finding, error) {
	var out []Finding
	for pkgID, vulnIDs := range r.PackageVulnerabilities {
		p, ok := r.Packages[pkgID]
		if !ok {
			return nil, fmt.Errorf("package %q of package_vulnerabilities not in packages", pkgID)
		}
		for _, id := range vulnIDs {
			v, ok := r.Vulnerabilities[id]
			if !ok {
				return nil, fmt.Errorf("vulnerability %q not in vulnerabilities", id)
			}
			out = append(out, Finding{Package: p.Name, Version: p.Version, Vulnerability: v.Name})
		}
	}
	return sortFindings(out), nil
}

// FindingsV4 returns the findings of a Clair v4 vulnerability report in
// JSON, as Clair's matcher API and `clairctl report -o json` print it,
// sorted and without duplicates. A report naming a package or vulnerability
// it does not describe is an error.
func FindingsV4(report []byte) ([]Finding, error) {
	var r vulnerabilityReport
	if err := json.Unmarshal(report, &r); err != nil {
		return nil, fmt.Errorf("clair v4 vulnerability report: %w", err)
	}
	out, err := r.findings()
	if err != nil {
		return nil, fmt.Errorf("clair v4 vulnerability report: %w", err)
	}
	return out, nil
}

// ReferenceV2 returns what a Clair v2 (the stand-in, or a real one) at
// clairURL reports for layers (base first): it posts them one by one, each
// with the previous as parent and a name derived from the chain of digests,
// then reads the top layer's features and vulnerabilities.
func ReferenceV2(ctx context.Context, client *http.Client, clairURL string, layers []Layer) ([]Finding, error) {
	if len(layers) == 0 {
		return nil, errors.New("reference v2: no layers")
	}
	parent := ""
	for _, l := range layers {
		h := sha256.Sum256([]byte("layerbridge reference findings v2\n" + parent + "\n" + l.Digest.String()))
		name := "reference-" + hex.EncodeToString(h[:])
		body, err := json.Marshal(map[string]any{"Layer": map[string]any{
			"Name": name, "Path": l.URL, "ParentName": parent, "Format": "Docker",
		}})
		if err != nil {
			return nil, err
		}
		var resp struct{}
		status, raw, err := doJSON(ctx, client, http.MethodPost, clairURL+"/v1/layers", body, &resp)
		if err != nil {
			return nil, fmt.Errorf("reference v2: post layer %s: %w", l.Digest, err)
		}
		if status != http.StatusCreated {
			return nil, fmt.Errorf("reference v2: post layer %s: status %d: %s", l.Digest, status, tail(raw, 2048))
		}
		parent = name
	}
	var layer struct {
		Layer struct {
			Features []struct {
				Name            string
				Version         string
				Vulnerabilities []struct{ Name string }
			}
		}
	}
	status, raw, err := doJSON(ctx, client, http.MethodGet, clairURL+"/v1/layers/"+parent+"?features&vulnerabilities", nil, &layer)
	if err != nil {
		return nil, fmt.Errorf("reference v2: get layer: %w", err)
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("reference v2: get layer: status %d: %s", status, tail(raw, 2048))
	}
	var out []Finding
	for _, f := range layer.Layer.Features {
		for _, v := range f.Vulnerabilities {
			out = append(out, Finding{Package: f.Name, Version: f.Version, Vulnerability: v.Name})
		}
	}
	return sortFindings(out), nil
}

// doJSON sends body (nil: none) and, for a 2xx answer with a body, decodes
// it into out. It returns the status and the raw answer; err is for
// transport and decoding failures only.
func doJSON(ctx context.Context, client *http.Client, method, url string, body []byte, out any) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, b, err
	}
	if resp.StatusCode/100 != 2 || len(bytes.TrimSpace(b)) == 0 {
		return resp.StatusCode, b, nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return resp.StatusCode, b, fmt.Errorf("decode %s answer: %w: %s", url, err, tail(b, 512))
	}
	return resp.StatusCode, b, nil
}

// Reference is ReferenceV4 against this Clair, authenticated if it wants.
// See ReferenceV4 for why it should not run on the Clair under test.
func (c *Clair) Reference(ctx context.Context, layers []Layer) ([]Finding, error) {
	return ReferenceV4(ctx, c.client, c.URL, layers)
}
