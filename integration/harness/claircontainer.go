package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// Clair's ports inside its container.
const (
	clairContainerAPIPort   = 6060
	clairContainerIntroPort = 8089
)

// clairDockerfile is the image StartClairContainer builds: the static
// binary and nothing else. The configuration is bind-mounted at
// /etc/clair, and /tmp is a tmpfs (Clair spools layers there).
const clairDockerfile = `FROM scratch
COPY clair /bin/clair
USER 65532:65532
EXPOSE 6060 8089
ENTRYPOINT ["/bin/clair"]
CMD ["-conf", "/etc/clair/config.yaml", "-mode", "combo"]
`

// ClairContainerOptions configures StartClairContainer.
type ClairContainerOptions struct {
	// ClairOptions as for StartClair, except: Binary must be statically
	// linked (BuildStaticClair), and ConnString and FeedURL must be
	// reachable from Network (Postgres.GatewayConnString, ServeFeedOn with
	// the network's gateway).
	ClairOptions
	// Network is the user-defined network Clair's container joins.
	// Required.
	Network *Network
	// Name is the container's name, its DNS name on Network; "" means
	// "layerbridge-test-clair-" and random hex.
	Name string
	// Aliases are further DNS names on Network, such as "clair", the name
	// a compose service gets. Docker's container list does not show them.
	Aliases []string
	// Unpublished publishes no port: Clair.URL and IntrospectionURL are
	// then at the container's address on Network, which a Linux host
	// reaches directly.
	Unpublished bool
}

// StartClairContainer is StartClair in a container: it builds a FROM
// scratch image holding opts.Binary (tagged layerbridge-test-clair:<random>,
// labelled as this process's), runs it on opts.Network with the same offline
// configuration as StartClair, and returns once Clair's readiness endpoint
// answers through the ports published on 127.0.0.1 (Clair.URL,
// Clair.IntrospectionURL), or at its address on the network with
// Unpublished. Containers on the network reach it at Clair.NetworkURL.
//
// Offline holds as for StartClair: airgap (private addresses, such as the
// network's, stay allowed), only the alpine updater, and HTTP(S)_PROXY
// pointing at a trap that listens on the network's gateway and records what
// Clair tried to reach (ExternalRequests). Clair's output goes to LogPath.
//
// Clair runs until Close or until ctx ends; Close must be called either way,
// and removes the container and the image too.
func StartClairContainer(ctx context.Context, cli DockerAPI, opts ClairContainerOptions) (*Clair, error) {
	if opts.Binary == "" || opts.ConnString == "" || opts.FeedURL == "" || opts.Network == nil {
		return nil, errors.New("start clair container: Binary, ConnString, FeedURL and Network are required")
	}
	if err := checkStatic(opts.Binary); err != nil {
		return nil, fmt.Errorf("start clair container: %w (build it with BuildStaticClair)", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Name == "" {
		opts.Name = "layerbridge-test-clair-" + randomHex(6)
	}
	dir, err := tempDir("layerbridge-clair-")
	if err != nil {
		return nil, fmt.Errorf("start clair container: %w", err)
	}
	c := &Clair{dir: dir, psk: opts.PSK, docker: cli, ContainerName: opts.Name}
	c.client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	if opts.PSK != nil {
		c.client.Transport = pskTransport{psk: *opts.PSK, base: c.client.Transport}
	}
	if err := c.startContainer(ctx, cli, opts, log); err != nil {
		return nil, errors.Join(fmt.Errorf("start clair container: %w", err), c.Close())
	}
	return c, nil
}

func (c *Clair) startContainer(ctx context.Context, cli DockerAPI, opts ClairContainerOptions, log *slog.Logger) error {
	var err error
	c.trap, err = serveOn(ctx, opts.Network.Gateway, http.HandlerFunc(c.refuseExternal))
	if err != nil {
		return err
	}
	// The configuration directory is bind-mounted read-only; Clair runs as
	// an unprivileged user, so everything in it is world-readable.
	conf := filepath.Join(c.dir, "conf")
	if err := os.Mkdir(conf, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(conf, "rhel-mapping.json"), []byte(`{"data":{}}`+"\n"), 0o644); err != nil {
		return err
	}
	confFile := filepath.Join(conf, "config.yaml")
	if err := writeClairConfig(confFile, opts.ClairOptions,
		fmt.Sprintf(":%d", clairContainerAPIPort), fmt.Sprintf(":%d", clairContainerIntroPort),
		"/etc/clair/rhel-mapping.json"); err != nil {
		return err
	}
	if err := os.Chmod(confFile, 0o644); err != nil {
		return err
	}

	t := time.Now()
	imageDir := filepath.Join(c.dir, "image")
	if err := os.Mkdir(imageDir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(imageDir, "Dockerfile"), []byte(clairDockerfile), 0o644); err != nil {
		return err
	}
	if err := linkOrCopy(opts.Binary, filepath.Join(imageDir, "clair")); err != nil {
		return fmt.Errorf("clair image: %w", err)
	}
	tag := "layerbridge-test-clair:" + randomHex(6)
	if _, err := BuildOwnedImage(ctx, cli, imageDir, tag, nil); err != nil {
		return err
	}
	c.image = tag
	if err := os.RemoveAll(imageDir); err != nil {
		return err
	}
	log.DebugContext(ctx, "clair image built", slog.String("tag", tag), slog.Duration("took", time.Since(t)))

	proxy := c.trap.url
	env := []string{"TMPDIR=/tmp", "NO_PROXY=" + noProxy, "no_proxy=" + noProxy}
	for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"} {
		env = append(env, k+"="+proxy)
	}
	publish := []uint16{clairContainerAPIPort, clairContainerIntroPort}
	if opts.Unpublished {
		publish = nil
	}
	c.ctr, err = RunContainer(ctx, cli, ContainerSpec{
		Name:    opts.Name,
		Image:   tag,
		Env:     env,
		Binds:   []string{conf + ":/etc/clair:ro"},
		Tmpfs:   map[string]string{"/tmp": "mode=1777"},
		Network: opts.Network,
		Aliases: opts.Aliases,
		Publish: publish,
		// Clair shuts down in order on SIGTERM too.
		StopTimeout: 15 * time.Second,
	})
	if err != nil {
		return err
	}
	c.LogPath = c.ctr.LogPath
	c.ContainerIP = c.ctr.IP
	if opts.Unpublished {
		c.URL = fmt.Sprintf("http://%s:%d", c.ctr.IP, clairContainerAPIPort)
		c.IntrospectionURL = fmt.Sprintf("http://%s:%d", c.ctr.IP, clairContainerIntroPort)
	} else {
		c.URL = c.ctr.HostURL(clairContainerAPIPort)
		c.IntrospectionURL = c.ctr.HostURL(clairContainerIntroPort)
	}
	c.NetworkURL = fmt.Sprintf("http://%s:%d", opts.Name, clairContainerAPIPort)
	log.DebugContext(ctx, "clair container started", slog.String("name", opts.Name), slog.String("ip", c.ctr.IP.String()),
		slog.String("url", c.URL), slog.String("network_url", c.NetworkURL))
	if err := c.waitReady(ctx, 2*time.Minute); err != nil {
		return fmt.Errorf("%w\nclair output:\n%s", err, c.LogTail(8192))
	}
	return nil
}

// linkOrCopy hard-links src to dst, or copies it when they are on different
// file systems.
func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
