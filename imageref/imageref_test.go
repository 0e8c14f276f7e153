package imageref_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/layerbridge/layerbridge/imageref"
)

var (
	hex64    = strings.Repeat("ab", 32)
	digest64 = "sha256:" + hex64
)

func TestParse(t *testing.T) {
	tests := []struct {
		in    string
		kind  imageref.Kind
		name  string // Ref.Name
		named string // Ref.Named.String(), "" for none
		id    string
	}{
		{in: "alpine", kind: imageref.Daemon, name: "alpine", named: "docker.io/library/alpine"},
		{in: "alpine:3.11", kind: imageref.Daemon, name: "alpine:3.11", named: "docker.io/library/alpine:3.11"},
		{in: "docker.io/library/alpine:3.11", kind: imageref.Daemon, name: "docker.io/library/alpine:3.11", named: "docker.io/library/alpine:3.11"},
		{in: "index.docker.io/library/alpine:3.11", kind: imageref.Daemon, name: "index.docker.io/library/alpine:3.11", named: "docker.io/library/alpine:3.11"},
		{in: "docker-daemon:alpine:3.11", kind: imageref.Daemon, name: "alpine:3.11", named: "docker.io/library/alpine:3.11"},
		{in: "docker-daemon:oci:latest", kind: imageref.Daemon, name: "oci:latest", named: "docker.io/library/oci:latest"},
		{in: "user/app", kind: imageref.Daemon, name: "user/app", named: "docker.io/user/app"},
		{in: "localhost:5000/app@" + digest64, kind: imageref.Daemon, name: "localhost:5000/app@" + digest64, named: "localhost:5000/app@" + digest64},
		{in: "ghcr.io/org/app:v1@" + digest64, kind: imageref.Daemon, name: "ghcr.io/org/app:v1@" + digest64, named: "ghcr.io/org/app:v1@" + digest64},
		{in: "Registry.Example:5000/app:1", kind: imageref.Daemon, name: "Registry.Example:5000/app:1", named: "Registry.Example:5000/app:1"},
		{in: "[::1]:5000/app:1", kind: imageref.Daemon, name: "[::1]:5000/app:1", named: "[::1]:5000/app:1"},
		{in: digest64, kind: imageref.Daemon, name: digest64, id: digest64},
		{in: hex64, kind: imageref.Daemon, name: hex64, id: digest64},
		{in: "sha256:a187dde4", kind: imageref.Daemon, name: "sha256:a187dde4", id: "sha256:a187dde4"},
		{in: "a187dde48cd2", kind: imageref.Daemon, name: "a187dde48cd2", named: "docker.io/library/a187dde48cd2"},
		{in: "docker-archive:/tmp/a.tar", kind: imageref.DockerArchive, name: "/tmp/a.tar"},
		{in: "docker-archive:rel/a:b.tar", kind: imageref.DockerArchive, name: "rel/a:b.tar"},
		{in: "docker-archive:../up/a b.tar", kind: imageref.DockerArchive, name: "../up/a b.tar"},
		{in: "oci-archive:x.tar", kind: imageref.OCIArchive, name: "x.tar"},
		{in: "oci:./layout", kind: imageref.OCILayout, name: "./layout"},
		{in: "containerd:alpine:3.11", kind: imageref.Containerd, name: "alpine:3.11", named: "docker.io/library/alpine:3.11"},
		{in: "containerd:docker.io/library/alpine", kind: imageref.Containerd, name: "docker.io/library/alpine", named: "docker.io/library/alpine"},
		{in: "containerd:registry.k8s.io/pause:3.10@" + digest64, kind: imageref.Containerd, name: "registry.k8s.io/pause:3.10@" + digest64, named: "registry.k8s.io/pause:3.10@" + digest64},
		{in: "containerd:" + digest64, kind: imageref.Containerd, name: digest64, id: digest64},
		{in: "containerd:" + hex64, kind: imageref.Containerd, name: hex64, id: digest64},
		{in: "containerd:a187dde48cd2", kind: imageref.Containerd, name: "a187dde48cd2", named: "docker.io/library/a187dde48cd2"},
		// A daemon image whose name reads as the containerd transport.
		{in: "docker-daemon:containerd:1.7", kind: imageref.Daemon, name: "containerd:1.7", named: "docker.io/library/containerd:1.7"},
	}
	for _, tt := range tests {
		got, err := imageref.Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		named := ""
		if got.Named != nil {
			named = got.Named.String()
		}
		if got.Kind != tt.kind || got.Name != tt.name || named != tt.named || got.ID != tt.id {
			t.Errorf("Parse(%q) = {%s %q %q %q}, want {%s %q %q %q}", tt.in, got.Kind, got.Name, named, got.ID, tt.kind, tt.name, tt.named, tt.id)
		}
		if again, err := imageref.Parse(got.String()); err != nil || again != got {
			t.Errorf("String() of %q is %q, which parses as %+v, %v", tt.in, got.String(), again, err)
		}
	}
}

