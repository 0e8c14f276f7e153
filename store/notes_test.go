package store

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestNotes: a note is written, read back, replaced, listed with the
// others of its kind (and only those) and removed; an absent note is
// fs.ErrNotExist, an empty kind lists nothing.
func TestNotes(t *testing.T) {
	s := openTestStore(t)
	if ns, err := s.Notes("layer-diffid"); err != nil || len(ns) != 0 {
		t.Fatalf("no notes yet: %v, %v", ns, err)
	}
	if _, err := s.Note("layer-diffid", "abc"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("absent note: %v", err)
	}
	for key, data := range map[string]string{"abc": "one", "def": "two"} {
		if err := s.PutNote("layer-diffid", key, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutNote("other", "abc", []byte("elsewhere")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutNote("layer-diffid", "abc", []byte("replaced")); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Note("layer-diffid", "abc"); err != nil || string(got) != "replaced" {
		t.Errorf("note abc: %q, %v", got, err)
	}
	ns, err := s.Notes("layer-diffid")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range ns {
		got = append(got, n.Key+"="+string(n.Data))
		if n.ModTime.IsZero() {
			t.Errorf("note %s has no time", n.Key)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"abc=replaced", "def=two"}) {
		t.Errorf("notes %q", got)
	}
	if err := s.RemoveNote("layer-diffid", "abc"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveNote("layer-diffid", "abc"); err != nil {
		t.Errorf("removing an absent note: %v", err)
	}
	if _, err := s.Note("layer-diffid", "abc"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("removed note: %v", err)
	}
}

// TestNotesRefuse: names outside the alphabet (which could leave the
// notes directory), oversized notes, and files planted among the notes
// (links, directories, temp files) are never read as notes.
func TestNotesRefuse(t *testing.T) {
	s := openTestStore(t)
	for _, name := range [][2]string{{"..", "x"}, {"k", ".."}, {"k", "../../index.json"}, {"K", "x"}, {"k", ""}, {"", "x"}, {"k", "a/b"}, {"k", strings.Repeat("a", 129)}, {"k", ".hidden"}} {
		if err := s.PutNote(name[0], name[1], []byte("x")); err == nil {
			t.Errorf("PutNote(%q, %q) accepted", name[0], name[1])
		}
		if _, err := s.Note(name[0], name[1]); err == nil {
			t.Errorf("Note(%q, %q) accepted", name[0], name[1])
		}
	}
	if err := s.PutNote("k", "big", bytes.Repeat([]byte("x"), MaxNoteSize+1)); err == nil {
		t.Error("an oversized note was written")
	}
	if err := s.PutNote("k", "ok", []byte("fine")); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(s.Dir(), notesDir, "k")
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("not a note"), 0o644)
	os.Symlink(secret, filepath.Join(dir, "link"))
	os.Mkdir(filepath.Join(dir, "dir"), 0o755)
	os.WriteFile(filepath.Join(dir, ".ok.tmp-1234"), []byte("half"), 0o644)
	os.WriteFile(filepath.Join(dir, "huge"), bytes.Repeat([]byte("x"), MaxNoteSize+1), 0o644)
	for _, key := range []string{"link", "dir", "huge"} {
		if data, err := s.Note("k", key); err == nil {
			t.Errorf("planted %s read as a note: %q", key, data)
		}
	}
	ns, err := s.Notes("k")
	if err != nil {
		t.Fatal(err)
	}
	if len(ns) != 1 || ns[0].Key != "ok" {
		t.Errorf("notes %+v, want only ok", ns)
	}
}
