package containerdsource

import (
	"fmt"
	"strings"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/platforms"
)

// UnreachableError means nothing answered at containerd's address: no
// socket there (Missing), or a socket nothing listens on, or another
// failure to talk to it (Err says which).
type UnreachableError struct {
	Address string
	Missing bool // no file at Address
	Err     error
}

func (e *UnreachableError) Error() string {
	if e.Missing {
		return fmt.Sprintf("containerd at %s: no socket there (is containerd running, and is this its address?)", e.Address)
	}
	return fmt.Sprintf("containerd at %s does not answer: %v", e.Address, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// PermissionError means this process may not connect to containerd's
// socket. Owner, Group and Mode describe the socket when it could be
// examined ("" and 0 otherwise); UID is this process's user.
type PermissionError struct {
	Address      string
	Owner, Group string
	Mode         uint32
	UID          int
	Err          error
}

func (e *PermissionError) Error() string {
	msg := fmt.Sprintf("permission denied on containerd socket %s", e.Address)
	if e.Owner != "" {
		msg += fmt.Sprintf(" (owned by %s:%s, mode %04o; this process is uid %d)", e.Owner, e.Group, e.Mode, e.UID)
	}
	return msg
}

func (e *PermissionError) Unwrap() error { return e.Err }

// NotFoundError means the namespace holds no image of that name. Elsewhere
// lists the other namespaces of that containerd that do hold one (nil when
// none does, or they could not be listed).
type NotFoundError struct {
	Ref       string // as given
	Name      string // the name looked up (normalized when the given one was not found)
	Namespace string
	Address   string
	Elsewhere []string
}

func (e *NotFoundError) Error() string {
	msg := fmt.Sprintf("%s: no image %s in containerd namespace %q at %s", e.Ref, e.Name, e.Namespace, e.Address)
	switch len(e.Elsewhere) {
	case 0:
	case 1:
		msg += fmt.Sprintf(" (namespace %q has it)", e.Elsewhere[0])
	default:
		msg += fmt.Sprintf(" (namespaces %s have it)", quoteAll(e.Elsewhere))
	}
	return msg
}

// MissingContentError means the image names content that containerd's
// content store does not have: usually a platform of a multi-platform
// image that was pulled for another platform only (containerd keeps the
// index, listing every platform, and the blobs of the platforms it pulled).
// Platform is the platform chosen (or asked for), Digest the first blob
// found missing and What what it is ("manifest", "config", "layer 2").
// Present lists the platforms whose manifests are present.
type MissingContentError struct {
	Ref       string
	Namespace string
	Platform  ocispec.Platform
	What      string
	Digest    digest.Digest
	Present   []ocispec.Platform
}

func (e *MissingContentError) Error() string {
	msg := fmt.Sprintf("%s: the %s of platform %s (%s) is not in containerd's content store (namespace %q)", e.Ref, e.What, platforms.Format(e.Platform), e.Digest, e.Namespace)
	if len(e.Present) > 0 {
		msg += "; content present for " + formatPlatforms(e.Present)
	}
	return msg
}

func formatPlatforms(ps []ocispec.Platform) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = platforms.Format(p)
	}
	return strings.Join(s, ", ")
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}
