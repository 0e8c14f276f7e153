package dockersave

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	digest "github.com/opencontainers/go-digest"
)

// Limits on untrusted archive metadata.
const (
	maxMetadataSize = 4 << 20 // manifest.json, index.json, manifests, configs
	maxSmallFile    = 1 << 20 // legacy <id>/json and <id>/VERSION (read and dropped)
	maxEntries      = 10000
	maxLinkDepth    = 16
	maxLayers       = 500
	maxIndexDepth   = 4
	maxTrailing     = 1 << 20
	// tailSize is how much of the stream already read is kept to find the
	// daemon's error message in, when the stream breaks: a {"errorDetail"}
	// line is well under it. It is copied on every read, so kept small.
	tailSize = 8 << 10
	// errorReadAhead is how much more is read after a break to find it.
	errorReadAhead = 64 << 10
	blockSize      = 512 // a tar header, and the unit of a tar stream
	endOfArchive   = 2 * blockSize
)

type entryClass int

const (
	classDir entryClass = iota
	classMeta
	classBlob
	classSmall
)

var (
	reHex64     = `[0-9a-f]{64}`
	reOCIBlob   = regexp.MustCompile(`^blobs/sha256/(` + reHex64 + `)$`)
	reHexFile   = regexp.MustCompile(`^(` + reHex64 + `)\.(json|tar|tar\.gz)$`)
	reConfigSha = regexp.MustCompile(`^sha256:(` + reHex64 + `)$`)
	reLegacyDir = regexp.MustCompile(`^` + reHex64 + `$`)
	reLegacyTar = regexp.MustCompile(`^` + reHex64 + `/layer\.tar$`)
	reLegacyAux = regexp.MustCompile(`^` + reHex64 + `/(json|VERSION)$`)
)

// metaFiles are read into memory (capped) and interpreted at EOF.
var metaFiles = map[string]bool{"manifest.json": true, "index.json": true, "oci-layout": true, "repositories": true}

// cleanEntryName validates a tar name and returns its canonical form. A
// leading "./" is accepted (tar -C dir .); "." means the archive root.
func cleanEntryName(raw string) (string, error) {
	if strings.ContainsAny(raw, "\x00\\") {
		return "", fmt.Errorf("%w: name contains NUL or backslash", ErrUnsafeEntry)
	}
	name := strings.TrimSuffix(strings.TrimPrefix(raw, "./"), "/")
	if name == "" || name == "." {
		return ".", nil
	}
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("%w: absolute name", ErrUnsafeEntry)
	}
	if !filepath.IsLocal(name) {
		return "", fmt.Errorf("%w: name leaves the archive", ErrUnsafeEntry)
	}
	if path.Clean(name) != name {
		return "", fmt.Errorf("%w: name is not canonical", ErrUnexpectedEntry)
	}
	return name, nil
}

// classifyName applies the allow-list of every docker save / podman / kaniko /
// OCI layout format. want is the digest a blob's name promises, if any.
func classifyName(name string, dir bool) (entryClass, digest.Digest, error) {
	if dir {
		if name == "." || name == "blobs" || name == "blobs/sha256" || reLegacyDir.MatchString(name) {
			return classDir, "", nil
		}
		return 0, "", fmt.Errorf("%w: directory not in any image archive format", ErrUnexpectedEntry)
	}
	if metaFiles[name] {
		return classMeta, "", nil
	}
	if m := reOCIBlob.FindStringSubmatch(name); m != nil {
		return classBlob, digest.NewDigestFromEncoded(digest.SHA256, m[1]), nil
	}
	if m := reHexFile.FindStringSubmatch(name); m != nil {
		return classBlob, digest.NewDigestFromEncoded(digest.SHA256, m[1]), nil
	}
	if m := reConfigSha.FindStringSubmatch(name); m != nil {
		return classBlob, digest.NewDigestFromEncoded(digest.SHA256, m[1]), nil
	}
	if reLegacyTar.MatchString(name) {
		return classBlob, "", nil
	}
	if reLegacyAux.MatchString(name) {
		return classSmall, "", nil
	}
	return 0, "", fmt.Errorf("%w: name not in any image archive format", ErrUnexpectedEntry)
}

type linkEntry struct {
	target string
	hard   bool
}

// archive is what one pass over an image archive collected: blobs staged in
// the store by entry name (links resolved) and by digest, and the metadata
// files, not yet interpreted.
type archive struct {
	image    string
	entries  map[string]*stagedBlob
	links    map[string]linkEntry
	meta     map[string][]byte
	byDigest map[digest.Digest]*stagedBlob
	st       *stager
}

