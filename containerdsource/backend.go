package containerdsource

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/errdefs"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// backend is what the source asks of containerd: the client's image, content,
// lease, namespace and version services, narrowed to the calls it makes (tests
// use a fake). The namespace travels in ctx (namespaces.WithNamespace).
type backend interface {
	GetImage(ctx context.Context, name string) (images.Image, error)
	ListImages(ctx context.Context, filters ...string) ([]images.Image, error)
	Info(ctx context.Context, d digest.Digest) (content.Info, error)
	ReaderAt(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error)
	CreateLease(ctx context.Context, opts ...leases.Opt) (leases.Lease, error)
	AddResource(ctx context.Context, l leases.Lease, r leases.Resource) error
	DeleteLease(ctx context.Context, l leases.Lease) error
	Namespaces(ctx context.Context) ([]string, error)
	Version(ctx context.Context) (client.Version, error)
	Close() error
}

// clientBackend is the containerd Go client.
type clientBackend struct{ c *client.Client }

// dialTimeout bounds connecting to the socket (the client retries a socket
// that is not there yet until then: dial checks first).
const dialTimeout = 5 * time.Second

// dial returns a client of the containerd at address. It connects lazily:
// the first call reports a daemon that does not answer. A socket that does
// not exist is an *UnreachableError at once.
func dial(address string) (backend, error) {
	if _, err := os.Stat(socketPath(address)); err != nil {
		return nil, classify(address, err)
	}
	c, err := client.New(address, client.WithTimeout(dialTimeout))
	if err != nil {
		return nil, classify(address, err)
	}
	return clientBackend{c}, nil
}

// socketPath is the file of a unix socket address ("unix://" optional).
func socketPath(address string) string { return strings.TrimPrefix(address, "unix://") }

func (b clientBackend) GetImage(ctx context.Context, name string) (images.Image, error) {
	return b.c.ImageService().Get(ctx, name)
}

func (b clientBackend) ListImages(ctx context.Context, filters ...string) ([]images.Image, error) {
	return b.c.ImageService().List(ctx, filters...)
}

func (b clientBackend) Info(ctx context.Context, d digest.Digest) (content.Info, error) {
	return b.c.ContentStore().Info(ctx, d)
}

func (b clientBackend) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	return b.c.ContentStore().ReaderAt(ctx, desc)
}

func (b clientBackend) CreateLease(ctx context.Context, opts ...leases.Opt) (leases.Lease, error) {
	return b.c.LeasesService().Create(ctx, opts...)
}

func (b clientBackend) AddResource(ctx context.Context, l leases.Lease, r leases.Resource) error {
	return b.c.LeasesService().AddResource(ctx, l, r)
}

func (b clientBackend) DeleteLease(ctx context.Context, l leases.Lease) error {
	return b.c.LeasesService().Delete(ctx, l)
}

func (b clientBackend) Namespaces(ctx context.Context) ([]string, error) {
	return b.c.NamespaceService().List(ctx)
}

func (b clientBackend) Version(ctx context.Context) (client.Version, error) { return b.c.Version(ctx) }

func (b clientBackend) Close() error { return b.c.Close() }

// classify turns a failure to reach containerd into an *UnreachableError or
// a *PermissionError; other errors (not found, invalid argument) pass
// unchanged.
func classify(address string, err error) error {
	if err == nil {
		return nil
	}
	var ue *UnreachableError
	var pe *PermissionError
	if errors.As(err, &ue) || errors.As(err, &pe) {
		return err
	}
	path := socketPath(address)
	msg := err.Error()
	switch {
	case errors.Is(err, fs.ErrNotExist) && !errdefs.IsNotFound(err):
		return &UnreachableError{Address: address, Missing: true, Err: err}
	case errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EACCES) || strings.Contains(msg, "permission denied"):
		return permissionError(address, path, err)
	case errdefs.IsUnavailable(err) || strings.Contains(msg, "connection refused") || strings.Contains(msg, "connection error"):
		if _, serr := os.Stat(path); errors.Is(serr, fs.ErrNotExist) {
			return &UnreachableError{Address: address, Missing: true, Err: err}
		}
		return &UnreachableError{Address: address, Err: err}
	}
	return err
}

// permissionError describes the socket at path for a PermissionError.
func permissionError(address, path string, err error) *PermissionError {
	pe := &PermissionError{Address: address, UID: os.Geteuid(), Err: err}
	fi, serr := os.Stat(path)
	if serr != nil {
		return pe
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		pe.Owner, pe.Group = userName(st.Uid), groupName(st.Gid)
		pe.Mode = uint32(fi.Mode().Perm())
	}
	return pe
}

func userName(uid uint32) string {
	if u, err := user.LookupId(strconv.Itoa(int(uid))); err == nil {
		return u.Username
	}
	return strconv.Itoa(int(uid))
}

func groupName(gid uint32) string {
	if g, err := user.LookupGroupId(strconv.Itoa(int(gid))); err == nil {
		return fmt.Sprintf("%s(%d)", g.Name, gid)
	}
	return strconv.Itoa(int(gid))
}
