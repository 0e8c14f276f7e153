package clairv2standin

import (
	"errors"
	"strconv"
	"strings"
)

// debVersion is a version in Debian's format, epoch:upstream-revision, which
// is how Clair v2 parses Alpine versions (VersionFormat "dpkg").
type debVersion struct {
	epoch    int
	upstream string
	revision string
}

// parseDebVersion accepts what Clair v2's dpkg version parser accepts: an
// optional numeric epoch, an upstream part that starts with a digit and
// holds letters, digits and ".+-~:_", and an optional revision after the
// last '-' holding letters, digits and ".+~_".
func parseDebVersion(s string) (debVersion, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return debVersion{}, errors.New("empty version")
	}
	var v debVersion
	rest := s
	if i := strings.IndexByte(rest, ':'); i >= 0 {
		e, err := strconv.Atoi(rest[:i])
		if err != nil || e < 0 {
			return debVersion{}, errors.New("epoch is not a non-negative number")
		}
		v.epoch = e
		rest = rest[i+1:]
	}
	v.upstream = rest
	if i := strings.LastIndexByte(rest, '-'); i >= 0 {
		v.upstream, v.revision = rest[:i], rest[i+1:]
	}
	if v.upstream == "" || !isDigit(v.upstream[0]) {
		return debVersion{}, errors.New("version does not start with a digit")
	}
	if !allOf(v.upstream, ".+-~:_") {
		return debVersion{}, errors.New("invalid character in version")
	}
	if !allOf(v.revision, ".+~_") {
		return debVersion{}, errors.New("invalid character in revision")
	}
	return v, nil
}

func allOf(s, symbols string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isDigit(c) && !isLetter(c) && strings.IndexByte(symbols, c) < 0 {
			return false
		}
	}
	return true
}

// compareDeb returns -1, 0 or 1 as a sorts before, equal to or after b.
func compareDeb(a, b debVersion) int {
	switch {
	case a.epoch < b.epoch:
		return -1
	case a.epoch > b.epoch:
		return 1
	}
	if c := verrevcmp(a.upstream, b.upstream); c != 0 {
		return c
	}
	return verrevcmp(a.revision, b.revision)
}

// verrevcmp is dpkg's comparison of one version part: alternating runs of
// non-digits (compared by order) and digits (compared numerically).
func verrevcmp(a, b string) int {
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		for (i < len(a) && !isDigit(a[i])) || (j < len(b) && !isDigit(b[j])) {
			ac, bc := order(a, i), order(b, j)
			if ac != bc {
				return sign(ac - bc)
			}
			i++
			j++
		}
		for i < len(a) && a[i] == '0' {
			i++
		}
		for j < len(b) && b[j] == '0' {
			j++
		}
		firstDiff := 0
		for i < len(a) && isDigit(a[i]) && j < len(b) && isDigit(b[j]) {
			if firstDiff == 0 {
				firstDiff = int(a[i]) - int(b[j])
			}
			i++
			j++
		}
		if i < len(a) && isDigit(a[i]) {
			return 1
		}
		if j < len(b) && isDigit(b[j]) {
			return -1
		}
		if firstDiff != 0 {
			return sign(firstDiff)
		}
	}
	return 0
}

// order ranks the byte at s[i] (0 past the end): digits and the end rank 0,
// '~' sorts before everything, letters before other symbols.
func order(s string, i int) int {
	if i >= len(s) {
		return 0
	}
	c := s[i]
	switch {
	case isDigit(c):
		return 0
	case isLetter(c):
		return int(c)
	case c == '~':
		return -1
	default:
		return int(c) + 256
	}
}

func isDigit(c byte) bool  { return '0' <= c && c <= '9' }
func isLetter(c byte) bool { return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') }

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}