// trackingReader counts consumed bytes and keeps the last tailSize of them,
// so an error JSON the daemon appended can be shown.
type trackingReader struct {
	ctx  context.Context
	r    io.Reader
	n    int64
	tail [tailSize]byte
	pos  int
	full bool
}

func (t *trackingReader) Read(p []byte) (int, error) {
	if err := t.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := t.r.Read(p)
	t.n += int64(n)
	b := p[:n]
	if len(b) >= tailSize {
		copy(t.tail[:], b[len(b)-tailSize:])
		t.pos, t.full = 0, true
	} else {
		for len(b) > 0 {
			c := copy(t.tail[t.pos:], b)
			b = b[c:]
			t.pos += c
			if t.pos == tailSize {
				t.pos, t.full = 0, true
			}
		}
	}
	return n, err
}

func (t *trackingReader) lastBytes() []byte {
	if !t.full {
		return append([]byte(nil), t.tail[:t.pos]...)
	}
	return append(append([]byte(nil), t.tail[t.pos:]...), t.tail[:t.pos]...)
}

// readArchive makes the single pass over an image archive (any docker save
// generation, podman, kaniko, or an OCI layout tar). Nothing is interpreted
// until EOF; every regular entry is staged while hashed.
func readArchive(ctx context.Context, r io.Reader, st *stager, image string) (out *archive, err error) {
	// Staging files are fsynced in the background while the stream goes
	// on; all are durable (or the read fails) before this returns, so before
	// anything is published.
	wait := st.syncInBackground()
	defer func() {
		if werr := wait(); werr != nil && err == nil {
			out, err = nil, archiveErr(image, "", werr)
		}
	}()
	a := &archive{
		image:   image,
		entries: make(map[string]*stagedBlob),
		links:   make(map[string]linkEntry),
		meta:    make(map[string][]byte),
		st:      st,
	}
	tr := &trackingReader{ctx: ctx, r: r}
	t := tar.NewReader(tr)
	seen := make(map[string]bool)
	for count := 0; ; count++ {
		before := tr.n
		hdr, err := t.Next()
		if count == 0 && errors.Is(err, tar.ErrHeader) && !tr.full && tr.n >= blockSize && !validTarChecksum(tr.tail[:blockSize]) {
			// Not a tar that goes wrong later: no tar at all.
			return nil, a.streamErr(ctx, tr, "", fmt.Errorf("%w: its first %d bytes are no tar header", ErrNotArchive, blockSize))
		}
		if err == io.EOF {
			if tr.n-before < endOfArchive {
				return nil, a.streamErr(ctx, tr, "", fmt.Errorf("%w: no end-of-archive marker", ErrTruncated))
			}
			break
		}
		if err != nil {
			return nil, a.streamErr(ctx, tr, "", err)
		}
		if count >= maxEntries {
			return nil, archiveErr(image, hdr.Name, fmt.Errorf("%w: more than %d entries", ErrTooLarge, maxEntries))
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		name, err := cleanEntryName(hdr.Name)
		if err != nil {
			return nil, archiveErr(image, hdr.Name, err)
		}
		if err := a.entry(ctx, t, tr, hdr, name, seen); err != nil {
			return nil, err
		}
	}
	if err := a.checkTrailing(ctx, tr); err != nil {
		return nil, err
	}
	if err := a.resolveLinks(); err != nil {
		return nil, err
	}
	a.byDigest = st.blobs
	return a, nil
}

func (a *archive) entry(ctx context.Context, t *tar.Reader, tr *trackingReader, hdr *tar.Header, name string, seen map[string]bool) error {
	switch hdr.Typeflag {
	case tar.TypeDir:
		if _, _, err := classifyName(name, true); err != nil {
			return archiveErr(a.image, hdr.Name, err)
		}
		return nil
	case tar.TypeReg, tar.TypeSymlink, tar.TypeLink:
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return archiveErr(a.image, hdr.Name, fmt.Errorf("%w: device or fifo entry", ErrUnsafeEntry))
	default:
		return archiveErr(a.image, hdr.Name, fmt.Errorf("%w: entry type %q", ErrUnsafeEntry, hdr.Typeflag))
	}
	if seen[name] {
		return archiveErr(a.image, hdr.Name, ErrDuplicateEntry)
	}
	seen[name] = true
	class, want, err := classifyName(name, false)
	if err != nil {
		return archiveErr(a.image, hdr.Name, err)
	}
	if hdr.Typeflag != tar.TypeReg {
		if class == classMeta {
			return archiveErr(a.image, hdr.Name, fmt.Errorf("%w: metadata file as a link", ErrUnexpectedEntry))
		}
		return a.link(hdr, name)
	}
	switch class {
	case classMeta:
		if hdr.Size > maxMetadataSize {
			return archiveErr(a.image, hdr.Name, fmt.Errorf("%w: %d bytes of metadata (limit %d)", ErrTooLarge, hdr.Size, maxMetadataSize))
		}
		b, err := io.ReadAll(t)
		if err != nil {
			return a.streamErr(ctx, tr, hdr.Name, err)
		}
		a.meta[name] = b
	case classSmall:
		if hdr.Size > maxSmallFile {
			return archiveErr(a.image, hdr.Name, fmt.Errorf("%w: %d bytes (limit %d)", ErrTooLarge, hdr.Size, maxSmallFile))
		}
		if dir, file := path.Split(name); a.st.legacy != nil && file == "json" {
			// A layer directory's v1 config names the layers before
			// their bytes arrive (legacyLayers).
			b, err := io.ReadAll(t)
			if err != nil {
				return a.streamErr(ctx, tr, hdr.Name, err)
			}
			a.st.legacy.learn(strings.TrimSuffix(dir, "/"), b)
			return nil
		}
		if _, err := io.Copy(io.Discard, t); err != nil {
			return a.streamErr(ctx, tr, hdr.Name, err)
		}
	case classBlob:
		expect := want
		if expect == "" && a.st.legacy != nil && reLegacyTar.MatchString(name) {
			expect, _ = a.st.legacy.diffID(path.Dir(name))
		}
		b, err := a.st.stage(t, hdr.Size, want, expect, name)
		if err != nil {
			var se *sourceError
			if errors.As(err, &se) {
				return a.streamErr(ctx, tr, hdr.Name, se.err)
			}
			return archiveErr(a.image, hdr.Name, err)
		}
		// A blob inflating past the decompression limit is a bomb
		// whatever references it: stop reading the archive here.
		if errors.Is(b.DiffErr, ErrTooLarge) {
			return archiveErr(a.image, hdr.Name, b.DiffErr)
		}
		a.entries[name] = b
	}
	return nil
}

func (a *archive) link(hdr *tar.Header, name string) error {
	ln := hdr.Linkname
	if ln == "" || strings.ContainsAny(ln, "\x00\\") || strings.HasPrefix(ln, "/") {
		return archiveErr(a.image, hdr.Name, fmt.Errorf("%w: link target %q", ErrUnsafeEntry, ln))
	}
	hard := hdr.Typeflag == tar.TypeLink
	var target string
	if hard {
		target = path.Clean(strings.TrimPrefix(ln, "./"))
	} else {
		target = path.Join(path.Dir(name), ln)
	}
	if !filepath.IsLocal(target) {
		return archiveErr(a.image, hdr.Name, fmt.Errorf("%w: link target %q leaves the archive", ErrUnsafeEntry, ln))
	}
	if hard {
		// A hard link names an entry that came before it.
		_, isEntry := a.entries[target]
		_, isLink := a.links[target]
		if !isEntry && !isLink {
			return archiveErr(a.image, hdr.Name, fmt.Errorf("%w: hard link to %q", ErrDanglingLink, target))
		}
	}
	a.links[name] = linkEntry{target: target, hard: hard}
	return nil
}

// resolveLinks turns every link into the regular entry it reaches, within
// maxLinkDepth hops and without cycles.
func (a *archive) resolveLinks() error {
	resolved := make(map[string]*stagedBlob, len(a.links))
	for name := range a.links {
		cur := name
		visited := map[string]bool{}
		for depth := 0; ; depth++ {
			if b, ok := a.entries[cur]; ok {
				resolved[name] = b
				break
			}
			l, ok := a.links[cur]
			if !ok {
				return archiveErr(a.image, name, fmt.Errorf("%w: %q", ErrDanglingLink, cur))
			}
			if visited[cur] || depth >= maxLinkDepth {
				return archiveErr(a.image, name, fmt.Errorf("%w through %q", ErrLinkCycle, cur))
			}
			visited[cur] = true
			cur = l.target
		}
	}
	for name, b := range resolved {
		a.entries[name] = b
	}
	return nil
}

// checkTrailing accepts only zero padding after the end-of-archive marker.
func (a *archive) checkTrailing(ctx context.Context, tr *trackingReader) error {
	rest, err := io.ReadAll(io.LimitReader(tr, maxTrailing+1))
	if err != nil {
		return a.streamErr(ctx, tr, "", err)
	}
	if len(rest) > maxTrailing || bytes.ContainsFunc(rest, func(r rune) bool { return r != 0 }) {
		if de := findDaemonError(rest); de != nil {
			return archiveErr(a.image, "", fmt.Errorf("%w: %w", ErrTrailingData, de))
		}
		return archiveErr(a.image, "", ErrTrailingData)
	}
	return nil
}

// streamErr reports a failure of the stream itself (short read, garbage
// header, connection loss) as ErrTruncated, with the daemon's own error
// message when it appended one.
func (a *archive) streamErr(ctx context.Context, tr *trackingReader, entry string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%s: %w", a.image, ctxErr)
	}
	if errors.Is(err, ErrTruncated) {
		return archiveErr(a.image, entry, err)
	}
	seen := tr.lastBytes()
	more, _ := io.ReadAll(io.LimitReader(tr.r, errorReadAhead))
	if de := findDaemonError(append(seen, more...)); de != nil {
		return archiveErr(a.image, entry, fmt.Errorf("%w: %w", ErrTruncated, de))
	}
	if errors.Is(err, ErrNotArchive) {
		return archiveErr(a.image, entry, err)
	}
	return archiveErr(a.image, entry, fmt.Errorf("%w: %v", ErrTruncated, err))
}

