package clairv2standin

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strings"

	debversion "github.com/knqyf263/go-deb-version"
)

const (
	// maxExtractableFileSize is Clair v2's cap on one extracted file.
	maxExtractableFileSize = 200 << 20

	alpineReleasePath = "etc/alpine-release"
	apkInstalledPath  = "lib/apk/db/installed"
)

// requiredFiles are the tar entries the alpine detectors read; like Clair v2,
// an entry is read when its name starts with one of them.
var requiredFiles = []string{alpineReleasePath, apkInstalledPath}

var (
	gzipMagic  = []byte{0x1f, 0x8b}
	bzip2Magic = []byte("BZh")
	xzMagic    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}

	alpineReleaseRE = regexp.MustCompile(`^(\d)+\.(\d)+\.(\d)+$`)
)

// open returns the layer bytes at path the way Clair v2's imagefmt.Extract
// gets them: an http(s) GET with the given headers, any 2xx accepted, or
// os.Open for anything else (so a file:// URL fails). Every failure is
// errCouldNotFindLayer; the cause is logged.
func (s *Server) open(ctx context.Context, path string, headers map[string]string) (io.ReadCloser, error) {
	if !strings.HasPrefix(path, "http://") && !strings.HasPrefix(path, "https://") {
		f, err := os.Open(path)
		if err != nil {
			s.log.InfoContext(ctx, "could not open layer", slog.String("path", path), slog.Any("error", err))
			return nil, errCouldNotFindLayer
		}
		return f, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, path, nil)
	if err != nil {
		s.log.InfoContext(ctx, "could not build layer request", slog.String("path", path), slog.Any("error", err))
		return nil, errCouldNotFindLayer
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.log.InfoContext(ctx, "could not download layer", slog.String("path", path), slog.Any("error", err))
		return nil, errCouldNotFindLayer
	}
	if resp.StatusCode/100 != 2 {
		resp.Body.Close()
		s.log.InfoContext(ctx, "could not download layer", slog.String("path", path), slog.Int("status", resp.StatusCode))
		return nil, errCouldNotFindLayer
	}
	return resp.Body, nil
}

// extractFiles reads the whole tar stream (gzip, bzip2 or uncompressed) and
// returns the contents of the required files. As in Clair v2, anything that
// is not such a tar (zstd, xz here, random bytes, a truncated stream) is
// errCouldNotExtract, and symlinks and hard links yield empty contents.
func extractFiles(r io.Reader) (map[string][]byte, error) {
	br := bufio.NewReader(r)
	var tr io.Reader = br
	if head, err := br.Peek(len(xzMagic)); err == nil {
		switch {
		case bytes.HasPrefix(head, gzipMagic):
			gr, err := gzip.NewReader(br)
			if err != nil {
				return nil, errCouldNotExtract
			}
			defer gr.Close()
			tr = gr
		case bytes.HasPrefix(head, bzip2Magic):
			tr = bzip2.NewReader(br)
		case bytes.HasPrefix(head, xzMagic):
			// Clair v2 pipes xz through the xz binary; the stand-in does not.
			return nil, errCouldNotExtract
		}
	}
	files := map[string][]byte{}
	t := tar.NewReader(tr)
	for {
		hdr, err := t.Next()
		if errors.Is(err, io.EOF) {
			return files, nil
		}
		if err != nil {
			return nil, errCouldNotExtract
		}
		name := strings.TrimPrefix(hdr.Name, "./")
		if !required(name) {
			continue
		}
		if hdr.Size > maxExtractableFileSize {
			return nil, errFileTooBig
		}
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeSymlink, tar.TypeLink:
			b, err := io.ReadAll(t)
			if err != nil {
				return nil, errCouldNotExtract
			}
			files[name] = b
		}
	}
}

func required(name string) bool {
	for _, p := range requiredFiles {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// detectNamespace is Clair v2's alpine-release detector: the first line of
// etc/alpine-release that is exactly X.Y.Z names namespace "alpine:vX.Y".
// etc/os-release alone does not make a layer Alpine for Clair v2.
func detectNamespace(files map[string][]byte) string {
	b, ok := files[alpineReleasePath]
	if !ok {
		return ""
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if alpineReleaseRE.MatchString(line) {
			parts := strings.Split(line, ".")
			return "alpine:v" + parts[0] + "." + parts[1]
		}
	}
	return ""
}

// listFeatures is Clair v2's apk lister: records of lib/apk/db/installed
// separated by short lines, "P:" the package name, "V:" its version (kept
// only if dpkg can parse it), duplicates dropped, first-seen order kept.
func listFeatures(files map[string][]byte) []feature {
	b, ok := files[apkInstalledPath]
	if !ok {
		return nil
	}
	var out []feature
	seen := map[feature]bool{}
	var cur feature
	add := func() {
		if cur.name != "" && cur.version != "" && !seen[cur] {
			seen[cur] = true
			out = append(out, cur)
		}
		cur = feature{}
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), maxExtractableFileSize)
	for sc.Scan() {
		line := sc.Text()
		if len(line) < 2 {
			add()
			continue
		}
		switch line[:2] {
		case "P:":
			cur.name = line[2:]
		case "V:":
			if debversion.Valid(line[2:]) {
				cur.version = line[2:]
			}
		}
	}
	add()
	return out
}
