package dockersave_test

import (
	"context"
	"fmt"
	"os"

	"github.com/layerbridge/layerbridge/dockersave"
	"github.com/layerbridge/layerbridge/platforms"
	"github.com/layerbridge/layerbridge/store"
)

// What `layerbridge inspect` prints, for an archive read in place. (An
// error is printed and ends the example, so that it fails with the error
// in its output and its deferred cleanup runs.)
func ExampleLoader_Load() {
	dir, err := os.MkdirTemp("", "layerbridge-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	cache, err := store.Open(dir)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cache.Close()
	img, release, err := dockersave.NewLoader(cache).Load(context.Background(), "oci-archive:../testdata/fixtures/dive-test-oci-gzip-image.tar", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	release() // only the description is printed: no blob is read
	fmt.Println("ref:", img.Ref)
	fmt.Println("id:", img.ID)
	fmt.Println("platform:", platforms.Format(img.Platform))
	fmt.Println("manifest:", img.ManifestDigest)
	for _, l := range img.Layers() {
		fmt.Println("layer:", l.Digest, l.Size, l.MediaType, l.DiffID)
	}
	// Output:
	// ref: oci-archive:../testdata/fixtures/dive-test-oci-gzip-image.tar
	// id: sha256:3eaccc100f866490f00ae82727b459a737af031dcf44c791d8aa714a70f24959
	// platform: linux/arm64
	// manifest: sha256:7d255e9e3d216a9a92a5c1ce0563a5ddd92f28a34a9df025d3cf8dfa5ea08366
	// layer: sha256:9aef42427209c9a180c61bb36b0b09681cbe3d3ff6409408bde0eb17ec1ba0cc 4132 application/vnd.oci.image.layer.v1.tar+gzip sha256:356d5e7f4012d87cb1078ac1f480e90528eec4940ce45c50380321436db38758
}