// validTarChecksum reports whether block, the first 512 bytes of a stream,
// carries a tar header checksum that matches (as archive/tar computes it:
// the sum of the bytes with the checksum field read as spaces, unsigned
// or, for old writers, signed).
func validTarChecksum(block []byte) bool {
	field := strings.Trim(string(block[148:156]), " \x00")
	want, err := strconv.ParseInt(field, 8, 64)
	if err != nil || field == "" {
		return false
	}
	var unsigned, signed int64
	for i, c := range block {
		if i >= 148 && i < 156 {
			c = ' '
		}
		unsigned += int64(c)
		signed += int64(int8(c))
	}
	return want == unsigned || want == signed
}

// findDaemonError extracts the last {"errorDetail":...} object from b.
func findDaemonError(b []byte) *DaemonError {
	i := bytes.LastIndex(b, []byte(`{"errorDetail"`))
	if i < 0 {
		return nil
	}
	var msg struct {
		ErrorDetail struct {
			Message string `json:"message"`
		} `json:"errorDetail"`
		Error string `json:"error"`
	}
	if err := json.NewDecoder(bytes.NewReader(b[i:])).Decode(&msg); err != nil {
		return &DaemonError{Message: strings.TrimSpace(string(b[i:min(len(b), i+512)]))}
	}
	m := msg.ErrorDetail.Message
	if m == "" {
		m = msg.Error
	}
	return &DaemonError{Message: m}
}

