package imageref

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// Kind is the transport of a reference: where the image is read from.
type Kind string

// The transports Parse recognizes.
const (
	Daemon        Kind = "daemon"         // the Docker daemon: no prefix, or docker-daemon:
	DockerArchive Kind = "docker-archive" // docker-archive:PATH, the output of docker save
	OCIArchive    Kind = "oci-archive"    // oci-archive:PATH, a tar of an OCI image layout
	OCILayout     Kind = "oci"            // oci:DIR, an OCI image layout directory
	Containerd    Kind = "containerd"     // containerd:NAME, an image in containerd's image store
)

// daemonPrefix names the daemon transport explicitly, for a daemon image
// whose name would otherwise read as another transport ("oci:latest").
const daemonPrefix = "docker-daemon:"

// containerdPrefix names an image of containerd's image store.
const containerdPrefix = string(Containerd) + ":"

// MaxDaemonRef bounds a daemon reference, in bytes. The grammar allows a
// repository path of 255 characters, a tag of 128 and a sha512 digest; a
// registry host is a DNS name (at most 253). Nothing valid comes near it.
const MaxDaemonRef = 1024

// Ref is a parsed image reference.
type Ref struct {
	// Kind is the transport.
	Kind Kind
	// Name is what follows the transport prefix. For Daemon it is the
	// reference as given, which is what the daemon resolves: a
	// name[:tag][@digest], an image ID or a prefix of one. For Containerd
	// it is a name[:tag][@digest] or a whole image ID, as given. For the
	// other kinds it is a file or directory path, used as given (relative
	// to the working directory).
	Name string
	// Named is the normalized repository reference of a Daemon or
	// Containerd reference that is a name, as given: "alpine:3.10" is
	// docker.io/library/alpine:3.10, "alpine" is docker.io/library/alpine
	// (ImageName adds the default tag). nil for image IDs and files.
	//
	// A few hexadecimal digits ("a187dde48cd2") are both a valid name and
	// a prefix of an image ID, as for docker; Named holds the name, and
	// ImageName tells which the daemon found.
	Named reference.Named
	// ID is "sha256:" and the hex digits of a Daemon reference that is an
	// image ID ("sha256:<64 hex>", or the 64 hex digits alone) or a prefix
	// of one given with its algorithm ("sha256:a187dde4"), or of a
	// Containerd reference that is a whole image ID; "" otherwise.
	ID string
}

// String renders the reference in the form Parse accepts, the daemon
// transport without its prefix unless the name needs it.
func (r Ref) String() string {
	if r.Kind != Daemon {
		return string(r.Kind) + ":" + r.Name
	}
	if _, err := parseFile(r.Name); err == nil || strings.HasPrefix(r.Name, containerdPrefix) {
		return daemonPrefix + r.Name
	}
	return r.Name
}

// Parse parses an image reference: docker-archive:PATH, oci-archive:PATH
// and oci:DIR name local files; containerd:NAME names an image of
// containerd's image store, NAME following the daemon's rules below but
// for image IDs, which must be whole (sha256:<64 hex digits>, or the 64
// digits alone); anything else, optionally prefixed with docker-daemon:, is
// an image of the Docker daemon and must be
//
//   - NAME[:TAG][@DIGEST] in the grammar of github.com/distribution/reference
//     (alpine, alpine:3.10, docker.io/library/alpine:3.10,
//     localhost:5000/team/app@sha256:…): lowercase path components joined
//     by "/", each of letters and digits with ".", "_", "__" or "-" inside,
//     optionally after a registry HOST[:PORT]/;
//   - or an image ID: sha256:<64 hex digits>, the 64 hex digits alone, or a
//     prefix of them (sha256:a187dde4, or a187dde4, which is also a name).
//
// and at most MaxDaemonRef bytes. A daemon image literally named "oci:tag"
// (or "containerd:tag") must be written "docker-daemon:oci:tag". Refused
// references are *Error, naming the rule they break.
func Parse(s string) (Ref, error) {
	if strings.TrimSpace(s) == "" {
		return Ref{}, &Error{Ref: s, Rule: "it is empty"}
	}
	if r, err := parseFile(s); err == nil || !errors.Is(err, errNoFileTransport) {
		return r, err
	}
	if name, ok := strings.CutPrefix(s, containerdPrefix); ok {
		return parseContainerd(s, name)
	}
	name, prefixed := strings.CutPrefix(s, daemonPrefix)
	if prefixed && name == "" {
		return Ref{}, &Error{Ref: s, Rule: "nothing follows " + daemonPrefix}
	}
	if rule := checkDaemonRef(name); rule != "" {
		return Ref{}, &Error{Ref: s, Rule: rule}
	}
	if hex, ok := strings.CutPrefix(name, "sha256:"); ok && len(hex) <= 64 && isHex(hex) {
		return Ref{Kind: Daemon, Name: name, ID: "sha256:" + hex}, nil
	}
	if len(name) == 64 && isHex(name) {
		return Ref{Kind: Daemon, Name: name, ID: "sha256:" + name}, nil
	}
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return Ref{}, &Error{Ref: s, Rule: grammarRule(name, err)}
	}
	return Ref{Kind: Daemon, Name: name, Named: named}, nil
}

