//go:build !linux

package directio

import (
	"errors"
	"os"
)

// SetDirect is only implemented on Linux: elsewhere staging files are
// always written through the page cache.
func SetDirect(*os.File, bool) error { return errors.ErrUnsupported }
