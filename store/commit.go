package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"sync"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/layerbridge/layerbridge/platforms"
)

// lock takes an exclusive lock on locks/name.
func (s *Store) lock(ctx context.Context, name string) (*fileLock, error) {
	return lockFile(ctx, s.lockPath(name), unix.LOCK_EX, s.onLockWait)
}

func (s *Store) lockPath(name string) string { return filepath.Join(s.dir, locksDir, name) }

func imageLockName(id digest.Digest, p ocispec.Platform) string {
	sum := sha256.Sum256([]byte(id.String() + "\n" + platforms.Format(platforms.Normalize(p))))
	return "image-" + hex.EncodeToString(sum[:]) + ".lock"
}

// ImageLock is the exclusive lock of one (image ID, platform): it
// serializes the exports of that image across goroutines and processes.
// Its lock file is also what pins share (see Pin) and what eviction tries,
// and its mtime is the image's last use (see Touch).
type ImageLock struct{ l *fileLock }

// LockImage takes the image's exclusive lock, waiting until ctx ends while
// another export, a Prune or a pin holds it.
func (s *Store) LockImage(ctx context.Context, id digest.Digest, p ocispec.Platform) (*ImageLock, error) {
	l, err := s.lock(ctx, imageLockName(id, p))
	if err != nil {
		return nil, err
	}
	return &ImageLock{l}, nil
}

// Unlock releases the lock. Calls after the first, and on nil, do nothing.
func (l *ImageLock) Unlock() {
	if l != nil {
		l.l.unlock()
	}
}

// Pin keeps one stored image, its record and all its blobs, from being
// evicted, in this process and in every other process using the store
// directory, until it is released. It is a shared lock on the image's lock
// file; the kernel drops the pins of a process that dies.
type Pin struct {
	s        *Store
	id       digest.Digest
	platform ocispec.Platform
	l        *fileLock
	once     sync.Once
}

// Release marks the image used (see Touch) and ends the pin. Calls after
// the first, and on nil, do nothing.
func (p *Pin) Release() {
	if p == nil {
		return
	}
	p.once.Do(func() {
		// The mark is advisory: failing to set it only ages the image.
		_ = p.s.touch(p.id, p.platform)
		p.l.unlock()
	})
}

func (s *Store) pin(id digest.Digest, platform ocispec.Platform, l *fileLock) *Pin {
	return &Pin{s: s, id: id, platform: platform, l: l}
}

// lockImageShared takes the image's lock shared: a pin.
func (s *Store) lockImageShared(ctx context.Context, id digest.Digest, p ocispec.Platform) (*fileLock, error) {
	return lockFile(ctx, s.lockPath(imageLockName(id, p)), unix.LOCK_SH, s.onLockWait)
}

// LookupPinned is Lookup under a pin: the image it finds is pinned before
// any Prune could evict it. When it finds none, it holds no pin. It waits,
// until ctx ends, while the image is being exported or evicted.
func (s *Store) LookupPinned(ctx context.Context, id digest.Digest, platform ocispec.Platform) (Record, *Pin, bool, error) {
	l, err := s.lockImageShared(ctx, id, platform)
	if err != nil {
		return Record{}, nil, false, err
	}
	rec, ok, err := s.Lookup(id, platform)
	if err != nil || !ok {
		l.unlock()
		return Record{}, nil, false, err
	}
	return rec, s.pin(id, platform, l), true, nil
}

// Staged is a blob a load has written to a staging file (CreateStaging,
// LinkStaging) and verified: its content has Digest and Size bytes.
type Staged struct {
	Digest digest.Digest
	Size   int64
	// Name is the staging file; "" when there is nothing to publish.
	Name string
}

