package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/moby/moby/client"

	"github.com/layerbridge/layerbridge/containerdsource"
	"github.com/layerbridge/layerbridge/dockersave"
	"github.com/layerbridge/layerbridge/engine"
	"github.com/layerbridge/layerbridge/reach"
	"github.com/layerbridge/layerbridge/store"
)

// daemon opens the Docker Engine client once, on first use, and remembers
// which endpoint it chose and why.
type daemon struct {
	once func() (connection, error)
}

type connection struct {
	client   *client.Client
	endpoint engine.Endpoint
}

func newDaemon(flagHost string, e env, log *slog.Logger) *daemon {
	return &daemon{once: sync.OnceValues(func() (connection, error) {
		ep, err := engine.ResolveEndpoint(flagHost, e.getenv, engine.DockerConfigDir(e.getenv, e.home))
		if err != nil {
			return connection{endpoint: ep}, &hintedError{err: fmt.Errorf("choose the docker daemon: %w", err), hints: []string{
				"check --docker-host, DOCKER_HOST and DOCKER_CONTEXT (docker context ls lists the contexts; unset them for the default socket)",
			}}
		}
		log.Debug("docker daemon", "host", ep.Host, "chosen_by", ep.Source, "tls", ep.TLS != nil)
		c, err := engine.NewClient(ep)
		if err != nil {
			return connection{endpoint: ep}, fmt.Errorf("docker client for %s: %w", ep.Host, err)
		}
		return connection{c, ep}, nil
	})}
}

func (d *daemon) open() (*client.Client, engine.Endpoint, error) {
	c, err := d.once()
	return c.client, c.endpoint, err
}

func (d *daemon) engine() (engine.Client, engine.Endpoint, error) {
	c, ep, err := d.open()
	if err != nil {
		return nil, ep, err
	}
	return c, ep, nil
}

func (d *daemon) containers() engine.Containers {
	return engine.Containers{Open: func() (engine.ContainerListAPI, error) {
		c, _, err := d.open()
		if err != nil {
			return nil, err
		}
		return c, nil
	}}
}

// names finds the containers that host names only Docker's DNS knows
// stand for (reach.Names), with the daemon's network aliases.
func (d *daemon) names(log *slog.Logger) reach.Names {
	c := d.containers()
	c.Aliases = true
	return reach.Names{Containers: c, Daemon: d.info, Logger: log}
}

// info probes the daemon (engine.Probe).
func (d *daemon) info(ctx context.Context) (engine.DaemonInfo, error) {
	c, ep, err := d.engine()
	if err != nil {
		return engine.DaemonInfo{Endpoint: ep}, err
	}
	return engine.Probe(ctx, c, ep)
}

// openStore opens the image cache and a loader writing to it, which reads
// containerd: images with the containerd source it returns too (it
// connects on first use); progress, when set, is told how far each load is.
func openStore(sf storeFlags, d *daemon, log *slog.Logger, progress func(dockersave.Progress)) (*store.Store, *dockersave.Loader, *containerdsource.Source, error) {
	cache, err := store.Open(sf.cacheDir)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("open image cache: %w", err)
	}
	log.Debug("image cache", "dir", sf.cacheDir)
	ctr := containerdsource.New(containerdsource.Config{
		Address: sf.containerdAddress, Namespace: sf.containerdNamespace, Store: cache, Logger: log,
	})
	opts := []dockersave.LoaderOption{
		dockersave.WithEngineFunc(d.engine), dockersave.WithLogger(log),
		dockersave.WithSource(containerdsource.Kind, ctr),
	}
	if progress != nil {
		opts = append(opts, dockersave.WithLoadProgress(progress))
	}
	return cache, dockersave.NewLoader(cache, opts...), ctr, nil
}

// withTimeout bounds ctx by d when d > 0.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}
