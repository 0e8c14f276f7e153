package store

import (
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

// CreateStaging creates a new, empty staging file, open for writing, and
// returns it with its name. Commit publishes it; RemoveStaging drops it.
func (s *Store) CreateStaging() (*os.File, string, error) {
	name := stagingDir + "/blob-" + randomSuffix()
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
	name := stagingDir + "/" + linkPrefix + randomSuffix()
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

// removeStaleStaging removes staging files older than a day (killed loads).
// A hard link made by LinkStaging keeps the stored blob's modification
// time, so its age is its change time, which the link itself set.
func (s *Store) removeStaleStaging() {
	entries, err := fs.ReadDir(s.root.FS(), stagingDir)
	if err != nil {
		return
	}
	now := s.now()
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			continue
		}
		age := now.Sub(fi.ModTime())
		if strings.HasPrefix(e.Name(), linkPrefix) {
			var st unix.Stat_t
			if unix.Lstat(filepath.Join(s.dir, stagingDir, e.Name()), &st) != nil {
				continue
			}
			age = now.Sub(time.Unix(st.Ctim.Unix()))
		}
		if age > staleStagingAge {
			_ = s.root.Remove(stagingDir + "/" + e.Name())
		}
	}
}
