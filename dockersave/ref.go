package dockersave

import (
	"fmt"
	"strings"
	"unicode"
)

// SourceKind says where an image is read from.
type SourceKind string

// The four sources ParseRef recognizes.
const (
	SourceDaemon        SourceKind = "daemon"
	SourceDockerArchive SourceKind = "docker-archive"
	SourceOCIArchive    SourceKind = "oci-archive"
	SourceOCILayout     SourceKind = "oci"
)

// Ref is a parsed image reference: for SourceDaemon, Name is what the daemon
// resolves (a name[:tag], name@digest or image ID); for the other kinds it is
// a file or directory path, used as given (relative to the working directory).
type Ref struct {
	Kind SourceKind
	Name string
}

// String renders the reference in the form ParseRef accepts.
func (r Ref) String() string {
	if r.Kind == SourceDaemon {
		return r.Name
	}
	return string(r.Kind) + ":" + r.Name
}

// ParseRef parses an image reference. "docker-archive:PATH", "oci-archive:PATH"
// and "oci:DIR" name local files; everything else (optionally prefixed with
// "docker-daemon:") is a Docker daemon image. Note that a daemon image
// literally named "oci:tag" must be written "docker-daemon:oci:tag".
func ParseRef(s string) (Ref, error) {
	if strings.TrimSpace(s) == "" {
		return Ref{}, fmt.Errorf("parse image reference: empty")
	}
	for _, k := range []SourceKind{SourceDockerArchive, SourceOCIArchive, SourceOCILayout} {
		if rest, ok := strings.CutPrefix(s, string(k)+":"); ok {
			if rest == "" {
				return Ref{}, fmt.Errorf("parse image reference %q: empty path", s)
			}
			return Ref{Kind: k, Name: rest}, nil
		}
	}
	name := strings.TrimPrefix(s, "docker-daemon:")
	if name == "" || strings.IndexFunc(name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return Ref{}, fmt.Errorf("parse image reference %q: invalid daemon image name", s)
	}
	return Ref{Kind: SourceDaemon, Name: name}, nil
}
