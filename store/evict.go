package store

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/layerbridge/layerbridge/platforms"
)

// How the store bounds its size.
//
// Last use: the modification time of the image's lock file,
// locks/image-<sha256(id, platform)>.lock, which every export already
// creates. Load sets it on every success (cache hits included), a commit
// sets it, and releasing a pin sets it. Setting it is one utimensat(2): no
// index.json rewrite, no store-wide lock, no blob read on the warm path, and
// the kernel orders concurrent marks from any number of processes. A lost
// mark (a crash) only makes the image look older.
//
// Pins: a shared flock on that same lock file. Exports hold it exclusively,
// Prune tries it exclusively without waiting and skips an image it cannot
// lock. The kernel drops a dead process's pins.
//
// Eviction: Prune holds the index lock while it decides, rewrites
// index.json (records first) and only then deletes blobs no remaining record
// references. commit publishes blobs and writes the record under the same
// lock, and an export stages blobs the store already has as hard links, so
// a blob it counted on cannot vanish before its record exists.

// ErrNotStored is returned (wrapped) by Pin when the store no longer holds
// the image as it was loaded: evicted, or replaced by another manifest.
// Load it again, then pin it.
var ErrNotStored = errors.New("image not in store")

// Touch records now as rec's last use (see Usage, Prune). A commit does
// this, a loader does it for every image it returns, and a pin's release
// does it too; call it when an image is used some other way (a registry
// view serving it). It fails only when the store directory is not writable.
func (s *Store) Touch(rec Record) error { return s.touch(rec.ID, rec.Platform) }

func (s *Store) touch(id digest.Digest, p ocispec.Platform) error {
	name := locksDir + "/" + imageLockName(id, p)
	t := s.now()
	err := s.root.Chtimes(name, time.Time{}, t)
	if errors.Is(err, fs.ErrNotExist) {
		var f *os.File
		if f, err = s.root.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644); err == nil {
			f.Close()
			err = s.root.Chtimes(name, time.Time{}, t)
		}
	}
	if err != nil {
		return fmt.Errorf("mark %s used: %w", id, err)
	}
	return nil
}

// Pin pins rec (see the Pin type): its manifest, config and layer blobs and
// its index record stay until the pin is released. Pin an image before
// handing its digests to a scanner: OpenBlob on an unpinned image can fail
// once Prune has run.
//
// Pin fails with ErrNotStored when rec is no longer stored as it was
// recorded (Prune evicted it after it was loaded): load it again. It waits,
// until ctx ends, while the image is being exported or evicted.
//
// Pins nest (each needs its own Release). A pin does not block reloading an
// archive or layout of the same image: a different manifest for the same
// image ID and platform is recorded beside the pinned one, which stays
// until it is unpinned and evicted. A daemon image is only exported again
// when one of its blobs is missing, which a pin prevents short of someone
// deleting files by hand; such an export waits for every pin to be
// released. So do not load an image again while holding its pin in the
// same goroutine expecting an export.
func (s *Store) Pin(ctx context.Context, rec Record) (*Pin, error) {
	l, err := s.lockImageShared(ctx, rec.ID, rec.Platform)
	if err != nil {
		return nil, fmt.Errorf("pin %s: %w", rec.ManifestDigest, err)
	}
	ok, err := s.stored(rec)
	if err == nil && !ok {
		err = ErrNotStored
	}
	if err != nil {
		l.unlock()
		return nil, fmt.Errorf("pin %s: %w", rec.ManifestDigest, err)
	}
	return s.pin(rec.ID, rec.Platform, l), nil
}

// stored reports whether index.json has a record of rec's manifest for its
// image ID and platform, with every blob present.
func (s *Store) stored(rec Record) (bool, error) {
	idx, err := s.readIndex()
	if err != nil {
		return false, err
	}
	key := platforms.Format(platforms.Normalize(rec.Platform))
	for _, d := range idx.Manifests {
		if d.Digest != rec.ManifestDigest || !recordMatches(d, rec.ID, key) {
			continue
		}
		r, err := recordFromDescriptor(d)
		if err == nil && s.complete(r) {
			return true, nil
		}
	}
	return false, nil
}

