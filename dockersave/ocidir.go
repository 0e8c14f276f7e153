package dockersave

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"golang.org/x/sys/unix"

	digest "github.com/opencontainers/go-digest"

	"github.com/layerbridge/layerbridge/store"
)

// layout is an OCI image layout directory read as a blobSource: blobs are
// staged (hashed and verified) only when interpretation asks for them, so
// only the chosen image's layers are copied.
type layout struct {
	image string
	root  *os.Root
	st    *stager
}

func (o *layout) imageName() string { return o.image }

func (o *layout) has(d digest.Digest) bool {
	if _, ok := o.st.blobs[d]; ok {
		return true
	}
	if store.CheckDigest(d) != nil {
		return false
	}
	// Anything at the path counts: get refuses what is not a regular file
	// with ErrUnsafeEntry, which says more than a missing blob would.
	_, err := o.root.Stat(blobPath(d))
	return err == nil
}

// blobPath is where an OCI image layout keeps blob d.
func blobPath(d digest.Digest) string { return "blobs/sha256/" + d.Encoded() }

// openRegular opens name under root for reading and checks that it is a
// regular file. O_NONBLOCK keeps a fifo planted in the layout from blocking
// the open; it changes nothing for a regular file.
func openRegular(root *os.Root, name string) (*os.File, fs.FileInfo, error) {
	f, err := root.OpenFile(name, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("%w: not a regular file (%s)", ErrUnsafeEntry, fi.Mode().Type())
	}
	return f, fi, nil
}

func (o *layout) get(d digest.Digest, size int64) (*stagedBlob, error) {
	name := blobPath(d)
	if b, ok := o.st.blobs[d]; ok {
		if size >= 0 && b.Size != size {
			return nil, archiveErr(o.image, name, fmt.Errorf("%w: %d bytes, descriptor says %d", ErrSizeMismatch, b.Size, size))
		}
		return b, nil
	}
	if err := store.CheckDigest(d); err != nil {
		return nil, archiveErr(o.image, name, fmt.Errorf("%w: %v", ErrMalformedJSON, err))
	}
	f, fi, err := openRegular(o.root, name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, archiveErr(o.image, name, fmt.Errorf("%w: %s", ErrMissingBlob, d))
	}
	if err != nil {
		return nil, archiveErr(o.image, name, err)
	}
	defer f.Close()
	if size >= 0 && fi.Size() != size {
		return nil, archiveErr(o.image, name, fmt.Errorf("%w: %d bytes, descriptor says %d", ErrSizeMismatch, fi.Size(), size))
	}
	b, err := o.st.stage(f, fi.Size(), d, d, name)
	if err != nil {
		return nil, archiveErr(o.image, name, err)
	}
	return b, nil
}

func (o *layout) readJSON(b *stagedBlob) ([]byte, error) {
	data, err := o.st.readJSON(b)
	if err != nil {
		return nil, archiveErr(o.image, b.entry, err)
	}
	return data, nil
}

// loadLayout is the source of oci:DIR layouts: index.json -> manifests ->
// blobs, each verified against its digest while it is copied into the
// store; it pins the image when it can before Prune could evict it.
func (l *Loader) loadLayout(ctx context.Context, req Request) (Image, *store.Pin, error) {
	ref := req.Ref
	root, err := os.OpenRoot(req.Name)
	if err != nil {
		return Image{}, nil, fmt.Errorf("%s: %w", ref, err)
	}
	defer root.Close()
	meta := map[string][]byte{}
	for _, name := range []string{"oci-layout", "index.json"} {
		data, err := readCapped(root, name)
		if errors.Is(err, fs.ErrNotExist) {
			return Image{}, nil, archiveErr(ref, "", fmt.Errorf("%w: %s has no %s file", ErrNotLayout, req.Name, name))
		}
		if err != nil {
			return Image{}, nil, archiveErr(ref, name, err)
		}
		meta[name] = data
	}
	start := time.Now()
	st := newStager(l.store, req.progressFor(0))
	defer st.cleanup()
	src := &layout{image: ref, root: root, st: st}
	v, err := interpret(src, meta, req.Platform, req.Host)
	if err != nil {
		return Image{}, nil, err
	}
	if err := ctx.Err(); err != nil {
		return Image{}, nil, err
	}
	img := imageOf(ref, req.Kind, v.config.Digest, v.platform, nil, v)
	pin, err := l.commit(ctx, img, v, nil)
	if err != nil {
		return Image{}, nil, err
	}
	req.Log.DebugContext(ctx, "layout stored", "ref", ref, "bytes", st.total, "duration", time.Since(start))
	return img, pin, nil
}

func readCapped(root *os.Root, name string) ([]byte, error) {
	f, fi, err := openRegular(root, name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi.Size() > maxMetadataSize {
		return nil, fmt.Errorf("%w: %d bytes of metadata (limit %d)", ErrTooLarge, fi.Size(), maxMetadataSize)
	}
	data := make([]byte, fi.Size())
	if _, err := f.ReadAt(data, 0); err != nil && fi.Size() > 0 {
		return nil, err
	}
	return data, nil
}
