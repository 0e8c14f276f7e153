package harness

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// ExtractLegacyLayers copies the <id>/layer.tar entries of a legacy
// `docker save` archive (plain or gzip-compressed, such as
// ../testdata/fixtures/alpine-3.11-docker-save.tar.gz) into dir as <id>.tar
// and returns their paths in the order of the archive's manifest.json (base
// layer first). It streams the archive once; each file is written
// atomically.
func ExtractLegacyLayers(archive, dir string) ([]string, error) {
	f, err := os.Open(archive)
	if err != nil {
		return nil, fmt.Errorf("extract layers: %w", err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var r io.Reader = br
	if magic, err := br.Peek(2); err == nil && bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("extract layers from %s: %w", archive, err)
		}
		defer gz.Close()
		r = gz
	}
	extracted := map[string]string{} // entry name -> file
	var manifest []struct{ Layers []string }
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("extract layers from %s: %w", archive, err)
		}
		name := path.Clean(h.Name)
		switch {
		case name == "manifest.json":
			if err := json.NewDecoder(tr).Decode(&manifest); err != nil {
				return nil, fmt.Errorf("extract layers from %s: manifest.json: %w", archive, err)
			}
		case path.Base(name) == "layer.tar" && h.Typeflag == tar.TypeReg:
			id := path.Dir(name)
			if !filepath.IsLocal(id) || strings.ContainsAny(id, `/\`) {
				return nil, fmt.Errorf("extract layers from %s: unexpected entry %q", archive, h.Name)
			}
			out := filepath.Join(dir, id+".tar")
			if err := writeFileAtomic(out, tr); err != nil {
				return nil, fmt.Errorf("extract layers from %s: %w", archive, err)
			}
			extracted[name] = out
		}
	}
	if len(manifest) != 1 {
		return nil, fmt.Errorf("extract layers from %s: manifest.json lists %d images, want 1", archive, len(manifest))
	}
	var out []string
	for _, l := range manifest[0].Layers {
		p, ok := extracted[path.Clean(l)]
		if !ok {
			return nil, fmt.Errorf("extract layers from %s: manifest names %q, which is not a layer.tar in the archive", archive, l)
		}
		out = append(out, p)
	}
	return out, nil
}

// WriteDirTar writes the tree under root to w as an uncompressed tar, the
// way a one-layer image built FROM scratch with `COPY root/ /` would hold
// it: entries sorted by name, directories before their contents, owner
// 0:0, modes 0755 for directories and for files their owner may execute
// (as git records them), 0644 for other files, modification times zeroed,
// so the same tree always gives the same bytes (and digest), whatever the
// umask. Only directories and regular files are allowed.
func WriteDirTar(w io.Writer, root string) error {
	var names []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		if !d.IsDir() && !d.Type().IsRegular() {
			return fmt.Errorf("%s: only directories and regular files are allowed", p)
		}
		names = append(names, p)
		return nil
	})
	if err != nil {
		return fmt.Errorf("tar %s: %w", root, err)
	}
	sort.Strings(names)
	tw := tar.NewWriter(w)
	for _, p := range names {
		if err := addToTar(tw, root, p); err != nil {
			return fmt.Errorf("tar %s: %w", root, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("tar %s: %w", root, err)
	}
	return nil
}

func addToTar(tw *tar.Writer, root, p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(root, p)
	if err != nil {
		return err
	}
	// Modes are fixed too: a checkout's umask must not change the digest.
	h := &tar.Header{Name: filepath.ToSlash(rel)}
	if fi.IsDir() {
		h.Typeflag, h.Name, h.Mode = tar.TypeDir, h.Name+"/", 0o755
		return tw.WriteHeader(h)
	}
	h.Typeflag, h.Mode, h.Size = tar.TypeReg, 0o644, fi.Size()
	if fi.Mode().Perm()&0o100 != 0 {
		h.Mode = 0o755
	}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(tw, f)
	if err == nil && n != fi.Size() {
		err = fmt.Errorf("%s changed while being read", p)
	}
	return err
}

// writeFileAtomic writes r to path through a temp file in the same
// directory, synced and renamed into place.
func writeFileAtomic(path string, r io.Reader) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
