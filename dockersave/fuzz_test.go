package dockersave

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// FuzzReadArchive feeds arbitrary bytes to the archive reader and the
// interpretation: no panic, every failure is a typed error, a success is
// internally consistent, and nothing is ever published or left in staging.
func FuzzReadArchive(f *testing.F) {
	// The real fixtures, except the two legacy saves above 1 MiB (large
	// inputs make the fuzzing engine crawl); small archives of the same
	// formats are generated instead.
	for _, w := range fixtureWants {
		data, err := os.ReadFile(filepath.Join(fixturesDir, w.file))
		if err != nil {
			f.Fatal(err)
		}
		if detectCompression(data) == compressionGzip {
			zr, err := gzip.NewReader(bytes.NewReader(data))
			if err != nil {
				f.Fatal(err)
			}
			if data, err = io.ReadAll(zr); err != nil {
				f.Fatal(err)
			}
		}
		if len(data) <= 1<<20 {
			f.Add(data)
		}
	}
	small := [][]byte{layerTar(f, map[string]string{"a": "1"}), layerTar(f, map[string]string{"b": "2"})}
	legacy, _ := legacyArchive(f, []string{"app:1"}, small, true)
	f.Add(legacy)
	f.Add(gzipBytes(f, legacy))
	// One store for all inputs: nothing is ever published into it, which
	// each run checks.
	s := openTestStore(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		st := newStager(s, nil)
		a, err := readArchive(t.Context(), bytes.NewReader(data), st, "fuzz")
		if err == nil {
			var v *verified
			v, err = interpret(a, a.meta, nil, linuxAMD64)
			if err == nil {
				if len(v.layers) != len(v.diffIDs) {
					t.Fatalf("%d layers, %d diff ids", len(v.layers), len(v.diffIDs))
				}
				for i, l := range v.layers {
					if l.diffID != v.diffIDs[i] {
						t.Fatalf("layer %d accepted with diff id %s, config %s", i, l.diffID, v.diffIDs[i])
					}
				}
			}
		}
		if err != nil {
			var ae *ArchiveError
			if !errors.As(err, &ae) && !errors.As(err, new(*AmbiguousError)) && !errors.As(err, new(*PlatformError)) {
				t.Fatalf("untyped error %T: %v", err, err)
			}
		}
		st.cleanup()
		if left, _ := os.ReadDir(filepath.Join(s.Dir(), stagingDir)); len(left) != 0 {
			t.Fatalf("staging files left: %v", left)
		}
		if b := storeBlobs(t, s); len(b) != 0 {
			t.Fatalf("blobs published without a commit: %v", b)
		}
	})
}
