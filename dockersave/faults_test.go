package dockersave

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/layerbridge/layerbridge/engine"
	"github.com/layerbridge/layerbridge/internal/fulldisk"
	"github.com/layerbridge/layerbridge/internal/testwait"
	"github.com/layerbridge/layerbridge/store"
)

// manualDeadline is a context whose deadline passes when expire is called:
// a fault test expires it once the fault is in place, however slow the
// machine, instead of racing a timer against the code under test.
type manualDeadline struct {
	context.Context
	done chan struct{}
	once sync.Once
}

func newManualDeadline(parent context.Context) *manualDeadline {
	return &manualDeadline{Context: parent, done: make(chan struct{})}
}

func (c *manualDeadline) Done() <-chan struct{} { return c.done }

func (c *manualDeadline) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

func (c *manualDeadline) expire() { c.once.Do(func() { close(c.done) }) }

// firstLayerCut is an offset in the middle of the first layer of the fake
// engine's export.
func firstLayerCut(t *testing.T, f *fakeEngine) int {
	t.Helper()
	return bodyOffset(t, f.archive, hexOf([]byte{0, 'v', '1'})+"/layer.tar") + 100
}

// checkNothingStored fails unless the store holds no blob, no record and no
// staging file, and the image's lock is free.
func checkNothingStored(t *testing.T, s *store.Store, f *fakeEngine) {
	t.Helper()
	if b := storeBlobs(t, s); len(b) != 0 {
		t.Errorf("blobs visible after a failed export: %v", b)
	}
	if left, _ := os.ReadDir(filepath.Join(s.Dir(), stagingDir)); len(left) != 0 {
		t.Errorf("staging files left: %v", left)
	}
	if images, err := s.Images(); err != nil || len(images) != 0 {
		t.Errorf("images after a failed export: %v, %v", images, err)
	}
	l, err := s.LockImage(doneContext(), digest.Digest(f.inspect.ID), linuxAMD64)
	if err != nil {
		t.Fatalf("the image's lock is still held after the failed export (%v)", err)
	}
	l.Unlock()
}

