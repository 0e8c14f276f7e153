package platforms

import (
	"fmt"
	"runtime"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Parse parses "os/arch[/variant]" (as given to --platform) into a
// normalized platform: lowercase, "x86_64" becomes "amd64", "aarch64" becomes
// "arm64", arm64's default variant "v8" is dropped and a bare "arm" means
// "arm/v7". An empty variant matches any variant when selecting images.
func Parse(s string) (ocispec.Platform, error) {
	parts := strings.Split(strings.TrimSpace(s), "/")
	if len(parts) < 2 || len(parts) > 3 {
		return ocispec.Platform{}, fmt.Errorf("parse platform %q: want os/arch[/variant]", s)
	}
	for _, p := range parts {
		if p == "" || !validPlatformPart(p) {
			return ocispec.Platform{}, fmt.Errorf("parse platform %q: invalid component %q", s, p)
		}
	}
	p := ocispec.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return Normalize(p), nil
}

func validPlatformPart(s string) bool {
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return false
		}
	}
	return true
}

// Format renders a platform as "os/arch[/variant]", the form Parse
// accepts and the store uses in its index annotations.
func Format(p ocispec.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// Normalize returns p in the form Parse produces (lowercase, the usual
// names of architectures and variants), so that equal platforms compare
// equal.
func Normalize(p ocispec.Platform) ocispec.Platform {
	out := ocispec.Platform{
		OS:           strings.ToLower(p.OS),
		Architecture: strings.ToLower(p.Architecture),
		Variant:      strings.ToLower(p.Variant),
	}
	switch out.Architecture {
	case "x86_64", "x86-64":
		out.Architecture = "amd64"
	case "aarch64":
		out.Architecture = "arm64"
	case "armhf":
		out.Architecture, out.Variant = "arm", "v7"
	case "armel":
		out.Architecture, out.Variant = "arm", "v6"
	}
	switch out.Architecture {
	case "amd64":
		if out.Variant == "v1" {
			out.Variant = ""
		}
	case "arm64":
		if out.Variant == "8" || out.Variant == "v8" {
			out.Variant = ""
		}
	case "arm":
		switch out.Variant {
		case "":
			out.Variant = "v7"
		case "5", "6", "7", "8":
			out.Variant = "v" + out.Variant
		}
	}
	return out
}

// Match reports whether have satisfies want: same OS and architecture
// after normalization, and the same variant unless want has none.
func Match(want, have ocispec.Platform) bool {
	w, h := Normalize(want), Normalize(have)
	if w.OS != h.OS || w.Architecture != h.Architecture {
		return false
	}
	return w.Variant == "" || w.Variant == h.Variant
}

// Host is the platform this program runs on; images are chosen for it when
// no platform is requested.
func Host() ocispec.Platform {
	p := ocispec.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
	return Normalize(p)
}
