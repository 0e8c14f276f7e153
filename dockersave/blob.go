package dockersave

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/internal/directio"
	"github.com/layerbridge/layerbridge/store"
)

// compression is what a blob's first bytes say it is.
type compression uint8

const (
	compressionNone compression = iota
	compressionGzip
	compressionZstd
)

func (c compression) String() string {
	switch c {
	case compressionGzip:
		return "gzip"
	case compressionZstd:
		return "zstd"
	default:
		return "none"
	}
}

// layerMediaType is the OCI layer media type for a blob of this compression.
func (c compression) layerMediaType() string {
	switch c {
	case compressionGzip:
		return ocispec.MediaTypeImageLayerGzip
	case compressionZstd:
		return ocispec.MediaTypeImageLayerZstd
	default:
		return ocispec.MediaTypeImageLayer
	}
}

var (
	gzipMagic = []byte{0x1f, 0x8b, 0x08}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

func detectCompression(b []byte) compression {
	switch {
	case bytes.HasPrefix(b, gzipMagic):
		return compressionGzip
	case bytes.HasPrefix(b, zstdMagic):
		return compressionZstd
	default:
		return compressionNone
	}
}

const (
	copyBufferSize = 1 << 20
	// Decompression only feeds a hash, but a bomb still costs CPU: allow
	// this ratio over the compressed size, plus a floor for tiny blobs.
	maxDecompressionRatio = 1100
	minDecompressedLimit  = 1 << 30
)

var errDecompressedTooLarge = fmt.Errorf("decompressed size %w (ratio above %d:1)", ErrTooLarge, maxDecompressionRatio)

// stagedBlob is one blob read from a source: hashed, and (unless the store
// already had it) written to a staging file under the store's tmp directory.
type stagedBlob struct {
	digest      digest.Digest
	size        int64
	compression compression
	// diffID is the digest of the decompressed content (== digest when
	// uncompressed); empty when decompression failed, see diffErr.
	diffID  digest.Digest
	diffErr error
	// tmp is the store-relative staging path (a hard link to the stored
	// copy when blobs/ already had it); "" once published or cleaned up.
	tmp string
	// entry is the archive entry (or layout path) it was read from.
	entry string
}

// sourceError marks a failure reading the input stream (as opposed to a
// verification failure), so the archive reader can report truncation.
type sourceError struct{ err error }

func (e *sourceError) Error() string { return e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

type errRecorder struct {
	r   io.Reader
	err error
}

func (e *errRecorder) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

type limitWriter struct {
	w io.Writer
	n int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.n {
		return 0, errDecompressedTooLarge
	}
	l.n -= int64(len(p))
	return l.w.Write(p)
}

// stager streams blobs into the store's staging area. It is used by one
// goroutine for one load; cleanup removes whatever was not published.
type stager struct {
	store    *store.Store
	in       *bufio.Reader
	out      *bufio.Writer
	buf      []byte
	gz       *gzip.Reader
	zd       *zstd.Decoder
	progress func(int64)
	total    int64
	blobs    map[digest.Digest]*stagedBlob
	// direct holds the aligned buffers of direct-I/O writes (staging.go),
	// allocated with the first large blob; directMin overrides
	// directMinSize (tests: -1 turns direct I/O off).
	direct    *directio.Pool
	directMin int64
	// syncs, when set (by readArchive, which waits for them), fsyncs and
	// closes staging files in the background while the stream is read.
	syncs *backgroundSyncs
}

func newStager(s *store.Store, progress func(int64)) *stager {
	return &stager{
		store:    s,
		in:       bufio.NewReaderSize(nil, copyBufferSize),
		out:      bufio.NewWriterSize(nil, copyBufferSize),
		buf:      make([]byte, 64<<10),
		progress: progress,
		blobs:    make(map[digest.Digest]*stagedBlob),
	}
}

type progressReader struct {
	r  io.Reader
	st *stager
}

func (p progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.st.total += int64(n)
		if p.st.progress != nil {
			p.st.progress(p.st.total)
		}
	}
	return n, err
}

// stage reads r to its end. size is the expected length (-1 if unknown);
// want, when set, is the digest the content must have (the blob's name).
// A blob already in the store under want is hashed but not written again:
// its staging name is a hard link to the stored copy (see linkStaging).
func (st *stager) stage(r io.Reader, size int64, want digest.Digest, entry string) (b *stagedBlob, err error) {
	src := &errRecorder{r: progressReader{r: r, st: st}}
	st.in.Reset(src)
	defer st.in.Reset(nil)
	magic, _ := st.in.Peek(4)
	comp := detectCompression(magic)

	var f *os.File
	var tmp string
	var sw stagingWriter
	h := sha256.New()
	var w io.Writer = h
	if want != "" {
		tmp = st.store.LinkStaging(want, size)
	}
	if tmp == "" {
		f, tmp, err = st.store.CreateStaging()
		if err != nil {
			return nil, err
		}
		sw = st.stagingWriterFor(f, size, h)
		w = sw
	}
	defer func() {
		if err != nil {
			if sw != nil {
				sw.Abort()
			}
			if f != nil {
				f.Close()
			}
			st.store.RemoveStaging(tmp)
		}
	}()

	var n int64
	var diffID digest.Digest
	var diffErr error
	if comp == compressionNone {
		n, err = st.in.WriteTo(w)
		if err != nil {
			return nil, st.readErr(src, err)
		}
	} else {
		cw := &countWriter{w: w}
		tee := io.TeeReader(st.in, cw)
		limit := int64(minDecompressedLimit)
		if size > 0 && size*maxDecompressionRatio > limit {
			limit = size * maxDecompressionRatio
		}
		diffID, diffErr = st.decompressedDigest(comp, tee, limit)
		if src.err != nil {
			return nil, &sourceError{src.err}
		}
		if _, err := io.CopyBuffer(io.Discard, tee, st.buf); err != nil {
			return nil, st.readErr(src, err)
		}
		n = cw.n
	}
	if sw != nil {
		// Writes out the last bytes and completes the hash.
		if err := sw.Finish(); err != nil {
			return nil, err
		}
	}
	if size >= 0 && n != size {
		return nil, &sourceError{fmt.Errorf("%w: read %d of %d bytes", ErrTruncated, n, size)}
	}
	got := digest.NewDigest(digest.SHA256, h)
	if comp == compressionNone {
		diffID = got
	}
	if want != "" && got != want {
		return nil, fmt.Errorf("%w: content is %s, name says %s", ErrDigestMismatch, got, want)
	}
	if prev, ok := st.blobs[got]; ok {
		// Same content under another name: keep the first copy.
		if f != nil {
			f.Close()
		}
		if tmp != "" {
			st.store.RemoveStaging(tmp)
		}
		return prev, nil
	}
	if f != nil {
		// fsync and close, now or in the background (see syncs).
		if err := st.persist(f); err != nil {
			return nil, err
		}
	}
	b = &stagedBlob{digest: got, size: n, compression: comp, diffID: diffID, diffErr: diffErr, tmp: tmp, entry: entry}
	st.blobs[got] = b
	return b, nil
}

func (st *stager) readErr(src *errRecorder, err error) error {
	if src.err != nil {
		return &sourceError{src.err}
	}
	return fmt.Errorf("write staging file: %w", err)
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// decompressedDigest hashes the decompressed form of r. Errors describe the
// blob, not the stream: the caller checks the source separately.
func (st *stager) decompressedDigest(comp compression, r io.Reader, limit int64) (digest.Digest, error) {
	var dec io.Reader
	switch comp {
	case compressionGzip:
		if st.gz == nil {
			gz, err := gzip.NewReader(r)
			if err != nil {
				return "", fmt.Errorf("gzip: %w", err)
			}
			st.gz = gz
		} else if err := st.gz.Reset(r); err != nil {
			return "", fmt.Errorf("gzip: %w", err)
		}
		dec = st.gz
	case compressionZstd:
		if st.zd == nil {
			zd, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(1<<30))
			if err != nil {
				return "", fmt.Errorf("zstd: %w", err)
			}
			st.zd = zd
		} else if err := st.zd.Reset(r); err != nil {
			return "", fmt.Errorf("zstd: %w", err)
		}
		dec = st.zd
	}
	dh := sha256.New()
	if _, err := io.CopyBuffer(&limitWriter{w: dh, n: limit}, struct{ io.Reader }{dec}, st.buf); err != nil {
		return "", fmt.Errorf("decompress %s: %w", comp, err)
	}
	return digestOf(dh), nil
}

func digestOf(h hash.Hash) digest.Digest { return digest.NewDigest(digest.SHA256, h) }

// readJSON returns the content of a staged (or already stored) blob, refusing
// anything above maxMetadataSize.
func (st *stager) readJSON(b *stagedBlob) ([]byte, error) {
	if b.size > maxMetadataSize {
		return nil, fmt.Errorf("%w: %d bytes of json (limit %d)", ErrTooLarge, b.size, maxMetadataSize)
	}
	var data []byte
	var err error
	if b.tmp != "" {
		data, err = st.store.ReadStaging(b.tmp, maxMetadataSize)
	} else {
		data, err = readStored(st.store, b.digest)
	}
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", b.digest, err)
	}
	if digest.FromBytes(data) != b.digest {
		return nil, fmt.Errorf("%w: blob %s changed on disk", ErrDigestMismatch, b.digest)
	}
	return data, nil
}

