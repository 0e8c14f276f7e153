package dockersave

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/store"
)

func TestStoreIndexRecord(t *testing.T) {
	s := openTestStore(t)
	img, err := NewLoader(s).loadReleased(t.Context(), "docker-archive:"+filepath.Join(fixturesDir, "alpine-3.11-docker-save.tar.gz"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	b, _ := os.ReadFile(filepath.Join(s.Dir(), "index.json"))
	if err := json.Unmarshal(b, &idx); err != nil || len(idx.Manifests) != 1 {
		t.Fatalf("index %s", b)
	}
	d := idx.Manifests[0]
	want := map[string]string{
		store.AnnotationImageID:    img.ID.String(),
		store.AnnotationPlatform:   "linux/amd64",
		store.AnnotationRepoTags:   "alpine:3.11",
		store.AnnotationSourceKind: "docker-archive",
		ocispec.AnnotationRefName:  "alpine:3.11",
	}
	for k, v := range want {
		if d.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, d.Annotations[k], v)
		}
	}
	if d.Digest != img.ManifestDigest || d.Platform == nil || d.Platform.Architecture != "amd64" {
		t.Errorf("descriptor %+v", d)
	}
	// Loading again replaces the record instead of adding one.
	if _, err := NewLoader(s).loadReleased(t.Context(), "docker-archive:"+filepath.Join(fixturesDir, "alpine-3.11-docker-save.tar.gz"), nil); err != nil {
		t.Fatal(err)
	}
	if images, _ := s.Images(); len(images) != 1 {
		t.Fatalf("%d records after reloading one image", len(images))
	}
}
