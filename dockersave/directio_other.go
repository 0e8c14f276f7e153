//go:build !linux

package dockersave

import (
	"errors"
	"os"
)

// setDirectIO is only implemented on Linux: elsewhere staging files are
// always written through the page cache.
func setDirectIO(*os.File, bool) error { return errors.ErrUnsupported }