// has and get make an archive a blobSource.
func (a *archive) has(d digest.Digest) bool {
	_, ok := a.byDigest[d]
	return ok
}

func (a *archive) get(d digest.Digest, size int64) (*stagedBlob, error) {
	b, ok := a.byDigest[d]
	if !ok {
		return nil, archiveErr(a.image, blobPath(d), fmt.Errorf("%w: %s", ErrMissingBlob, d))
	}
	if size >= 0 && b.Size != size {
		return nil, archiveErr(a.image, b.entry, fmt.Errorf("%w: %d bytes, descriptor says %d", ErrSizeMismatch, b.Size, size))
	}
	return b, nil
}

func (a *archive) readJSON(b *stagedBlob) ([]byte, error) {
	data, err := a.st.readJSON(b)
	if err != nil {
		return nil, archiveErr(a.image, b.entry, err)
	}
	return data, nil
}

func (a *archive) imageName() string { return a.image }

// resolve finds the regular entry a manifest.json path names.
func (a *archive) resolve(name string) (*stagedBlob, error) {
	clean, err := cleanEntryName(name)
	if err != nil {
		return nil, archiveErr(a.image, name, err)
	}
	b, ok := a.entries[clean]
	if !ok {
		return nil, archiveErr(a.image, name, fmt.Errorf("%w: manifest.json names an entry that is not in the archive", ErrMissingBlob))
	}
	return b, nil
}
