package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// EngineOptions configures StartContainerd, StartDockerd and StartPodman.
type EngineOptions struct {
	// ModuleDir is a directory inside the integration module, where the
	// engines are built ("" means the current directory).
	ModuleDir string
	// CacheDir keeps built engines; "" means DefaultCacheDir.
	CacheDir string
	// Logger receives progress messages; nil discards them.
	Logger *slog.Logger
}

// Containerd is a containerd daemon of its own: containerd v2.4.2 built
// from integration/engines/containerd, its root and state directories in a
// temporary directory, listening only on a unix socket (no TCP, no debug or
// metrics listener, the CRI and NRI plugins disabled), with the overlayfs
// snapshotter. Its shims are containerd v2's (the build's directory comes
// first on its PATH); runc is the system's.
type Containerd struct {
	// Address is the path of its gRPC socket (ctr -a, CONTAINERD_ADDRESS,
	// dockerd --containerd).
	Address string
	// LogPath is containerd's log. Close removes it: read it (LogTail)
	// before.
	LogPath string
	// BinDir holds containerd, ctr and containerd-shim-runc-v2.
	BinDir string

	dir  string
	proc *process
}

// StartContainerd builds containerd (or finds it in the cache), starts it
// in a new temporary directory and returns once its socket accepts
// connections. It runs until Close or until ctx ends; Close must be called
// either way to remove the directory. It needs root (containerd mounts
// snapshots); an error wrapping ErrUnavailable says what this machine
// lacks.
func StartContainerd(ctx context.Context, opts EngineOptions) (*Containerd, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := checkEnginePrerequisites(); err != nil {
		return nil, fmt.Errorf("start containerd: %w", err)
	}
	b, err := BuildContainerd(ctx, opts.ModuleDir, opts.CacheDir)
	if err != nil {
		return nil, err
	}
	log.InfoContext(ctx, "containerd binaries", slog.String("dir", b.Dir), slog.String("version", b.Version),
		slog.Bool("built", b.Built), slog.Duration("took", b.Duration.Round(time.Millisecond)))
	dir, err := tempDir("layerbridge-containerd-")
	if err != nil {
		return nil, fmt.Errorf("start containerd: %w", err)
	}
	c, err := startContainerd(ctx, b.Dir, dir, log)
	if err != nil {
		return nil, errors.Join(err, removeEngineDir(dir))
	}
	c.dir = dir
	return c, nil
}

// startContainerd starts containerd from binDir with everything under dir
// (which its caller removes).
func startContainerd(ctx context.Context, binDir, dir string, log *slog.Logger) (*Containerd, error) {
	c := &Containerd{
		Address: filepath.Join(dir, "containerd.sock"),
		LogPath: filepath.Join(dir, "containerd.log"),
		BinDir:  binDir,
	}
	tmp := filepath.Join(dir, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("start containerd: %w", err)
	}
	config := filepath.Join(dir, "containerd.toml")
	if err := os.WriteFile(config, []byte(containerdConfig(dir, c.Address)), 0o644); err != nil {
		return nil, fmt.Errorf("start containerd: %w", err)
	}
	logFile, err := os.Create(c.LogPath)
	if err != nil {
		return nil, fmt.Errorf("start containerd: %w", err)
	}
	defer logFile.Close() // the child has its own copy
	cmd := exec.Command(filepath.Join(binDir, "containerd"), "--config", config)
	cmd.Env = engineEnv(binDir, tmp)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	c.proc, err = startProcess(ctx, "containerd", cmd, syscall.SIGTERM, 15*time.Second)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := waitUnixSocket(ctx, c.proc, c.Address, 30*time.Second); err != nil {
		c.proc.stop()
		return nil, fmt.Errorf("start containerd: %w\ncontainerd log (%s):\n%s", err, c.LogPath, c.LogTail(4096))
	}
	log.InfoContext(ctx, "containerd ready", slog.String("address", c.Address), slog.Duration("took", time.Since(start).Round(time.Millisecond)))
	return c, nil
}

