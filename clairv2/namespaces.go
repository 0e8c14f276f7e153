package clairv2

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// Namespace is an OS release Clair v2 knows, from its updaters or from a
// layer it analysed.
type Namespace struct {
	Name          string // e.g. "alpine:v3.11", "debian:12"
	VersionFormat string // "dpkg" or "rpm"
}

// Probe checks that base serves the Clair v2 API, by listing namespaces. It
// returns nil, or an error matching ErrWrongAPI (any 404, or a 200 that is no
// namespace list: a Clair v4 or another server), ErrUnauthorized (likely a
// Clair v4 with a PSK), or a transport error (IsUnreachable).
func (c *Client) Probe(ctx context.Context) error {
	_, err := c.namespaces(ctx, true)
	return err
}

// Namespaces lists GET /v1/namespaces. None means Clair has never been fed a
// vulnerability feed nor analysed a layer.
func (c *Client) Namespaces(ctx context.Context) ([]Namespace, error) {
	return c.namespaces(ctx, false)
}

func (c *Client) namespaces(ctx context.Context, probe bool) ([]Namespace, error) {
	if c.err != nil {
		return nil, c.err
	}
	ep := c.endpoint("v1", "namespaces")
	r, err := c.send(ctx, http.MethodGet, ep, nil)
	if err != nil {
		return nil, err
	}
	if r.Status != http.StatusOK {
		e := newAPIError(http.MethodGet, ep.Redacted(), r)
		// Every Clair v2 serves this route: any 404 means something else.
		e.wrongAPI = e.wrongAPI || (probe && r.Status == http.StatusNotFound)
		return nil, e
	}
	var env wireNamespaceEnvelope
	if err := json.Unmarshal(r.Body, &env); err != nil || env.Namespaces == nil && !hasKey(r.Body, "Namespaces") {
		return nil, fmt.Errorf("GET %s answered 200 without a namespace list: %w", ep.Redacted(), ErrWrongAPI)
	}
	var out []Namespace
	if env.Namespaces != nil {
		for _, n := range *env.Namespaces {
			out = append(out, Namespace(n))
		}
	}
	return out, nil
}

// hasKey reports whether body is a JSON object with key (Clair v2 sends
// "Namespaces":null when it has none).
func hasKey(body []byte, key string) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return false
	}
	_, ok := m[key]
	return ok
}

// HasVulnerabilities reports whether Clair holds at least one vulnerability
// in namespace (GET /v1/namespaces/{ns}/vulnerabilities?limit=1). An unknown
// namespace matches ErrNotFound.
func (c *Client) HasVulnerabilities(ctx context.Context, namespace string) (bool, error) {
	if c.err != nil {
		return false, c.err
	}
	if err := checkName("namespace", namespace); err != nil {
		return false, err
	}
	ep := c.endpoint("v1", "namespaces", namespace, "vulnerabilities")
	ep.RawQuery = "limit=1"
	r, err := c.send(ctx, http.MethodGet, ep, nil)
	if err != nil {
		return false, err
	}
	if r.Status != http.StatusOK {
		return false, newAPIError(http.MethodGet, ep.Redacted(), r)
	}
	var env wireVulnerabilityEnvelope
	if err := json.Unmarshal(r.Body, &env); err != nil {
		return false, fmt.Errorf("GET %s: decode vulnerabilities: %w", ep.Redacted(), err)
	}
	return len(env.Vulnerabilities) > 0, nil
}

// VulnerabilityDataPresent reports whether Clair v2 holds any vulnerability
// in any namespace. false (no namespaces, or none with a vulnerability) means
// its updaters never ran or never succeeded, and every report will look
// clean: warn loudly instead of reporting a clean image. It stops at the
// first namespace with data.
//
// true does not mean the image's own namespace has data: compare
// Report.Namespace with HasVulnerabilities for that.
func (c *Client) VulnerabilityDataPresent(ctx context.Context) (bool, error) {
	nss, err := c.Namespaces(ctx)
	if err != nil {
		return false, err
	}
	for _, ns := range nss {
		ok, err := c.HasVulnerabilities(ctx, ns.Name)
		if err != nil {
			return false, fmt.Errorf("namespace %s: %w", ns.Name, err)
		}
		if ok {
			return true, nil
		}
	}
	return false, nil
}
