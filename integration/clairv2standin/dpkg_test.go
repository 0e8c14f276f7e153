package clairv2standin

import "testing"

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
		a, err := parseDebVersion(tc.a)
		if err != nil {
			t.Fatalf("parse %q: %v", tc.a, err)
		}
		b, err := parseDebVersion(tc.b)
		if err != nil {
			t.Fatalf("parse %q: %v", tc.b, err)
		}
		if got := compareDeb(a, b); got != tc.want {
			t.Errorf("compare(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := compareDeb(b, a); got != -tc.want {
			t.Errorf("compare(%q, %q) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}

func TestParseDebVersionRejects(t *testing.T) {
	for _, s := range []string{"", " ", "r1", "a1.0", "x:1.0", "-1:1.0", "1.0 beta", "1.0-r1/2", "1.0-r:1"} {
		if _, err := parseDebVersion(s); err == nil {
			t.Errorf("parseDebVersion(%q) accepted", s)
		}
	}
}
