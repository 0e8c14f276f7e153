package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/layerbridge/layerbridge/blobs"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/bridge"
)

// layerServer is the bridge on a loopback listener, configured as
// layerbridge scan runs it (scan.serve), serving the blobs of one store.
type layerServer struct {
	srv   *bridge.Server
	blobs blobs.Opener
	http  *http.Server
	base  *url.URL
	done  chan struct{}
}

func startLayerServer(opener blobs.Opener) (*layerServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	s := &layerServer{base: &url.URL{Scheme: "http", Host: ln.Addr().String()}, blobs: opener, done: make(chan struct{})}
	s.srv = bridge.New()
	s.http = bridge.NewHTTPServer(s.srv, nil, bridge.Limits{})
	go func() {
		defer close(s.done)
		_ = s.http.Serve(ln)
	}()
	return s, nil
}

func (s *layerServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.http.Shutdown(ctx)
	<-s.done
	return err
}

// fetchResult is one batch of concurrent downloads.
type fetchResult struct {
	wall   time.Duration
	bytes  int64
	errors []error // transport errors, bad statuses, short bodies, wrong digests
}

// fetchAll downloads each URL in want concurrently (one goroutine and one
// connection per entry), checking every body's length and, with rehash,
// re-hashing it against the digest it was requested by.
func fetchAll(ctx context.Context, hc *http.Client, urls []string, want []ocispec.Descriptor, rehash bool) fetchResult {
	var mu sync.Mutex
	var res fetchResult
	var wg sync.WaitGroup
	start := time.Now()
	for i := range urls {
		wg.Go(func() {
			n, err := fetchOne(ctx, hc, urls[i], want[i], rehash)
			mu.Lock()
			res.bytes += n
			if err != nil {
				res.errors = append(res.errors, err)
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	res.wall = time.Since(start)
	return res
}

func fetchOne(ctx context.Context, hc *http.Client, u string, want ocispec.Descriptor, rehash bool) (int64, error) {
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
		return 0, fmt.Errorf("GET %s: %s", want.Digest, resp.Status)
	}
	var n int64
	got := want.Digest
	if rehash {
		n, got, err = hashPipelined(resp.Body)
	} else {
		n, err = io.CopyBuffer(discard{}, resp.Body, make([]byte, copyBuffer))
	}
	if err != nil {
		return n, fmt.Errorf("GET %s: after %d bytes: %w", want.Digest, n, err)
	}
	if n != want.Size {
		return n, fmt.Errorf("GET %s: %d bytes, want %d", want.Digest, n, want.Size)
	}
	if got != want.Digest {
		return n, fmt.Errorf("GET %s: body hashes to %s", want.Digest, got)
	}
	return n, nil
}

// servePlan is what the serving measurements download.
type servePlan struct {
	name    string
	clients int
	// rehash makes the clients hash every body (as Clair does): one
	// core's sha256 then bounds a single client's throughput.
	rehash bool
	layers []ocispec.Descriptor // client i downloads layers[i%len(layers)]
}

// measureServe runs plan once through s and returns the aggregate result,
// with the bridge's own record of every request checked too.
func measureServe(ctx context.Context, s *layerServer, plan servePlan) (fetchResult, error) {
	grant, err := s.srv.Register(s.base, "bench-"+plan.name, s.blobs, plan.layers)
	if err != nil {
		return fetchResult{}, err
	}
	urls := make([]string, plan.clients)
	want := make([]ocispec.Descriptor, plan.clients)
	for i := range urls {
		want[i] = plan.layers[i%len(plan.layers)]
		if urls[i], err = grant.URL(want[i].Digest); err != nil {
			grant.Revoke()
			return fetchResult{}, err
		}
	}
	// One connection per client, none reused across runs.
	tr := &http.Transport{MaxIdleConnsPerHost: plan.clients, MaxConnsPerHost: plan.clients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	res := fetchAll(ctx, &http.Client{Transport: tr}, urls, want, plan.rehash)
	closeCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	fetches, err := grant.Close(closeCtx)
	if err != nil {
		return res, err
	}
	if len(fetches) != plan.clients {
		res.errors = append(res.errors, fmt.Errorf("the bridge recorded %d requests, want %d", len(fetches), plan.clients))
	}
	for _, f := range fetches {
		i := slices.IndexFunc(plan.layers, func(d ocispec.Descriptor) bool { return d.Digest == f.Digest })
		if f.Err != nil || f.Status != http.StatusOK || i < 0 || f.Bytes != plan.layers[i].Size {
			res.errors = append(res.errors, fmt.Errorf("the bridge answered %s with %d, %d bytes, err %v", f.Digest, f.Status, f.Bytes, f.Err))
		}
	}
	return res, nil
}

func (r fetchResult) gibPerSec() float64 {
	if r.wall <= 0 {
		return 0
	}
	return float64(r.bytes) / (1 << 30) / r.wall.Seconds()
}

// hashPipelined reads r to its end and returns its length and sha256, with
// the hashing on a second goroutine: the client then reads as fast as the
// slower of the two (not their sum), so that it measures the server.
func hashPipelined(r io.Reader) (int64, digest.Digest, error) {
	const buffers = 4
	free := make(chan []byte, buffers)
	for range buffers {
		free <- make([]byte, copyBuffer)
	}
	full := make(chan []byte, buffers)
	h := sha256.New()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for b := range full {
			h.Write(b)
			free <- b[:cap(b)]
		}
	}()
	var n int64
	var err error
	for err == nil {
		b := <-free
		var m int
		m, err = io.ReadFull(r, b)
		n += int64(m)
		full <- b[:m]
	}
	close(full)
	<-done
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		err = nil
	}
	return n, digest.NewDigest(digest.SHA256, h), err
}