// TestDaemonStreamFaults drives the real Engine API client against a fake
// daemon on a unix socket that breaks the export stream: each failure is
// reported with its cause, leaves nothing in the store, and the next export
// (from a daemon that behaves) succeeds.
func TestDaemonStreamFaults(t *testing.T) {
	cases := []struct {
		name string
		// serve answers the export; it reports on stalling when it
		// stalls, and then the load's deadline passes: at once, or with
		// midLayer once the loader has read part of the first layer.
		serve    func(t *testing.T, w http.ResponseWriter, r *http.Request, archive []byte, cut int, stalling chan<- struct{})
		midLayer bool
		check    func(t *testing.T, err error)
	}{
		{name: "daemon closes the stream mid-layer",
			serve: func(t *testing.T, w http.ResponseWriter, r *http.Request, archive []byte, cut int, _ chan<- struct{}) {
				w.Write(archive[:cut])
				w.(http.Flusher).Flush()
				conn, _, err := http.NewResponseController(w).Hijack()
				if err != nil {
					t.Error(err)
					return
				}
				conn.Close()
			},
			check: func(t *testing.T, err error) {
				if !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), "unexpected EOF") {
					t.Fatalf("got %v, want a truncated archive (unexpected EOF)", err)
				}
			}},
		{name: "daemon sends an error after the first bytes",
			serve: func(t *testing.T, w http.ResponseWriter, r *http.Request, archive []byte, cut int, _ chan<- struct{}) {
				w.Write(archive[:cut])
				w.Write([]byte(daemonErrJSON))
			},
			check: func(t *testing.T, err error) {
				var de *DaemonError
				if !errors.Is(err, ErrTruncated) || !errors.As(err, &de) || !strings.Contains(de.Message, "no space left on device") {
					t.Fatalf("got %v, want a truncated archive carrying the daemon's message", err)
				}
			}},
		{name: "daemon stalls mid-layer", midLayer: true,
			serve: func(t *testing.T, w http.ResponseWriter, r *http.Request, archive []byte, cut int, stalling chan<- struct{}) {
				w.Write(archive[:cut])
				w.(http.Flusher).Flush()
				stalling <- struct{}{}
				<-r.Context().Done()
			},
			check: func(t *testing.T, err error) {
				if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "app:1") {
					t.Fatalf("got %v, want the load's deadline, naming the image", err)
				}
			}},
		{name: "daemon stalls before answering",
			serve: func(t *testing.T, w http.ResponseWriter, r *http.Request, archive []byte, cut int, stalling chan<- struct{}) {
				stalling <- struct{}{}
				<-r.Context().Done()
			},
			check: func(t *testing.T, err error) {
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("got %v, want the load's deadline", err)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeEngine(t)
			cut := firstLayerCut(t, f)
			stalling := make(chan struct{}, 1)
			f.serveSave = func(w http.ResponseWriter, r *http.Request, archive []byte) {
				tc.serve(t, w, r, archive, cut, stalling)
			}
			ep := fakeDaemon(t, "1.41", f)
			s := openTestStore(t)
			ctx := newManualDeadline(t.Context())
			staging := make(chan struct{}, 1)
			go func() {
				select {
				case <-stalling:
					if tc.midLayer {
						select {
						case <-staging:
						case <-t.Context().Done():
							return
						}
					}
					ctx.expire()
				case <-t.Context().Done():
				}
			}()
			c, err := engine.NewClient(ep)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			progress := WithProgress(func(int64) {
				select {
				case staging <- struct{}{}:
				default:
				}
			})
			_, err = NewLoader(s, WithEngine(c, ep), progress).loadReleased(ctx, "app:1", nil)
			t.Log(err)
			tc.check(t, err)
			checkNothingStored(t, s, f)

			f.mu.Lock()
			f.serveSave = nil
			f.mu.Unlock()
			img, err := realClientLoader(t, s, ep).loadReleased(t.Context(), "app:1", nil)
			if err != nil {
				t.Fatalf("the next export: %v", err)
			}
			checkImage(t, s, img)
		})
	}
}

const killHelperEnv = "LAYERBRIDGE_TEST_KILLED_EXPORT"

// TestKilledExportHelper is not a test: TestKilledDuringExport runs the test
// binary again with it, to export an image from the fake daemon at the
// socket its environment names, into the store it names, and be killed.
func TestKilledExportHelper(t *testing.T) {
	spec := os.Getenv(killHelperEnv)
	if spec == "" {
		t.Skip("helper process for TestKilledDuringExport")
	}
	dir, sock, _ := strings.Cut(spec, "\n")
	s, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ep := engine.Endpoint{Host: "unix://" + sock}
	_, err = realClientLoader(t, s, ep).loadReleased(context.Background(), "app:1", nil)
	t.Fatalf("the export was meant to be killed, it ended: %v", err)
}