// Commit publishes an image its caller verified: the staged blobs are
// renamed into blobs/ (after which the blobs directory is synced), the
// manifest is written as a blob unless it is one of them or already there,
// the image is marked used, and its record is written to index.json. The
// staging files are gone once Commit returns successfully.
//
// All of it happens under the index lock, which Prune holds while it
// decides and deletes: a blob Commit finds in blobs/ stays there until the
// record referencing it is in index.json.
//
// A Commit that fails leaves nothing visible: before it releases the
// index lock, it removes the blobs it put into blobs/ itself (never one
// that was there already, which another record may reference), then any
// other blob no record references (see Open). Its staging files that were
// not published stay for the caller to remove. The one exception is a
// failure to sync the store directory after index.json was replaced: the
// record is then in index.json and its blobs stay.
//
// The record replaces every record for (rec.ID, rec.Platform) when the
// image's lock is held: held is that lock when the caller holds it
// (LockImage); with nil, Commit tries to take it without waiting. When
// another holds it (a pin, or an export that will replace the records
// itself), only a record for the same manifest is replaced and others
// stay, so a pinned manifest keeps its record and blobs.
//
// Commit returns a pin on the image, taken before the index lock is
// released so that no Prune comes in between; it releases held to take
// it. The pin is nil when the image's lock was held exclusively elsewhere
// (an export of the same image in another process, or a Prune): pin the
// image then with Pin, which fails with ErrNotStored when that Prune
// evicted it.
func (s *Store) Commit(ctx context.Context, rec Record, manifest []byte, blobs []Staged, held *ImageLock) (*Pin, error) {
	if got := digest.FromBytes(manifest); got != rec.ManifestDigest {
		return nil, fmt.Errorf("commit %s: the manifest given hashes to %s", rec.ManifestDigest, got)
	}
	if held == nil {
		l, ok, err := tryLockFile(s.lockPath(imageLockName(rec.ID, rec.Platform)), unix.LOCK_EX)
		if err != nil {
			return nil, err
		}
		if ok {
			held = &ImageLock{l}
			defer held.Unlock()
		}
	}
	il, err := s.lock(ctx, indexLock)
	if err != nil {
		return nil, err
	}
	defer il.unlock()
	if err := s.publishImage(rec, manifest, blobs, held != nil); err != nil {
		return nil, fmt.Errorf("commit %s: %w", rec.ManifestDigest, err)
	}
	// The exclusive lock must go before a shared one can be had; in the
	// gap only another export of this image could take it (Prune needs
	// the index lock), and then the caller pins later instead.
	held.Unlock()
	if l, ok, err := tryLockFile(s.lockPath(imageLockName(rec.ID, rec.Platform)), unix.LOCK_SH); err == nil && ok {
		return s.pin(rec.ID, rec.Platform, l), nil
	}
	return nil, nil
}

// publishImage is Commit's work under the index lock: publish the blobs
// and the manifest, mark the image used, write its record; on a failure,
// undo what is visible. replace is whether every record of the image is
// replaced (Commit holds the image's lock) or only one of the same
// manifest.
func (s *Store) publishImage(rec Record, manifest []byte, blobs []Staged, replace bool) (err error) {
	// added are the blobs this call put into blobs/: on a failure, they
	// are removed, and nothing else that was there before.
	var added []digest.Digest
	defer func() {
		if err != nil {
			err = errors.Join(err, s.unpublishLocked(added))
		}
	}()
	manifestStaged := false
	for _, b := range blobs {
		put, err := s.publish(b)
		if put {
			added = append(added, b.Digest)
		}
		if err != nil {
			return err
		}
		manifestStaged = manifestStaged || b.Digest == rec.ManifestDigest
	}
	if !manifestStaged && !s.hasBlob(rec.ManifestDigest, int64(len(manifest))) {
		if err := s.replaceFile(blobPath(rec.ManifestDigest), manifest); err != nil {
			return err
		}
		added = append(added, rec.ManifestDigest)
	}
	if err := s.syncDir(blobsDir); err != nil {
		return err
	}
	if err := s.touch(rec.ID, rec.Platform); err != nil {
		return err
	}
	idx, err := s.readIndex()
	if errors.Is(err, fs.ErrNotExist) {
		idx, err = ocispec.Index{}, nil
	}
	if err != nil {
		return err
	}
	desc := descriptorFor(rec, manifest)
	key := desc.Annotations[AnnotationPlatform]
	idx.Manifests = slices.DeleteFunc(idx.Manifests, func(d ocispec.Descriptor) bool {
		return recordMatches(d, rec.ID, key) && (replace || d.Digest == desc.Digest)
	})
	idx.Manifests = append(idx.Manifests, desc)
	data, err := encodeIndex(idx)
	if err != nil {
		return err
	}
	if err := s.replaceFile(indexFile, data); err != nil {
		return err
	}
	// The record is in index.json: its blobs are referenced and stay,
	// even if this fsync fails (a crash may then lose the record, and the
	// next Open collects the blobs).
	added = nil
	return s.syncDir(".")
}

