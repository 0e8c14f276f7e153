package doctor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// store checks that the image cache can be written and has room for the
// image. It creates nothing but a temporary file in an existing cache
// directory, removed at once.
func (r *run) store() {
	dir := r.cfg.CacheDir
	if dir == "" {
		r.skip("no cache directory given", CheckStoreWritable, CheckStoreSpace)
		return
	}
	existing, err := existingAncestor(dir)
	if err == nil {
		dir, err = filepath.Abs(dir)
	}
	if err != nil {
		r.add(CheckStoreWritable, Failed, fmt.Sprintf("cache directory %s: %v", dir, err), "choose a cache directory you may create with --cache-dir (or LAYERBRIDGE_CACHE_DIR)")
		r.skip("no cache directory", CheckStoreSpace)
		return
	}
	fix := "make it writable by your user, or choose another cache directory with --cache-dir (or LAYERBRIDGE_CACHE_DIR)"
	if existing == dir {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			r.add(CheckStoreWritable, Failed, fmt.Sprintf("cache directory %s is not a directory", dir), fix)
			r.skip("no cache directory", CheckStoreSpace)
			return
		}
		f, err := os.CreateTemp(dir, ".layerbridge-doctor-*")
		if err != nil {
			r.add(CheckStoreWritable, Failed, fmt.Sprintf("cannot create a file in the cache directory: %v", err), fix)
		} else {
			name := f.Name()
			f.Close()
			os.Remove(name)
			r.add(CheckStoreWritable, Passed, fmt.Sprintf("created and removed a file in %s", dir), "")
		}
	} else if err := unix.Access(existing, unix.W_OK|unix.X_OK); err != nil {
		r.add(CheckStoreWritable, Failed, fmt.Sprintf("%s does not exist and cannot be created in %s: %v", dir, existing, err), fix)
	} else {
		r.add(CheckStoreWritable, Passed, fmt.Sprintf("%s does not exist yet; the first scan creates it in %s, which is writable", dir, existing), "")
	}

	var st unix.Statfs_t
	if err := unix.Statfs(existing, &st); err != nil {
		r.add(CheckStoreSpace, Skipped, fmt.Sprintf("statfs %s: %v", existing, err), "")
		return
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	ev := fmt.Sprintf("%s free on the filesystem of %s", humanSize(free), existing)
	switch {
	case r.imageBytes <= 0:
		r.add(CheckStoreSpace, Passed, ev+" (no image size to compare with)", "")
	case free < r.imageBytes:
		r.add(CheckStoreSpace, Failed, ev+fmt.Sprintf("; the image needs about %s (unless it is already cached)", humanSize(r.imageBytes)),
			"free space there, or put the cache on a bigger filesystem with --cache-dir (or LAYERBRIDGE_CACHE_DIR)")
	default:
		r.add(CheckStoreSpace, Passed, ev+fmt.Sprintf("; the image needs about %s", humanSize(r.imageBytes)), "")
	}
}

// existingAncestor returns the absolute form of dir, or of its nearest
// ancestor that exists.
func existingAncestor(dir string) (string, error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		_, err := os.Stat(d)
		if err == nil {
			return d, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", errors.New("no existing parent directory")
		}
		d = parent
	}
}
