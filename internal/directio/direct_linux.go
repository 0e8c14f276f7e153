package directio

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// SetDirect turns O_DIRECT on or off for f's open file description. File
// systems without direct I/O (tmpfs before Linux 6.6, some FUSE and network
// file systems) refuse to turn it on.
func SetDirect(f *os.File, on bool) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var opErr error
	err = rc.Control(func(fd uintptr) {
		flags, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
		if err != nil {
			opErr = err
			return
		}
		if on {
			flags |= unix.O_DIRECT
		} else {
			flags &^= unix.O_DIRECT
		}
		_, opErr = unix.FcntlInt(fd, unix.F_SETFL, flags)
	})
	if err == nil {
		err = opErr
	}
	if err != nil {
		return fmt.Errorf("set O_DIRECT=%v: %w", on, err)
	}
	return nil
}

// pread makes one read of f at off (a direct read that reaches the end of
// the file is short; another at the unaligned offset after it would fail).
func pread(f *os.File, b []byte, off int64) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var opErr error
	err = rc.Control(func(fd uintptr) {
		for {
			n, opErr = unix.Pread(int(fd), b, off)
			if opErr != unix.EINTR {
				return
			}
		}
	})
	if err == nil {
		err = opErr
	}
	if err != nil {
		return n, fmt.Errorf("direct read at %d: %w", off, err)
	}
	return n, nil
}
