package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/pflag"

	"github.com/layerbridge/layerbridge/bridge"
	"github.com/layerbridge/layerbridge/reach"
	"github.com/layerbridge/layerbridge/sidecar"
)

const serveHelp = `Usage:
    layerbridge serve [flags]

Runs layerbridge as a long-running scan service: a sidecar next to Clair,
for example on the Docker network of a compose setup, or on each node of a
Kubernetes cluster. Clients ask it to scan images of its Docker daemon or of
its containerd (containerd:NAME); it serves their layers to Clair and keeps
the reports. One listener serves:

    POST /api/v1/scans              {"image": "alpine:3.11", "platform": "linux/amd64"}
    GET  /api/v1/scans/ID           state, and the json report once done
    GET  /api/v1/scans/ID/report    ?format=table, json, clair, html, sarif,
                                    junit or cyclonedx
    GET  /v2/...                    read-only registry view of the scanned images
    GET  /healthz, /readyz          alive; ready (store writable, Docker,
                                    containerd if named, and Clair answer)
    GET  /metrics                   Prometheus metrics
    GET  /layers/...                the layers of running scans, for Clair

Access: the API and the registry view want the token of --token-file, as
"Authorization: Bearer TOKEN" or as the password of basic authentication.
Without --token-file they answer clients on loopback only. Clair needs no
token: each scan's layer URLs carry their own secret and stop working when
the scan ends. /healthz, /readyz and /metrics are open and name no image;
/readyz tells only token holders and loopback clients why it is not ready.

Listener:
    --listen IP:PORT        address to listen on (default 0.0.0.0:8080, with or
                            without a token: Clair must reach the layer URLs
                            from its network; the token rule above guards the
                            rest)
    --advertise URL         base URL Clair downloads layers from (default:
                            detected as for scan: the address on Clair's Docker
                            network, or the route to Clair's host; with the
                            port of --listen)
    --token-file FILE       file holding the access token, at least 16
                            characters (create one with: openssl rand -hex 32)

Clair:
    --clair URL             Clair's address (default $CLAIR_ADDR, else
                            http://localhost:6060); from the host too, the
                            name or network alias of Clair's container
                            (http://clair:6060) reaches its address
    --clair-api API         auto, v4 or v2 (default auto: probe Clair)
    --clair-psk KEY         base64 pre-shared key of Clair 4's auth.psk
                            (default $LAYERBRIDGE_CLAIR_PSK)
    --clair-psk-issuer ISS  issuer claim, one of auth.psk.iss (default layerbridge)

Scans:
    --max-concurrent-scans N    scans running at once; more wait, queued
                                (default 2)
    --shutdown-grace DURATION   on SIGTERM or SIGINT, new scans are refused and
                                running ones get this long to finish before
                                they are cancelled (default 30s; keep it below
                                the container's stop timeout). serve then
                                exits 0, or 143 (130 on SIGINT) if it had to
                                cancel a running scan

Image cache:
    --cache-dir DIR         image cache (default $XDG_CACHE_HOME/layerbridge)
    --cache-max-size SIZE   after each scan, evict the least recently used
                            images no running scan needs until the cache is
                            at most SIZE: 500MB, 10GB, 1.5GiB (default 10GB;
                            0 never evicts)
    --docker-host HOST      Docker daemon (default: $DOCKER_HOST, then the
                            current docker context, then
                            unix:///var/run/docker.sock); /readyz leaves
                            Docker out when only containerd is named and no
                            Docker socket is at the default path
    --containerd-address PATH   containerd's socket, for containerd: images
                            (default $CONTAINERD_ADDRESS, else
                            /run/containerd/containerd.sock)
    --containerd-namespace NS   containerd namespace (default
                            $CONTAINERD_NAMESPACE, else k8s.io)

Other:
    --log-level LEVEL       debug, info, warn or error (default info);
                            debug explains every decision
    -h, --help              show this help

Examples:
    layerbridge serve --clair http://clair:6060 --token-file /run/secrets/layerbridge
    curl -H "Authorization: Bearer $(cat token)" -d '{"image":"alpine:3.11"}' \
        http://localhost:8080/api/v1/scans
    layerbridge scan --server http://localhost:8080 --token-file token alpine:3.11
`

// serveOptions are the flags of "layerbridge serve".
type serveOptions struct {
	listen    string
	advertise string
	tokenFile string

	clair clairFlags

	maxScans  int
	grace     time.Duration
	cacheMax  string
	cacheSize int64 // parsed cacheMax

	store storeFlags
	log   logFlags
}

