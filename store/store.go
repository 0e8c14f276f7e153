package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sync"
	"time"

	"github.com/layerbridge/layerbridge/blobs"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

const (
	blobsDir   = "blobs/sha256"
	stagingDir = "tmp"
	locksDir   = "locks"
	indexFile  = "index.json"
	layoutFile = "oci-layout"

	indexLock  = "index.lock"
	linkPrefix = "link-"

	maxIndexSize    = 256 << 20
	staleStagingAge = 24 * time.Hour
)

// Store is an OCI image layout on disk (oci-layout, index.json,
// blobs/sha256/<hex>) shared by every image loaded into it, plus tmp/ for
// staging files and locks/ for flock files. Blobs appear in blobs/ only after
// verification, by rename; index.json is rewritten atomically under a
// store-wide lock. Several Stores (in one process or several) may use the same
// directory at once. A Store is safe for concurrent use.
type Store struct {
	dir  string
	root *os.Root
	// now is the clock of usage marks and of the age of staging files.
	now func() time.Time
	// onLockWait is called when a lock is contended (WithLockWait).
	onLockWait func(path string)
	// noSync skips the fsyncs of index.json, of other atomically written
	// files and of directories: tests only (fuzzing), never in production,
	// where a crash must not leave a record of a blob that is not on disk.
	noSync bool
	// beforeReplace, when set, is called before name (store-relative) is
	// written by replaceFile; an error fails the write as the file system
	// would: tests only, to fail index.json's write.
	beforeReplace func(name string) error

	// ownerMu guards owner and closed (see stagingPrefix).
	ownerMu sync.Mutex
	owner   *stagingOwner
	closed  bool
}

// Option configures a Store.
type Option func(*Store)

// WithClock sets the clock the store marks images used with and ages
// staging files by. The default is time.Now.
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// WithLockWait sets a function called with a lock file's path each time
// the store is about to wait for a lock another goroutine or process holds
// (an export of the same image, a Prune, a pin blocking a new export), for
// example to log why a load pauses. It must not block.
func WithLockWait(fn func(lock string)) Option { return func(s *Store) { s.onLockWait = fn } }

// Open opens (creating if needed) the store in dir, usually
// $XDG_CACHE_HOME/layerbridge chosen by the caller. Close releases the
// directory.
//
// Open also removes what processes that died left (best effort, without
// waiting, ignoring errors: a read-only store opens as it is): the staging
// files of Stores that are gone (see CreateStaging), and, when no other
// process holds the index lock at that moment, the blobs no record of
// index.json references, which a process killed in Commit between
// publishing its blobs and writing index.json leaves.
func Open(dir string, opts ...Option) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	s := &Store{dir: dir, root: root, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	for _, d := range []string{blobsDir, stagingDir, locksDir} {
		if err := root.MkdirAll(d, 0o755); err != nil {
			root.Close()
			return nil, fmt.Errorf("open store %s: %w", dir, err)
		}
	}
	if _, err := root.Stat(layoutFile); errors.Is(err, fs.ErrNotExist) {
		layout, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
		if err := s.writeFileAtomic(layoutFile, layout); err != nil {
			root.Close()
			return nil, fmt.Errorf("open store %s: %w", dir, err)
		}
	}
	if _, err := root.Stat(indexFile); errors.Is(err, fs.ErrNotExist) {
		if err := s.updateIndex(context.Background(), func(*ocispec.Index) {}); err != nil {
			root.Close()
			return nil, fmt.Errorf("open store %s: %w", dir, err)
		}
	}
	s.removeDeadStaging()
	// The owner of this Store's staging files, now so that the Store
	// holds the same descriptors until Close; on a read-only store, at
	// the first staging file instead.
	_, _ = s.stagingPrefix()
	if l, ok, err := tryLockFile(s.lockPath(indexLock), unix.LOCK_EX); err == nil && ok {
		_ = s.removeOrphansLocked()
		l.unlock()
	}
	return s, nil
}

// Close releases the store directory, removing the staging files of this
// Store that were not committed (a load still running fails). Files
// already opened with OpenBlob or OpenStaging stay usable.
func (s *Store) Close() error {
	s.releaseOwner()
	return s.root.Close()
}

// Dir is the directory the store was opened on.
func (s *Store) Dir() string { return s.dir }

func blobPath(d digest.Digest) string { return blobsDir + "/" + d.Encoded() }

// CheckDigest accepts the digests the store can hold blobs under: valid
// ones, of sha256.
func CheckDigest(d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("invalid digest %q: %w", d, err)
	}
	if d.Algorithm() != digest.SHA256 {
		return fmt.Errorf("invalid digest %q: only sha256 is stored", d)
	}
	return nil
}

