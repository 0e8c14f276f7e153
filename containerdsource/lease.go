package containerdsource

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/leases"
	digest "github.com/opencontainers/go-digest"
)

// How an image is pinned. containerd's garbage collector removes content
// that no image, container or lease references. An image's content is
// referenced by the image itself, but `ctr images rm` (or kubelet's image
// GC) may remove the image while Clair is still fetching its layers; a
// lease holding each blob of the image keeps it until the scan releases
// it.
//
// A lease carries an expiry (the containerd.io/gc.expire label): should
// layerbridge die without releasing it, containerd's collector drops it
// once expired. A scan may run longer than that, so while it is held the
// lease is renewed: every LeaseTTL/2 a new lease with the same resources
// is taken, then the old one deleted. containerd cannot extend a lease's
// expiry in place.

// DefaultLeaseTTL is Config.LeaseTTL's default.
const DefaultLeaseTTL = 10 * time.Minute

// LabelLeaseRef is the label naming, on each lease layerbridge takes, the
// reference it was taken for.
const LabelLeaseRef = "io.layerbridge.ref"

// leaseIDPrefix starts the ID of every lease layerbridge takes.
const leaseIDPrefix = "layerbridge-"

// lease is a renewed containerd lease on an image's blobs.
type lease struct {
	b   backend
	ctx context.Context // the namespace, without the load's cancellation
	ref string
	ttl time.Duration
	log *slog.Logger

	mu        sync.Mutex
	cur       leases.Lease
	resources []leases.Resource

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// takeLease takes a lease for ref in ctx's namespace and starts renewing
// it. Release it with release.
func takeLease(ctx context.Context, b backend, ref string, ttl time.Duration, log *slog.Logger) (*lease, error) {
	l := &lease{b: b, ctx: context.WithoutCancel(ctx), ref: ref, ttl: ttl, log: log, stop: make(chan struct{}), done: make(chan struct{})}
	cur, err := l.create(ctx)
	if err != nil {
		return nil, err
	}
	l.cur = cur
	log.DebugContext(ctx, "containerd lease taken", "ref", ref, "lease", cur.ID, "expires_in", ttl)
	go l.renew()
	return l, nil
}

func (l *lease) create(ctx context.Context) (leases.Lease, error) {
	var b [12]byte
	_, _ = rand.Read(b[:])
	cur, err := l.b.CreateLease(ctx, leases.WithID(leaseIDPrefix+hex.EncodeToString(b[:])),
		leases.WithExpiration(l.ttl), leases.WithLabel(LabelLeaseRef, l.ref))
	if err != nil {
		return leases.Lease{}, fmt.Errorf("take a containerd lease: %w", err)
	}
	return cur, nil
}

// add puts blob d in the lease; content the lease holds stays until it is
// released, even when the image is removed meanwhile.
func (l *lease) add(ctx context.Context, d digest.Digest) error {
	r := leases.Resource{ID: d.String(), Type: "content"}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.b.AddResource(ctx, l.cur, r); err != nil {
		return fmt.Errorf("lease %s: hold %s: %w", l.cur.ID, d, err)
	}
	l.resources = append(l.resources, r)
	return nil
}

// renew replaces the lease by a new one every ttl/2 until released. A
// failed renewal is logged and tried again at the next tick: the current
// lease holds until it expires.
func (l *lease) renew() {
	defer close(l.done)
	t := time.NewTicker(l.ttl / 2)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		if err := l.renewOnce(); err != nil {
			l.log.Warn("cannot renew the containerd lease; the current one holds until it expires", "ref", l.ref, "error", err)
		}
	}
}

func (l *lease) renewOnce() error {
	ctx, cancel := context.WithTimeout(l.ctx, time.Minute)
	defer cancel()
	l.mu.Lock()
	defer l.mu.Unlock()
	next, err := l.create(ctx)
	if err != nil {
		return err
	}
	for _, r := range l.resources {
		if err := l.b.AddResource(ctx, next, r); err != nil {
			_ = l.b.DeleteLease(ctx, next)
			return fmt.Errorf("lease %s: hold %s: %w", next.ID, r.ID, err)
		}
	}
	old := l.cur
	l.cur = next
	if err := l.b.DeleteLease(ctx, old); err != nil {
		l.log.Debug("cannot delete the renewed containerd lease; it expires by itself", "lease", old.ID, "error", err)
	}
	l.log.Debug("containerd lease renewed", "ref", l.ref, "lease", next.ID, "replaces", old.ID)
	return nil
}

// release stops the renewal and deletes the lease. Later calls do nothing.
func (l *lease) release() {
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		ctx, cancel := context.WithTimeout(l.ctx, 30*time.Second)
		defer cancel()
		l.mu.Lock()
		defer l.mu.Unlock()
		if err := l.b.DeleteLease(ctx, l.cur); err != nil {
			l.log.Warn("cannot delete the containerd lease; it expires by itself", "ref", l.ref, "lease", l.cur.ID, "error", err)
			return
		}
		l.log.Debug("containerd lease released", "ref", l.ref, "lease", l.cur.ID)
	})
}