func setupServeFlags(name string, e env, stdout io.Writer) (*pflag.FlagSet, *serveOptions) {
	o := &serveOptions{}
	fs := newFlagSet(name, serveHelp, stdout)
	fs.StringVar(&o.listen, "listen", "0.0.0.0:8080", "")
	fs.StringVar(&o.advertise, "advertise", "", "")
	fs.StringVar(&o.tokenFile, "token-file", "", "")
	o.clair.register(fs, e)
	fs.IntVar(&o.maxScans, "max-concurrent-scans", sidecar.DefaultMaxConcurrent, "")
	fs.DurationVar(&o.grace, "shutdown-grace", 30*time.Second, "")
	fs.StringVar(&o.cacheMax, "cache-max-size", "10GB", "")
	o.store.register(fs, e)
	o.log.register(fs, e)
	return fs, o
}

// validate checks everything that can be checked before any I/O.
func (o *serveOptions) validate(args []string) error {
	if len(args) > 0 {
		ue := usageErrorf("serve takes no arguments, got %q", args)
		ue.hints = append(ue.hints, `images are named in scan requests: layerbridge scan --server URL IMAGE, or POST /api/v1/scans`)
		return ue
	}
	if err := o.clair.validate(); err != nil {
		return err
	}
	if o.listen == "" {
		return usageErrorf("--listen is empty: want IP:PORT, for example 0.0.0.0:8080")
	}
	if err := validateListen(o.listen); err != nil {
		return err
	}
	if err := validateAdvertise(o.advertise, "http://layerbridge:8080"); err != nil {
		return err
	}
	if o.maxScans < 1 {
		return usageErrorf("--max-concurrent-scans %d: want at least 1", o.maxScans)
	}
	if o.grace < 0 {
		return usageErrorf("--shutdown-grace %s is negative", o.grace)
	}
	var err error
	if o.cacheSize, err = parseSize(o.cacheMax); err != nil {
		ue := usageErrorf("--cache-max-size: %v", err)
		ue.hints = append(ue.hints, "for example: --cache-max-size 10GB (or 0 to never evict)")
		return ue
	}
	return nil
}

