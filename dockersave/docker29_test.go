package dockersave

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/engine"
	"github.com/layerbridge/layerbridge/internal/fakeengine"
	"github.com/layerbridge/layerbridge/platforms"
)

// Recorded from Docker Engine 29.8.1 (moby/v2 v2.0.0-beta.24, containerd
// image store) for an image built by BuildKit for two platforms
// (`docker buildx build --platform linux/amd64,linux/arm64 --load -t mp:1`,
// FROM scratch): its ID is the digest of an OCI index holding both platform
// manifests and their attestation manifests. See testdata/docker29/README.md.
const (
	mp29ID       = "sha256:cb308b5b841252f9891d39b7a6fab6e4aebc73b327590bb5e837b3b208892a79"
	mp29Amd64    = "sha256:07945250b79bf2e10735e9c2ac40384fc4813f05334181635d398343d5c11406"
	mp29Arm64    = "sha256:b43ed53481025e2ee5958670548752f9a9622ce7aeb3ca8d9b3f6c8ac36c3ca2"
	docker29Dir  = "testdata/docker29"
	docker29Tag  = "mp:1"
	docker29API  = "1.56"
	notProvided  = "image with reference mp:1 was found but does not provide the specified platform"
	noSuchTarget = "no suitable export target found: "
)

// docker29 replays the recordings as a daemon on a unix socket, so the real
// moby client builds the requests. It answers the requests Docker 29 answers
// and refuses what Docker 29 refuses (manifests and platform together).
type docker29 struct {
	mu       sync.Mutex
	requests []string // method, path and query of each request
	saves    []string // names and platform of each export
}

func (d *docker29) handler(t *testing.T) http.Handler {
	file := func(w http.ResponseWriter, name, contentType string) {
		b, err := os.ReadFile(filepath.Join(docker29Dir, name))
		if err != nil {
			t.Error(err)
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", contentType)
		w.Write(b)
	}
	fail := func(w http.ResponseWriter, status int, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]string{"message": msg})
	}
	arch := func(r *http.Request) string {
		p := r.URL.Query().Get("platform")
		if p == "" {
			return ""
		}
		var plat ocispec.Platform
		if err := json.Unmarshal([]byte(p), &plat); err != nil {
			return "bad"
		}
		return plat.Architecture
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		d.requests = append(d.requests, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery)
		d.mu.Unlock()
		w.Header().Set("Api-Version", docker29API)
		if r.URL.Path == "/_ping" {
			w.Header().Set("Ostype", "linux")
			w.Write([]byte("OK"))
			return
		}
		rest, ok := strings.CutPrefix(r.URL.Path, "/v"+docker29API+"/images/")
		if !ok {
			fail(w, http.StatusNotFound, "page not found")
			return
		}
		a := arch(r)
		switch {
		case rest == "get":
			d.mu.Lock()
			d.saves = append(d.saves, r.URL.Query().Get("names")+" "+a)
			d.mu.Unlock()
			if r.URL.Query().Get("names") != mp29ID {
				fail(w, http.StatusNotFound, "No such image: "+r.URL.Query().Get("names"))
				return
			}
			switch a {
			case "amd64", "arm64":
				file(w, "save-"+a+".tar", "application/x-tar")
			default:
				fail(w, http.StatusNotFound, noSuchTarget+notProvided+" (linux/"+a+")")
			}
		case strings.HasSuffix(rest, "/json"):
			name := strings.TrimSuffix(rest, "/json")
			if name != docker29Tag && name != mp29ID {
				fail(w, http.StatusNotFound, "No such image: "+name)
				return
			}
			if r.URL.Query().Get("manifests") == "1" && a != "" {
				fail(w, http.StatusBadRequest, "conflicting options: manifests and platform options cannot both be set")
				return
			}
			switch a {
			case "":
				file(w, "inspect.json", "application/json")
			case "amd64", "arm64":
				file(w, "inspect-"+a+".json", "application/json")
			default:
				fail(w, http.StatusNotFound, notProvided+" (linux/"+a+")")
			}
		default:
			fail(w, http.StatusNotFound, "page not found")
		}
	})
}

func startDocker29(t *testing.T) (*docker29, *Loader) {
	t.Helper()
	d := &docker29{}
	ep := engine.Endpoint{Host: fakeengine.Start(t, d.handler(t)).Host, Source: "--docker-host"}
	c, err := engine.NewClient(ep)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	amd64 := ocispec.Platform{OS: "linux", Architecture: "amd64"}
	return d, NewLoader(openTestStore(t), WithEngine(c, ep), WithHostPlatform(amd64))
}

