package main

import (
	"bytes"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/layerbridge/layerbridge/dockersave"
	"github.com/layerbridge/layerbridge/store"
)

func TestSamples(t *testing.T) {
	for _, tc := range []struct {
		in            samples
		med, min, max float64
	}{
		{nil, 0, 0, 0},
		{samples{3}, 3, 3, 3},
		{samples{5, 1, 3}, 3, 1, 5},
		{samples{4, 1, 3, 2}, 2.5, 1, 4},
	} {
		if got := tc.in.median(); got != tc.med {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.med)
		}
		if got := tc.in.min(); got != tc.min {
			t.Errorf("min(%v) = %v, want %v", tc.in, got, tc.min)
		}
		if got := tc.in.max(); got != tc.max {
			t.Errorf("max(%v) = %v, want %v", tc.in, got, tc.max)
		}
	}
	in := samples{5, 1, 3}
	in.median()
	if !slices.Equal(in, samples{5, 1, 3}) {
		t.Errorf("median reordered its input: %v", in)
	}
}

func TestRotate(t *testing.T) {
	s := []string{"a", "b", "c"}
	for n, want := range [][]string{{"a", "b", "c"}, {"b", "c", "a"}, {"c", "a", "b"}, {"a", "b", "c"}} {
		if got := rotate(s, n); !slices.Equal(got, want) {
			t.Errorf("rotate(%v, %d) = %v, want %v", s, n, got, want)
		}
	}
	if !slices.Equal(s, []string{"a", "b", "c"}) {
		t.Errorf("rotate changed its input: %v", s)
	}
}

func TestTableVerdicts(t *testing.T) {
	tb := &table{}
	tb.section("exports")
	tb.add(row{measure: "ratio ok", image: "x", unit: unitRatio, values: samples{1.0, 1.2, 1.1}, target: atMost(1.15, "median <= 1.15x", samples.median)})
	tb.add(row{measure: "ratio bad", image: "x", unit: unitRatio, values: samples{1.0, 1.2, 1.3}, target: atMost(1.15, "median <= 1.15x", samples.median)})
	tb.add(row{measure: "rss by max", image: "x", unit: unitMiB, values: samples{10 << 20, 70 << 20}, target: atMost(64<<20, "max <= 64 MiB", samples.max)})
	tb.add(row{measure: "fast but wrong", image: "x", unit: unitGiBps, values: samples{3}, target: atLeast(1, ">= 1 GiB/s", samples.median), fail: "1 errors"})
	tb.add(row{measure: "no data", image: "x", unit: unitSeconds, target: atLeast(1, ">= 1", samples.median)})
	tb.add(row{measure: "info only", image: "x", unit: unitSeconds, values: samples{2}})
	var out bytes.Buffer
	if err := tb.render(&out); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"ratio ok": "PASS", "ratio bad": "MISS", "rss by max": "MISS", "fast but wrong": "MISS (1 errors)", "no data": "MISS", "info only": ""}
	for _, line := range strings.Split(out.String(), "\n") {
		for name, verdict := range want {
			if strings.HasPrefix(strings.TrimSpace(line), name+" ") {
				if got := strings.TrimSpace(line); verdict != "" && !strings.HasSuffix(got, verdict) || verdict == "" && (strings.Contains(got, "PASS") || strings.Contains(got, "MISS")) {
					t.Errorf("%q: line %q, want verdict %q", name, line, verdict)
				}
				delete(want, name)
			}
		}
	}
	if len(want) > 0 {
		t.Errorf("rows missing from the table: %v\n%s", want, out.String())
	}
	if !strings.Contains(out.String(), "targets: 1 PASS, 4 MISS") || !strings.Contains(out.String(), "\nEXPORTS\n") {
		t.Errorf("summary or section missing:\n%s", out.String())
	}
}

// TestGeneratedImage checks the generator without Docker: the docker save
// archive it writes is read by layerbridge's own loader, which must find
// the image ID and layer digests describe computed.
func TestGeneratedImage(t *testing.T) {
	spec := imageSpec{name: "test", layers: 3, layerSize: 100 << 10, files: []tarFile{{name: "etc/", mode: 0o755}, {name: "etc/hello", mode: 0o644, body: []byte("hi\n")}}}
	b, err := describe(spec)
	if err != nil {
		t.Fatal(err)
	}
	again, err := describe(spec)
	if err != nil {
		t.Fatal(err)
	}
	if again.id != b.id {
		t.Errorf("describe is not deterministic: %s, then %s", b.id, again.id)
	}
	spec.nonce = "other"
	other, err := describe(spec)
	if err != nil {
		t.Fatal(err)
	}
	if other.id == b.id || slices.Contains(other.diffIDs, b.diffIDs[1]) {
		t.Error("another nonce gave the same content")
	}

	dir := t.TempDir()
	archive := filepath.Join(dir, "image.tar")
	f, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.writeSave(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	cache, err := store.Open(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	img, release, err := dockersave.NewLoader(cache).Load(t.Context(), "docker-archive:"+archive, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if img.ID != b.id || !slices.Equal(img.DiffIDs, b.diffIDs) || !slices.Equal(img.RepoTags, []string{"layerbridge-bench:test"}) {
		t.Errorf("loaded id %s, diff ids %v, tags %v; want %s, %v", img.ID, img.DiffIDs, img.RepoTags, b.id, b.diffIDs)
	}
	for i, l := range img.Manifest.Layers {
		if l.Size != b.sizes[i] || l.Digest != b.diffIDs[i] {
			t.Errorf("layer %d: %s (%d bytes), want %s (%d bytes)", i, l.Digest, l.Size, b.diffIDs[i], b.sizes[i])
		}
	}

	// The naive path's extraction of the same archive.
	out := filepath.Join(dir, "extracted")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := untar(archive, out, make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	layer, err := os.ReadFile(filepath.Join(out, b.diffIDs[2].Encoded(), "layer.tar"))
	if err != nil {
		t.Fatal(err)
	}
	if digest.FromBytes(layer) != b.diffIDs[2] {
		t.Error("extracted layer does not match its diff id")
	}
}

func TestHashPipelined(t *testing.T) {
	for _, size := range []int{0, 1, copyBuffer - 1, copyBuffer, 5*copyBuffer + 7} {
		data := make([]byte, size)
		rand.NewChaCha8([32]byte{byte(size)}).Read(data)
		n, d, err := hashPipelined(io.MultiReader(bytes.NewReader(data[:size/3]), bytes.NewReader(data[size/3:])))
		if err != nil || n != int64(size) || d != digest.NewDigestFromBytes(digest.SHA256, sha256sum(data)) {
			t.Errorf("size %d: got %d bytes, %s, %v", size, n, d, err)
		}
	}
}

func sha256sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

func TestOtherCores(t *testing.T) {
	a := cpuSample{busy: 10, docker: 2, self: 1}
	b := cpuSample{busy: 14, docker: 3, self: 2}
	if got := otherCores(a, b, 2e9); got != 1 {
		t.Errorf("otherCores = %v, want 1 (4 s busy - 1 docker - 1 self over 2 s)", got)
	}
	if got := otherCores(b, a, 2e9); got != 0 {
		t.Errorf("otherCores = %v for a negative difference, want 0", got)
	}
}
