package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Staging files are where a load writes the blobs it reads, in tmp/ of
// the store's directory (the same file system as blobs/), until Commit
// renames them into blobs/. Their names are store-relative.
//
// Each staging file has an owner: the Store that made it. A Store that
// stages takes, once, a shared flock on its owner lock file,
// locks/owner-<id>.lock, and holds it until Close; its staging files are
// named tmp/<id>.blob-<random> (written) and tmp/<id>.link-<random> (hard
// links, see LinkStaging). The kernel drops the flock when the process
// dies, however it dies, so a lock file that can be locked exclusively
// belongs to a Store that is gone: in a killed process, in another
// container sharing the directory, or closed. removeDeadStaging removes
// such an owner's staging files at once. This needs no process ID, so a
// reused PID or another PID namespace cannot make a dead owner look alive.
//
// Staging files without an owner (made by versions before owners, or whose
// owner lock file was deleted by hand) are removed once a day old.

const (
	ownerLockPrefix = "owner-"
	ownerLockSuffix = ".lock"
	ownerIDLen      = 16 // hex digits of randomSuffix
	stagingBlob     = "blob-"
)

func ownerLockName(id string) string { return ownerLockPrefix + id + ownerLockSuffix }

// stagingOwner is a Store's owner lock (see above).
type stagingOwner struct {
	id string
	l  *fileLock
}

// stagingPrefix returns the prefix of this Store's staging names,
// "tmp/<owner id>.", taking the owner lock if the Store has none yet (Open
// takes it, except when the store was not writable then).
func (s *Store) stagingPrefix() (string, error) {
	s.ownerMu.Lock()
	defer s.ownerMu.Unlock()
	if s.closed {
		return "", errors.New("store closed")
	}
	if s.owner == nil {
		// A fresh name is locked at once; only another Store's sweep,
		// which saw the file before the lock was taken, can hold it
		// (and will remove it): then take another name.
		for range 10 {
			id := randomSuffix()
			l, ok, err := tryLockFile(s.lockPath(ownerLockName(id)), unix.LOCK_SH)
			if err != nil {
				return "", err
			}
			if ok {
				s.owner = &stagingOwner{id: id, l: l}
				break
			}
		}
		if s.owner == nil {
			return "", errors.New("no owner lock for staging files: every new one was taken")
		}
	}
	return stagingDir + "/" + s.owner.id + ".", nil
}

// stagingOwnerOf returns the owner id in a staging file's base name and
// the rest of it ("blob-..." or "link-..."); id is "" for a file without
// an owner.
func stagingOwnerOf(base string) (id, kind string) {
	owner, rest, ok := strings.Cut(base, ".")
	if !ok || !isOwnerID(owner) {
		return "", base
	}
	return owner, rest
}

func isOwnerID(id string) bool {
	if len(id) != ownerIDLen {
		return false
	}
	for _, c := range id {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// CreateStaging creates a new, empty staging file, open for writing, and
// returns it with its name. Commit publishes it; RemoveStaging drops it.
func (s *Store) CreateStaging() (*os.File, string, error) {
	prefix, err := s.stagingPrefix()
	if err != nil {
		return nil, "", fmt.Errorf("create staging file: %w", err)
	}
	name := prefix + stagingBlob + randomSuffix()
	f, err := s.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, "", fmt.Errorf("create staging file: %w", err)
	}
	return f, name, nil
}

// LinkStaging makes a staging name for a blob already in blobs/ (a hard
// link, so the content stays reachable if Prune deletes the stored copy
// before the load commits). It returns "" when blobs/ does not hold d with
// that size (any size if size < 0) or the link cannot be made; the caller
// then stages the bytes it reads.
func (s *Store) LinkStaging(d digest.Digest, size int64) string {
	if !s.hasBlob(d, size) {
		return ""
	}
	prefix, err := s.stagingPrefix()
	if err != nil {
		return ""
	}
	name := prefix + linkPrefix + randomSuffix()
	if err := s.root.Link(blobPath(d), name); err != nil {
		return ""
	}
	// blobs/ may have changed between the stat and the link.
	if fi, err := s.root.Lstat(name); err != nil || !fi.Mode().IsRegular() || (size >= 0 && fi.Size() != size) {
		s.RemoveStaging(name)
		return ""
	}
	return name
}

// ReadStaging returns the content of staging file name (a small one: a
// manifest, a config), reading at most limit bytes.
func (s *Store) ReadStaging(name string, limit int64) ([]byte, error) {
	if !strings.HasPrefix(name, stagingDir+"/") {
		return nil, fmt.Errorf("read staging file %q: not a staging name", name)
	}
	f, err := s.root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("read staging file %s: %d bytes, more than %d", name, fi.Size(), limit)
	}
	data := make([]byte, fi.Size())
	if _, err := f.ReadAt(data, 0); err != nil && fi.Size() > 0 {
		return nil, err
	}
	return data, nil
}