// TestKilledDuringExport kills (SIGKILL) a process in the middle of an
// export: the store shows nothing of it (no blob, no record), its lock is
// released with the process, the next export succeeds, and the staging
// file it left is removed once stale.
func TestKilledDuringExport(t *testing.T) {
	f := newFakeEngine(t)
	cut := firstLayerCut(t, f)
	midExport := make(chan struct{}, 1)
	f.serveSave = func(w http.ResponseWriter, r *http.Request, archive []byte) {
		w.Write(archive[:cut])
		w.(http.Flusher).Flush()
		midExport <- struct{}{}
		<-r.Context().Done() // until the process dies
	}
	ep := fakeDaemon(t, "1.41", f)
	s := openTestStore(t)

	cmd := exec.CommandContext(testwait.Context(t), os.Args[0], "-test.run=^TestKilledExportHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), killHelperEnv+"="+s.Dir()+"\n"+strings.TrimPrefix(ep.Host, "unix://"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	testwait.Recv(t, midExport, "the helper's export to start")
	// Kill it once it is writing the layer: its staging file exists.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if staged, _ := os.ReadDir(filepath.Join(s.Dir(), stagingDir)); len(staged) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the helper never started staging the layer")
		}
	}
	if l, err := s.LockImage(doneContext(), digest.Digest(f.inspect.ID), linuxAMD64); !errors.Is(err, context.Canceled) {
		l.Unlock()
		t.Fatalf("the helper does not hold the image's lock mid-export (%v)", err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("helper: %v, want killed", err)
	}
	if staged, _ := os.ReadDir(filepath.Join(s.Dir(), stagingDir)); len(staged) != 1 {
		t.Errorf("the killed export left %d staging files, want its one partial layer", len(staged))
	}

	// Nothing of the export is visible; the lock went with the process.
	if b := storeBlobs(t, s); len(b) != 0 {
		t.Errorf("blobs visible after the killed export: %v", b)
	}
	if images, err := s.Images(); err != nil || len(images) != 0 {
		t.Errorf("images after the killed export: %v, %v", images, err)
	}
	f.mu.Lock()
	f.serveSave = nil
	f.mu.Unlock()
	img, err := realClientLoader(t, s, ep).loadReleased(t.Context(), "app:1", nil)
	if err != nil {
		t.Fatalf("the export after the kill: %v", err)
	}
	checkImage(t, s, img)
	// A day later, the killed process's staging file is removed (by the
	// next store.Open or Prune).
	later, err := store.Open(s.Dir(), store.WithClock(func() time.Time { return time.Now().Add(25 * time.Hour) }))
	if err != nil {
		t.Fatal(err)
	}
	later.Close()
	if left, _ := os.ReadDir(filepath.Join(s.Dir(), stagingDir)); len(left) != 0 {
		t.Errorf("stale staging files kept: %v", left)
	}
}

// TestDiskFullHelper is not a test: TestDiskFullDuringExport runs the test
// binary again with it (fulldisk.Run), where it mounts a 2 MiB tmpfs and
// exports images larger than that into a store there.
func TestDiskFullHelper(t *testing.T) {
	dir := fulldisk.Dir(t, "2m")
	s, err := store.Open(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	free := func() uint64 {
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil {
			t.Fatal(err)
		}
		return st.Bavail * uint64(st.Bsize)
	}
	before := free()
	// 3 MiB goes through the page cache, 9 MiB through direct I/O.
	for _, size := range []int{3 << 20, 9 << 20} {
		f := benchEngine(t, fmt.Sprintf("big:%d", size), [][]byte{randomLayer(t, size)})
		_, err := daemonLoader(s, f).loadReleased(t.Context(), f.inspect.RepoTags[0], nil)
		if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "no space left on device") {
			t.Fatalf("%d MiB layer on a 2 MiB disk: got %v, want ENOSPC", size>>20, err)
		}
		checkNothingStored(t, s, f)
		if after := free(); after != before {
			t.Errorf("%d bytes free after the failed export, %d before", after, before)
		}
	}
	f := benchEngine(t, "small:1", [][]byte{randomLayer(t, 64<<10)})
	img, err := daemonLoader(s, f).loadReleased(t.Context(), "small:1", nil)
	if err != nil {
		t.Fatalf("an image that fits, after the disk was full: %v", err)
	}
	checkImage(t, s, img)
}

// TestDiskFullDuringExport fills the disk during exports (a tmpfs of its
// own, see fulldisk). Each export fails with ENOSPC, frees all it wrote,
// keeps the store consistent, and an export that fits succeeds afterwards.
func TestDiskFullDuringExport(t *testing.T) {
	mnt := fulldisk.Run(t, "TestDiskFullHelper")
	// The mount was the helper's alone.
	var st unix.Statfs_t
	if err := unix.Statfs(mnt, &st); err != nil || st.Type == unix.TMPFS_MAGIC && !isTmpfs(filepath.Dir(mnt)) {
		t.Errorf("the helper's tmpfs is visible outside its namespace (%v)", err)
	}
	if entries, _ := os.ReadDir(mnt); len(entries) != 0 {
		t.Errorf("the helper's store is visible outside its namespace: %v", entries)
	}
}

func isTmpfs(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Type == unix.TMPFS_MAGIC
}