// OpenBlob opens blobs/sha256/<hex> for reading; nothing else in the store can
// be reached through it. A malformed or non-sha256 digest is an error; an
// absent blob is an error wrapping fs.ErrNotExist, and so is anything at
// that path that is not a regular file the store wrote: a symbolic link
// (even to a file inside the store), a directory, a device or a fifo (never
// waited on). The caller closes the file.
//
// The content is not hashed: a blob altered on disk after it was stored
// (by someone with write access to the store) is served as it is, and
// only a size that differs from its descriptor can be noticed by callers.
func (s *Store) OpenBlob(d digest.Digest) (*os.File, error) {
	if err := CheckDigest(d); err != nil {
		return nil, fmt.Errorf("open blob: %w", err)
	}
	name := blobPath(d)
	// O_NONBLOCK: opening a fifo planted in blobs/ must not wait for a
	// writer. It has no effect on reading a regular file.
	f, err := s.root.OpenFile(name, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		if li, lerr := s.root.Lstat(name); lerr == nil && li.Mode()&fs.ModeSymlink != 0 {
			// A link leaving the store, or a loop.
			return nil, fmt.Errorf("open blob %s: a symbolic link, not a stored blob: %w", d, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("open blob %s: %w", d, err)
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("open blob %s: not a regular file: %w", d, fs.ErrNotExist)
	}
	// The store never puts a link in blobs/: opening followed one if the
	// path is not the very file that was opened.
	if li, err := s.root.Lstat(name); err != nil || !os.SameFile(fi, li) {
		f.Close()
		return nil, fmt.Errorf("open blob %s: a symbolic link, not a stored blob: %w", d, fs.ErrNotExist)
	}
	return f, nil
}

// Blob opens the blob d as OpenBlob does, for serving (blobs.Opener).
func (s *Store) Blob(_ context.Context, d digest.Digest) (blobs.Blob, error) {
	f, err := s.OpenBlob(d)
	if err != nil {
		return nil, err
	}
	return blobs.FromFile(f)
}

// hasBlob reports whether blobs/ holds d with the given size (any size if
// size < 0), by stat only. A link planted there is not a blob (see
// OpenBlob).
func (s *Store) hasBlob(d digest.Digest, size int64) bool {
	if CheckDigest(d) != nil {
		return false
	}
	fi, err := s.root.Lstat(blobPath(d))
	return err == nil && fi.Mode().IsRegular() && (size < 0 || fi.Size() == size)
}

func randomSuffix() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// writeFileAtomic writes name (store-relative) via a temp file in the same
// directory, fsync, rename, and fsync of the directory.
func (s *Store) writeFileAtomic(name string, data []byte) error {
	if err := s.replaceFile(name, data); err != nil {
		return err
	}
	return s.syncDir(path.Dir(name))
}

// replaceFile is writeFileAtomic without the fsync of the directory: once
// it returns nil, name has the new content (durably after syncDir); on an
// error, name is as it was and no temp file is left.
func (s *Store) replaceFile(name string, data []byte) error {
	if s.beforeReplace != nil {
		if err := s.beforeReplace(name); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	dir := path.Dir(name)
	tmp := path.Join(dir, "."+path.Base(name)+".tmp-"+randomSuffix())
	f, err := s.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	_, err = f.Write(data)
	if err == nil && !s.noSync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.root.Rename(tmp, name)
	}
	if err != nil {
		_ = s.root.Remove(tmp)
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

func (s *Store) syncDir(dir string) error {
	if s.noSync {
		return nil
	}
	d, err := s.root.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

func (s *Store) readIndex() (ocispec.Index, error) {
	var idx ocispec.Index
	f, err := s.root.Open(indexFile)
	if err != nil {
		return idx, fmt.Errorf("read store index: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return idx, fmt.Errorf("read store index: %w", err)
	}
	if fi.Size() > maxIndexSize {
		return idx, fmt.Errorf("read store index: %d bytes, more than %d", fi.Size(), maxIndexSize)
	}
	if err := json.NewDecoder(f).Decode(&idx); err != nil {
		return idx, fmt.Errorf("read store index %s: malformed json: %v", filepath.Join(s.dir, indexFile), err)
	}
	return idx, nil
}

// updateIndex applies fn to index.json under the store-wide lock and writes
// the result atomically.
func (s *Store) updateIndex(ctx context.Context, fn func(*ocispec.Index)) error {
	l, err := s.lock(ctx, indexLock)
	if err != nil {
		return err
	}
	defer l.unlock()
	return s.updateIndexLocked(fn)
}

// updateIndexLocked is updateIndex for a caller holding the index lock.
func (s *Store) updateIndexLocked(fn func(*ocispec.Index)) error {
	idx, err := s.readIndex()
	if errors.Is(err, fs.ErrNotExist) {
		idx, err = ocispec.Index{}, nil
	}
	if err != nil {
		return err
	}
	fn(&idx)
	return s.writeIndex(idx)
}

// writeIndex replaces index.json atomically; the caller holds the index lock.
func (s *Store) writeIndex(idx ocispec.Index) error {
	data, err := encodeIndex(idx)
	if err != nil {
		return err
	}
	return s.writeFileAtomic(indexFile, data)
}

func encodeIndex(idx ocispec.Index) ([]byte, error) {
	idx.SchemaVersion = 2
	idx.MediaType = ocispec.MediaTypeImageIndex
	if idx.Manifests == nil {
		idx.Manifests = []ocispec.Descriptor{}
	}
	data, err := json.Marshal(idx)
	if err != nil {
		return nil, fmt.Errorf("encode store index: %w", err)
	}
	return data, nil
}
