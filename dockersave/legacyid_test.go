package dockersave

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

// savedLegacy is what a legacy docker save archive holds, in stream
// order: each layer directory's json (before its layer.tar) and the
// digest of each layer.tar.
type savedLegacy struct {
	order   []string // layer directories as the stream has them
	jsons   map[string][]byte
	digests map[string]digest.Digest // layer.tar by directory
	layers  []string                 // manifest.json's layers: directories, oldest first
	config  string                   // manifest.json's config entry
	diffIDs []digest.Digest          // the config's
}

func readSavedLegacy(t *testing.T, name string) savedLegacy {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(name, ".gz") {
		gz, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		r = gz
	}
	a := savedLegacy{jsons: map[string][]byte{}, digests: map[string]digest.Digest{}}
	configs := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		dir, file := path.Split(strings.TrimPrefix(hdr.Name, "./"))
		dir = strings.TrimSuffix(dir, "/")
		switch {
		case dir == "" && file == "manifest.json":
			var m []struct {
				Config string
				Layers []string
			}
			if err := json.NewDecoder(tr).Decode(&m); err != nil {
				t.Fatal(err)
			}
			a.config = m[0].Config
			for _, l := range m[0].Layers {
				a.layers = append(a.layers, path.Dir(l))
			}
		case dir == "" && strings.HasSuffix(file, ".json"):
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			configs[file] = b
		case file == "json":
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			a.jsons[dir] = b
			a.order = append(a.order, dir)
		case file == "layer.tar":
			d, err := digest.FromReader(tr)
			if err != nil {
				t.Fatal(err)
			}
			a.digests[dir] = d
		}
	}
	var config struct {
		RootFS struct {
			DiffIDs []digest.Digest `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(configs[a.config], &config); err != nil {
		t.Fatalf("config %s: %v", a.config, err)
	}
	a.diffIDs = config.RootFS.DiffIDs
	if len(a.diffIDs) != len(a.layers) {
		t.Fatalf("%d diff ids, %d layers", len(a.diffIDs), len(a.layers))
	}
	for i, dir := range a.layers {
		if d, ok := a.digests[dir]; ok && d != a.diffIDs[i] {
			t.Fatalf("layer %d: %s/layer.tar is %s, the config says %s", i, dir, d, a.diffIDs[i])
		}
	}
	return a
}

// want is the diff ID of the layer in dir.
func (a savedLegacy) want(dir string) digest.Digest {
	for i, d := range a.layers {
		if d == dir {
			return a.diffIDs[i]
		}
	}
	return ""
}

// TestLegacyLayersFromRealArchives: fed the json files in the order the
// daemon streamed them, every layer directory is named before its
// layer.tar is read, and named right: a 14-layer archive of Docker 18, the
// same image saved by Docker 20.10 (its metadata: the layer.tar entries
// left out), and a one-layer one.
func TestLegacyLayersFromRealArchives(t *testing.T) {
	for _, name := range []string{
		filepath.Join(fixturesDir, "dive-test-docker-image.tar"),
		"testdata/docker20-save-metadata.tar",
		filepath.Join(fixturesDir, "alpine-3.11-docker-save.tar.gz"),
	} {
		t.Run(filepath.Base(name), func(t *testing.T) {
			a := readSavedLegacy(t, name)
			l := newLegacyLayers(a.diffIDs)
			named := 0
			for _, dir := range a.order {
				l.learn(dir, a.jsons[dir])
				got, ok := l.diffID(dir)
				if !ok {
					continue
				}
				if want := a.want(dir); got != want {
					t.Fatalf("directory %s named %s, its layer is %s", dir, got, want)
				}
				named++
			}
			if named != len(a.layers) {
				t.Errorf("named %d of %d layers before their bytes", named, len(a.layers))
			}
		})
	}
}

// TestLegacyLayersTopFirst: the top layer's json (the image's config)
// teaches nothing, and the top layer's directory is not guessed before a
// layer below it was seen; after that, the top is the directory that is
// none of the others.
func TestLegacyLayersTopFirst(t *testing.T) {
	a := readSavedLegacy(t, filepath.Join(fixturesDir, "dive-test-docker-image.tar"))
	top := a.layers[len(a.layers)-1]
	l := newLegacyLayers(a.diffIDs)
	l.learn(top, a.jsons[top])
	if d, ok := l.diffID(top); ok {
		t.Fatalf("top layer named %s from its own json", d)
	}
	below := a.layers[3]
	l.learn(below, a.jsons[below])
	for _, dir := range a.layers {
		if got, ok := l.diffID(dir); !ok || got != a.want(dir) {
			t.Errorf("directory %s: named %q (%v), want %s", dir, got, ok, a.want(dir))
		}
	}
}

// TestLegacyLayersNoGuess: a json that is not the daemon's for this image
// (another image's diff IDs, a changed template, garbage) names nothing.
func TestLegacyLayersNoGuess(t *testing.T) {
	a := readSavedLegacy(t, filepath.Join(fixturesDir, "dive-test-docker-image.tar"))
	dir := a.layers[2]
	other := append([]digest.Digest(nil), a.diffIDs...)
	other[0] = digest.FromString("another base layer")
	changed := strings.Replace(string(a.jsons[dir]), `"Hostname":""`, `"Hostname":"x"`, 1)
	for name, tc := range map[string]struct {
		diffIDs []digest.Digest
		json    []byte
	}{
		"other diff ids":   {other, a.jsons[dir]},
		"changed template": {a.diffIDs, []byte(changed)},
		"not json":         {a.diffIDs, []byte("{")},
	} {
		t.Run(name, func(t *testing.T) {
			l := newLegacyLayers(tc.diffIDs)
			l.learn(dir, tc.json)
			for _, d := range a.layers {
				if got, ok := l.diffID(d); ok {
					t.Errorf("directory %s named %s", d, got)
				}
			}
		})
	}
}