// OpenStaging opens staging file name for reading: the bytes of a blob a
// load has staged and verified but not committed yet, served while the load
// goes on. The file stays readable after Commit renames it into blobs/ or
// RemoveStaging drops it.
func (s *Store) OpenStaging(name string) (*os.File, error) {
	if !strings.HasPrefix(name, stagingDir+"/") {
		return nil, fmt.Errorf("open staging file %q: not a staging name", name)
	}
	f, err := s.root.OpenFile(name, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open staging file: %w", err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("open staging file %s: not a regular file", name)
	}
	return f, nil
}

// CheckWritable reports whether an image could be stored now: it creates a
// staging file and removes it. A read-only file system, a store directory
// owned by someone else or no inode left gives the error of the create.
func (s *Store) CheckWritable() error {
	f, name, err := s.CreateStaging()
	if err != nil {
		return fmt.Errorf("store %s is not writable: %w", s.dir, err)
	}
	f.Close()
	s.RemoveStaging(name)
	return nil
}

// RemoveStaging removes staging file name, if it is still there.
func (s *Store) RemoveStaging(name string) { _ = s.root.Remove(name) }

// removeDeadStaging removes the staging files of owners that are gone,
// with their owner lock files, and staging files without an owner (or
// whose owner lock file is missing) older than a day. It never waits: an
// owner lock another sweep holds is left to that sweep. Errors are
// ignored (a read-only store keeps its files).
func (s *Store) removeDeadStaging() {
	dead := map[string]*fileLock{}
	known := map[string]bool{}
	if locks, err := fs.ReadDir(s.root.FS(), locksDir); err == nil {
		for _, e := range locks {
			id, ok := strings.CutPrefix(e.Name(), ownerLockPrefix)
			id, ok2 := strings.CutSuffix(id, ownerLockSuffix)
			if !ok || !ok2 || !isOwnerID(id) {
				continue
			}
			l, ok, exists, err := tryLockExisting(s.lockPath(e.Name()), unix.LOCK_EX)
			if !exists {
				continue
			}
			known[id] = true // alive unless proven dead
			if err == nil && ok {
				dead[id] = l
			}
		}
	}
	// Listed after the dead owners were locked: everything they staged
	// before they died is here.
	entries, err := fs.ReadDir(s.root.FS(), stagingDir)
	if err == nil {
		now := s.now()
		for _, e := range entries {
			id, kind := stagingOwnerOf(e.Name())
			switch {
			case dead[id] != nil:
				_ = s.root.Remove(stagingDir + "/" + e.Name())
			case id != "" && known[id]:
				// A live owner's.
			case s.stagingAge(e, kind, now) > staleStagingAge:
				_ = s.root.Remove(stagingDir + "/" + e.Name())
			}
		}
	}
	for _, l := range dead {
		_ = l.removeAndUnlock()
	}
}

// stagingAge is how long ago staging file e was last written. A hard link
// made by LinkStaging keeps the stored blob's modification time, so its
// age is its change time, which the link itself set.
func (s *Store) stagingAge(e fs.DirEntry, kind string, now time.Time) time.Duration {
	if strings.HasPrefix(kind, linkPrefix) {
		var st unix.Stat_t
		if unix.Lstat(filepath.Join(s.dir, stagingDir, e.Name()), &st) != nil {
			return 0
		}
		return now.Sub(time.Unix(st.Ctim.Unix()))
	}
	fi, err := e.Info()
	if err != nil {
		return 0
	}
	return now.Sub(fi.ModTime())
}

// releaseOwner removes this Store's remaining staging files and its owner
// lock file: nothing can commit them once the Store is closed.
func (s *Store) releaseOwner() {
	s.ownerMu.Lock()
	o := s.owner
	s.owner, s.closed = nil, true
	s.ownerMu.Unlock()
	if o == nil {
		return
	}
	if entries, err := fs.ReadDir(s.root.FS(), stagingDir); err == nil {
		for _, e := range entries {
			if id, _ := stagingOwnerOf(e.Name()); id == o.id {
				_ = s.root.Remove(stagingDir + "/" + e.Name())
			}
		}
	}
	// Holding it shared, it may only delete the file it made: a sweep
	// cannot hold it meanwhile, and nobody else uses that name.
	_ = o.l.removeAndUnlock()
}
