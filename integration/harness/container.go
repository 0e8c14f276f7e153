package harness

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// ContainerAPI is the part of the Engine API client RunContainer uses;
// *client.Client implements it.
type ContainerAPI interface {
	ContainerCreate(ctx context.Context, options client.ContainerCreateOptions) (client.ContainerCreateResult, error)
	ContainerStart(ctx context.Context, containerID string, options client.ContainerStartOptions) (client.ContainerStartResult, error)
	ContainerInspect(ctx context.Context, containerID string, options client.ContainerInspectOptions) (client.ContainerInspectResult, error)
	ContainerLogs(ctx context.Context, containerID string, options client.ContainerLogsOptions) (client.ContainerLogsResult, error)
	ContainerWait(ctx context.Context, containerID string, options client.ContainerWaitOptions) client.ContainerWaitResult
	ContainerStop(ctx context.Context, containerID string, options client.ContainerStopOptions) (client.ContainerStopResult, error)
	ContainerRemove(ctx context.Context, containerID string, options client.ContainerRemoveOptions) (client.ContainerRemoveResult, error)
}

// ContainerSpec says how RunContainer runs an image.
type ContainerSpec struct {
	// Name is the container's name, its DNS name on Network. Required:
	// make it unique to the run (randomHex).
	Name string
	// Image is a local image; nothing is pulled. Required.
	Image string
	// Cmd replaces the image's CMD; nil keeps it.
	Cmd []string
	// Env is added to the image's environment (KEY=value).
	Env []string
	// User replaces the image's USER ("uid:gid"); "" keeps it.
	User string
	// GroupAdd adds supplementary groups (numeric gids), as
	// `docker run --group-add` does: the way a non-root container reaches
	// the Docker socket.
	GroupAdd []string
	// Binds are bind mounts, "host-path:container-path[:ro]".
	Binds []string
	// Tmpfs mounts a tmpfs at each key, with the value's options
	// ("mode=1777"): a FROM scratch image has no /tmp.
	Tmpfs map[string]string
	// Network is the user-defined network the container joins (the only
	// one: it is not on Docker's default bridge). Required.
	Network *Network
	// Aliases are extra DNS names on Network.
	Aliases []string
	// Publish lists TCP ports of the container to publish on 127.0.0.1 of
	// this host, each on a port Docker picks (Container.HostPort).
	Publish []uint16
	// StopTimeout is how long Close waits after SIGTERM before SIGKILL; 0
	// means 10 seconds.
	StopTimeout time.Duration
}

// Container is a running container started by RunContainer. Its output
// (stdout and stderr, interleaved) is copied to LogPath while it runs.
type Container struct {
	// ID is Docker's container ID.
	ID string
	// Name is ContainerSpec.Name.
	Name string
	// IP is the container's address on the network it was started on.
	IP netip.Addr
	// LogPath is the copy of the container's output. Close removes it:
	// read it (Log, LogTail) before.
	LogPath string

	cli     ContainerAPI
	dir     string
	ports   map[uint16]int
	stopT   time.Duration
	done    chan struct{} // closed when the container has stopped
	exitErr error         // set before done is closed
	logDone chan struct{} // closed when the output is copied to the end
	cancel  context.CancelFunc
	started bool // done and logDone will be closed

	closeOnce sync.Once
	closeErr  error
}

// RunContainer creates and starts a container of spec, labelled as this
// process's (see RemoveOrphans), and returns once Docker reports it running
// with its address and published ports. It does not wait for the program in
// it to be ready: poll it.
//
// The container runs until Close or until ctx ends (then it is stopped;
// Close must still be called to remove it and its log). If this process
// dies without closing it, RemoveOrphans removes it later.
func RunContainer(ctx context.Context, cli ContainerAPI, spec ContainerSpec) (*Container, error) {
	if spec.Name == "" || spec.Image == "" || spec.Network == nil {
		return nil, errors.New("run container: Name, Image and Network are required")
	}
	dir, err := tempDir("layerbridge-container-")
	if err != nil {
		return nil, fmt.Errorf("run container %s: %w", spec.Name, err)
	}
	c := &Container{
		Name: spec.Name, LogPath: filepath.Join(dir, "output.log"),
		cli: cli, dir: dir, ports: map[uint16]int{}, stopT: spec.StopTimeout,
		done: make(chan struct{}), logDone: make(chan struct{}),
	}
	if c.stopT == 0 {
		c.stopT = 10 * time.Second
	}
	if err := c.start(ctx, spec); err != nil {
		return nil, errors.Join(fmt.Errorf("run container %s: %w", spec.Name, err), c.Close())
	}
	return c, nil
}