func runServe(ctx context.Context, name string, args []string, e env, stdout, stderr io.Writer) error {
	fs, o := setupServeFlags(name, e, stdout)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := o.validate(fs.Args()); err != nil {
		return err
	}
	log, err := o.log.logger(stderr)
	if err != nil {
		return err
	}
	var tok bridge.Token
	if o.tokenFile != "" {
		if tok, err = bridge.LoadToken(o.tokenFile); err != nil {
			return &hintedError{err: err, hints: []string{
				"--token-file wants a file holding one token of at least 16 printable characters, not writable by every user",
				"create one with: openssl rand -hex 32 > FILE && chmod 600 FILE",
			}}
		}
	}
	if tok.IsSet() {
		log.Debug("access: the API and the registry view want the token of --token-file", "token_file", o.tokenFile)
	} else {
		log.Debug("access: no --token-file, so the API and the registry view answer loopback clients only")
	}

	d := newDaemon(o.store.dockerHost, e, log)
	store, loader, ctr, err := openStore(o.store, d, log, nil)
	if err != nil {
		return err
	}
	defer store.Close()
	defer ctr.Close()

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listen on %s (--listen): %w", o.listen, err)
	}
	defer ln.Close()
	clairURL := o.clair.clairURL()
	if o.clair.clairMissingFromContainerLoopback(ctx, e) {
		log.Warn("--clair names loopback and nothing answers there: "+containerLoopbackHint, "clair", clairURL.Redacted())
	}
	var advertise *url.URL
	if o.advertise != "" {
		advertise, _ = url.Parse(o.advertise)
	}
	clair, dialer := o.clair.connect(d, log)
	if advertise == nil {
		// Detecting the address needs to know where Clair is now. (With
		// --advertise, Clair's name is resolved on each new connection,
		// so Clair may start later.)
		if _, _, err := dialer.Resolve(ctx); err != nil {
			return clairNameError(err, clairURL, d, o.containerCommand(ln))
		}
	}
	ep, err := reach.AdvertiseListener(ctx, clairURL, ln, reach.ListenOptions{
		Advertise:        advertise,
		AdvertiseOptions: reach.AdvertiseOptions{Containers: d.containers(), Resolve: dialer.LookupNetIP, Daemon: d.info, Logger: log},
	})
	if err != nil {
		return err
	}
	base := ep.Base

	cfg := sidecar.Config{
		Loader:        loader,
		Catalog:       sidecar.NewCatalog(store, ctr),
		Store:         store,
		Token:         tok,
		Base:          base,
		Clair:         clair,
		Engine:        d.engine,
		MaxConcurrent: o.maxScans,
		Version:       version,
		Logger:        log,
	}
	if o.cacheSize > 0 {
		cfg.Cache, cfg.CacheMaxSize = store, o.cacheSize
	}
	// /readyz probes the image sources serve was set up for: containerd
	// when it was named; Docker unless only containerd was, with no Docker
	// daemon chosen and none at the default socket (a Kubernetes node).
	if o.store.containerdNamed(fs, e) {
		cfg.Containerd = ctr
		if _, ep, _ := d.engine(); ep.Source == "default" && !socketExists(ep.Socket()) {
			cfg.Engine = nil
			log.Debug("readiness: containerd only: no docker daemon was named and none listens at the default socket", "docker", ep.Host, "containerd", ctr.Address())
		}
	}
	svc, err := sidecar.New(cfg)
	if err != nil {
		return err
	}
	if err := svc.PruneCache(ctx); err != nil {
		log.Warn("cannot prune the image cache at start-up", "err", err)
	}

	srv := bridge.NewHTTPServer(svc.Handler(), log, bridge.Limits{})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String(), "advertised", base.String(), "clair", clairURL.Redacted(),
		"token", tok.IsSet(), "max_concurrent_scans", o.maxScans, "cache_dir", o.store.cacheDir, "cache_max_size", o.cacheSize)

	select {
	case err := <-served:
		return fmt.Errorf("serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	log.Info("shutting down: no new scans; waiting for running ones", "grace", o.grace, "signal", context.Cause(ctx))
	graceCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.grace)
	defer cancel()
	lost := svc.Shutdown(graceCtx)
	// Shutdown waits for the requests in flight: Clair's layer downloads
	// and clients reading finished reports.
	httpCtx, cancelHTTP := context.WithTimeout(context.WithoutCancel(ctx), max(o.grace, 5*time.Second))
	defer cancelHTTP()
	if err := srv.Shutdown(httpCtx); err != nil {
		log.Warn("requests still in flight: closing their connections", "err", err)
		srv.Close()
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve on %s: %w", ln.Addr(), err)
	}
	if lost != nil {
		// Exit status 130 or 143 (interrupted), not 0: clients were
		// promised scans that never ended.
		log.Error("stopped: running scans were cancelled after --shutdown-grace; their clients see them failed", "grace", o.grace, "err", lost)
		return fmt.Errorf("shut down before running scans finished: %w", lost)
	}
	log.Info("stopped: every running scan finished")
	return nil
}

// containerCommand is serve run as a container on Clair's network instead,
// publishing the port of ln on this host's loopback (the network's
// containers reach it directly), with the same token.
func (o *serveOptions) containerCommand(ln net.Listener) reach.ContainerCommand {
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	c := reach.ContainerCommand{
		Flags: []string{"-d", "--name", "layerbridge", "-p", "127.0.0.1:" + port + ":" + port},
		Args:  []string{"serve", "--clair", o.clair.url, "--listen", "0.0.0.0:" + port},
	}
	if o.clair.api != "auto" {
		c.Args = append(c.Args, "--clair-api", o.clair.api)
	}
	if o.tokenFile != "" {
		abs, err := filepath.Abs(o.tokenFile)
		if err != nil {
			abs = o.tokenFile
		}
		c.Flags = append(c.Flags, "-v", abs+":/run/secrets/layerbridge_token:ro")
		c.Args = append(c.Args, "--token-file", "/run/secrets/layerbridge_token")
	}
	return c
}

// socketExists reports whether a file is at path ("" is none).
func socketExists(path string) bool {
	if path == "" {
		return false
	}
	_, err := os.Stat(path)
	return err == nil
}

// hintedError is an error with the hints that say what to do about it.
type hintedError struct {
	err   error
	hints []string
}

func (e *hintedError) Error() string   { return e.err.Error() }
func (e *hintedError) Unwrap() error   { return e.err }
func (e *hintedError) Hints() []string { return e.hints }