// readStored reads a small blob of the store.
func readStored(s *store.Store, d digest.Digest) ([]byte, error) {
	f, err := s.OpenBlob(d)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxMetadataSize+1))
	if err == nil && len(data) > maxMetadataSize {
		err = fmt.Errorf("%w: more than %d bytes of json", ErrTooLarge, maxMetadataSize)
	}
	return data, err
}

// blobs are the blobs of v: config, layers and, when kept, the manifest.
func (v *verified) blobs() []*stagedBlob {
	out := append([]*stagedBlob{v.config}, v.layers...)
	if v.manifestBlob != nil {
		out = append(out, v.manifestBlob)
	}
	return out
}

// staged lists the blobs of v for the store to publish.
func (v *verified) staged() []store.Staged {
	blobs := v.blobs()
	out := make([]store.Staged, len(blobs))
	for i, b := range blobs {
		out[i] = store.Staged{Digest: b.digest, Size: b.size, Name: b.tmp}
	}
	return out
}

// published forgets the staging files of v's blobs: the store renamed them
// into blobs/ or removed them.
func (v *verified) published() {
	for _, b := range v.blobs() {
		b.tmp = ""
	}
}

// cleanup removes every staging file that was not published.
func (st *stager) cleanup() {
	for _, b := range st.blobs {
		if b.tmp != "" {
			st.store.RemoveStaging(b.tmp)
			b.tmp = ""
		}
	}
	if st.zd != nil {
		st.zd.Close()
		st.zd = nil
	}
}