func (c *Container) start(ctx context.Context, spec ContainerSpec) error {
	exposed := network.PortSet{}
	bindings := network.PortMap{}
	for _, p := range spec.Publish {
		port, ok := network.PortFrom(p, network.TCP)
		if !ok {
			return fmt.Errorf("bad port %d", p)
		}
		exposed[port] = struct{}{}
		bindings[port] = []network.PortBinding{{HostIP: netip.AddrFrom4([4]byte{127, 0, 0, 1})}}
	}
	stopSeconds := int(c.stopT / time.Second)
	res, err := c.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: spec.Name,
		Config: &container.Config{
			Image:        spec.Image,
			Cmd:          spec.Cmd,
			Env:          spec.Env,
			User:         spec.User,
			ExposedPorts: exposed,
			Labels:       ownerLabels(),
			StopTimeout:  &stopSeconds,
		},
		HostConfig: &container.HostConfig{
			Binds:        spec.Binds,
			GroupAdd:     spec.GroupAdd,
			Tmpfs:        spec.Tmpfs,
			NetworkMode:  container.NetworkMode(spec.Network.Name),
			PortBindings: bindings,
		},
		NetworkingConfig: &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
			spec.Network.Name: {Aliases: spec.Aliases},
		}},
	})
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	c.ID = res.ID
	// The watchers outlive ctx: Close needs the container's end and the
	// rest of its output even after ctx has ended.
	watchCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.cancel = cancel
	wait := c.cli.ContainerWait(watchCtx, c.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	if _, err := c.cli.ContainerStart(ctx, c.ID, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	c.started = true
	go func() {
		select {
		case r := <-wait.Result:
			if r.StatusCode != 0 || r.Error != nil {
				c.exitErr = fmt.Errorf("exit status %d", r.StatusCode)
				if r.Error != nil {
					c.exitErr = fmt.Errorf("exit status %d: %s", r.StatusCode, r.Error.Message)
				}
			}
		case err := <-wait.Error:
			c.exitErr = fmt.Errorf("waiting for the container: %w", err)
		}
		close(c.done)
	}()
	go func() {
		select {
		case <-ctx.Done():
			c.stop()
		case <-c.done:
		}
	}()
	if err := c.followLogs(watchCtx); err != nil {
		close(c.logDone)
		return err
	}

	info, err := c.cli.ContainerInspect(ctx, c.ID, client.ContainerInspectOptions{})
	if err != nil {
		return fmt.Errorf("inspect: %w", err)
	}
	ct := info.Container
	if ct.State == nil || !ct.State.Running {
		return fmt.Errorf("not running after start (exited at once?); output:\n%s", c.LogTail(4096))
	}
	if ct.NetworkSettings != nil {
		if ep := ct.NetworkSettings.Networks[spec.Network.Name]; ep != nil {
			c.IP = ep.IPAddress
		}
		for _, p := range spec.Publish {
			port, _ := network.PortFrom(p, network.TCP)
			for _, b := range ct.NetworkSettings.Ports[port] {
				if n, err := strconv.Atoi(b.HostPort); err == nil && n > 0 {
					c.ports[p] = n
					break
				}
			}
			if c.ports[p] == 0 {
				return fmt.Errorf("docker reports no host port for container port %d: %+v", p, ct.NetworkSettings.Ports)
			}
		}
	}
	if !c.IP.IsValid() {
		return fmt.Errorf("docker reports no address on network %s", spec.Network.Name)
	}
	return nil
}

// followLogs copies the container's output to LogPath until it stops.
func (c *Container) followLogs(ctx context.Context) error {
	f, err := os.Create(c.LogPath)
	if err != nil {
		return err
	}
	rc, err := c.cli.ContainerLogs(ctx, c.ID, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Follow: true})
	if err != nil {
		f.Close()
		return fmt.Errorf("follow the output: %w", err)
	}
	go func() {
		defer close(c.logDone)
		defer f.Close()
		defer rc.Close()
		// The output is best effort: it explains failures, it is not one.
		_, _ = stdcopy.StdCopy(f, f, rc)
	}()
	return nil
}

// ExecAPI is the part of the Engine API client Container.Exec uses;
// *client.Client implements it.
type ExecAPI interface {
	ExecCreate(ctx context.Context, containerID string, options client.ExecCreateOptions) (client.ExecCreateResult, error)
	ExecAttach(ctx context.Context, execID string, options client.ExecAttachOptions) (client.ExecAttachResult, error)
	ExecInspect(ctx context.Context, execID string, options client.ExecInspectOptions) (client.ExecInspectResult, error)
}

