package harness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/moby/moby/client"
)

// Podman is a Podman API service of its own (`podman system service`, the
// system's podman), which speaks the Docker Engine API: its storage (vfs
// driver), run root, temporary files and socket in a temporary directory.
type Podman struct {
	// Host is the service's address, unix://<dir>/podman.sock, for
	// DOCKER_HOST or layerbridge's --docker-host.
	Host string
	// LogPath is the service's log. Close removes it: read it (LogTail)
	// before.
	LogPath string

	dir  string
	proc *process
}

// StartPodman starts `podman system service` in a new temporary directory
// and returns once it answers a ping. It runs until Close or until ctx
// ends; Close must be called either way to remove the directory. An error
// wrapping ErrUnavailable says what this machine lacks (podman, or root:
// rootless podman needs subordinate ids this harness does not set up).
func StartPodman(ctx context.Context, opts EngineOptions) (*Podman, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bin, err := exec.LookPath("podman")
	if err != nil {
		return nil, fmt.Errorf("start podman: podman is not on PATH (Debian: apt-get install -y podman): %w", ErrUnavailable)
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("start podman: the harness runs podman as root, and this process runs as uid %d: %w", os.Geteuid(), ErrUnavailable)
	}
	dir, err := tempDir("layerbridge-podman-")
	if err != nil {
		return nil, fmt.Errorf("start podman: %w", err)
	}
	p := &Podman{dir: dir}
	if err := p.start(ctx, bin, log); err != nil {
		return nil, errors.Join(err, p.Close())
	}
	return p, nil
}

func (p *Podman) start(ctx context.Context, bin string, log *slog.Logger) error {
	tmp := filepath.Join(p.dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return fmt.Errorf("start podman: %w", err)
	}
	sock := filepath.Join(p.dir, "podman.sock")
	p.Host = "unix://" + sock
	p.LogPath = filepath.Join(p.dir, "podman.log")
	logFile, err := os.Create(p.LogPath)
	if err != nil {
		return fmt.Errorf("start podman: %w", err)
	}
	defer logFile.Close() // the child has its own copy
	cmd := exec.Command(bin,
		"--root", filepath.Join(p.dir, "storage"),
		"--runroot", filepath.Join(p.dir, "run"),
		"--storage-driver", "vfs",
		"--tmpdir", filepath.Join(p.dir, "libpod-tmp"),
		"--cgroup-manager", "cgroupfs",
		"--events-backend", "file",
		"system", "service", "--time=0", p.Host)
	// Image loads and builds spool to TMPDIR (else /var/tmp).
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	p.proc, err = startProcess(ctx, "podman", cmd, syscall.SIGTERM, 15*time.Second)
	if err != nil {
		return err
	}
	start := time.Now()
	cli, err := client.New(client.WithHost(p.Host))
	if err != nil {
		return fmt.Errorf("start podman: %w", err)
	}
	defer cli.Close()
	err = pollReady(ctx, p.proc, 60*time.Second, func(ctx context.Context) error {
		_, err := cli.Ping(ctx, client.PingOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("start podman: %w\npodman log (%s):\n%s", err, p.LogPath, p.LogTail(4096))
	}
	log.InfoContext(ctx, "podman ready", slog.String("host", p.Host), slog.Duration("took", time.Since(start).Round(time.Millisecond)))
	return nil
}

// Client returns an Engine API client of this service (the API version
// negotiated); close it.
func (p *Podman) Client(ctx context.Context) (*client.Client, error) {
	return engineClient(ctx, p.Host)
}

// Env is the environment of a docker CLI command for this service: this
// process's, with DOCKER_HOST set (and DOCKER_CONTEXT unset).
func (p *Podman) Env() []string { return cliEnv(p.Host, "") }

// LogTail returns at most the last n bytes of the service's log.
func (p *Podman) LogTail(n int) string { return fileTail(p.LogPath, n) }

// Close stops the service (SIGTERM, SIGKILL after 15 s), ends what is left
// of its containers (conmon) and mounts, and removes its directory. It may
// be called more than once.
func (p *Podman) Close() error {
	if p.proc != nil {
		p.proc.stop()
	}
	return removeEngineDir(p.dir)
}
