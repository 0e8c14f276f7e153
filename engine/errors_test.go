package engine

import (
	"errors"
	"io/fs"
	"net"
	"net/url"
	"os"
	"syscall"
	"testing"
)

// TestClassifyPermission: tests run as root cannot meet EACCES on a socket,
// so the client's two shapes of the error are built by hand.
func TestClassifyPermission(t *testing.T) {
	ep := Endpoint{Host: "unix:///var/run/docker.sock"}
	for _, err := range []error{
		&url.Error{Op: "Get", URL: "http://docker/_ping", Err: &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.EACCES)}},
		errors.New("permission denied while trying to connect to the docker API at unix:///var/run/docker.sock"),
	} {
		got := Classify(err, ep, "")
		var pe *PermissionError
		if !errors.As(got, &pe) || pe.Socket != "/var/run/docker.sock" {
			t.Errorf("classify(%v) = %v, want *PermissionError on /var/run/docker.sock", err, got)
		}
	}
	if got := Classify(fs.ErrNotExist, ep, ""); !errors.As(got, new(*UnreachableError)) {
		t.Errorf("ENOENT classified as %v", got)
	}
	if !IsPlatformUnavailable(errors.New("no suitable export target found for platform linux/arm64")) {
		t.Error("platform export error not recognised")
	}
}
