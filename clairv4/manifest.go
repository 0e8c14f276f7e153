package clairv4

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/opencontainers/go-digest"
)

// Manifest is what Index posts: the image's layers, oldest first, each with
// a URI Clair downloads it from.
type Manifest struct {
	// Hash keys Clair's cached index: a manifest hash Clair has indexed is
	// answered from the cache without fetching anything, so it must change
	// whenever any layer does. Use the stored manifest digest. sha256 or
	// sha512 only.
	Hash digest.Digest
	// Layers, oldest first; at least one.
	Layers []Layer
}

// Layer is one layer as Clair fetches it.
type Layer struct {
	// Hash is the digest of exactly the bytes served at URI (the compressed
	// blob's digest for a gzip blob, the diffID for a plain tar): Clair
	// re-hashes the body and fails the index on a mismatch. It also keys
	// Clair's per-layer cache: a layer indexed once is never fetched again.
	Hash digest.Digest
	// URI is an absolute http or https URL reachable from Clair (not from
	// this process: in Docker setups 127.0.0.1 is Clair's own container).
	URI string
	// Headers are sent verbatim with Clair's GET, e.g. a capability token.
	// Go drops Authorization on a redirect to another host.
	Headers http.Header
}

// wireManifest and wireLayer mirror claircore.Manifest / claircore.Layer.
type wireManifest struct {
	Hash   string      `json:"hash"`
	Layers []wireLayer `json:"layers"`
}

type wireLayer struct {
	Hash    string              `json:"hash"`
	URI     string              `json:"uri"`
	Headers map[string][]string `json:"headers"`
}

// marshal validates m the way Clair would, so that mistakes fail here with a
// clear message instead of as a 400 or a failed index.
func (m Manifest) marshal() ([]byte, error) {
	if err := validDigest(m.Hash); err != nil {
		return nil, fmt.Errorf("manifest hash: %w", err)
	}
	if len(m.Layers) == 0 {
		return nil, errors.New("manifest has no layers (clair rejects it as a bogus manifest)")
	}
	w := wireManifest{Hash: m.Hash.String(), Layers: make([]wireLayer, len(m.Layers))}
	for i, l := range m.Layers {
		if err := validDigest(l.Hash); err != nil {
			return nil, fmt.Errorf("layer %d hash: %w", i, err)
		}
		u, err := url.Parse(l.URI)
		if err != nil {
			return nil, fmt.Errorf("layer %d uri: %w", i, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("layer %d uri %q: clair fetches only absolute http and https urls", i, u.Redacted())
		}
		h := map[string][]string(l.Headers)
		if h == nil {
			h = map[string][]string{}
		}
		w.Layers[i] = wireLayer{Hash: l.Hash.String(), URI: l.URI, Headers: h}
	}
	return json.Marshal(w)
}

// validDigest accepts the digests claircore parses: sha256 or sha512.
func validDigest(d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("%q: %w", d, err)
	}
	if a := d.Algorithm(); a != digest.SHA256 && a != digest.SHA512 {
		return fmt.Errorf("%q: clair accepts only sha256 and sha512 digests", d)
	}
	return nil
}
