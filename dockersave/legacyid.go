package dockersave

import (
	"encoding/json"

	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
)

// legacyLayers tells which layer of an image a directory of a legacy
// docker save archive (`<v1 id>/layer.tar`) holds before its bytes are
// read, so that a layer can be handed to Clair while it is still arriving.
//
// The daemon names each layer's directory by a "v1 ID": the digest of a
// small JSON document made of the layer's v1 config (the same for every
// layer but the top one: an empty config dated 1970), its chain ID and its
// parent's v1 ID. The directory's json file, which the archive holds
// before layer.tar, is that v1 config with the id, the parent and the
// operating system added afterwards. So one json of a layer below the top
// gives the template, the image's diff IDs (known from inspect) give the
// chain, and every v1 ID below the top follows; the top layer's directory
// is the one that is none of them. A name matches only if the daemon hashed
// the same chain ID, so a match names the layer for certain (its bytes are
// still hashed and checked as they arrive).
type legacyLayers struct {
	diffIDs []digest.Digest
	chain   []digest.Digest
	// byDir maps the directories of the layers below the top to their
	// index, once learned (nil before).
	byDir map[string]int
}

func newLegacyLayers(diffIDs []digest.Digest) *legacyLayers {
	return &legacyLayers{diffIDs: diffIDs, chain: identity.ChainIDs(append([]digest.Digest(nil), diffIDs...))}
}

// learn is given the json file of directory dir; once one of them gives
// the v1 IDs of the layers, later calls do nothing.
func (l *legacyLayers) learn(dir string, data []byte) {
	if l.byDir != nil || len(l.diffIDs) < 2 {
		return
	}
	var fields map[string]*json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return
	}
	delete(fields, "id")
	delete(fields, "parent")
	// The daemon adds the operating system after hashing; older ones
	// wrote none.
	variants := []map[string]*json.RawMessage{fields}
	if _, ok := fields["os"]; ok {
		without := make(map[string]*json.RawMessage, len(fields))
		for k, v := range fields {
			if k != "os" {
				without[k] = v
			}
		}
		variants = []map[string]*json.RawMessage{without, fields}
	}
	for _, tmpl := range variants {
		ids, ok := l.v1IDs(tmpl)
		if !ok {
			return
		}
		if _, found := ids[dir]; found {
			l.byDir = ids
			return
		}
	}
}

// v1IDs computes the directory names of the layers below the top from a
// v1 config template, as the daemon does (image/v1.CreateID).
func (l *legacyLayers) v1IDs(tmpl map[string]*json.RawMessage) (map[string]int, bool) {
	ids := make(map[string]int, len(l.chain)-1)
	var parent digest.Digest
	for i := range len(l.chain) - 1 {
		doc := make(map[string]*json.RawMessage, len(tmpl)+2)
		for k, v := range tmpl {
			doc[k] = v
		}
		doc["layer_id"] = rawString(l.chain[i].String())
		if parent != "" {
			doc["parent"] = rawString(parent.String())
		}
		b, err := json.Marshal(doc)
		if err != nil {
			return nil, false
		}
		parent = digest.FromBytes(b)
		ids[parent.Encoded()] = i
	}
	return ids, true
}

func rawString(s string) *json.RawMessage {
	b, _ := json.Marshal(s)
	r := json.RawMessage(b)
	return &r
}

// diffID is the diff ID of the layer in directory dir, when known for
// certain: a directory below the top whose v1 ID was computed, or, once
// those are known (or the image has one layer), any other directory, which
// can only be the top one.
func (l *legacyLayers) diffID(dir string) (digest.Digest, bool) {
	if len(l.diffIDs) == 1 {
		return l.diffIDs[0], true
	}
	if l.byDir == nil {
		return "", false
	}
	if i, ok := l.byDir[dir]; ok {
		return l.diffIDs[i], true
	}
	return l.diffIDs[len(l.diffIDs)-1], true
}
