package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/clairv2"
	"github.com/layerbridge/layerbridge/clairv4"
	"github.com/layerbridge/layerbridge/containerdsource"
	"github.com/layerbridge/layerbridge/dockersave"
	"github.com/layerbridge/layerbridge/engine"
	"github.com/layerbridge/layerbridge/reach"
	"github.com/layerbridge/layerbridge/scan"
)

// TestEveryUserErrorHasAHint: each typed error a user can cause (a wrong
// flag, daemon, image, archive or Clair) gets at least one hint, whatever
// it is wrapped in.
func TestEveryUserErrorHasAHint(t *testing.T) {
	archive := func(ref string, err error) error { return &dockersave.ArchiveError{Image: ref, Err: err} }
	file := "docker-archive:" + filepath.Join(t.TempDir(), "image.tar")
	errs := map[string]error{
		"usage":              &usageError{msg: "bad flag", hints: []string{"do this"}},
		"docker permission":  &engine.PermissionError{Host: "unix:///var/run/docker.sock", Socket: "/var/run/docker.sock"},
		"docker down":        &engine.UnreachableError{Host: "unix:///var/run/docker.sock"},
		"docker api":         &engine.APIVersionError{Host: "unix:///var/run/docker.sock"},
		"no such image":      &engine.NotFoundError{Ref: "nope:1"},
		"platform":           &dockersave.PlatformError{Ref: "x"},
		"ambiguous":          &dockersave.AmbiguousError{Ref: "x"},
		"daemon error":       archive("app:1", fmt.Errorf("%w: %w", dockersave.ErrTruncated, &dockersave.DaemonError{Message: "no space left on device"})),
		"export mismatch":    archive("app:1", dockersave.ErrExportMismatch),
		"export broken":      archive("app:1", dockersave.ErrTruncated),
		"export refused":     archive("app:1", dockersave.ErrUnsafeEntry),
		"clair mismatch":     &scan.APIMismatchError{URL: "http://clair", Want: "v2", Found: "v4"},
		"no clair":           &scan.NoClairError{URL: "http://clair"},
		"clair down":         &scan.ClairUnreachableError{URL: "http://clair"},
		"clair auth":         &scan.AuthError{URL: "http://clair"},
		"clair name unknown": &scan.ClairUnreachableError{URL: "http://clair:6060", Err: &net.OpError{Op: "dial", Err: &reach.NameError{Name: "clair", Err: errors.New("no such host")}}},
		"clair name unroutable": &scan.ClairUnreachableError{URL: "http://clair:6060", Err: &net.OpError{Op: "dial", Err: &reach.UnroutableError{Name: "clair", Container: "clair",
			Networks: []engine.ContainerNetwork{{Name: "n", IP: netip.MustParseAddr("10.98.0.2")}}}}},
		"layer fetch":       &scan.LayerFetchError{Advertised: "http://x"},
		"no vuln data":      fmt.Errorf("scan: %w", scan.ErrNoVulnerabilityData),
		"no shared net":     fmt.Errorf("advertise: %w", reach.ErrNoSharedNetwork),
		"no host address":   fmt.Errorf("advertise: %w", reach.ErrNoHostAddress),
		"clair4 index":      &clairv4.IndexError{Message: "boom"},
		"clair4 api":        &clairv4.APIError{StatusCode: 500},
		"clair2 api":        &clairv2.APIError{},
		"disk full":         fmt.Errorf("write: %w", syscall.ENOSPC),
		"permission":        &fs.PathError{Op: "open", Path: "/x", Err: fs.ErrPermission},
		"missing file":      fmt.Errorf("%s: %w", file, &fs.PathError{Op: "open", Path: "image.tar", Err: syscall.ENOENT}),
		"port taken":        fmt.Errorf("listen: %w", syscall.EADDRINUSE),
		"not our address":   fmt.Errorf("listen: %w", syscall.EADDRNOTAVAIL),
		"timeout":           timeoutError(0, fmt.Errorf("slow")),
		"containerd gone":   &containerdsource.UnreachableError{Address: "/run/containerd/containerd.sock", Missing: true},
		"containerd down":   &containerdsource.UnreachableError{Address: "/run/containerd/containerd.sock"},
		"containerd perm":   &containerdsource.PermissionError{Address: "/run/containerd/containerd.sock"},
		"containerd nf":     &containerdsource.NotFoundError{Ref: "containerd:x", Namespace: "k8s.io"},
		"containerd absent": &containerdsource.MissingContentError{Ref: "containerd:x", Namespace: "k8s.io"},
		"containerd lie":    archive("containerd:x", dockersave.ErrDiffIDMismatch),
	}
	for _, sentinel := range []error{
		dockersave.ErrNotArchive, dockersave.ErrNotLayout, dockersave.ErrTruncated, dockersave.ErrTrailingData,
		dockersave.ErrUnexpectedEntry, dockersave.ErrNoImage, dockersave.ErrTooLarge, dockersave.ErrUnsafeEntry,
		dockersave.ErrDuplicateEntry, dockersave.ErrLinkCycle, dockersave.ErrDanglingLink, dockersave.ErrDigestMismatch,
		dockersave.ErrSizeMismatch, dockersave.ErrDiffIDMismatch, dockersave.ErrLayerCount, dockersave.ErrMissingBlob,
		dockersave.ErrMalformedJSON,
	} {
		errs["archive: "+sentinel.Error()] = archive(file, sentinel)
	}
	for name, err := range errs {
		if hints := hintsFor(fmt.Errorf("context: %w", err)); len(hints) == 0 {
			t.Errorf("%s (%v): no hint", name, err)
		}
	}
}