// TestParseRefuses: every refused reference is an *Error naming the rule it
// breaks. The hostile ones would move a request to another Engine API
// endpoint once joined into the URL path.
func TestParseRefuses(t *testing.T) {
	tests := []struct{ in, rule string }{
		{"", "it is empty"},
		{"  ", "it is empty"},
		{"docker-daemon:", "nothing follows docker-daemon:"},
		{"docker-archive:", "the path after docker-archive: is empty"},
		{"oci:", "the path after oci: is empty"},
		{"..", `path component ".."`},
		{".", `path component "."`},
		{"../images", `path component ".."`},
		{"docker-daemon:../images", `path component ".."`},
		{"../distribution/127.0.0.1:5000/x", `path component ".."`},
		{"alpine/../../containers/json", `path component ".."`},
		{"/", "empty path component"},
		{"/alpine", "empty path component"},
		{"alpine/", "empty path component"},
		{"a//b", "empty path component"},
		{"%2e%2e", `character '%' at byte 0`},
		{"alpine?x=1", `character '?' at byte 6`},
		{"alpine#x", `character '#' at byte 6`},
		{`alpine\x`, `character '\\' at byte 6`},
		{"app name", `character ' ' at byte 3`},
		{"alpine\x00", `character '\x00' at byte 6`},
		{"alpine\n", `character '\n' at byte 6`},
		{"alpïne", `character 'ï' at byte 3`},
		{strings.Repeat("a", 5000), "it is 5000 bytes long; a daemon reference is at most 1024"},
		{strings.Repeat("a", 300), "the repository path is longer than 255 characters"},
		{"Alpine:3.11", `the name "Alpine" has capitals`},
		{"alpine:", `the tag "" is not valid`},
		{"alpine:-x", `the tag "-x" is not valid`},
		{"alpine:" + strings.Repeat("x", 129), "is not valid: a tag is 1 to 128"},
		{"alpine@sha256:abc", `the digest "sha256:abc" after "@" is not ALGORITHM:HEX`},
		{"alpine@", `the digest "" after "@"`},
		{"a..b", `"a..b" is not a valid name`},
		{"-alpine", `"-alpine" is not a valid name`},
		{"containerd:", "nothing follows containerd:"},
		{"containerd:../x", `path component ".."`},
		{"containerd:alpine?x", `character '?' at byte 6`},
		{"containerd:sha256:a187dde4", "a containerd image ID is sha256: and all 64"},
		{"containerd:Alpine", `the name "Alpine" has capitals`},
	}
	for _, tt := range tests {
		got, err := imageref.Parse(tt.in)
		var pe *imageref.Error
		if !errors.As(err, &pe) {
			t.Errorf("Parse(%q) = %+v, %v; want an *imageref.Error", tt.in, got, err)
			continue
		}
		if pe.Ref != tt.in || !strings.Contains(pe.Rule, tt.rule) {
			t.Errorf("Parse(%q): %v; want the rule %q", tt.in, err, tt.rule)
		}
		if len(err.Error()) > 600 {
			t.Errorf("Parse(%q): a %d-byte message", tt.in, len(err.Error()))
		}
	}
}

