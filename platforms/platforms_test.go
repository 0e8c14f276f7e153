package platforms

import (
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestParse(t *testing.T) {
	cases := []struct {
		in   string
		want ocispec.Platform
		err  bool
	}{
		{in: "linux/amd64", want: ocispec.Platform{OS: "linux", Architecture: "amd64"}},
		{in: "linux/arm64/v8", want: ocispec.Platform{OS: "linux", Architecture: "arm64"}},
		{in: "linux/aarch64", want: ocispec.Platform{OS: "linux", Architecture: "arm64"}},
		{in: "Linux/X86_64", want: ocispec.Platform{OS: "linux", Architecture: "amd64"}},
		{in: "linux/arm", want: ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}},
		{in: "linux/arm/v6", want: ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v6"}},
		{in: "windows/amd64", want: ocispec.Platform{OS: "windows", Architecture: "amd64"}},
		{in: "linux", err: true},
		{in: "linux/", err: true},
		{in: "linux/amd64/v2/x", err: true},
		{in: "linux/am d64", err: true},
		{in: "", err: true},
	}
	for _, tc := range cases {
		got, err := Parse(tc.in)
		if (err != nil) != tc.err || (err == nil && (got.OS != tc.want.OS || got.Architecture != tc.want.Architecture || got.Variant != tc.want.Variant)) {
			t.Errorf("Parse(%q) = %+v, %v; want %+v, err %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestPlatformMatches(t *testing.T) {
	p := func(s string) ocispec.Platform {
		t.Helper()
		v, err := Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	cases := []struct {
		want, have string
		ok         bool
	}{
		{"linux/amd64", "linux/amd64", true},
		{"linux/arm64", "linux/arm64/v8", true},
		{"linux/arm", "linux/arm/v7", true},
		{"linux/arm/v6", "linux/arm/v7", false},
		{"linux/arm64", "linux/amd64", false},
		{"windows/amd64", "linux/amd64", false},
	}
	for _, tc := range cases {
		if got := Match(p(tc.want), p(tc.have)); got != tc.ok {
			t.Errorf("Match(%s, %s) = %v", tc.want, tc.have, got)
		}
	}
	if !Match(ocispec.Platform{OS: "linux", Architecture: "amd64"}, ocispec.Platform{OS: "linux", Architecture: "amd64", Variant: "v3"}) {
		t.Error("a variant-less request must match any variant")
	}
}
