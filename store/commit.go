package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
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
	manifestStaged := false
	for _, b := range blobs {
		if err := s.publish(b); err != nil {
			return nil, err
		}
		manifestStaged = manifestStaged || b.Digest == rec.ManifestDigest
	}
	if !manifestStaged && !s.hasBlob(rec.ManifestDigest, int64(len(manifest))) {
		if err := s.writeFileAtomic(blobPath(rec.ManifestDigest), manifest); err != nil {
			return nil, err
		}
	}
	if err := s.syncDir(blobsDir); err != nil {
		return nil, err
	}
	if err := s.touch(rec.ID, rec.Platform); err != nil {
		return nil, err
	}
	desc := descriptorFor(rec, manifest)
	key := desc.Annotations[AnnotationPlatform]
	err = s.updateIndexLocked(func(idx *ocispec.Index) {
		idx.Manifests = slices.DeleteFunc(idx.Manifests, func(d ocispec.Descriptor) bool {
			return recordMatches(d, rec.ID, key) && (held != nil || d.Digest == desc.Digest)
		})
		idx.Manifests = append(idx.Manifests, desc)
	})
	if err != nil {
		return nil, err
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

// publish renames a staged blob to blobs/sha256/<hex>, or drops the staging
// copy when an identical blob is already there. The caller holds the index
// lock.
func (s *Store) publish(b Staged) error {
	if b.Name == "" {
		return nil
	}
	if err := CheckDigest(b.Digest); err != nil {
		return fmt.Errorf("publish blob: %w", err)
	}
	if s.hasBlob(b.Digest, b.Size) {
		s.RemoveStaging(b.Name)
		return nil
	}
	// A hard link to a blob Prune deleted meanwhile is read-only already
	// (and may belong to another user of a shared store).
	if fi, err := s.root.Lstat(b.Name); err != nil || fi.Mode().Perm() != 0o444 {
		if err := s.root.Chmod(b.Name, 0o444); err != nil {
			return fmt.Errorf("publish blob %s: %w", b.Digest, err)
		}
	}
	if err := s.root.Rename(b.Name, blobPath(b.Digest)); err != nil {
		return fmt.Errorf("publish blob %s: %w", b.Digest, err)
	}
	return nil
}