// TestImageName: the name a report carries, however the reference was
// spelled, and for references that are no name, the image's one tag.
func TestImageName(t *testing.T) {
	tests := []struct {
		in       string
		repoTags []string
		want     string
	}{
		{"alpine", nil, "docker.io/library/alpine:latest"},
		{"alpine:3.10", []string{"alpine:3.10", "alpine:latest"}, "docker.io/library/alpine:3.10"},
		{"docker.io/library/alpine:3.10", nil, "docker.io/library/alpine:3.10"},
		{"docker-daemon:alpine:3.10", nil, "docker.io/library/alpine:3.10"},
		{"alpine@" + digest64, nil, "docker.io/library/alpine@" + digest64},
		{"localhost:5000/app:1", nil, "localhost:5000/app:1"},
		// No name in the reference: the image's one tag.
		{digest64, []string{"alpine:3.10"}, "docker.io/library/alpine:3.10"},
		{digest64, []string{"alpine:3.10", "docker.io/library/alpine:3.10"}, "docker.io/library/alpine:3.10"},
		{digest64, []string{"alpine:3.10", "alpine:latest"}, ""},
		{digest64, nil, ""},
		{digest64, []string{"<none>:<none>"}, ""},
		{"sha256:a187dde4", []string{"alpine:3.10"}, "docker.io/library/alpine:3.10"},
		{"docker-archive:a.tar", []string{"alpine:3.10"}, "docker.io/library/alpine:3.10"},
		{"docker-archive:a.tar", nil, ""},
		{"oci:layout", nil, ""},
		// Hex digits: a name when the daemon has that tag, else an ID prefix.
		{"a187dde48cd2", []string{"a187dde48cd2:latest"}, "docker.io/library/a187dde48cd2:latest"},
		{"a187dde48cd2", []string{"alpine:3.10"}, "docker.io/library/alpine:3.10"},
		{"a187dde48cd2", nil, ""},
		{"cafe:1", nil, "docker.io/library/cafe:1"},
		{"containerd:alpine:3.10", []string{"docker.io/library/alpine:latest"}, "docker.io/library/alpine:3.10"},
		{"containerd:a187dde48cd2", nil, "docker.io/library/a187dde48cd2:latest"},
		{"containerd:" + digest64, []string{"docker.io/library/alpine:3.10"}, "docker.io/library/alpine:3.10"},
	}
	for _, tt := range tests {
		r, err := imageref.Parse(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.ImageName(tt.repoTags); got != tt.want {
			t.Errorf("Parse(%q).ImageName(%q) = %q, want %q", tt.in, tt.repoTags, got, tt.want)
		}
	}
}

func TestErrorMessageIsShort(t *testing.T) {
	_, err := imageref.Parse(strings.Repeat("é", 3000))
	msg := err.Error()
	if !strings.HasPrefix(msg, `invalid image reference "`) || !strings.Contains(msg, "… (6000 bytes): it is 6000 bytes long") || len(msg) > 250 {
		t.Errorf("message %q", msg)
	}
}

// TestNormalized: every spelling of one daemon image is one string.
func TestNormalized(t *testing.T) {
	same := [][]string{
		{"alpine", "alpine:latest", "docker-daemon:alpine", "docker.io/library/alpine", "docker.io/library/alpine:latest", "index.docker.io/library/alpine:latest", "library/alpine:latest"},
		{"alpine:3.10", "docker-daemon:alpine:3.10", "docker.io/library/alpine:3.10"},
		{digest64, hex64, "docker-daemon:" + digest64},
		{"user/app:1", "docker.io/user/app:1"},
		// The same names in containerd are other images.
		{"containerd:alpine", "containerd:docker.io/library/alpine:latest"},
		{"containerd:" + digest64, "containerd:" + hex64},
	}
	seen := map[string]int{}
	for i, group := range same {
		for _, s := range group {
			r, err := imageref.Parse(s)
			if err != nil {
				t.Fatal(err)
			}
			n := r.Normalized()
			if j, ok := seen[n]; ok && j != i {
				t.Errorf("%q normalizes to %q, as group %d does", s, n, j)
			}
			seen[n] = i
		}
	}
	if len(seen) != len(same) {
		t.Errorf("%d normalized spellings for %d images: %v", len(seen), len(same), seen)
	}
}