// ImageUsage is one index record with what it costs and when it was used.
type ImageUsage struct {
	// Record is the image, as Lookup would return it.
	Record Record
	// LastUsed is the last Load, pin release or Touch of the image (or its
	// export); zero when unknown (stored before usage was tracked, or the
	// mark was removed), which makes it the first to be evicted.
	LastUsed time.Time
	// Size is the bytes of its distinct blobs present in the store, shared
	// ones included: the sum over images exceeds Store.Size when images
	// share layers.
	Size int64
	// Unique is the part of Size no other record references: about what
	// evicting this image alone would free.
	Unique int64
	// Complete is false when a blob of the image is missing (it would be
	// exported again on its next Load).
	Complete bool
}

// Usage lists the images recorded in index.json in the order Prune would
// evict them, least recently used first (an older manifest that a newer
// record for the same image and platform hides comes before all others).
// Pins are not consulted: Prune skips pinned images wherever they stand.
// Records written by other tools are not listed.
func (s *Store) Usage() ([]ImageUsage, error) {
	sizes, _, err := s.blobSizes()
	if err != nil {
		return nil, err
	}
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	recs, foreign := s.records(idx)
	refs := countRefs(recs, foreign)
	out := make([]ImageUsage, 0, len(recs))
	for _, r := range recs {
		u := ImageUsage{Record: r.rec, LastUsed: r.lastUsed, Complete: true}
		for _, d := range r.blobs {
			n, ok := sizes[d]
			if !ok {
				u.Complete = false
				continue
			}
			u.Size += n
			if refs[d] == 1 {
				u.Unique += n
			}
		}
		out = append(out, u)
	}
	return out, nil
}

// Size is the number of bytes in blobs/sha256, each blob counted once however
// many images share it. Staging files of loads in progress are not counted.
func (s *Store) Size() (int64, error) {
	sizes, _, err := s.blobSizes()
	if err != nil {
		return 0, err
	}
	var total int64
	for _, n := range sizes {
		total += n
	}
	return total, nil
}

// PruneResult is what one Prune did.
type PruneResult struct {
	// Before and After are Size before and after. After exceeds the limit
	// when pinned images (or records written by other tools) need more.
	Before, After int64
	// Evicted are the records removed from index.json, in eviction order.
	Evicted []Record
	// BlobsRemoved and BytesFreed count the deleted blobs, orphans included.
	BlobsRemoved int
	BytesFreed   int64
	// InUse counts the (image ID, platform) pairs Prune would have evicted
	// but skipped because a pin or an export held them.
	InUse int
}

