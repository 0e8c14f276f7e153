package clairv2standin

import (
	"cmp"
	"testing"

	debversion "github.com/knqyf263/go-deb-version"
)

// Clair v2 parses and compares Alpine versions as Debian versions
// (VersionFormat "dpkg"); the stand-in does so with go-deb-version (the
// module claircore uses for Debian; its 2019 version, which claircore
// requires, never returns for "1.01" against "1.1"). These are the
// comparisons Alpine's versions need.
func TestCompareDeb(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"1.1.1d-r3", "1.1.1d-r3", 0},
		{"1.1.1d-r3", "1.1.1g-r0", -1},
		{"1.1.1d-r3", "1.1.1d-r2", 1},
		{"1.31.1-r9", "1.31.1-r10", -1},
		{"1.1.24-r2", "1.1.24-r3", -1},
		{"2.10.4-r3", "2.10.6-r0", -1},
		{"1.2.11", "1.2.11-r0", -1},
		{"1.0~rc1", "1.0", -1},
		{"1:0.1", "2.0", 1},
		{"1.0a", "1.0", 1},
		{"1.0a", "1.0+", -1},
		{"1.01", "1.1", 0},
		{"2.12.0_rc1-r2", "2.12.0-r0", 1},
		{"20191127-r1", "20191127-r2", -1},
	}
	for _, tc := range tests {
		a, err := debversion.NewVersion(tc.a)
		if err != nil {
			t.Fatalf("parse %q: %v", tc.a, err)
		}
		b, err := debversion.NewVersion(tc.b)
		if err != nil {
			t.Fatalf("parse %q: %v", tc.b, err)
		}
		// Compare's result is only meaningful by its sign.
		if got := cmp.Compare(a.Compare(b), 0); got != tc.want {
			t.Errorf("compare(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := cmp.Compare(b.Compare(a), 0); got != -tc.want {
			t.Errorf("compare(%q, %q) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}

// What Clair v2's dpkg parser refuses, the stand-in ignores (an installed
// package or a fix with such a version matches nothing).
func TestParseDebVersionRejects(t *testing.T) {
	for _, s := range []string{"", " ", "r1", "a1.0", "x:1.0", "-1:1.0", "1.0 beta", "1.0-r1/2", "1.0-r:1"} {
		if debversion.Valid(s) {
			t.Errorf("%q accepted", s)
		}
	}
}
