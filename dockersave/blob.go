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

const copyBufferSize = 1 << 20

// stagedBlob is one blob read from a source: hashed (Blob), and (unless the
// store already had it) written to a staging file under the store's tmp
// directory.
type stagedBlob struct {
	// describedBlob is what was read, and the archive entry (or layout
	// path) it was read from.
	describedBlob
	compression compression
	// tmp is the store-relative staging path (a hard link to the stored
	// copy when blobs/ already had it); "" once published or cleaned up.
	tmp string
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
	meter    *meter
	out      *bufio.Writer
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
	// onStaged, when set, is told of each new blob once it is staged
	// (hashed, its size and name checked), from the staging goroutine.
	onStaged func(*stagedBlob)
	// onStaging, when set, is told of each blob whose digest is expected
	// before its bytes are read (its name, or what its legacy layer
	// directory stands for: see legacy) once its staging file exists; it
	// returns the function told how much of the file is written as it
	// grows, or nil not to follow the blob. A followed blob then reaches
	// onStaged under that digest, or onAbandoned.
	onStaging func(expect digest.Digest, size int64, tmp string) (written func(int64))
	// onAbandoned is told that a followed blob will not be staged under
	// the digest it was expected to have, and why.
	onAbandoned func(expect digest.Digest, err error)
	// legacy, when set, names the layers of a legacy docker save archive
	// before they are read.
	legacy *legacyLayers
}

