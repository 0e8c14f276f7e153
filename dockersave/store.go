package dockersave

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/layerbridge/layerbridge/platforms"
)

// Annotations the store writes on each index.json descriptor. The descriptor's
// digest is the manifest digest and its data field embeds the manifest, so a
// lookup never opens a blob.
const (
	AnnotationImageID    = "io.layerbridge.image.id"
	AnnotationPlatform   = "io.layerbridge.image.platform"
	AnnotationRepoTags   = "io.layerbridge.image.repo-tags"
	AnnotationDiffIDs    = "io.layerbridge.image.diff-ids"
	AnnotationSourceRef  = "io.layerbridge.source.ref"
	AnnotationSourceKind = "io.layerbridge.source.kind"
)

const (
	blobsDir   = "blobs/sha256"
	stagingDir = "tmp"
	locksDir   = "locks"
	indexFile  = "index.json"
	layoutFile = "oci-layout"

	indexLock  = "index.lock"
	linkPrefix = "link-"

	maxIndexSize    = 256 << 20
	staleStagingAge = 24 * time.Hour
)

// Store is an OCI image layout on disk (oci-layout, index.json,
// blobs/sha256/<hex>) shared by every image loaded into it, plus tmp/ for
// staging files and locks/ for flock files. Blobs appear in blobs/ only after
// verification, by rename; index.json is rewritten atomically under a
// store-wide lock. Several Stores (in one process or several) may use the same
// directory at once. A Store is safe for concurrent use.
type Store struct {
	dir  string
	root *os.Root
	// now is the clock for usage marks (tests replace it).
	now func() time.Time
	// onLockWait is a test hook called when a lock is contended.
	onLockWait func(path string)
	// noSync skips the fsyncs of index.json, of other atomically written
	// files and of directories: tests only (fuzzing), never in production,
	// where a crash must not leave a record of a blob that is not on disk.
	noSync bool
}

// OpenStore opens (creating if needed) the store in dir, usually
// $XDG_CACHE_HOME/layerbridge chosen by the caller. Staging files older than a
// day, left by killed processes, are removed. Close releases the directory.
func OpenStore(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	s := &Store{dir: dir, root: root, now: time.Now}
	for _, d := range []string{blobsDir, stagingDir, locksDir} {
		if err := root.MkdirAll(d, 0o755); err != nil {
			root.Close()
			return nil, fmt.Errorf("open store %s: %w", dir, err)
		}
	}
	if _, err := root.Stat(layoutFile); errors.Is(err, fs.ErrNotExist) {
		layout, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
		if err := s.writeFileAtomic(layoutFile, layout); err != nil {
			root.Close()
			return nil, fmt.Errorf("open store %s: %w", dir, err)
		}
	}
	if _, err := root.Stat(indexFile); errors.Is(err, fs.ErrNotExist) {
		if err := s.updateIndex(context.Background(), func(*ocispec.Index) {}); err != nil {
			root.Close()
			return nil, fmt.Errorf("open store %s: %w", dir, err)
		}
	}
	s.removeStaleStaging()
	return s, nil
}

// Close releases the store directory. Files already opened with OpenBlob stay
// usable.
func (s *Store) Close() error { return s.root.Close() }

// Dir is the directory the store was opened on.
func (s *Store) Dir() string { return s.dir }

// CheckWritable reports whether an image could be stored now: it creates a
// staging file and removes it. A read-only file system, a store directory
// owned by someone else or no inode left gives the error of the create.
func (s *Store) CheckWritable() error {
	f, name, err := s.createStaging()
	if err != nil {
		return fmt.Errorf("store %s is not writable: %w", s.dir, err)
	}
	f.Close()
	s.removeStaging(name)
	return nil
}

func blobPath(d digest.Digest) string { return blobsDir + "/" + d.Encoded() }

func checkBlobDigest(d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("invalid digest %q: %w", d, err)
	}
	if d.Algorithm() != digest.SHA256 {
		return fmt.Errorf("invalid digest %q: only sha256 is stored", d)
	}
	return nil
}