// TestDocker29BuildKitImage: the image ID of a BuildKit image on the
// containerd store is its index's digest, which an export of one platform
// does not contain: the export is matched to the platform manifest the
// daemon lists under that ID instead.
func TestDocker29BuildKitImage(t *testing.T) {
	for _, tc := range []struct {
		name     string
		platform *ocispec.Platform
		manifest string
		save     string
	}{
		{"default platform", nil, mp29Amd64, mp29ID + " amd64"},
		{"linux/amd64", &ocispec.Platform{OS: "linux", Architecture: "amd64"}, mp29Amd64, mp29ID + " amd64"},
		{"linux/arm64", &ocispec.Platform{OS: "linux", Architecture: "arm64"}, mp29Arm64, mp29ID + " arm64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, l := startDocker29(t)
			img, err := l.loadReleased(t.Context(), docker29Tag, tc.platform)
			if err != nil {
				t.Fatal(err)
			}
			if img.ID.String() != mp29ID {
				t.Errorf("image id %s, want the index digest %s (as docker images shows it)", img.ID, mp29ID)
			}
			if img.ManifestDigest.String() != tc.manifest {
				t.Errorf("manifest %s, want the platform's manifest %s", img.ManifestDigest, tc.manifest)
			}
			want := "linux/amd64"
			if tc.platform != nil {
				want = platforms.Format(*tc.platform)
			}
			if got := platforms.Format(img.Platform); got != want {
				t.Errorf("platform %s, want %s", got, want)
			}
			if len(d.saves) != 1 || d.saves[0] != tc.save {
				t.Errorf("exports %q, want one: %q (the image id, with the platform)", d.saves, tc.save)
			}
			// Stored under the index's ID and platform: not exported again.
			again, err := l.loadReleased(t.Context(), docker29Tag, tc.platform)
			if err != nil {
				t.Fatal(err)
			}
			if !again.CacheHit || again.ManifestDigest != img.ManifestDigest || len(d.saves) != 1 {
				t.Errorf("second load: cache hit %v, manifest %s, exports %d; want a hit of the same manifest and no export", again.CacheHit, again.ManifestDigest, len(d.saves))
			}
		})
	}
}

// TestDocker29PlatformAbsent: a platform the image does not have names every
// platform it has, and nothing is exported.
func TestDocker29PlatformAbsent(t *testing.T) {
	d, l := startDocker29(t)
	_, err := l.loadReleased(t.Context(), docker29Tag, &ocispec.Platform{OS: "linux", Architecture: "s390x"})
	var pe *PlatformError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T), want a *PlatformError", err, err)
	}
	if got := formatPlatforms(pe.Available); got != "linux/amd64, linux/arm64" {
		t.Errorf("available platforms %q, want both of the image's (attestations are not platforms)", got)
	}
	if len(d.saves) != 0 {
		t.Errorf("exports %q, want none", d.saves)
	}
}

// TestDocker29ExportMismatch: an export whose manifest is not the one the
// daemon listed for the image and platform is refused.
func TestDocker29ExportMismatch(t *testing.T) {
	listed := "sha256:" + strings.Repeat("0", 64)
	dir := t.TempDir()
	for _, f := range []string{"inspect.json", "inspect-amd64.json", "inspect-arm64.json", "save-amd64.tar", "save-arm64.tar"} {
		b, err := os.ReadFile(filepath.Join(docker29Dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "inspect.json" {
			// The daemon lists another manifest for linux/amd64 than the
			// one it then exports.
			b = []byte(strings.ReplaceAll(string(b), mp29Amd64, listed))
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(t.TempDir())
	if err := os.MkdirAll("testdata", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dir, docker29Dir); err != nil {
		t.Fatal(err)
	}
	_, l := startDocker29(t)
	_, err := l.loadReleased(t.Context(), docker29Tag, nil)
	if !errors.Is(err, ErrExportMismatch) {
		t.Fatalf("error %v, want ErrExportMismatch", err)
	}
	if !strings.Contains(err.Error(), listed) || !strings.Contains(err.Error(), mp29Amd64) {
		t.Errorf("error %q does not name the listed and the exported manifest", err)
	}
}

// TestDocker29Watch: on the containerd image store the digest Clair indexes
// is the platform manifest's, known from inspect; the layers (compressed,
// as stored) are announced once the export's manifest has been read.
func TestDocker29Watch(t *testing.T) {
	_, l := startDocker29(t)
	w := newRecordingWatcher()
	img, release, err := l.Load(t.Context(), docker29Tag, nil, WithWatcher(w))
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if w.identity == nil || w.identity.IndexDigest.String() != mp29Amd64 || img.IndexDigest.String() != mp29Amd64 {
		t.Fatalf("identity %+v, image index digest %s; want the platform manifest %s", w.identity, img.IndexDigest, mp29Amd64)
	}
	if img.Synthesized {
		t.Error("the daemon's own manifest counted as synthesized")
	}
	select {
	case <-w.layersSeen:
	default:
		t.Fatal("the layers were never announced")
	}
	if len(w.layers) != len(img.Manifest.Layers) {
		t.Fatalf("announced %d layers, the image has %d", len(w.layers), len(img.Manifest.Layers))
	}
	for i, d := range w.layers {
		if d.Digest != img.Manifest.Layers[i].Digest {
			t.Errorf("layer %d announced as %s, stored as %s", i, d.Digest, img.Manifest.Layers[i].Digest)
		}
		b, err := w.opener.Blob(t.Context(), d.Digest)
		if err != nil {
			t.Fatalf("layer %s: %v", d.Digest, err)
		}
		if got := readBlob(t, b); digest.FromBytes(got) != d.Digest {
			t.Errorf("layer %s served other bytes", d.Digest)
		}
	}
}