// Prune brings the store to at most maxBytes (see Size) if it can. While
// above it, it first deletes orphaned blobs (referenced by no record: left
// by a crash or by older versions), then evicts images least recently used
// first (see Usage), skipping pinned images and images being exported. An
// evicted image's record leaves index.json before any of its blobs is
// deleted, and a blob is deleted only once no remaining record references
// it, so images sharing layers keep them. maxBytes 0 evicts everything
// unpinned. Whatever the size, it also removes the staging files of Stores
// that are gone (see Open) and lock files of images no longer recorded.
//
// Only pins protect blobs: files already open stay readable after their
// blob is deleted, but OpenBlob of an unpinned image's digest may fail
// after a Prune. Images stored before usage was tracked count as least
// recently used.
//
// It holds the store's index lock throughout, so loads wait to commit
// meanwhile; it waits for that lock until ctx ends. On an error after
// index.json was rewritten, the result says what was done and the next
// Prune finishes the deletions.
func (s *Store) Prune(ctx context.Context, maxBytes int64) (PruneResult, error) {
	if maxBytes < 0 {
		return PruneResult{}, fmt.Errorf("prune store: negative size limit %d", maxBytes)
	}
	il, err := s.lock(ctx, indexLock)
	if err != nil {
		return PruneResult{}, fmt.Errorf("prune store: %w", err)
	}
	defer il.unlock()

	s.removeDeadStaging()
	sizes, interrupted, err := s.blobSizes()
	if err != nil {
		return PruneResult{}, fmt.Errorf("prune store: %w", err)
	}
	// Writes into blobs/ and of index.json happen under the index lock:
	// any temp file left is from a killed process.
	for _, name := range interrupted {
		_ = s.root.Remove(name)
	}
	idx, err := s.readIndex()
	if err != nil {
		return PruneResult{}, fmt.Errorf("prune store: %w", err)
	}
	recs, foreign := s.records(idx)
	refs := countRefs(recs, foreign)

	var res PruneResult
	total := int64(0)
	for _, n := range sizes {
		total += n
	}
	res.Before = total
	doomed := map[digest.Digest]bool{}
	drop := func(d digest.Digest) {
		if n, ok := sizes[d]; ok && !doomed[d] {
			doomed[d] = true
			total -= n
		}
	}
	if total > maxBytes {
		for d := range sizes {
			if refs[d] == 0 {
				drop(d)
			}
		}
	}

	held := map[string]*fileLock{}
	defer func() {
		for _, l := range held {
			l.unlock()
		}
	}()
	busy := map[string]bool{}
	evicted := map[*record]bool{}
	for _, r := range recs {
		if total <= maxBytes {
			break
		}
		if err := ctx.Err(); err != nil {
			return PruneResult{}, fmt.Errorf("prune store: %w", err)
		}
		if busy[r.lock] {
			continue
		}
		if held[r.lock] == nil {
			l, ok, err := tryLockFile(s.lockPath(r.lock), unix.LOCK_EX)
			if err != nil {
				return PruneResult{}, fmt.Errorf("prune store: %w", err)
			}
			if !ok {
				busy[r.lock] = true
				res.InUse++
				continue
			}
			held[r.lock] = l
		}
		evicted[r] = true
		res.Evicted = append(res.Evicted, r.rec)
		for _, d := range r.blobs {
			if refs[d]--; refs[d] == 0 {
				drop(d)
			}
		}
	}

	keep := map[string]bool{}
	for _, r := range recs {
		if !evicted[r] {
			keep[r.lock] = true
		}
	}
	if len(evicted) > 0 {
		gone := map[int]bool{}
		for r := range evicted {
			gone[r.pos] = true
		}
		kept := make([]ocispec.Descriptor, 0, len(idx.Manifests)-len(gone))
		for i, d := range idx.Manifests {
			if !gone[i] {
				kept = append(kept, d)
			}
		}
		idx.Manifests = kept
		if err := s.writeIndex(idx); err != nil {
			return PruneResult{}, fmt.Errorf("prune store: %w", err)
		}
	}

	var errs []error
	for d := range doomed {
		err := s.root.Remove(blobPath(d))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		res.BlobsRemoved++
		res.BytesFreed += sizes[d]
	}
	if len(doomed) > 0 {
		if err := s.syncDir(blobsDir); err != nil {
			errs = append(errs, err)
		}
	}
	res.After = res.Before - res.BytesFreed
	for name, l := range held {
		if keep[name] {
			l.unlock()
		} else if err := l.removeAndUnlock(); err != nil {
			errs = append(errs, err)
		}
		delete(held, name)
	}
	s.removeUnusedLocks(keep)
	if err := errors.Join(errs...); err != nil {
		return res, fmt.Errorf("prune store: %w", err)
	}
	return res, nil
}

// record is one layerbridge index record as Prune and Usage see it.
type record struct {
	pos      int // in index.json
	rec      Record
	lock     string // name of the image's lock file
	blobs    []digest.Digest
	lastUsed time.Time
	// shadowed: a later record has the same image ID and platform, so
	// Lookup never returns this one.
	shadowed bool
}

