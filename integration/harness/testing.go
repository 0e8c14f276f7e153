package harness

import (
	"errors"
	"log/slog"
	"os"
	"strings"
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
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(testLogWriter{t}, nil))
	}
	s, err := Start(t.Context(), opts)
	if errors.Is(err, ErrUnavailable) {
		Unavailable(t, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("clair log (last 16 KiB of %s):\n%s", s.Clair.LogPath, s.Clair.LogTail(16<<10))
			t.Logf("postgres log (last 4 KiB):\n%s", s.Postgres.LogTail(4<<10))
		}
		if err := s.Close(); err != nil {
			t.Errorf("stop harness: %v", err)
		}
	})
	return s
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