// Exec runs cmd in the container, as `docker exec` does (the container's
// user and groups, no shell: cmd[0] is a path in the image), and returns
// its output (stdout and stderr, interleaved) and exit code once it has
// ended. err is for failures to run it, not for a non-zero exit code.
func (c *Container) Exec(ctx context.Context, cli ExecAPI, cmd ...string) (output string, exitCode int, err error) {
	ex, err := cli.ExecCreate(ctx, c.ID, client.ExecCreateOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return "", 0, fmt.Errorf("exec %q in %s: %w", cmd, c.Name, err)
	}
	att, err := cli.ExecAttach(ctx, ex.ID, client.ExecAttachOptions{})
	if err != nil {
		return "", 0, fmt.Errorf("exec %q in %s: %w", cmd, c.Name, err)
	}
	defer att.Close()
	var out strings.Builder
	if _, err := stdcopy.StdCopy(&out, &out, att.Reader); err != nil {
		return out.String(), 0, fmt.Errorf("exec %q in %s: reading its output: %w", cmd, c.Name, err)
	}
	res, err := cli.ExecInspect(ctx, ex.ID, client.ExecInspectOptions{})
	if err != nil {
		return out.String(), 0, fmt.Errorf("exec %q in %s: %w", cmd, c.Name, err)
	}
	if res.Running {
		return out.String(), 0, fmt.Errorf("exec %q in %s: still running after its output ended", cmd, c.Name)
	}
	return out.String(), res.ExitCode, nil
}

// HostURL returns http://127.0.0.1:<host port> for a port of
// ContainerSpec.Publish, "" for a port that was not published.
func (c *Container) HostURL(port uint16) string {
	n, ok := c.ports[port]
	if !ok {
		return ""
	}
	return "http://127.0.0.1:" + strconv.Itoa(n)
}

// Exited reports whether the container has stopped, and how (nil for exit
// status 0).
func (c *Container) Exited() (bool, error) {
	select {
	case <-c.done:
		return true, c.exitErr
	default:
		return false, nil
	}
}

// Done is closed when the container has stopped.
func (c *Container) Done() <-chan struct{} { return c.done }

// Log returns the container's output so far; "" after Close.
func (c *Container) Log() string {
	b, err := os.ReadFile(c.LogPath)
	if err != nil {
		return ""
	}
	return string(b)
}

// LogTail returns at most the last n bytes of the container's output.
func (c *Container) LogTail(n int) string { return fileTail(c.LogPath, n) }

// stop sends SIGTERM, waits up to the stop timeout, then SIGKILL, and waits
// for the output to be copied. It is safe to call more than once.
func (c *Container) stop() {
	if !c.started {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.stopT+time.Minute)
	defer cancel()
	secs := int(c.stopT / time.Second)
	_, _ = c.cli.ContainerStop(ctx, c.ID, client.ContainerStopOptions{Timeout: &secs})
	select {
	case <-c.logDone:
	case <-ctx.Done():
	}
}

// Close stops the container (SIGTERM, SIGKILL after the stop timeout),
// removes it and its log. It may be called more than once.
func (c *Container) Close() error {
	c.closeOnce.Do(func() {
		var errs []error
		c.stop()
		if c.ID != "" {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			_, err := c.cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
			cancel()
			if err != nil && !isNotFound(err) {
				errs = append(errs, fmt.Errorf("remove container %s: %w", c.Name, err))
			}
		}
		if c.cancel != nil {
			c.cancel()
		}
		if c.started {
			<-c.done
		}
		if err := os.RemoveAll(c.dir); err != nil {
			errs = append(errs, err)
		}
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

// Labels that mark what the harness creates in Docker, and which process
// created it (host name and PID), so that RemoveOrphans can tell leftovers
// of a dead process from what a running one still uses.
const (
	labelHarness = "org.layerbridge.harness"
	labelOwner   = "org.layerbridge.harness.owner"
)

func ownerLabels() map[string]string {
	return map[string]string{labelHarness: "true", labelOwner: ownerID()}
}

// ownerID names this process as the owner of what the harness creates (in
// Docker labels, and in its temporary directories): host name and PID.
func ownerID() string {
	host, _ := os.Hostname()
	return host + "/" + strconv.Itoa(os.Getpid())
}

// ownerGone reports whether the owner (an ownerID) names a process of this host
// that no longer exists. Owners on other hosts (a CI runner sharing the
// daemon) are never gone as far as this process can tell.
func ownerGone(owner string) bool {
	host, pid, ok := strings.Cut(owner, "/")
	me, _ := os.Hostname()
	n, err := strconv.Atoi(pid)
	if !ok || host != me || err != nil || n <= 0 {
		return false
	}
	return errors.Is(syscall.Kill(n, 0), syscall.ESRCH)
}

func isNotFound(err error) bool { return cerrdefs.IsNotFound(err) }