// TestHintNamesTheArchiveForAFileGivenAsADaemonImage: an IMAGE the daemon
// does not have, but which is a file or directory here, gets the prefix
// that reads it.
func TestHintNamesTheArchiveForAFileGivenAsADaemonImage(t *testing.T) {
	dir := t.TempDir()
	archive := filepath.Join(dir, "image.tar")
	os.WriteFile(archive, []byte("x"), 0o644)
	for ref, want := range map[string]string{
		archive:     "is a file here: to scan the archive, name it docker-archive:" + archive,
		dir:         "is a directory here: to scan the OCI image layout in it, name it oci:" + dir,
		"myapp:1.0": "to scan an archive instead, name it: docker-archive:PATH",
	} {
		hints := strings.Join(hintsFor(&engine.NotFoundError{Ref: ref}), "\n")
		if !strings.Contains(hints, want) {
			t.Errorf("%s: hints lack %q:\n%s", ref, want, hints)
		}
	}
}

// TestContainerdHints: each containerd failure says what to do about
// that failure: the socket's default permissions, the namespace that has
// the image, the platforms containerd has content for.
func TestContainerdHints(t *testing.T) {
	arm := ocispec.Platform{OS: "linux", Architecture: "arm64"}
	amd := ocispec.Platform{OS: "linux", Architecture: "amd64"}
	for _, tc := range []struct {
		err  error
		want []string
	}{
		{&containerdsource.PermissionError{Address: "/run/containerd/containerd.sock"}, []string{"root-only by default", "[grpc]", "supplementalGroups"}},
		{&containerdsource.UnreachableError{Address: "/x.sock", Missing: true}, []string{"is /x.sock its socket", "--containerd-address"}},
		{&containerdsource.NotFoundError{Ref: "containerd:x", Namespace: "k8s.io", Elsewhere: []string{"default", "moby"}}, []string{"--containerd-namespace default"}},
		{&containerdsource.NotFoundError{Ref: "containerd:x", Namespace: "k8s.io"}, []string{"ctr -n k8s.io images list", "crictl images"}},
		{&containerdsource.MissingContentError{Ref: "containerd:x", Namespace: "k8s.io", Platform: arm, Present: []ocispec.Platform{amd}},
			[]string{"other platforms only (pulled for linux/amd64)", "--platform linux/arm64"}},
		{&containerdsource.MissingContentError{Ref: "containerd:x", Namespace: "k8s.io", Platform: amd, What: "layer 0"}, []string{"discard_unpacked_layers"}},
	} {
		hints := strings.Join(hintsFor(fmt.Errorf("context: %w", tc.err)), "\n")
		for _, w := range tc.want {
			if !strings.Contains(hints, w) {
				t.Errorf("%v: hints lack %q:\n%s", tc.err, w, hints)
			}
		}
	}
}
