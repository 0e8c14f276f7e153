package integration_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/layerbridge/layerbridge/integration/harness"
)

// TestScanEveryFixture scans each archive of ../testdata/fixtures with
// layerbridge through real Clair 4.9, and compares the findings with what
// another Clair reports for the same layer blobs taken out of the archive by
// this test (not by layerbridge) and served by a plain file server. Two
// Clairs, because Clair never downloads a layer it has already indexed.
func TestScanEveryFixture(t *testing.T) {
	t.Parallel()
	stacks := harness.StartManyT(t, harness.Options{FeedDir: recordedFeed}, harness.Options{FeedDir: recordedFeed})
	ref, lb := stacks[0], stacks[1]
	fixtures := []struct {
		file, scheme string
		pairs        int // as Clair 4.9 reports them with ../testdata/secdb
	}{
		{"alpine-3.11-docker-save.tar.gz", "docker-archive", 17},
		{"dive-test-docker-image.tar", "docker-archive", 0},
		{"dive-test-kaniko-image.tar", "docker-archive", 0},
		{"dive-test-oci-gzip-image.tar", "oci-archive", 0},
		{"dive-test-oci-zstd-image.tar", "oci-archive", 0},
		{"dive-test-oci-uncompressed-image.tar", "oci-archive", 0},
	}
	for _, fx := range fixtures {
		t.Run(fx.file, func(t *testing.T) {
			archive, err := filepath.Abs(filepath.Join("../testdata/fixtures", fx.file))
			if err != nil {
				t.Fatal(err)
			}
			files := extractLayers(t, archive, t.TempDir())
			want, err := ref.Clair.Reference(withTimeout(t, 2*time.Minute), harness.ServeLayersT(t, files...).Layers())
			if err != nil {
				t.Fatal(err)
			}
			r := layerbridge(t, withTimeout(t, 3*time.Minute), nil, "scan", "--clair", lb.Clair.URL,
				"--cache-dir", t.TempDir(), "-f", "json", fx.scheme+":"+archive)
			rep := decodeReport(t, r)
			checkFindings(t, "layerbridge "+fx.file, rep.findings(), want, fx.pairs, harness.Vulnerabilities(want))
			t.Logf("%s: %d layers, %d (package, vulnerability) pairs over %d vulnerabilities, platform %s, warnings %q",
				fx.file, len(files), len(want), harness.Vulnerabilities(want), rep.Image.Platform, rep.Warnings)
			if fx.pairs == 0 && len(rep.Warnings) == 0 {
				t.Errorf("an image in which Clair found nothing gave no warning")
			}
		})
	}
}

// extractLayers writes the layer blobs of the one image in archive (a docker
// save, optionally gzip-compressed; kaniko's docker-archive; or an OCI
// layout tar) to dir, oldest first, exactly as the archive holds them. It is
// written for the fixtures, independently of layerbridge's reader.
func extractLayers(t *testing.T, archive, dir string) []string {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var r io.Reader = br
	if magic, _ := br.Peek(2); bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		gz, err := gzip.NewReader(br)
		if err != nil {
			t.Fatal(err)
		}
		r = gz
	}
	files := map[string]string{} // entry name -> extracted file
	links := map[string]string{} // entry name -> target entry name
	tr := tar.NewReader(r)
	for i := 0; ; i++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := path.Clean(h.Name)
		switch h.Typeflag {
		case tar.TypeReg:
			out := filepath.Join(dir, fmt.Sprintf("entry-%04d", i))
			w, err := os.Create(out)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(w, tr); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			files[name] = out
		case tar.TypeSymlink:
			links[name] = path.Join(path.Dir(name), h.Linkname)
		case tar.TypeLink:
			links[name] = path.Clean(h.Linkname)
		}
	}
	resolve := func(name string) string {
		name = path.Clean(name)
		for range 10 {
			if target, ok := links[name]; ok {
				name = target
				continue
			}
			break
		}
		p, ok := files[name]
		if !ok {
			t.Fatalf("%s: no file %q in the archive", archive, name)
		}
		return p
	}
	readJSON := func(name string, v any) {
		b, err := os.ReadFile(resolve(name))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %s: %v", archive, name, err)
		}
	}
	var layers []string
	if _, ok := files["manifest.json"]; ok {
		var m []struct{ Layers []string }
		readJSON("manifest.json", &m)
		if len(m) != 1 {
			t.Fatalf("%s: manifest.json lists %d images", archive, len(m))
		}
		layers = m[0].Layers
	} else {
		type descriptor struct {
			MediaType string `json:"mediaType"`
			Digest    string `json:"digest"`
		}
		var doc struct {
			MediaType string       `json:"mediaType"`
			Manifests []descriptor `json:"manifests"`
			Layers    []descriptor `json:"layers"`
		}
		blob := func(d string) string { return "blobs/" + strings.Replace(d, ":", "/", 1) }
		readJSON("index.json", &doc)
		for depth := 0; doc.Layers == nil; depth++ {
			if depth > 3 || len(doc.Manifests) == 0 {
				t.Fatalf("%s: no image manifest under index.json", archive)
			}
			next := doc.Manifests[0].Digest
			doc.Manifests, doc.Layers = nil, nil
			readJSON(blob(next), &doc)
		}
		for _, l := range doc.Layers {
			layers = append(layers, blob(l.Digest))
		}
	}
	out := make([]string, len(layers))
	for i, l := range layers {
		out[i] = resolve(l)
	}
	return out
}