// OpenBlob opens blobs/sha256/<hex> for reading; nothing else in the store can
// be reached through it. A malformed or non-sha256 digest is an error; an
// absent blob is an error wrapping fs.ErrNotExist, and so is anything at
// that path that is not a regular file the store wrote: a symbolic link
// (even to a file inside the store), a directory, a device or a fifo (never
// waited on). The caller closes the file.
//
// The content is not hashed: a blob altered on disk after it was stored
// (by someone with write access to the store) is served as it is, and
// only a size that differs from its descriptor can be noticed by callers.
func (s *Store) OpenBlob(d digest.Digest) (*os.File, error) {
	if err := checkBlobDigest(d); err != nil {
		return nil, fmt.Errorf("open blob: %w", err)
	}
	name := blobPath(d)
	// O_NONBLOCK: opening a fifo planted in blobs/ must not wait for a
	// writer. It has no effect on reading a regular file.
	f, err := s.root.OpenFile(name, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		if li, lerr := s.root.Lstat(name); lerr == nil && li.Mode()&fs.ModeSymlink != 0 {
			// A link leaving the store, or a loop.
			return nil, fmt.Errorf("open blob %s: a symbolic link, not a stored blob: %w", d, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("open blob %s: %w", d, err)
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("open blob %s: not a regular file: %w", d, fs.ErrNotExist)
	}
	// The store never puts a link in blobs/: opening followed one if the
	// path is not the very file that was opened.
	if li, err := s.root.Lstat(name); err != nil || !os.SameFile(fi, li) {
		f.Close()
		return nil, fmt.Errorf("open blob %s: a symbolic link, not a stored blob: %w", d, fs.ErrNotExist)
	}
	return f, nil
}

// hasBlob reports whether blobs/ holds d with the given size (any size if
// size < 0), by stat only. A link planted there is not a blob (see
// OpenBlob).
func (s *Store) hasBlob(d digest.Digest, size int64) bool {
	if checkBlobDigest(d) != nil {
		return false
	}
	fi, err := s.root.Lstat(blobPath(d))
	return err == nil && fi.Mode().IsRegular() && (size < 0 || fi.Size() == size)
}

func randomSuffix() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (s *Store) createStaging() (*os.File, string, error) {
	name := stagingDir + "/blob-" + randomSuffix()
	f, err := s.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, "", fmt.Errorf("create staging file: %w", err)
	}
	return f, name, nil
}

// linkStaging makes a staging name for a blob already in blobs/ (a hard
// link, so the content stays reachable if Prune deletes the stored copy
// before the load commits). It returns "" when blobs/ does not hold d with
// that size (any size if size < 0) or the link cannot be made; the caller
// then stages the bytes it reads.
func (s *Store) linkStaging(d digest.Digest, size int64) string {
	if !s.hasBlob(d, size) {
		return ""
	}
	name := stagingDir + "/" + linkPrefix + randomSuffix()
	if err := s.root.Link(blobPath(d), name); err != nil {
		return ""
	}
	// blobs/ may have changed between the stat and the link.
	if fi, err := s.root.Lstat(name); err != nil || !fi.Mode().IsRegular() || (size >= 0 && fi.Size() != size) {
		s.removeStaging(name)
		return ""
	}
	return name
}

func (s *Store) removeStaging(name string) { _ = s.root.Remove(name) }

// removeStaleStaging removes staging files older than a day (killed loads).
// A hard link made by linkStaging keeps the stored blob's modification
// time, so its age is its change time, which the link itself set.
func (s *Store) removeStaleStaging() {
	entries, err := fs.ReadDir(s.root.FS(), stagingDir)
	if err != nil {
		return
	}
	now := s.now()
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			continue
		}
		age := now.Sub(fi.ModTime())
		if strings.HasPrefix(e.Name(), linkPrefix) {
			var st unix.Stat_t
			if unix.Lstat(filepath.Join(s.dir, stagingDir, e.Name()), &st) != nil {
				continue
			}
			age = now.Sub(time.Unix(st.Ctim.Unix()))
		}
		if age > staleStagingAge {
			_ = s.root.Remove(stagingDir + "/" + e.Name())
		}
	}
}

// writeFileAtomic writes name (store-relative) via a temp file in the same
// directory, fsync, rename, and fsync of the directory.
func (s *Store) writeFileAtomic(name string, data []byte) error {
	dir := path.Dir(name)
	tmp := path.Join(dir, "."+path.Base(name)+".tmp-"+randomSuffix())
	f, err := s.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	_, err = f.Write(data)
	if err == nil && !s.noSync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.root.Rename(tmp, name)
	}
	if err != nil {
		_ = s.root.Remove(tmp)
		return fmt.Errorf("write %s: %w", name, err)
	}
	return s.syncDir(dir)
}

