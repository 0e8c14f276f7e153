package dockersave

import (
	"bufio"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/layerbridge/layerbridge/store"
)

// loadArchiveFile is the source of docker-archive: and oci-archive: files,
// gzip or zstd compressed or not (sniffed): it reads them into the store
// with the same reader as daemon exports, and pins the image when it can
// before Prune could evict it.
func (l *Loader) loadArchiveFile(ctx context.Context, req Request) (Image, *store.Pin, error) {
	ref := req.Ref
	f, err := os.Open(req.Name)
	if err != nil {
		return Image{}, nil, fmt.Errorf("%s: %w", ref, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Image{}, nil, fmt.Errorf("%s: %w", ref, err)
	}
	if fi.IsDir() {
		return Image{}, nil, archiveErr(ref, "", fmt.Errorf("%w: %s is a directory", ErrNotArchive, req.Name))
	}
	br := bufio.NewReaderSize(f, 64<<10)
	magic, _ := br.Peek(4)
	var in io.Reader = br
	comp := detectCompression(magic)
	if comp == compressionNone && fi.Size() > 0 && fi.Size() < blockSize {
		return Image{}, nil, archiveErr(ref, "", fmt.Errorf("%w: it has %d bytes, less than one tar header", ErrNotArchive, fi.Size()))
	}
	switch comp {
	case compressionGzip:
		gz, err := gzip.NewReader(br)
		if err != nil {
			return Image{}, nil, archiveErr(ref, "", fmt.Errorf("%w: gzip: %v", ErrTruncated, err))
		}
		in = &cappedReader{r: gz, limit: inflationLimit(fi.Size())}
	case compressionZstd:
		zd, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return Image{}, nil, archiveErr(ref, "", fmt.Errorf("%w: zstd: %v", ErrTruncated, err))
		}
		defer zd.Close()
		in = &cappedReader{r: zd, limit: inflationLimit(fi.Size())}
	}
	req.Log.DebugContext(ctx, "read archive", "ref", ref, "path", req.Name, "compression", comp)
	start := time.Now()
	var expected int64
	if comp == compressionNone {
		expected = fi.Size()
	}
	st := newStager(l.store, req.progressFor(expected))
	defer st.cleanup()
	a, err := readArchive(ctx, in, st, ref)
	if err != nil {
		return Image{}, nil, err
	}
	v, err := interpret(a, a.meta, req.Platform, req.Host)
	if err != nil {
		return Image{}, nil, err
	}
	img := imageOf(ref, req.Kind, v.config.Digest, v.platform, v.repoTags, v)
	pin, err := l.commit(ctx, img, v, nil)
	if err != nil {
		return Image{}, nil, err
	}
	req.Log.DebugContext(ctx, "archive stored", "ref", ref, "bytes", st.total, "duration", time.Since(start))
	return img, pin, nil
}
