package blobs

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFromFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(path, []byte("hello, clair"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := FromFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if b.Size() != 12 {
		t.Errorf("size %d, want 12", b.Size())
	}
	if got, ok := File(b); !ok || got != f {
		t.Errorf("File: %v, %v; want the file it was made from (for sendfile)", got, ok)
	}
	head := make([]byte, 5)
	if _, err := b.ReadAt(head, 7); err != nil || string(head) != "clair" {
		t.Errorf("ReadAt(7): %q, %v", head, err)
	}
	all, err := io.ReadAll(ReadSeeker(b))
	if err != nil || string(all) != "hello, clair" {
		t.Errorf("ReadSeeker: %q, %v", all, err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Stat(); err == nil {
		t.Error("Close left the file open")
	}
}

// A Blob that is not a file is read through a section reader.
func TestReadSeekerOfOtherBlobs(t *testing.T) {
	b := stringBlob{strings.NewReader("layer bytes")}
	if _, ok := File(b); ok {
		t.Fatal("File found a file behind a string")
	}
	rs := ReadSeeker(b)
	if _, err := rs.Seek(6, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(rs)
	if err != nil || string(rest) != "bytes" {
		t.Errorf("after Seek(6): %q, %v", rest, err)
	}
}

type stringBlob struct{ *strings.Reader }

func (stringBlob) Close() error { return nil }
