package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/moby/moby/client"
)

// Dockerd is a Docker Engine of its own: dockerd 29.8.1 built from
// integration/engines/dockerd, with the containerd image store (overlayfs
// snapshotter) on a Containerd of its own, its data, exec root and socket
// in a temporary directory. It has no bridge network and touches no
// iptables rule: containers and builds run with network "none". The docker
// CLI reaches it with Env, which also makes buildx (built from
// integration/engines/buildx) the CLI's plugin.
type Dockerd struct {
	// Host is the daemon's address, unix://<dir>/docker.sock, for
	// DOCKER_HOST or layerbridge's --docker-host.
	Host string
	// ConfigDir is a docker CLI configuration directory (DOCKER_CONFIG)
	// whose cli-plugins/ holds docker-buildx.
	ConfigDir string
	// LogPath is dockerd's log. Close removes it: read it (LogTail) before.
	LogPath string
	// Containerd is the containerd dockerd uses.
	Containerd *Containerd

	dir  string
	proc *process
}

// StartDockerd builds containerd, dockerd and buildx (or finds them in the
// cache: about 7 minutes on 2 cores with a cold Go build cache), starts
// containerd and dockerd in a new temporary directory, and returns once
// dockerd answers a ping. It runs until Close or until ctx ends; Close must
// be called either way to remove the directory. It needs root and runc; an
// error wrapping ErrUnavailable says what this machine lacks.
//
// The daemon runs with the features this machine allows: no time namespace
// (Debian 12's runc 1.1.5 has none, and RUN steps fail without this),
// storage driver "overlayfs" (the containerd snapshotter).
func StartDockerd(ctx context.Context, opts EngineOptions) (*Dockerd, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := checkEnginePrerequisites(); err != nil {
		return nil, fmt.Errorf("start dockerd: %w", err)
	}
	builds := map[string]EngineBuild{}
	for _, e := range []struct {
		name  string
		build func(context.Context, string, string) (EngineBuild, error)
	}{{"containerd", BuildContainerd}, {"dockerd", BuildDockerd}, {"buildx", BuildBuildx}} {
		b, err := e.build(ctx, opts.ModuleDir, opts.CacheDir)
		if err != nil {
			return nil, err
		}
		log.InfoContext(ctx, e.name+" binaries", slog.String("dir", b.Dir), slog.String("version", b.Version),
			slog.Bool("built", b.Built), slog.Duration("took", b.Duration.Round(time.Millisecond)))
		builds[e.name] = b
	}
	dir, err := tempDir("layerbridge-dockerd-")
	if err != nil {
		return nil, fmt.Errorf("start dockerd: %w", err)
	}
	d := &Dockerd{dir: dir}
	if err := d.start(ctx, builds, log); err != nil {
		return nil, errors.Join(err, d.Close())
	}
	return d, nil
}