// parseContainerd parses the name of a containerd: reference s. containerd
// resolves names exactly (it has no short IDs), so an ID is whole.
func parseContainerd(s, name string) (Ref, error) {
	if name == "" {
		return Ref{}, &Error{Ref: s, Rule: "nothing follows " + containerdPrefix}
	}
	if rule := checkDaemonRef(name); rule != "" {
		return Ref{}, &Error{Ref: s, Rule: strings.Replace(rule, "a daemon reference", "a containerd reference", 1)}
	}
	hex, isID := strings.CutPrefix(name, "sha256:")
	if !isID && len(name) == 64 && isHex(name) {
		hex, isID = name, true
	}
	if isID {
		if len(hex) != 64 || !isHex(hex) {
			return Ref{}, &Error{Ref: s, Rule: "a containerd image ID is sha256: and all 64 lowercase hex digits of the digest (containerd has no short IDs)"}
		}
		return Ref{Kind: Containerd, Name: name, ID: "sha256:" + hex}, nil
	}
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return Ref{}, &Error{Ref: s, Rule: grammarRule(name, err)}
	}
	return Ref{Kind: Containerd, Name: name, Named: named}, nil
}

var errNoFileTransport = errors.New("no file transport")

// parseFile parses the file transports, or returns errNoFileTransport.
func parseFile(s string) (Ref, error) {
	for _, k := range []Kind{DockerArchive, OCIArchive, OCILayout} {
		if rest, ok := strings.CutPrefix(s, string(k)+":"); ok {
			if rest == "" {
				return Ref{}, &Error{Ref: s, Rule: "the path after " + string(k) + ": is empty"}
			}
			return Ref{Kind: k, Name: rest}, nil
		}
	}
	return Ref{}, errNoFileTransport
}

// checkDaemonRef applies the rules that keep a daemon reference inside its
// path segment of an Engine API URL, before the grammar: the Docker client
// joins the reference into the request path, where "..", "/", "?", "#" and
// "%" would take it elsewhere. It returns the rule broken, or "".
func checkDaemonRef(name string) string {
	if len(name) > MaxDaemonRef {
		return fmt.Sprintf("it is %d bytes long; a daemon reference is at most %d", len(name), MaxDaemonRef)
	}
	for i, c := range name {
		if !allowedRune(c) {
			return fmt.Sprintf("character %q at byte %d is not allowed: a daemon reference has only letters, digits and . _ - / : @ (and [ ] around an IPv6 registry address)", c, i)
		}
	}
	for seg := range strings.SplitSeq(name, "/") {
		switch seg {
		case "":
			return `it has an empty path component (a leading, trailing or doubled "/")`
		case ".", "..":
			return fmt.Sprintf("it has the path component %q: each component of a name starts and ends with a letter or digit", seg)
		}
	}
	return ""
}

// allowedRune reports whether c may appear in a daemon reference at all:
// the union of the grammar's alphabets (names, registry hosts with ports
// and IPv6 addresses, tags, digests with their algorithm separators).
func allowedRune(c rune) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.ContainsRune("._-/:@[]+", c)
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

const (
	nameRule = "a name is lowercase path components separated by \"/\", each of letters and digits joined by \".\", \"_\", \"__\" or \"-\", optionally after a registry HOST[:PORT]/ (alpine, library/alpine, ghcr.io/org/app, localhost:5000/app)"
	tagRule  = "a tag is 1 to 128 letters, digits, \"_\", \".\" and \"-\", and does not start with \".\" or \"-\""
)

