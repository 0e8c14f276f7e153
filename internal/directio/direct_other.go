//go:build !linux

package directio

import (
	"errors"
	"io"
	"os"
)

// SetDirect is only implemented on Linux: elsewhere staging files are
// always written through the page cache.
func SetDirect(*os.File, bool) error { return errors.ErrUnsupported }

func pread(f *os.File, b []byte, off int64) (int, error) {
	n, err := f.ReadAt(b, off)
	if err == io.EOF {
		err = nil
	}
	return n, err
}
