package harness

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/moby/moby/client"
)

// Unavailable ends a test that cannot run because this machine lacks
// something (err wraps ErrUnavailable, or says what is missing): with
// CI=true in the environment it fails the test, since CI must run
// everything; otherwise it skips with the reason.
func Unavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true and this machine cannot run the test: %v", err)
	}
	t.Skipf("skipped: %v", err)
}

// testLogWriter turns slog output into test log lines. Only synchronous
// logging (during Start) may use it: t.Log after the test ends panics.
type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// StartT is Start for tests: it logs progress and timings to the test log,
// runs the services for the test's lifetime (t.Context), and at cleanup
// prints the end of Clair's and PostgreSQL's logs if the test failed, then
// stops everything. A missing prerequisite goes through Unavailable.
func StartT(t testing.TB, opts Options) *Stack {
	t.Helper()
	return StartManyT(t, opts)[0]
}

// StartManyT is StartT for several stacks, started at once (each takes a
// while: Clair's build the first time, PostgreSQL, Clair's first update);
// it returns them in the order of opts. Each Start runs on a goroutine of
// its own, but the failures are reported, and the cleanups registered, from
// the caller's, which must be the test's: a failed start fails the test,
// not the whole test binary, and the stacks that did start are stopped.
func StartManyT(t testing.TB, opts ...Options) []*Stack {
	t.Helper()
	type started struct {
		stack *Stack
		err   error
	}
	results := make([]started, len(opts))
	var wg sync.WaitGroup
	for i, o := range opts {
		if o.Logger == nil {
			// Synchronous: every Start has returned before this returns.
			o.Logger = slog.New(slog.NewTextHandler(testLogWriter{t}, nil))
		}
		wg.Go(func() {
			s, err := Start(t.Context(), o)
			results[i] = started{s, err}
		})
	}
	// Each Start is bounded: by its own timeouts, and by t.Context.
	wg.Wait()
	var stacks []*Stack
	var failed []error
	for _, r := range results {
		if r.err != nil {
			failed = append(failed, r.err)
			continue
		}
		s := r.stack
		stacks = append(stacks, s)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("clair log (last 16 KiB of %s):\n%s", s.Clair.LogPath, s.Clair.LogTail(16<<10))
				t.Logf("postgres log (last 4 KiB):\n%s", s.Postgres.LogTail(4<<10))
			}
			if err := s.Close(); err != nil {
				t.Errorf("stop harness: %v", err)
			}
		})
	}
	for _, err := range failed {
		if !errors.Is(err, ErrUnavailable) {
			t.Fatal(err)
		}
	}
	if len(failed) > 0 {
		Unavailable(t, failed[0])
	}
	return stacks
}

// ServeLayersT is ServeLayers for the test's lifetime.
func ServeLayersT(t testing.TB, files ...string) *LayerServer {
	t.Helper()
	s, err := ServeLayers(t.Context(), files...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// StartStandinT is StartStandin for the test's lifetime.
func StartStandinT(t testing.TB, feedDir string) *Standin {
	t.Helper()
	s, err := StartStandin(t.Context(), feedDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// DockerT returns a client of the Docker daemon, closed at cleanup; an
// unreachable daemon goes through Unavailable.
func DockerT(t testing.TB) *client.Client {
	t.Helper()
	cli, err := DockerClient(t.Context())
	if err != nil {
		Unavailable(t, err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// StartDockerT is StartDocker for tests, as StartT is Start: progress and
// timings in the test log, everything stopped and removed at cleanup (the
// network last, so close the test's own containers on it first: register
// them after calling StartDockerT), the end of Clair's and PostgreSQL's logs
// printed if the test failed. A missing Docker daemon or PostgreSQL goes
// through Unavailable.
func StartDockerT(t testing.TB, opts Options) *DockerStack {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(testLogWriter{t}, nil))
	}
	cli := DockerT(t)
	s, err := StartDocker(t.Context(), cli, opts)
	if errors.Is(err, ErrUnavailable) {
		Unavailable(t, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("clair container log (last 16 KiB):\n%s", s.Clair.LogTail(16<<10))
			t.Logf("postgres log (last 4 KiB):\n%s", s.Postgres.LogTail(4<<10))
		}
		if err := s.Close(); err != nil {
			t.Errorf("stop harness: %v", err)
		}
	})
	return s
}

// RunContainerT is RunContainer for the test's lifetime: at cleanup the
// container is stopped and removed, its output printed first if the test
// failed.
func RunContainerT(t testing.TB, cli ContainerAPI, spec ContainerSpec) *Container {
	t.Helper()
	c, err := RunContainer(t.Context(), cli, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("output of container %s (last 16 KiB):\n%s", c.Name, c.LogTail(16<<10))
		}
		if err := c.Close(); err != nil {
			t.Errorf("remove container %s: %v", c.Name, err)
		}
	})
	return c
}

// BuildImageT builds contextDir with BuildOwnedImage as repo:<random hex>
// and returns that tag; the image is removed at cleanup.
func BuildImageT(t testing.TB, cli DockerAPI, contextDir, repo string) string {
	t.Helper()
	tag := repo + ":" + randomHex(6)
	if _, err := BuildOwnedImage(t.Context(), cli, contextDir, tag, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := RemoveImage(cli, tag); err != nil {
			t.Errorf("%v", err)
		}
	})
	return tag
}

// SharedEngine is an engine (Dockerd, Podman, Containerd) that the tests of
// one test process share, to keep the suite fast: Get starts it for the
// first test that asks (that test's log shows the build and start), the
// others wait for that start and get the same engine; Close, which TestMain
// calls after the tests have run, stops it. Tests that share it must name
// what they create in it uniquely and remove it at cleanup. Should the test
// process die first, the next run removes what is left (the engine's
// temporary directory, with its mounts and processes).
type SharedEngine[E interface{ Close() error }] struct {
	// Start starts the engine (StartDockerd, StartPodman, StartContainerd).
	Start func(context.Context, EngineOptions) (E, error)

	once    sync.Once
	engine  E
	err     error
	started bool
	cancel  context.CancelFunc
}

// Get returns the engine, starting it on first use. A missing prerequisite
// goes through Unavailable, for this and every later caller.
func (s *SharedEngine[E]) Get(t testing.TB) E {
	t.Helper()
	s.once.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		s.cancel = cancel
		// The logger writes to this test's log during the start only.
		s.engine, s.err = s.Start(ctx, EngineOptions{Logger: slog.New(slog.NewTextHandler(testLogWriter{t}, nil))})
		s.started = s.err == nil
	})
	if errors.Is(s.err, ErrUnavailable) {
		Unavailable(t, s.err)
	}
	if s.err != nil {
		t.Fatal(s.err)
	}
	return s.engine
}

// Close stops the engine if it was started. Call it once, after the tests.
func (s *SharedEngine[E]) Close() error {
	if s.cancel != nil {
		defer s.cancel()
	}
	if !s.started {
		return nil
	}
	return s.engine.Close()
}
