package clairv4

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// OpenAPIVersion returns info.version of the OpenAPI document Clair serves at
// GET /openapi/v1 (behind the same authentication as the API). It is the
// version of Clair's API description, not of the Clair release: no Clair 4
// route reports its release, so ReleasesServing narrows it to a range.
// Errors are those of Probe (ErrWrongAPI for a 404 or a body without
// info.version, ErrUnauthorized, transport errors).
func (c *Client) OpenAPIVersion(ctx context.Context) (string, error) {
	if c.err != nil {
		return "", c.err
	}
	u := c.endpoint("openapi", "v1")
	r, err := c.send(ctx, c.http, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	if r.Status != http.StatusOK {
		e := newAPIError(http.MethodGet, u.Redacted(), r)
		e.wrongAPI = e.wrongAPI || r.Status == http.StatusNotFound
		return "", e
	}
	var doc struct {
		Info struct {
			Version string `json:"version"`
		} `json:"info"`
	}
	if err := json.Unmarshal(r.Body, &doc); err != nil || doc.Info.Version == "" {
		return "", fmt.Errorf("GET %s answered 200 without an openapi info.version: %w", u.Redacted(), ErrWrongAPI)
	}
	return doc.Info.Version, nil
}

// ReleasesServing names the Clair releases whose /openapi/v1 carries the
// info.version v, as read from quay/clair's release tags: "0.1" from 4.0 to
// 4.3, "1.1" from 4.4 to 4.8, "1.2.0" from 4.9. It returns "" for a version
// it does not know (a release newer than this table).
func ReleasesServing(v string) string {
	switch v {
	case "0.1":
		return "Clair 4.0 to 4.3"
	case "1.1":
		return "Clair 4.4 to 4.8"
	case "1.2.0":
		return "Clair 4.9 or later"
	}
	return ""
}
