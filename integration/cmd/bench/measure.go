package main

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// copyBuffer is the buffer every in-process copy uses: large enough that
// the reading side is never the bottleneck of a floor measurement.
const copyBuffer = 1 << 20

// discard is io.Discard without ReadFrom, so that io.CopyBuffer uses our
// buffer instead of io.Discard's 8 KiB one.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// measureFloor is `docker save ID > /dev/null` through the Engine API: the
// whole stream read and dropped.
func measureFloor(ctx context.Context, d dockerAPI, id digest.Digest) (time.Duration, int64, error) {
	start := time.Now()
	rc, err := d.ImageSave(ctx, []string{id.String()})
	if err != nil {
		return 0, 0, fmt.Errorf("save %s: %w", id, err)
	}
	defer rc.Close()
	n, err := io.CopyBuffer(discard{}, rc, make([]byte, copyBuffer))
	if err != nil {
		return 0, n, fmt.Errorf("save %s: %w", id, err)
	}
	return time.Since(start), n, nil
}

// measureNaive is what tools without a streaming reader do: `docker save`
// into a file, then untar that file into a directory (no fsync, as `docker
// save -o` and `tar -x` do not either). dir must be empty.
func measureNaive(ctx context.Context, d dockerAPI, id digest.Digest, dir string) (time.Duration, error) {
	start := time.Now()
	rc, err := d.ImageSave(ctx, []string{id.String()})
	if err != nil {
		return 0, fmt.Errorf("save %s: %w", id, err)
	}
	defer rc.Close()
	archive := filepath.Join(dir, "image.tar")
	f, err := os.Create(archive)
	if err != nil {
		return 0, err
	}
	buf := make([]byte, copyBuffer)
	if _, err := io.CopyBuffer(struct{ io.Writer }{f}, rc, buf); err != nil {
		f.Close()
		return 0, fmt.Errorf("save %s to %s: %w", id, archive, err)
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	out := filepath.Join(dir, "extracted")
	if err := os.Mkdir(out, 0o755); err != nil {
		return 0, err
	}
	if err := untar(archive, out, buf); err != nil {
		return 0, fmt.Errorf("extract %s: %w", archive, err)
	}
	return time.Since(start), nil
}

// untar extracts the archive file into dir: directories, regular files and
// symlinks (legacy saves link duplicate layers), nothing outside dir.
func untar(archive, dir string, buf []byte) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(bufio.NewReaderSize(f, copyBuffer))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := strings.TrimSuffix(h.Name, "/")
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := root.Symlink(h.Linkname, name); err != nil {
				return err
			}
		case tar.TypeReg:
			w, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if err != nil {
				return err
			}
			_, err = io.CopyBuffer(struct{ io.Writer }{w}, tr, buf)
			if cerr := w.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: unexpected entry type %q", h.Name, h.Typeflag)
		}
	}
}

// inspectRun is one run of the layerbridge binary.
type inspectRun struct {
	wall    time.Duration
	maxRSS  int64 // bytes, from wait4's rusage
	cpu     time.Duration
	written int64 // bytes written to storage, from wait4's rusage (blocks of 512)
	out     inspectOutput
}

// inspectOutput is the part of `layerbridge inspect --format json` checked.
type inspectOutput struct {
	ID     string `json:"id"`
	Layers []struct {
		Digest digest.Digest `json:"digest"`
		Size   int64         `json:"size"`
		DiffID digest.Digest `json:"diff_id"`
	} `json:"layers"`
}

// runInspect runs `layerbridge inspect --format json --cache-dir DIR REF`
// as a user would, and times it from fork to reap.
func runInspect(ctx context.Context, bin, cacheDir, ref string) (inspectRun, error) {
	cmd := exec.CommandContext(ctx, bin, "inspect", "--format", "json", "--cache-dir", cacheDir, ref)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if err != nil {
		return inspectRun{}, fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, stderr.String())
	}
	r := inspectRun{wall: wall}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.maxRSS = ru.Maxrss << 10 // KiB on Linux
		r.written = ru.Oublock * 512
	}
	r.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if err := json.Unmarshal([]byte(stdout.String()), &r.out); err != nil {
		return r, fmt.Errorf("%s: output: %w", strings.Join(cmd.Args, " "), err)
	}
	return r, nil
}

// checkInspect verifies that inspect stored exactly the image generated.
func checkInspect(b *builtImage, out inspectOutput) error {
	if out.ID != b.id.String() {
		return fmt.Errorf("inspect %s: id %s, want %s", b.spec.tag(), out.ID, b.id)
	}
	if len(out.Layers) != len(b.diffIDs) {
		return fmt.Errorf("inspect %s: %d layers, want %d", b.spec.tag(), len(out.Layers), len(b.diffIDs))
	}
	for i, l := range out.Layers {
		if l.Digest != b.diffIDs[i] || l.DiffID != b.diffIDs[i] || l.Size != b.sizes[i] {
			return fmt.Errorf("inspect %s: layer %d is %s (%d bytes, diff id %s), want %s (%d bytes)",
				b.spec.tag(), i, l.Digest, l.Size, l.DiffID, b.diffIDs[i], b.sizes[i])
		}
	}
	return nil
}

// settle writes back dirty pages (so that one measurement does not pay for
// the previous one's writes) and, with drop, empties the page cache.
func settle(drop bool) error {
	syscall.Sync()
	if !drop {
		return nil
	}
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		return fmt.Errorf("drop the page cache (needs root): %w", err)
	}
	return nil
}

// clockTicks is USER_HZ, the unit of /proc/stat and /proc/PID/stat times:
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// cpuSample is a snapshot of where the machine's CPU time went, to tell how
// busy other processes kept the machine during a measurement.
type cpuSample struct {
	busy   float64 // seconds of non-idle CPU, all CPUs (/proc/stat)
	docker float64 // seconds used by the docker daemons, their reaped children included
	self   float64 // seconds used by this process and its reaped children
}

// dockerPIDs finds dockerd and containerd.
func dockerPIDs() []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err != nil {
			continue
		}
		switch strings.TrimSpace(string(comm)) {
		case "dockerd", "containerd":
			pids = append(pids, pid)
		}
	}
	return pids
}

func sampleCPU(docker []int) cpuSample {
	var s cpuSample
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line)
		// cpu user nice system idle iowait irq softirq steal ...
		for i, v := range f[1:min(len(f), 9)] {
			if i == 3 || i == 4 {
				continue
			}
			var n float64
			fmt.Sscan(v, &n)
			s.busy += n / clockTicks
		}
	}
	for _, pid := range docker {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Fields after the parenthesized command: state is field 3, utime 14 ... cstime 17.
		_, rest, ok := strings.Cut(string(b), ") ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		for _, v := range f[11:min(len(f), 15)] {
			var n float64
			fmt.Sscan(v, &n)
			s.docker += n / clockTicks
		}
	}
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if syscall.Getrusage(who, &ru) == nil {
			s.self += time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
		}
	}
	return s
}

// otherCores is how many CPUs, on average over wall, processes other than
// docker and this benchmark (with the binary it ran) kept busy between a
// and b.
func otherCores(a, b cpuSample, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	other := (b.busy - a.busy) - (b.docker - a.docker) - (b.self - a.self)
	return max(other, 0) / wall.Seconds()
}