// records parses index.json into layerbridge records, least recently used
// first (shadowed ones before all), and the blobs that other records
// reference: those of foreign records (written by other tools) and of
// records that do not parse, which are never evicted.
func (s *Store) records(idx ocispec.Index) ([]*record, map[digest.Digest]bool) {
	var recs []*record
	foreign := map[digest.Digest]bool{}
	latest := map[string]*record{}
	for i, d := range idx.Manifests {
		var rec Record
		err := errors.New("not a layerbridge record")
		if d.Annotations[AnnotationImageID] != "" {
			rec, err = recordFromDescriptor(d)
		}
		if err != nil {
			s.referenced(d, 0, foreign)
			continue
		}
		r := &record{pos: i, rec: rec, lock: imageLockName(rec.ID, rec.Platform)}
		for _, b := range append([]ocispec.Descriptor{rec.ManifestDescriptor(), rec.Manifest.Config}, rec.Manifest.Layers...) {
			if !slices.Contains(r.blobs, b.Digest) {
				r.blobs = append(r.blobs, b.Digest)
			}
		}
		if fi, err := s.root.Stat(locksDir + "/" + r.lock); err == nil {
			r.lastUsed = fi.ModTime()
		}
		if prev := latest[r.lock]; prev != nil {
			prev.shadowed = true
		}
		latest[r.lock] = r
		recs = append(recs, r)
	}
	slices.SortStableFunc(recs, func(a, b *record) int {
		if a.shadowed != b.shadowed {
			if a.shadowed {
				return -1
			}
			return 1
		}
		if c := a.lastUsed.Compare(b.lastUsed); c != 0 {
			return c
		}
		return cmp.Compare(a.pos, b.pos)
	})
	return recs, foreign
}

// Limits on reading the manifests and indexes of records written by other
// tools (see referenced).
const (
	maxForeignManifest = 4 << 20
	maxForeignDepth    = 4
)

// referenced adds d and, reading it if it is a stored manifest or index, the
// blobs it references to out.
func (s *Store) referenced(d ocispec.Descriptor, depth int, out map[digest.Digest]bool) {
	if CheckDigest(d.Digest) != nil || out[d.Digest] {
		return
	}
	out[d.Digest] = true
	if depth > maxForeignDepth || d.Size > maxForeignManifest {
		return
	}
	f, err := s.OpenBlob(d.Digest)
	if err != nil {
		return
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxForeignManifest+1))
	if err != nil || len(data) > maxForeignManifest {
		return
	}
	var m struct {
		Config    *ocispec.Descriptor  `json:"config"`
		Layers    []ocispec.Descriptor `json:"layers"`
		Blobs     []ocispec.Descriptor `json:"blobs"`
		Manifests []ocispec.Descriptor `json:"manifests"`
	}
	if json.Unmarshal(data, &m) != nil {
		return
	}
	if m.Config != nil {
		out[m.Config.Digest] = true
	}
	for _, l := range append(m.Layers, m.Blobs...) {
		out[l.Digest] = true
	}
	for _, c := range m.Manifests {
		s.referenced(c, depth+1, out)
	}
}

func countRefs(recs []*record, foreign map[digest.Digest]bool) map[digest.Digest]int {
	refs := map[digest.Digest]int{}
	for d := range foreign {
		refs[d]++
	}
	for _, r := range recs {
		for _, d := range r.blobs {
			refs[d]++
		}
	}
	return refs
}

// blobSizes lists blobs/sha256 (regular files named by a sha256 digest) and
// the temp files of interrupted atomic writes there and of index.json.
func (s *Store) blobSizes() (map[digest.Digest]int64, []string, error) {
	entries, err := fs.ReadDir(s.root.FS(), blobsDir)
	if err != nil {
		return nil, nil, fmt.Errorf("list blobs: %w", err)
	}
	sizes := make(map[digest.Digest]int64, len(entries))
	var temps []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp-") {
			temps = append(temps, blobsDir+"/"+name)
			continue
		}
		d := digest.NewDigestFromEncoded(digest.SHA256, name)
		if d.Validate() != nil || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // deleted meanwhile
		}
		sizes[d] = fi.Size()
	}
	if top, err := fs.ReadDir(s.root.FS(), "."); err == nil {
		for _, e := range top {
			if strings.HasPrefix(e.Name(), "."+indexFile+".tmp-") {
				temps = append(temps, e.Name())
			}
		}
	}
	return sizes, temps, nil
}

// removeUnusedLocks deletes image lock files no record needs (evicted images
// touched again by a racing Load, failed exports) unless someone holds them.
func (s *Store) removeUnusedLocks(keep map[string]bool) {
	entries, err := fs.ReadDir(s.root.FS(), locksDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if keep[name] || !strings.HasPrefix(name, "image-") || !strings.HasSuffix(name, ".lock") {
			continue
		}
		if l, ok, err := tryLockFile(s.lockPath(name), unix.LOCK_EX); err == nil && ok {
			_ = l.removeAndUnlock()
		}
	}
}