func newStager(s *store.Store, progress func(int64)) *stager {
	return &stager{
		store:    s,
		meter:    newMeter(),
		out:      bufio.NewWriterSize(nil, copyBufferSize),
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
// its staging name is a hard link to the stored copy (see LinkStaging).
// expect, when set, is the digest the content should have (want, or what
// its legacy layer directory stands for): onStaging may follow its
// staging file as it is written.
func (st *stager) stage(r io.Reader, size int64, want, expect digest.Digest, entry string) (b *stagedBlob, err error) {
	var f *os.File
	var tmp string
	var sw stagingWriter
	following := false
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
		var written func(int64)
		if expect != "" && size > 0 && st.onStaging != nil {
			written = st.onStaging(expect, size, tmp)
		}
		following = written != nil
		sw = st.stagingWriterFor(f, size, h, written)
		w = sw
	}
	defer func() {
		if err != nil {
			if following {
				st.onAbandoned(expect, err)
			}
			if sw != nil {
				sw.Abort()
			}
			if f != nil {
				f.Close()
			}
			st.store.RemoveStaging(tmp)
		}
	}()

	n, comp, diffID, diffErr, err := st.meter.copy(progressReader{r: r, st: st}, w, size)
	if err != nil {
		return nil, err
	}
	if sw != nil {
		// Writes out the last bytes and completes the hash.
		if err := sw.Finish(); err != nil {
			return nil, err
		}
	}
	if err := checkSize(n, size); err != nil {
		return nil, &sourceError{err}
	}
	got := digestOf(h)
	if comp == compressionNone {
		diffID = got
	}
	if err := checkDigest(got, want); err != nil {
		return nil, err
	}
	if following && got != expect {
		following = false
		st.onAbandoned(expect, fmt.Errorf("%w: %s holds %s", ErrDigestMismatch, entry, got))
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
	b = &stagedBlob{
		describedBlob: describedBlob{Blob: Blob{Digest: got, Size: n, DiffID: diffID, DiffErr: diffErr}, entry: entry},
		compression:   comp,
		tmp:           tmp,
	}
	st.blobs[got] = b
	if st.onStaged != nil {
		st.onStaged(b)
	}
	return b, nil
}

// meter hashes blobs as they are read: their bytes (through the writer it
// is given) and, for compressed ones, their decompressed content. It keeps
// its buffers and decompressors from one blob to the next; one goroutine
// uses it.
type meter struct {
	in  *bufio.Reader
	buf []byte
	gz  *gzip.Reader
	zd  *zstd.Decoder
}

func newMeter() *meter {
	return &meter{in: bufio.NewReaderSize(nil, copyBufferSize), buf: make([]byte, 64<<10)}
}

// copy reads r to its end into w, which hashes the bytes, and returns how
// many it read, their compression and, for a compressed blob, the digest of
// its decompressed content (or, with an empty diffID, why it does not
// decompress within inflationLimit(size)). A failure of r is a
// *sourceError.
func (m *meter) copy(r io.Reader, w io.Writer, size int64) (n int64, comp compression, diffID digest.Digest, diffErr error, err error) {
	src := &errRecorder{r: r}
	m.in.Reset(src)
	defer m.in.Reset(nil)
	magic, _ := m.in.Peek(4)
	comp = detectCompression(magic)
	if comp == compressionNone {
		n, err = m.in.WriteTo(w)
		if err != nil {
			return n, comp, "", nil, readErr(src, err)
		}
		return n, comp, "", nil, nil
	}
	cw := &countWriter{w: w}
	tee := io.TeeReader(m.in, cw)
	diffID, diffErr = m.decompressedDigest(comp, tee, inflationLimit(size))
	if src.err != nil {
		return cw.n, comp, "", nil, &sourceError{src.err}
	}
	if _, err := io.CopyBuffer(io.Discard, tee, m.buf); err != nil {
		return cw.n, comp, "", nil, readErr(src, err)
	}
	return cw.n, comp, diffID, diffErr, nil
}

// readErr is a failure of the source (a *sourceError) or of the writer.
func readErr(src *errRecorder, err error) error {
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
func (m *meter) decompressedDigest(comp compression, r io.Reader, limit int64) (digest.Digest, error) {
	var dec io.Reader
	switch comp {
	case compressionGzip:
		if m.gz == nil {
			gz, err := gzip.NewReader(r)
			if err != nil {
				return "", fmt.Errorf("gzip: %w", err)
			}
			m.gz = gz
		} else if err := m.gz.Reset(r); err != nil {
			return "", fmt.Errorf("gzip: %w", err)
		}
		dec = m.gz
	case compressionZstd:
		if m.zd == nil {
			zd, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(1<<30))
			if err != nil {
				return "", fmt.Errorf("zstd: %w", err)
			}
			m.zd = zd
		} else if err := m.zd.Reset(r); err != nil {
			return "", fmt.Errorf("zstd: %w", err)
		}
		dec = m.zd
	}
	dh := sha256.New()
	if _, err := io.CopyBuffer(&limitWriter{w: dh, n: limit}, struct{ io.Reader }{dec}, m.buf); err != nil {
		return "", fmt.Errorf("decompress %s: %w", comp, err)
	}
	return digestOf(dh), nil
}

// close releases the zstd decoder's goroutines and memory.
func (m *meter) close() {
	if m.zd != nil {
		m.zd.Close()
		m.zd = nil
	}
}

func digestOf(h hash.Hash) digest.Digest { return digest.NewDigest(digest.SHA256, h) }

// readJSON returns the content of a staged (or already stored) blob, refusing
// anything above maxMetadataSize.
func (st *stager) readJSON(b *stagedBlob) ([]byte, error) {
	if b.Size > maxMetadataSize {
		return nil, fmt.Errorf("%w: %d bytes of json (limit %d)", ErrTooLarge, b.Size, maxMetadataSize)
	}
	var data []byte
	var err error
	if b.tmp != "" {
		data, err = st.store.ReadStaging(b.tmp, maxMetadataSize)
	} else {
		data, err = readStored(st.store, b.Digest)
	}
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", b.Digest, err)
	}
	if digest.FromBytes(data) != b.Digest {
		return nil, fmt.Errorf("%w: blob %s changed on disk", ErrDigestMismatch, b.Digest)
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
		out[i] = store.Staged{Digest: b.Digest, Size: b.Size, Name: b.tmp}
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
	st.meter.close()
}
