package harness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// ClairAlias is the DNS name of StartDocker's Clair on its network besides
// its container name: what the compose service "clair" is called on
// clair-network (deploy/compose.yaml), so that http://clair:6060 works as
// it does there.
const ClairAlias = "clair"

// DockerStack is a Stack whose Clair runs in a container, the way Clair is
// deployed next to layerbridge's sidecar: on a user-defined Docker network
// made for it (Network), where other containers reach Clair by its
// container name (Clair.NetworkURL) or by ClairAlias. PostgreSQL and the
// feed server still run on this host, listening on the network's gateway
// besides loopback; the host reaches Clair through its published ports
// (Clair.URL).
type DockerStack struct {
	Stack
	// Network is the network Clair's container is on. Put the containers
	// under test on it too, and close them before Close.
	Network *Network
}

// StartDocker is Start with Clair in a container: it removes what dead
// harness processes left in Docker (RemoveOrphans), builds a static Clair
// (BuildStaticClair, cached; opts.ClairBinary must be static if set),
// creates a network, starts PostgreSQL and the feed server for it and Clair
// on it (StartClairContainer), and returns once Clair has loaded the feed.
// Everything started runs until Close or until ctx ends; Close must be
// called either way. On error, whatever was started is stopped and removed.
func StartDocker(ctx context.Context, cli DockerAPI, opts Options) (*DockerStack, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.FeedDir == "" {
		return nil, errors.New("start harness in docker: FeedDir is required")
	}
	updaters, err := ExpectedUpdaters(opts.FeedDir)
	if err != nil {
		return nil, fmt.Errorf("start harness in docker: %w", err)
	}
	if _, err := FindPostgres(); err != nil {
		return nil, fmt.Errorf("start harness in docker: %w", err)
	}
	if _, err := serverCredential(); err != nil {
		return nil, fmt.Errorf("start harness in docker: %w", err)
	}
	removed, err := RemoveOrphans(ctx, cli)
	if err != nil {
		log.WarnContext(ctx, "could not remove what dead harness processes left in docker", slog.Any("err", err))
	}
	if len(removed) > 0 {
		log.InfoContext(ctx, "removed what dead harness processes left in docker", slog.Any("removed", removed))
	}
	s := &DockerStack{}
	binary := opts.ClairBinary
	if binary == "" {
		log.InfoContext(ctx, "building a static clair (minutes the first time on this machine)")
		b, err := BuildStaticClair(ctx, opts.ModuleDir, opts.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("start harness in docker: %w", err)
		}
		binary = b.Path
		s.Timings.ClairBuild, s.Timings.ClairBuilt = b.Duration, b.Built
		log.InfoContext(ctx, "static clair binary ready", slog.String("path", b.Path), slog.String("version", b.Version),
			slog.Bool("built", b.Built), slog.Duration("took", b.Duration))
	}
	s.Network, err = CreateNetwork(ctx, cli, "")
	if err != nil {
		return nil, fmt.Errorf("start harness in docker: %w", err)
	}
	log.InfoContext(ctx, "network created", slog.String("name", s.Network.Name),
		slog.String("subnet", s.Network.Subnet.String()), slog.String("gateway", s.Network.Gateway.String()))
	timeout := opts.ReadyTimeout
	if timeout == 0 {
		timeout = 3 * time.Minute
	}
	if err := s.start(ctx, timeout, opts, binary, updaters, &inDocker{cli: cli, network: s.Network}, log); err != nil {
		return nil, errors.Join(fmt.Errorf("start harness in docker: %w", err), s.Close())
	}
	return s, nil
}

// Close stops Clair and removes its container and image, stops the feed
// server and PostgreSQL, then removes the network, which fails while other
// containers are still on it. It may be called more than once.
func (s *DockerStack) Close() error {
	err := s.Stack.Close()
	if s.Network != nil {
		err = errors.Join(err, s.Network.Close())
	}
	return err
}
