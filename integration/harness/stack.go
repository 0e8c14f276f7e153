package harness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Options configures Start.
type Options struct {
	// FeedDir is the Alpine SecDB directory Clair's updater is fed:
	// integration/testdata/secdb (the demo's) or the repository's testdata/secdb
	// (the feed the Clair recordings were made with). Required.
	FeedDir string
	// ModuleDir is a directory inside the integration module, where Clair
	// is built ("" means the current directory, right for tests of this
	// module and for `go run ./cmd/demo` run in it).
	ModuleDir string
	// CacheDir keeps built Clair binaries; "" means DefaultCacheDir.
	CacheDir string
	// ClairBinary, if set, is used instead of building Clair.
	ClairBinary string
	// PSK, if set, makes Clair require PSK-signed requests.
	PSK *PSK
	// Unpublished, for StartDocker, publishes none of Clair's ports: the
	// host reaches Clair at its container's address on the network, as a
	// Linux host reaches its user-defined bridge networks (Clair.URL is
	// http://<ContainerIP>:6060), and other clients by its name there.
	Unpublished bool
	// ReadyTimeout bounds the wait for Clair's first vulnerability update;
	// 0 means 3 minutes. PostgreSQL and Clair have their own startup limits
	// (1 and 2 minutes), and the build has none but ctx.
	ReadyTimeout time.Duration
	// Logger receives progress messages; nil discards them.
	Logger *slog.Logger
}

// Timings says where a Start spent its time.
type Timings struct {
	// ClairBuild is the time BuildClair (BuildStaticClair for StartDocker)
	// took (zero with ClairBinary).
	ClairBuild time.Duration
	// ClairBuilt is true when Clair was compiled rather than found.
	ClairBuilt bool
	// Postgres is initdb, start and readiness.
	Postgres time.Duration
	// ClairUp is from starting Clair to its readiness endpoint answering
	// (for StartDocker, building Clair's image included).
	ClairUp time.Duration
	// FirstUpdate is from Clair being up to the first vulnerability update
	// having finished.
	FirstUpdate time.Duration
}

// Stack is a running PostgreSQL, SecDB feed server and Clair v4, ready to
// match: the first vulnerability update from the feed has finished.
type Stack struct {
	Postgres *Postgres
	Feed     *FeedServer
	Clair    *Clair
	Timings  Timings
}

// Start builds Clair (or finds it in the cache), then starts PostgreSQL,
// the feed server and Clair on free loopback ports, and returns once Clair
// has loaded the feed. Everything started runs until Close or until ctx
// ends (a cancelled ctx stops the processes; Close must still be called to
// remove their directories). On error, whatever was started is stopped and
// removed; an error wrapping ErrUnavailable means this machine lacks
// something (see Unavailable).
func Start(ctx context.Context, opts Options) (*Stack, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.FeedDir == "" {
		return nil, errors.New("start harness: FeedDir is required")
	}
	updaters, err := ExpectedUpdaters(opts.FeedDir)
	if err != nil {
		return nil, fmt.Errorf("start harness: %w", err)
	}
	if _, err := FindPostgres(); err != nil {
		return nil, fmt.Errorf("start harness: %w", err)
	}
	if _, err := serverCredential(); err != nil {
		return nil, fmt.Errorf("start harness: %w", err)
	}
	s := &Stack{}
	binary := opts.ClairBinary
	if binary == "" {
		log.InfoContext(ctx, "building clair (minutes the first time on this machine)")
		b, err := BuildClair(ctx, opts.ModuleDir, opts.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("start harness: %w", err)
		}
		binary = b.Path
		s.Timings.ClairBuild, s.Timings.ClairBuilt = b.Duration, b.Built
		log.InfoContext(ctx, "clair binary ready", slog.String("path", b.Path), slog.String("version", b.Version),
			slog.Bool("built", b.Built), slog.Duration("took", b.Duration))
	}
	timeout := opts.ReadyTimeout
	if timeout == 0 {
		timeout = 3 * time.Minute
	}
	if err := s.start(ctx, timeout, opts, binary, updaters, nil, log); err != nil {
		return nil, errors.Join(fmt.Errorf("start harness: %w", err), s.Close())
	}
	return s, nil
}

// inDocker is where a Stack runs Clair in a container.
type inDocker struct {
	cli     DockerAPI
	network *Network
}

// start starts the services bound to ctx and waits up to updateTimeout for
// the first vulnerability update. With d, Clair runs in a container on
// d.network and PostgreSQL and the feed listen on its gateway too.
func (s *Stack) start(ctx context.Context, updateTimeout time.Duration, opts Options, binary string, updaters []string, d *inDocker, log *slog.Logger) error {
	t := time.Now()
	var err error
	if d != nil {
		s.Postgres, err = StartPostgresOn(ctx, d.network, log)
	} else {
		s.Postgres, err = StartPostgres(ctx, log)
	}
	if err != nil {
		return err
	}
	s.Timings.Postgres = time.Since(t)
	log.InfoContext(ctx, "postgres ready", slog.Int("port", s.Postgres.Port), slog.Duration("took", s.Timings.Postgres))

	if d != nil {
		s.Feed, err = ServeFeedOn(ctx, opts.FeedDir, d.network.Gateway)
	} else {
		s.Feed, err = ServeFeed(ctx, opts.FeedDir)
	}
	if err != nil {
		return err
	}
	t = time.Now()
	co := ClairOptions{
		Binary:     binary,
		ConnString: s.Postgres.ConnString(s.Postgres.Database),
		FeedURL:    s.Feed.URL,
		PSK:        opts.PSK,
		Logger:     log,
	}
	if d != nil {
		co.ConnString = s.Postgres.GatewayConnString(s.Postgres.Database)
		s.Clair, err = StartClairContainer(ctx, d.cli, ClairContainerOptions{ClairOptions: co, Network: d.network, Aliases: []string{ClairAlias}, Unpublished: opts.Unpublished})
	} else {
		s.Clair, err = StartClair(ctx, co)
	}
	if err != nil {
		return err
	}
	s.Timings.ClairUp = time.Since(t)
	log.InfoContext(ctx, "clair up", slog.String("url", s.Clair.URL), slog.Duration("took", s.Timings.ClairUp))
	t = time.Now()
	updateCtx, cancel := context.WithTimeout(ctx, updateTimeout)
	defer cancel()
	if err := s.Clair.WaitForUpdaters(updateCtx, updaters); err != nil {
		return err
	}
	s.Timings.FirstUpdate = time.Since(t)
	log.InfoContext(ctx, "clair loaded the feed", slog.Int("updaters", len(updaters)), slog.Duration("took", s.Timings.FirstUpdate))
	return nil
}

// Done is closed when Clair or PostgreSQL has exited (crashed, killed, or
// stopped by Close or the end of Start's context): a caller that keeps the
// stack running waits on it too.
func (s *Stack) Done() <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-s.Clair.done():
		case <-s.Postgres.proc.done:
		}
	}()
	return done
}

// Close stops Clair, the feed server and PostgreSQL, in that order, and
// removes their directories. It may be called more than once.
func (s *Stack) Close() error {
	var errs []error
	if s.Clair != nil {
		errs = append(errs, s.Clair.Close())
	}
	if s.Feed != nil {
		errs = append(errs, s.Feed.Close())
	}
	if s.Postgres != nil {
		errs = append(errs, s.Postgres.Close())
	}
	return errors.Join(errs...)
}
