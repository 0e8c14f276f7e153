package blobs

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/opencontainers/go-digest"
)

// Blob is one blob's bytes, opened for reading.
type Blob interface {
	// ReadAt reads the blob's bytes; it may be called concurrently.
	io.ReaderAt
	// Close releases the blob; it is called once, when reading is done.
	io.Closer
	// Size is the blob's length in bytes.
	Size() int64
}

// Opener opens blobs by digest.
type Opener interface {
	// Blob opens the blob d, which holds exactly the bytes that hash to d
	// (an Opener never hands out other bytes under d; whether it checked
	// them itself is its own documented guarantee). An absent blob is an
	// error wrapping fs.ErrNotExist. ctx bounds the opening and, for
	// blobs read from a remote holder, the reads.
	Blob(ctx context.Context, d digest.Digest) (Blob, error)
}

// FromFile returns a Blob reading f, which it then owns (Close closes f).
// The size is f's at this call.
func FromFile(f *os.File) (Blob, error) {
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("blob %s: %w", f.Name(), err)
	}
	return &fileBlob{File: f, size: fi.Size()}, nil
}

// File returns the file behind a Blob that FromFile made, so that a server
// can send it with sendfile; ok is false for other blobs.
func File(b Blob) (f *os.File, ok bool) {
	fb, ok := b.(*fileBlob)
	if !ok {
		return nil, false
	}
	return fb.File, true
}

// ReadSeeker reads b from its start, for http.ServeContent and io.Copy.
func ReadSeeker(b Blob) io.ReadSeeker {
	if f, ok := File(b); ok {
		return f
	}
	return io.NewSectionReader(b, 0, b.Size())
}

type fileBlob struct {
	*os.File
	size int64
}

func (f *fileBlob) Size() int64 { return f.size }