// unpublishLocked removes blobs a failed Commit put into blobs/ (the
// caller holds the index lock throughout, so no record references them and
// no other Commit counted on them; a load that linked one meanwhile keeps
// its link), then collects any other orphan. A blob it cannot remove stays
// an orphan, collected by the next Open.
func (s *Store) unpublishLocked(added []digest.Digest) error {
	var errs []error
	for _, d := range added {
		if err := s.root.Remove(blobPath(d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove blob %s of the failed commit: %w", d, err))
		}
	}
	if len(added) > 0 {
		_ = s.syncDir(blobsDir)
	}
	// Best effort, and after the rollback: the index it reads may be
	// what failed.
	_ = s.removeOrphansLocked()
	return errors.Join(errs...)
}

// publish renames a staged blob to blobs/sha256/<hex>, or drops the staging
// copy when an identical blob is already there. put is whether the blob is
// in blobs/ because of this call. The caller holds the index lock.
func (s *Store) publish(b Staged) (put bool, err error) {
	if b.Name == "" {
		return false, nil
	}
	if err := CheckDigest(b.Digest); err != nil {
		return false, fmt.Errorf("publish blob: %w", err)
	}
	if s.hasBlob(b.Digest, b.Size) {
		s.RemoveStaging(b.Name)
		return false, nil
	}
	// A hard link to a blob Prune deleted meanwhile is read-only already
	// (and may belong to another user of a shared store).
	if fi, err := s.root.Lstat(b.Name); err != nil || fi.Mode().Perm() != 0o444 {
		if err := s.root.Chmod(b.Name, 0o444); err != nil {
			return false, fmt.Errorf("publish blob %s: %w", b.Digest, err)
		}
	}
	if err := s.root.Rename(b.Name, blobPath(b.Digest)); err != nil {
		return false, fmt.Errorf("publish blob %s: %w", b.Digest, err)
	}
	return true, nil
}

// removeOrphansLocked deletes the blobs no record of index.json references
// (see records: records written by other tools keep what they reference)
// and the temp files of interrupted writes in blobs/ and of index.json. The
// caller holds the index lock, under which every write into blobs/ and of
// index.json happens: nothing it deletes belongs to a Commit in progress.
// It deletes nothing when index.json cannot be read.
func (s *Store) removeOrphansLocked() error {
	sizes, interrupted, err := s.blobSizes()
	if err != nil {
		return err
	}
	for _, name := range interrupted {
		_ = s.root.Remove(name)
	}
	idx, err := s.readIndex()
	if err != nil {
		return err
	}
	recs, foreign := s.records(idx)
	refs := countRefs(recs, foreign)
	var errs []error
	removed := false
	for d := range sizes {
		if refs[d] > 0 {
			continue
		}
		if err := s.root.Remove(blobPath(d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		removed = true
	}
	if removed {
		errs = append(errs, s.syncDir(blobsDir))
	}
	return errors.Join(errs...)
}