func (d *Dockerd) start(ctx context.Context, builds map[string]EngineBuild, log *slog.Logger) error {
	var err error
	if d.Containerd, err = startContainerd(ctx, builds["containerd"].Dir, filepath.Join(d.dir, "containerd"), log); err != nil {
		return err
	}
	d.ConfigDir = filepath.Join(d.dir, "cli")
	plugins := filepath.Join(d.ConfigDir, "cli-plugins")
	if err := os.MkdirAll(plugins, 0o755); err != nil {
		return fmt.Errorf("start dockerd: %w", err)
	}
	if err := os.Symlink(builds["buildx"].Path("docker-buildx"), filepath.Join(plugins, "docker-buildx")); err != nil {
		return fmt.Errorf("start dockerd: %w", err)
	}
	tmp := filepath.Join(d.dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return fmt.Errorf("start dockerd: %w", err)
	}
	config := filepath.Join(d.dir, "daemon.json")
	if err := os.WriteFile(config, []byte(`{"storage-driver":"overlayfs","features":{"time-namespaces":false}}`+"\n"), 0o644); err != nil {
		return fmt.Errorf("start dockerd: %w", err)
	}
	sock := filepath.Join(d.dir, "docker.sock")
	d.Host = "unix://" + sock
	d.LogPath = filepath.Join(d.dir, "dockerd.log")
	logFile, err := os.Create(d.LogPath)
	if err != nil {
		return fmt.Errorf("start dockerd: %w", err)
	}
	defer logFile.Close() // the child has its own copy
	cmd := exec.Command(builds["dockerd"].Path("dockerd"),
		"--config-file", config,
		"--containerd", d.Containerd.Address,
		"--host", d.Host,
		"--data-root", filepath.Join(d.dir, "data"),
		"--exec-root", filepath.Join(d.dir, "exec"),
		"--pidfile", filepath.Join(d.dir, "docker.pid"),
		"--bridge", "none", "--iptables=false", "--ip6tables=false")
	cmd.Env = append(engineEnv(builds["containerd"].Dir, tmp), "DOCKER_TMPDIR="+tmp)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// dockerd stops its containers on SIGTERM, which takes a while.
	d.proc, err = startProcess(ctx, "dockerd", cmd, syscall.SIGTERM, 30*time.Second)
	if err != nil {
		return err
	}
	start := time.Now()
	cli, err := client.New(client.WithHost(d.Host))
	if err != nil {
		return fmt.Errorf("start dockerd: %w", err)
	}
	defer cli.Close()
	err = pollReady(ctx, d.proc, 60*time.Second, func(ctx context.Context) error {
		_, err := cli.Ping(ctx, client.PingOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("start dockerd: %w\ndockerd log (%s):\n%s", err, d.LogPath, d.LogTail(4096))
	}
	log.InfoContext(ctx, "dockerd ready", slog.String("host", d.Host), slog.Duration("took", time.Since(start).Round(time.Millisecond)))
	return nil
}

// Client returns an Engine API client of this daemon (the API version
// negotiated); close it.
func (d *Dockerd) Client(ctx context.Context) (*client.Client, error) {
	return engineClient(ctx, d.Host)
}

// Env is the environment of a docker CLI command for this daemon: this
// process's, with DOCKER_HOST and DOCKER_CONFIG set (and DOCKER_CONTEXT
// unset).
func (d *Dockerd) Env() []string {
	return cliEnv(d.Host, d.ConfigDir)
}

// Docker runs the docker CLI against this daemon (with Env) and returns
// its combined output.
func (d *Dockerd) Docker(ctx context.Context, args ...string) (string, error) {
	return runDockerCLI(ctx, d.Env(), args...)
}

// BuildxBuild builds contextDir with BuildKit (`docker buildx build
// --network none --load`) for the platforms given (none: the daemon's own)
// as tag, with BuildKit's defaults otherwise (a provenance attestation
// attached), copying the build's output to progress (nil discards it).
func (d *Dockerd) BuildxBuild(ctx context.Context, contextDir, tag string, platforms []string, progress io.Writer) error {
	args := []string{"buildx", "build", "--network", "none", "--load", "--progress", "plain", "--tag", tag}
	if len(platforms) > 0 {
		args = append(args, "--platform", strings.Join(platforms, ","))
	}
	out, err := d.Docker(ctx, append(args, contextDir)...)
	if progress != nil {
		io.WriteString(progress, out)
	}
	if err != nil {
		return fmt.Errorf("build %s: %w\n%s", tag, err, tail([]byte(out), 4096))
	}
	return nil
}

// LogTail returns at most the last n bytes of dockerd's log.
func (d *Dockerd) LogTail(n int) string { return fileTail(d.LogPath, n) }

// Close stops dockerd (SIGTERM, SIGKILL after 30 s), then containerd, and
// removes their directory. It may be called more than once.
func (d *Dockerd) Close() error {
	if d.proc != nil {
		d.proc.stop()
	}
	if d.Containerd != nil && d.Containerd.proc != nil {
		d.Containerd.proc.stop()
	}
	return removeEngineDir(d.dir)
}

// engineClient returns an Engine API client of the daemon at host once it
// has answered a ping (negotiating the API version).
func engineClient(ctx context.Context, host string) (*client.Client, error) {
	cli, err := client.New(client.WithHost(host))
	if err != nil {
		return nil, fmt.Errorf("docker client of %s: %w", host, err)
	}
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		cli.Close()
		return nil, fmt.Errorf("daemon at %s: %w", host, err)
	}
	return cli, nil
}

// cliEnv is this process's environment for a docker CLI talking to host,
// configured from configDir ("" keeps the user's).
func cliEnv(host, configDir string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH":
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "DOCKER_HOST="+host)
	if configDir != "" {
		env = append(env, "DOCKER_CONFIG="+configDir)
	}
	return env
}

// runDockerCLI runs the docker CLI with env and returns its combined
// output. A missing CLI wraps ErrUnavailable.
func runDockerCLI(ctx context.Context, env []string, args ...string) (string, error) {
	bin, err := exec.LookPath("docker")
	if err != nil {
		return "", fmt.Errorf("the docker CLI is not on PATH (Debian: apt-get install -y docker.io): %w", ErrUnavailable)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("docker %s: %w", strings.Join(args, " "), err)
	}
	return out.String(), nil
}
