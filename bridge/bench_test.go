package bridge

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/internal/testwait"
)

// randomBlob writes size pseudo-random (incompressible) bytes to dir under
// their digest, without holding them in memory.
func randomBlob(b *testing.B, dir string, size int64, seed uint64) ocispec.Descriptor {
	b.Helper()
	tmp, err := os.CreateTemp(dir, "blob-")
	if err != nil {
		b.Fatal(err)
	}
	h := sha256.New()
	var seedBytes [32]byte
	seedBytes[0] = byte(seed)
	rng := rand.NewChaCha8(seedBytes)
	if _, err := io.CopyN(io.MultiWriter(tmp, h), rng, size); err != nil {
		b.Fatal(err)
	}
	if err := tmp.Close(); err != nil {
		b.Fatal(err)
	}
	d := digest.NewDigest(digest.SHA256, h)
	if err := os.Rename(tmp.Name(), filepath.Join(dir, d.Encoded())); err != nil {
		b.Fatal(err)
	}
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d, Size: size}
}

// get downloads u into w through buf and returns the body length.
func get(ctx context.Context, hc *http.Client, u string, w io.Writer, buf []byte) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return io.CopyBuffer(w, resp.Body, buf)
}

// discardWriter hides io.Discard's ReadFrom so that the copy uses our
// 1 MiB buffer, as a client that hashes would.
type discardWriter struct{}

func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkServeBlob measures the layer route over real loopback TCP (so
// ServeContent can use sendfile): one client reading a large blob, and many
// clients at once each reading a mid-sized one. Bodies are re-hashed once
// before timing; the timed loop checks lengths. Throughput is body bytes.
func BenchmarkServeBlob(b *testing.B) {
	dir := b.TempDir()
	large := randomBlob(b, dir, 256<<20, 1)
	var mid []ocispec.Descriptor
	for i := range 8 {
		mid = append(mid, randomBlob(b, dir, 16<<20, uint64(10+i)))
	}
	srv := New()
	ts := httptest.NewServer(srv)
	defer ts.Close()
	base, _ := url.Parse(ts.URL)
	grant, err := srv.Register(base, "bench", dirBlobs(dir), append([]ocispec.Descriptor{large}, mid...))
	if err != nil {
		b.Fatal(err)
	}
	urlOf := func(d ocispec.Descriptor) string {
		u, err := grant.URL(d.Digest)
		if err != nil {
			b.Fatal(err)
		}
		return u
	}
	for _, d := range append([]ocispec.Descriptor{large}, mid...) {
		h := sha256.New()
		if _, err := get(b.Context(), ts.Client(), urlOf(d), h, make([]byte, 1<<20)); err != nil {
			b.Fatal(err)
		}
		if got := digest.NewDigest(digest.SHA256, h); got != d.Digest {
			b.Fatalf("served %s for %s", got, d.Digest)
		}
	}

	b.Run("1-client-256MiB", func(b *testing.B) {
		u := urlOf(large)
		buf := make([]byte, 1<<20)
		b.SetBytes(large.Size)
		for b.Loop() {
			n, err := get(b.Context(), ts.Client(), u, discardWriter{}, buf)
			if err != nil || n != large.Size {
				b.Fatalf("got %d bytes, err %v", n, err)
			}
		}
	})
	for _, clients := range []int{8, 64} {
		b.Run(fmt.Sprintf("%d-clients-16MiB", clients), func(b *testing.B) {
			tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
			defer tr.CloseIdleConnections()
			hc := &http.Client{Transport: tr}
			urls := make([]string, len(mid))
			for i, d := range mid {
				urls[i] = urlOf(d)
			}
			b.SetBytes(int64(clients) * mid[0].Size)
			for b.Loop() {
				var wg sync.WaitGroup
				errs := make(chan error, clients)
				for i := range clients {
					wg.Go(func() {
						d := mid[i%len(mid)]
						n, err := get(b.Context(), hc, urls[i%len(mid)], discardWriter{}, make([]byte, 1<<20))
						if err == nil && n != d.Size {
							err = fmt.Errorf("%s: %d bytes of %d", d.Digest, n, d.Size)
						}
						if err != nil {
							errs <- err
						}
					})
				}
				testwait.Wait(b, &wg, "%d downloads", clients)
				close(errs)
				for err := range errs {
					b.Fatal(err)
				}
			}
		})
	}
}
