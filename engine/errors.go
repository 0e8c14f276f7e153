package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

// UnreachableError means no Docker daemon answered at Host: the socket does
// not exist, the connection was refused or timed out, or TLS failed.
type UnreachableError struct {
	Host string
	Err  error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot connect to the docker daemon at %s: %v", e.Host, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// PermissionError means the daemon's unix socket exists but this user may not
// open it. Socket is the file path ("/var/run/docker.sock"), Host the endpoint.
type PermissionError struct {
	Host   string
	Socket string
	Err    error
}

func (e *PermissionError) Error() string {
	s := e.Socket
	if s == "" {
		s = e.Host
	}
	return fmt.Sprintf("permission denied on docker socket %s", s)
}

func (e *PermissionError) Unwrap() error { return e.Err }

// APIVersionError means the daemon's API version is outside what the client
// supports (too old for github.com/moby/moby/client, or the daemon refuses
// the version the client asked for). Daemon may be empty when unknown.
type APIVersionError struct {
	Host    string
	Daemon  string
	Minimum string
	Err     error
}

func (e *APIVersionError) Error() string {
	if e.Daemon != "" {
		return fmt.Sprintf("docker api version %s at %s is not supported (minimum %s)", e.Daemon, e.Host, e.Minimum)
	}
	return fmt.Sprintf("docker api version not supported at %s: %v", e.Host, e.Err)
}

func (e *APIVersionError) Unwrap() error { return e.Err }

// NotFoundError means the daemon has no image called Ref. The image may exist
// in another daemon or context: the caller knows which endpoint was used.
type NotFoundError struct {
	Ref string
	Err error
}

func (e *NotFoundError) Error() string { return "no such image: " + e.Ref }

func (e *NotFoundError) Unwrap() error { return e.Err }

// Classify maps an Engine API client error to the typed errors callers
// branch on: *PermissionError, *APIVersionError, *UnreachableError and,
// when ref names the image asked about, *NotFoundError. Anything else is
// wrapped with ref, or with the daemon's address.
func Classify(err error, ep Endpoint, ref string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		if ref != "" {
			return fmt.Errorf("%s: %w", ref, err)
		}
		return fmt.Errorf("docker daemon at %s: %w", ep.Host, err)
	}
	msg := strings.ToLower(err.Error())
	switch {
	case errors.Is(err, fs.ErrPermission) || strings.Contains(msg, "permission denied while trying to connect"):
		return &PermissionError{Host: ep.Host, Socket: ep.Socket(), Err: err}
	case strings.Contains(msg, "is too old") || strings.Contains(msg, "is not supported by this client") ||
		strings.Contains(msg, "minimum supported api version"):
		return &APIVersionError{Host: ep.Host, Minimum: client.MinAPIVersion, Err: err}
	case client.IsErrConnectionFailed(err) || errors.Is(err, fs.ErrNotExist):
		return &UnreachableError{Host: ep.Host, Err: err}
	case ref != "" && cerrdefs.IsNotFound(err):
		return &NotFoundError{Ref: ref, Err: err}
	}
	if ref != "" {
		return fmt.Errorf("%s: %w", ref, err)
	}
	return fmt.Errorf("docker daemon at %s: %w", ep.Host, err)
}

// IsPlatformUnavailable reports whether err is the daemon refusing an
// inspect or export because the image has no content for the platform
// asked for (the containerd image store's wording, and the graphdriver's).
func IsPlatformUnavailable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "does not provide the specified platform") ||
		strings.Contains(msg, "no suitable export target") || strings.Contains(msg, "no match for platform")
}