// containerdConfig is containerd's configuration (version 3, containerd
// v2): state and root under dir, the gRPC and ttrpc sockets only, and no
// Kubernetes plugins.
func containerdConfig(dir, address string) string {
	return fmt.Sprintf(`version = 3
root = %q
state = %q
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.cri.v1.images",
  "io.containerd.cri.v1.runtime",
  "io.containerd.podsandbox.controller.v1.podsandbox",
  "io.containerd.nri.v1.nri",
]

[grpc]
  address = %q

[ttrpc]
  address = %q

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), address, address+".ttrpc", filepath.Join(dir, "opt"))
}

// engineEnv is the environment of the engines' daemons: the build's
// directory first on PATH (so that containerd starts its own shim, not an
// older one the system has), temporary files under tmp.
func engineEnv(binDir, tmp string) []string {
	env := []string{"PATH=" + binDir + string(os.PathListSeparator) + os.Getenv("PATH"), "TMPDIR=" + tmp}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PATH=") && !strings.HasPrefix(kv, "TMPDIR=") {
			env = append(env, kv)
		}
	}
	return env
}

// checkEnginePrerequisites says what this machine lacks to run containerd
// or dockerd: root, and runc for containers (RUN steps).
func checkEnginePrerequisites() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("containerd and dockerd need root here (they mount snapshots), and this process runs as uid %d: %w", os.Geteuid(), ErrUnavailable)
	}
	if _, err := exec.LookPath("runc"); err != nil {
		return fmt.Errorf("runc not found on PATH (Debian: apt-get install -y runc): %w", ErrUnavailable)
	}
	return nil
}

// waitUnixSocket polls until something accepts connections on the socket
// at path, the process exits or the timeout passes.
func waitUnixSocket(ctx context.Context, p *process, path string, timeout time.Duration) error {
	return pollReady(ctx, p, timeout, func(ctx context.Context) error {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "unix", path)
		if err != nil {
			return err
		}
		return conn.Close()
	})
}

// pollReady calls ready until it succeeds, the process exits or the
// timeout passes.
func pollReady(ctx context.Context, p *process, timeout time.Duration, ready func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		if exited, err := p.exited(); exited {
			return fmt.Errorf("%s exited during startup: %v", p.name, err)
		}
		if lastErr = ready(ctx); lastErr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %v: %w (last: %v)", p.name, timeout, context.Cause(ctx), lastErr)
		case <-p.done:
		case <-tick.C:
		}
	}
}

// Ctr runs ctr against this containerd (ctr -a Address args...) and returns
// its standard output.
func (c *Containerd) Ctr(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.BinDir, "ctr"), append([]string{"--address", c.Address}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("ctr %s: %w\n%s", strings.Join(args, " "), err, tail(stderr.Bytes(), 4096))
	}
	return stdout.String(), nil
}

// ImportImage imports the image archive (docker save or OCI layout tar,
// optionally gzip-compressed) into the containerd namespace, content for
// every platform the archive holds, as `ctr images import --all-platforms`,
// and returns the names of the images it created.
func (c *Containerd) ImportImage(ctx context.Context, namespace, archive string) ([]string, error) {
	before, err := c.imageNames(ctx, namespace)
	if err != nil {
		return nil, fmt.Errorf("import %s into %s: %w", archive, namespace, err)
	}
	if _, err := c.Ctr(ctx, "--namespace", namespace, "images", "import", "--all-platforms", archive); err != nil {
		return nil, fmt.Errorf("import %s into %s: %w", archive, namespace, err)
	}
	after, err := c.imageNames(ctx, namespace)
	if err != nil {
		return nil, fmt.Errorf("import %s into %s: %w", archive, namespace, err)
	}
	var names []string
	for _, n := range after {
		if !slices.Contains(before, n) {
			names = append(names, n)
		}
	}
	return names, nil
}

// imageNames lists the image names in the namespace.
func (c *Containerd) imageNames(ctx context.Context, namespace string) ([]string, error) {
	out, err := c.Ctr(ctx, "--namespace", namespace, "images", "list", "--quiet")
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

// LogTail returns at most the last n bytes of containerd's log.
func (c *Containerd) LogTail(n int) string { return fileTail(c.LogPath, n) }

// Close stops containerd (SIGTERM, SIGKILL after 15 s), ends what is left
// of its shims and mounts, and removes its directory (for a Containerd
// started by StartDockerd, Dockerd.Close does). It may be called more than
// once.
func (c *Containerd) Close() error {
	if c.proc != nil {
		c.proc.stop()
	}
	if c.dir == "" {
		return nil
	}
	return removeEngineDir(c.dir)
}