// grammarRule says which part of a daemon reference the grammar refuses,
// given ParseNormalizedNamed's error.
func grammarRule(name string, err error) string {
	rest := name
	if i := strings.IndexByte(rest, '@'); i >= 0 {
		d := rest[i+1:]
		if _, derr := digest.Parse(d); derr != nil {
			return fmt.Sprintf("the digest %q after \"@\" is not ALGORITHM:HEX (%v)", d, derr)
		}
		rest = rest[:i]
	}
	if i := strings.LastIndexByte(rest, ':'); i > strings.LastIndexByte(rest, '/') {
		tag := rest[i+1:]
		if _, terr := reference.WithTag(probeName, tag); terr != nil {
			return fmt.Sprintf("the tag %q is not valid: %s", tag, tagRule)
		}
		rest = rest[:i]
	}
	if _, nerr := reference.ParseNormalizedNamed(rest); nerr != nil {
		err = nerr
	}
	switch {
	case errors.Is(err, reference.ErrNameTooLong):
		return fmt.Sprintf("the repository path is longer than %d characters", reference.RepositoryNameTotalLengthMax)
	case errors.Is(err, reference.ErrNameContainsUppercase) || strings.Contains(err.Error(), "must be lowercase"):
		return fmt.Sprintf("the name %q has capitals: %s", rest, nameRule)
	}
	return fmt.Sprintf("%q is not a valid name: %s", rest, nameRule)
}

// probeName is a valid name to check a tag against.
var probeName, _ = reference.WithName("probe")

// Normalized spells a reference one way for all the ways of writing it: a
// Daemon name is normalized, with the default tag when it has neither tag
// nor digest (alpine, alpine:latest, docker-daemon:alpine and
// docker.io/library/alpine:latest are docker.io/library/alpine:latest); an
// image ID or a prefix of one is sha256:<hex>; a Containerd reference is
// the same after "containerd:" (containerd:alpine is
// containerd:docker.io/library/alpine:latest); files are String().
func (r Ref) Normalized() string {
	var n string
	switch {
	case r.Named != nil:
		n = reference.TagNameOnly(r.Named).String()
	case r.ID != "":
		n = r.ID
	default:
		return r.String()
	}
	if r.Kind == Containerd {
		return containerdPrefix + n
	}
	return n
}

// ImageName returns the normalized name of the image r refers to, as
// reports carry it, given the image's RepoTags (docker inspect's, or those
// of a docker save archive's manifest.json):
//
//   - a Daemon or Containerd reference that is a name: that name, with
//     the default tag "latest" when it has neither tag nor digest ("alpine"
//     and "containerd:alpine" are docker.io/library/alpine:latest);
//   - anything else (an image ID, a file, or hex digits the daemon resolved
//     as an image ID, not as a name): the image's tag when it has exactly
//     one, else "" (an image with no tag, or several, has no name).
func (r Ref) ImageName(repoTags []string) string {
	tags := normalizedTags(repoTags)
	if r.Named != nil {
		n := reference.TagNameOnly(r.Named).String()
		if r.Kind == Containerd || !looksLikeShortID(r.Named) || slices.Contains(tags, n) {
			return n
		}
	}
	if len(tags) == 1 {
		return tags[0]
	}
	return ""
}

// normalizedTags returns the distinct valid tagged names of repoTags,
// normalized; "<none>:<none>" and other invalid entries are left out.
func normalizedTags(repoTags []string) []string {
	var out []string
	for _, t := range repoTags {
		n, err := reference.ParseNormalizedNamed(t)
		if err != nil {
			continue
		}
		if _, ok := n.(reference.NamedTagged); !ok {
			continue
		}
		if s := n.String(); !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// looksLikeShortID reports whether n, a name without tag or digest, is a
// few hex digits that the daemon may have resolved as an image ID prefix.
func looksLikeShortID(n reference.Named) bool {
	if !reference.IsNameOnly(n) || reference.Domain(n) != "docker.io" {
		return false
	}
	hex, ok := strings.CutPrefix(reference.Path(n), "library/")
	return ok && len(hex) < 64 && isHex(hex)
}

// Error is a reference Parse refuses.
type Error struct {
	Ref  string // the reference as given
	Rule string // the rule it breaks
}

func (e *Error) Error() string {
	return fmt.Sprintf("invalid image reference %s: %s", quote(e.Ref), e.Rule)
}

// quote quotes s for a message, cut short when it is long.
func quote(s string) string {
	const max = 80
	if len(s) <= max {
		return fmt.Sprintf("%q", s)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%q… (%d bytes)", s[:cut], len(s))
}