func (s *Store) syncDir(dir string) error {
	if s.noSync {
		return nil
	}
	d, err := s.root.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// lock takes an exclusive lock on locks/name.
func (s *Store) lock(ctx context.Context, name string) (*fileLock, error) {
	return lockFile(ctx, s.lockPath(name), unix.LOCK_EX, s.onLockWait)
}

func (s *Store) lockPath(name string) string { return filepath.Join(s.dir, locksDir, name) }

func imageLockName(id digest.Digest, p ocispec.Platform) string {
	sum := sha256.Sum256([]byte(id.String() + "\n" + platforms.Format(platforms.Normalize(p))))
	return "image-" + hex.EncodeToString(sum[:]) + ".lock"
}

// lockImage serializes exports of one (image ID, platform) across goroutines
// and processes. Its lock file is also what pins share (see Pin) and what
// eviction tries, and its mtime is the image's last use (see touch).
func (s *Store) lockImage(ctx context.Context, id digest.Digest, p ocispec.Platform) (*fileLock, error) {
	return s.lock(ctx, imageLockName(id, p))
}

// lockImageShared takes the image's lock shared: a pin.
func (s *Store) lockImageShared(ctx context.Context, id digest.Digest, p ocispec.Platform) (*fileLock, error) {
	return lockFile(ctx, s.lockPath(imageLockName(id, p)), unix.LOCK_SH, s.onLockWait)
}

func (s *Store) readIndex() (ocispec.Index, error) {
	var idx ocispec.Index
	f, err := s.root.Open(indexFile)
	if err != nil {
		return idx, fmt.Errorf("read store index: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return idx, fmt.Errorf("read store index: %w", err)
	}
	if fi.Size() > maxIndexSize {
		return idx, fmt.Errorf("read store index: %w: %d bytes", ErrTooLarge, fi.Size())
	}
	if err := json.NewDecoder(f).Decode(&idx); err != nil {
		return idx, fmt.Errorf("read store index %s: %w: %v", filepath.Join(s.dir, indexFile), ErrMalformedJSON, err)
	}
	return idx, nil
}

// updateIndex applies fn to index.json under the store-wide lock and writes
// the result atomically.
func (s *Store) updateIndex(ctx context.Context, fn func(*ocispec.Index)) error {
	l, err := s.lock(ctx, indexLock)
	if err != nil {
		return err
	}
	defer l.unlock()
	return s.updateIndexLocked(fn)
}

// updateIndexLocked is updateIndex for a caller holding the index lock.
func (s *Store) updateIndexLocked(fn func(*ocispec.Index)) error {
	idx, err := s.readIndex()
	if errors.Is(err, fs.ErrNotExist) {
		idx, err = ocispec.Index{}, nil
	}
	if err != nil {
		return err
	}
	fn(&idx)
	return s.writeIndex(idx)
}

// writeIndex replaces index.json atomically; the caller holds the index lock.
func (s *Store) writeIndex(idx ocispec.Index) error {
	idx.SchemaVersion = 2
	idx.MediaType = ocispec.MediaTypeImageIndex
	if idx.Manifests == nil {
		idx.Manifests = []ocispec.Descriptor{}
	}
	data, err := json.Marshal(idx)
	if err != nil {
		return fmt.Errorf("encode store index: %w", err)
	}
	return s.writeFileAtomic(indexFile, data)
}

func recordMatches(d ocispec.Descriptor, id digest.Digest, platform string) bool {
	return d.Annotations[AnnotationImageID] == id.String() && d.Annotations[AnnotationPlatform] == platform
}

// Lookup finds the stored image for (id, platform) and checks, by stat only,
// that its manifest, config and layer blobs are all present with the recorded
// sizes. It reads index.json and no blob. ok is false when there is no such
// record or a blob is missing; err is for an unreadable index. The returned
// Image has CacheHit set; its Ref and RepoTags are those recorded when it was
// stored.
func (s *Store) Lookup(id digest.Digest, platform ocispec.Platform) (img Image, ok bool, err error) {
	idx, err := s.readIndex()
	if err != nil {
		return Image{}, false, err
	}
	key := platforms.Format(platforms.Normalize(platform))
	for i := len(idx.Manifests) - 1; i >= 0; i-- {
		d := idx.Manifests[i]
		if !recordMatches(d, id, key) {
			continue
		}
		img, err := imageFromDescriptor(d)
		if err != nil || !s.complete(img) {
			return Image{}, false, nil
		}
		img.CacheHit = true
		return img, true, nil
	}
	return Image{}, false, nil
}

// Images lists the stored images whose blobs are all present, in index order.
// Records written by other tools (without layerbridge annotations) are skipped.
func (s *Store) Images() ([]Image, error) {
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	var out []Image
	for _, d := range idx.Manifests {
		if d.Annotations[AnnotationImageID] == "" {
			continue
		}
		img, err := imageFromDescriptor(d)
		if err != nil || !s.complete(img) {
			continue
		}
		out = append(out, img)
	}
	return out, nil
}

func (s *Store) complete(img Image) bool {
	if !s.hasBlob(img.ManifestDigest, img.ManifestSize) || !s.hasBlob(img.Manifest.Config.Digest, img.Manifest.Config.Size) {
		return false
	}
	for _, l := range img.Manifest.Layers {
		if !s.hasBlob(l.Digest, l.Size) {
			return false
		}
	}
	return true
}

func descriptorFor(img Image, manifestBytes []byte) ocispec.Descriptor {
	p := platforms.Normalize(img.Platform)
	ann := map[string]string{
		AnnotationImageID:    img.ID.String(),
		AnnotationPlatform:   platforms.Format(p),
		AnnotationSourceRef:  img.Ref,
		AnnotationSourceKind: string(img.Source),
	}
	if len(img.RepoTags) > 0 {
		ann[AnnotationRepoTags] = strings.Join(img.RepoTags, ",")
		ann[ocispec.AnnotationRefName] = img.RepoTags[0]
	}
	ids := make([]string, len(img.DiffIDs))
	for i, d := range img.DiffIDs {
		ids[i] = d.String()
	}
	ann[AnnotationDiffIDs] = strings.Join(ids, ",")
	mt := img.Manifest.MediaType
	if mt == "" {
		mt = ocispec.MediaTypeImageManifest
	}
	return ocispec.Descriptor{
		MediaType:   mt,
		Digest:      img.ManifestDigest,
		Size:        int64(len(manifestBytes)),
		Data:        manifestBytes,
		Platform:    &p,
		Annotations: ann,
	}
}

func imageFromDescriptor(d ocispec.Descriptor) (Image, error) {
	if err := checkBlobDigest(d.Digest); err != nil {
		return Image{}, err
	}
	if int64(len(d.Data)) != d.Size || digest.FromBytes(d.Data) != d.Digest {
		return Image{}, fmt.Errorf("index record %s: embedded manifest does not match", d.Digest)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(d.Data, &m); err != nil {
		return Image{}, fmt.Errorf("index record %s: %w: %v", d.Digest, ErrMalformedJSON, err)
	}
	if m.MediaType == "" {
		m.MediaType = d.MediaType
	}
	id, err := digest.Parse(d.Annotations[AnnotationImageID])
	if err != nil {
		return Image{}, fmt.Errorf("index record %s: image id: %w", d.Digest, err)
	}
	p, err := platforms.Parse(d.Annotations[AnnotationPlatform])
	if err != nil {
		return Image{}, fmt.Errorf("index record %s: %w", d.Digest, err)
	}
	var diffIDs []digest.Digest
	if s := d.Annotations[AnnotationDiffIDs]; s != "" {
		for _, v := range strings.Split(s, ",") {
			dd, err := digest.Parse(v)
			if err != nil {
				return Image{}, fmt.Errorf("index record %s: diff id: %w", d.Digest, err)
			}
			diffIDs = append(diffIDs, dd)
		}
	}
	if len(diffIDs) != len(m.Layers) {
		return Image{}, fmt.Errorf("index record %s: %w", d.Digest, ErrLayerCount)
	}
	var tags []string
	if s := d.Annotations[AnnotationRepoTags]; s != "" {
		tags = strings.Split(s, ",")
	}
	return Image{
		Ref:            d.Annotations[AnnotationSourceRef],
		Source:         SourceKind(d.Annotations[AnnotationSourceKind]),
		ID:             id,
		Platform:       p,
		RepoTags:       tags,
		ManifestDigest: d.Digest,
		ManifestSize:   d.Size,
		Manifest:       m,
		DiffIDs:        diffIDs,
	}, nil
}

// commit publishes a verified image: staged blobs are renamed into blobs/
// (after which the blobs directory is synced), a synthesized manifest is
// written, the image is marked used, and its index record is written.
//
// All of it happens under the index lock, which Prune holds while it decides
// and deletes: a blob commit finds in blobs/ stays there until the record
// referencing it is in index.json.
//
// The record replaces every record for (img.ID, img.Platform) when the
// image's lock is held: commit tries it without waiting (commitHolding is
// for a caller already holding it). When another holds it (a pin, or a daemon
// export that will replace the records itself), only a record for the same
// manifest is replaced and others stay, so a pinned manifest keeps its
// record and blobs.
func (s *Store) commit(ctx context.Context, img Image, v *verified) error {
	return s.commitHolding(ctx, img, v, nil, nil)
}

// commitHolding is commit for a caller holding the image's lock exclusively
// (imageLock; nil if not). With pin not nil, it also tries to pin the image
// before releasing the index lock, so that no Prune comes in between, and
// sets *pin on success; imageLock is then released early (unlock is
// idempotent).
func (s *Store) commitHolding(ctx context.Context, img Image, v *verified, imageLock *fileLock, pin **fileLock) error {
	if imageLock == nil {
		l, ok, err := tryLockFile(s.lockPath(imageLockName(img.ID, img.Platform)), unix.LOCK_EX)
		if err != nil {
			return err
		}
		if ok {
			defer l.unlock()
			imageLock = l
		}
	}
	if err := checkDescribed(img.Ref, v); err != nil {
		return err
	}
	il, err := s.lock(ctx, indexLock)
	if err != nil {
		return err
	}
	defer il.unlock()
	blobs := append([]*stagedBlob{v.config}, v.layers...)
	if v.manifestBlob != nil {
		blobs = append(blobs, v.manifestBlob)
	}
	for _, b := range blobs {
		if err := s.publish(b); err != nil {
			return err
		}
	}
	if v.manifestBlob == nil && !s.hasBlob(v.manifestDigest, int64(len(v.manifestBytes))) {
		if err := s.writeFileAtomic(blobPath(v.manifestDigest), v.manifestBytes); err != nil {
			return err
		}
	}
	if err := s.syncDir(blobsDir); err != nil {
		return err
	}
	if err := s.touch(img.ID, img.Platform); err != nil {
		return err
	}
	desc := descriptorFor(img, v.manifestBytes)
	key := desc.Annotations[AnnotationPlatform]
	err = s.updateIndexLocked(func(idx *ocispec.Index) {
		idx.Manifests = slices.DeleteFunc(idx.Manifests, func(d ocispec.Descriptor) bool {
			return recordMatches(d, img.ID, key) && (imageLock != nil || d.Digest == desc.Digest)
		})
		idx.Manifests = append(idx.Manifests, desc)
	})
	if err != nil || pin == nil {
		return err
	}
	// The exclusive lock must go before a shared one can be had; in the
	// gap only another export of this image could take it (Prune needs
	// the index lock), and then the caller pins later instead.
	if imageLock != nil {
		imageLock.unlock()
	}
	if l, ok, err := tryLockFile(s.lockPath(imageLockName(img.ID, img.Platform)), unix.LOCK_SH); err == nil && ok {
		*pin = l
	}
	return nil
}

// checkDescribed makes sure the manifest about to be stored describes the
// verified blobs exactly. A manifest kept from an archive (a containerd
// export, an OCI layout) is stored as it is, so a layer or config size in
// it that disagrees with the blob (wrong, negative, huge) would reach Clair
// and registry clients; the readers compare sizes only where a descriptor
// leads to the blob.
func checkDescribed(image string, v *verified) error {
	check := func(what string, d ocispec.Descriptor, b *stagedBlob) error {
		if d.Digest != b.digest {
			return archiveErr(image, b.entry, fmt.Errorf("%w: %s is %s, the manifest says %s", ErrDigestMismatch, what, b.digest, d.Digest))
		}
		if d.Size != b.size {
			return archiveErr(image, b.entry, fmt.Errorf("%w: %s %s has %d bytes, the manifest says %d", ErrSizeMismatch, what, b.digest, b.size, d.Size))
		}
		return nil
	}
	if len(v.manifest.Layers) != len(v.layers) {
		return archiveErr(image, "", fmt.Errorf("%w: manifest lists %d layers, %d verified", ErrLayerCount, len(v.manifest.Layers), len(v.layers)))
	}
	if err := check("config", v.manifest.Config, v.config); err != nil {
		return err
	}
	for i, l := range v.manifest.Layers {
		if err := check(fmt.Sprintf("layer %d", i), l, v.layers[i]); err != nil {
			return err
		}
	}
	return nil
}

// publish renames a staged blob to blobs/sha256/<hex>, or drops the staging
// copy when an identical blob is already there. The caller holds the index
// lock.
func (s *Store) publish(b *stagedBlob) error {
	if b.tmp == "" {
		return nil
	}
	if s.hasBlob(b.digest, b.size) {
		s.removeStaging(b.tmp)
		b.tmp = ""
		return nil
	}
	// A hard link to a blob Prune deleted meanwhile is read-only already
	// (and may belong to another user of a shared store).
	if fi, err := s.root.Lstat(b.tmp); err != nil || fi.Mode().Perm() != 0o444 {
		if err := s.root.Chmod(b.tmp, 0o444); err != nil {
			return fmt.Errorf("publish blob %s: %w", b.digest, err)
		}
	}
	if err := s.root.Rename(b.tmp, blobPath(b.digest)); err != nil {
		return fmt.Errorf("publish blob %s: %w", b.digest, err)
	}
	b.tmp = ""
	return nil
}
