package store

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"time"

	"golang.org/x/sys/unix"
)

// Notes are small records another package keeps in the store, beside the
// images: facts about blobs the store does not hold (the diff ID of a layer
// read where it is, say) or images whose blobs live elsewhere. A note is
// named by a kind and a key, each of lowercase letters, digits, ".", "_"
// and "-" (a hex digest is a key); it is at most MaxNoteSize bytes, written
// atomically (temp file, fsync, rename), and replaced by a later PutNote of
// the same name. The store does not read notes, and Prune neither counts
// nor removes them: their owner bounds how many it keeps.
const (
	notesDir    = "notes"
	MaxNoteSize = 1 << 20
)

// Note is one note of a kind, as Notes lists it.
type Note struct {
	Key     string
	Data    []byte
	ModTime time.Time // when it was last written
}

// PutNote writes the note kind/key.
func (s *Store) PutNote(kind, key string, data []byte) error {
	name, err := notePath(kind, key)
	if err != nil {
		return err
	}
	if len(data) > MaxNoteSize {
		return fmt.Errorf("note %s/%s: %d bytes, more than %d", kind, key, len(data), MaxNoteSize)
	}
	if err := s.root.MkdirAll(path.Dir(name), 0o755); err != nil {
		return fmt.Errorf("note %s/%s: %w", kind, key, err)
	}
	return s.writeFileAtomic(name, data)
}

// Note reads the note kind/key; an absent one is an error wrapping
// fs.ErrNotExist.
func (s *Store) Note(kind, key string) ([]byte, error) {
	name, err := notePath(kind, key)
	if err != nil {
		return nil, err
	}
	data, _, err := s.readNote(name)
	if err != nil {
		return nil, fmt.Errorf("note %s/%s: %w", kind, key, err)
	}
	return data, nil
}

// Notes lists the notes of kind, in no particular order; none is no error.
// Files in its directory that are no note (a temp file of a write under
// way, a name outside the alphabet, anything but a regular file) are left
// out.
func (s *Store) Notes(kind string) ([]Note, error) {
	if !validNoteName(kind) {
		return nil, fmt.Errorf("notes of kind %q: invalid kind", kind)
	}
	dir, err := s.root.Open(path.Join(notesDir, kind))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("notes of kind %s: %w", kind, err)
	}
	names, err := dir.Readdirnames(-1)
	dir.Close()
	if err != nil {
		return nil, fmt.Errorf("notes of kind %s: %w", kind, err)
	}
	var out []Note
	for _, key := range names {
		if !validNoteName(key) {
			continue
		}
		data, mod, err := s.readNote(path.Join(notesDir, kind, key))
		if err != nil {
			continue // removed meanwhile, or no regular file
		}
		out = append(out, Note{Key: key, Data: data, ModTime: mod})
	}
	return out, nil
}

// RemoveNote removes the note kind/key; an absent one is no error.
func (s *Store) RemoveNote(kind, key string) error {
	name, err := notePath(kind, key)
	if err != nil {
		return err
	}
	if err := s.root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("note %s/%s: %w", kind, key, err)
	}
	return nil
}

// readNote reads a note file: a regular file (never a link) of at most
// MaxNoteSize bytes.
func (s *Store) readNote(name string) ([]byte, time.Time, error) {
	fi, err := s.root.Lstat(name)
	if err != nil {
		return nil, time.Time{}, err
	}
	if !fi.Mode().IsRegular() {
		return nil, time.Time{}, fmt.Errorf("%s is not a regular file: %w", name, fs.ErrNotExist)
	}
	f, err := s.root.OpenFile(name, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, time.Time{}, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, time.Time{}, fmt.Errorf("%s is not a regular file: %w", name, fs.ErrNotExist)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxNoteSize+1))
	if err != nil {
		return nil, time.Time{}, err
	}
	if len(data) > MaxNoteSize {
		return nil, time.Time{}, fmt.Errorf("%s: more than %d bytes", name, MaxNoteSize)
	}
	return data, fi.ModTime(), nil
}

func notePath(kind, key string) (string, error) {
	if !validNoteName(kind) || !validNoteName(key) {
		return "", fmt.Errorf("note %q/%q: invalid name (lowercase letters, digits, '.', '_' and '-', at most 128)", kind, key)
	}
	return path.Join(notesDir, kind, key), nil
}

// validNoteName: 1 to 128 of [a-z0-9._-], starting with a letter or digit
// (so never "." or "..", nor a temp file of writeFileAtomic).
func validNoteName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}
