package harness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrUnavailable marks errors caused by something this machine lacks
// (PostgreSQL's server binaries, a postgres user when running as root, the
// Docker daemon), as opposed to a failure of what was started. Tests turn
// it into a skip outside CI and a failure in CI (see Unavailable).
var ErrUnavailable = errors.New("not available on this machine")

// postgresUser is the role (and, when running as root, the system user)
// the throwaway cluster is created for.
const postgresUser = "postgres"

// Postgres is a throwaway PostgreSQL cluster: its own data directory in a
// temporary directory, trust authentication, TCP on 127.0.0.1 (and, started
// by StartPostgresOn, on a Docker network's gateway for that network's
// subnet only), its unix socket inside the temporary directory. Close stops it and removes
// the directory.
type Postgres struct {
	// Port is the TCP port on 127.0.0.1.
	Port int
	// Database is the database created for Clair, owned by user postgres.
	Database string
	// Gateway is the address clients on a Docker network reach the server
	// at (the network's gateway, the same Port), when StartPostgresOn
	// started it; invalid when it listens on loopback only.
	Gateway netip.Addr

	dir     string
	logPath string
	proc    *process
}

// FindPostgres returns the directory holding PostgreSQL's server binaries
// (initdb and postgres): the one of an initdb on PATH, else the newest
// /usr/lib/postgresql/*/bin (Debian), /usr/pgsql-*/bin (RHEL) or
// /usr/local/pgsql/bin. The error wraps ErrUnavailable.
func FindPostgres() (string, error) {
	var candidates []string
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			candidates = append(candidates, filepath.Dir(real))
		}
	}
	for _, pattern := range []string{"/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin"} {
		m, _ := filepath.Glob(pattern)
		sort.Slice(m, func(i, j int) bool { return versionOf(m[i]) > versionOf(m[j]) })
		candidates = append(candidates, m...)
	}
	candidates = append(candidates, "/usr/local/pgsql/bin")
	for _, dir := range candidates {
		if isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	return "", fmt.Errorf("postgresql server binaries (initdb, postgres) not found on PATH or in /usr/lib/postgresql/*/bin; install them (Debian: apt-get install -y postgresql): %w", ErrUnavailable)
}

// versionOf reads the major version out of .../postgresql/15/bin or
// /usr/pgsql-15/bin, 0 if there is none.
func versionOf(binDir string) int {
	base := filepath.Base(filepath.Dir(binDir))
	base = strings.TrimPrefix(base, "pgsql-")
	n, _ := strconv.Atoi(base)
	return n
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// serverCredential returns the credential to run PostgreSQL with: nil when
// not root (it runs as the current user), the postgres system user when
// root, since PostgreSQL refuses to run as root.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(postgresUser)
	if err != nil {
		return nil, fmt.Errorf("running as root, PostgreSQL needs a %q system user to run as (%v): %w", postgresUser, err, ErrUnavailable)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %s: uid %q: %w", postgresUser, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %s: gid %q: %w", postgresUser, u.Gid, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

// StartPostgres creates a cluster with initdb in a new temporary directory,
// starts postgres on a free loopback port, waits until it accepts
// connections and creates database "clair". The server runs until Close or
// until ctx ends; Close must be called either way to remove the directory.
// log receives progress messages; nil discards them.
func StartPostgres(ctx context.Context, log *slog.Logger) (*Postgres, error) {
	return startPostgres(ctx, nil, log)
}

// StartPostgresOn is StartPostgres for containers on n: the server also
// listens on n's gateway (Postgres.Gateway, GatewayConnString), and trusts
// connections from n's subnet, as it trusts loopback. Anything on that
// network may then use the cluster without a password: create n for the
// test alone (CreateNetwork).
func StartPostgresOn(ctx context.Context, n *Network, log *slog.Logger) (*Postgres, error) {
	if n == nil || !n.Gateway.IsValid() || !n.Subnet.IsValid() {
		return nil, errors.New("start postgres: the network has no gateway or subnet")
	}
	return startPostgres(ctx, n, log)
}

func startPostgres(ctx context.Context, n *Network, log *slog.Logger) (*Postgres, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	binDir, err := FindPostgres()
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	dir, err := tempDir("layerbridge-pg-")
	if err != nil {
		return nil, fmt.Errorf("postgres temp dir: %w", err)
	}
	p := &Postgres{Database: "clair", dir: dir, logPath: filepath.Join(dir, "postgres.log")}
	var allow netip.Prefix
	if n != nil {
		p.Gateway, allow = n.Gateway, n.Subnet.Masked()
	}
	if err := p.start(ctx, binDir, cred, allow, log); err != nil {
		return nil, errors.Join(err, p.Close())
	}
	return p, nil
}

func (p *Postgres) start(ctx context.Context, binDir string, cred *syscall.Credential, allow netip.Prefix, log *slog.Logger) error {
	if cred != nil {
		if err := os.Chown(p.dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return fmt.Errorf("postgres temp dir: %w", err)
		}
	}
	data := filepath.Join(p.dir, "data")
	initdb := exec.CommandContext(ctx, filepath.Join(binDir, "initdb"),
		"-D", data, "-U", postgresUser, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
	if out, err := initdb.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb in %s: %w\n%s", p.dir, err, tail(out, 4096))
	}
	listen := "127.0.0.1"
	if p.Gateway.IsValid() {
		listen += "," + p.Gateway.String()
		if err := appendFile(filepath.Join(data, "pg_hba.conf"), "host all all "+allow.String()+" trust\n"); err != nil {
			return fmt.Errorf("postgres: allow %s: %w", allow, err)
		}
	}
	logFile, err := os.Create(p.logPath)
	if err != nil {
		return fmt.Errorf("postgres log: %w", err)
	}
	defer logFile.Close() // the child has its own copy of the descriptor
	const attempts = 3
	for attempt := 1; ; attempt++ {
		p.Port, err = freePort()
		if err != nil {
			return err
		}
		cmd := exec.Command(filepath.Join(binDir, "postgres"),
			"-D", data, "-h", listen, "-p", strconv.Itoa(p.Port), "-k", p.dir,
			"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
			"-c", "max_connections=200")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		cmd.Stdout, cmd.Stderr = logFile, logFile
		// SIGINT is PostgreSQL's fast shutdown: roll back, close sessions, exit.
		p.proc, err = startProcess(ctx, "postgres", cmd, syscall.SIGINT, 15*time.Second)
		if err != nil {
			return err
		}
		log.DebugContext(ctx, "postgres started", slog.Int("port", p.Port), slog.String("dir", p.dir))
		err = p.waitReady(ctx, 60*time.Second)
		if err == nil {
			return nil
		}
		p.proc.stop()
		if attempt == attempts || !strings.Contains(p.LogTail(4096), "already in use") {
			return fmt.Errorf("%w\npostgres log (%s):\n%s", err, p.logPath, p.LogTail(4096))
		}
		log.InfoContext(ctx, "postgres port taken, retrying", slog.Int("port", p.Port))
	}
}

// waitReady polls until the server accepts a connection and the Clair
// database exists, the process exits or the timeout passes.
func (p *Postgres) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		if exited, err := p.proc.exited(); exited {
			return fmt.Errorf("postgres exited during startup: %v", err)
		}
		conn, err := pgx.Connect(ctx, p.ConnString("postgres"))
		if err == nil {
			_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{p.Database}.Sanitize())
			closeErr := conn.Close(ctx)
			if err != nil {
				return fmt.Errorf("create database %s: %w", p.Database, err)
			}
			return closeErr
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("postgres not ready after %v: %w (last: %v)", timeout, context.Cause(ctx), lastErr)
		case <-p.proc.done:
		case <-tick.C:
		}
	}
}

// ConnString is a libpq key/value connection string for database db as
// user postgres over TCP (trust authentication, no TLS).
func (p *Postgres) ConnString(db string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable", p.Port, postgresUser, db)
}

// GatewayConnString is ConnString for clients on the Docker network the
// server was started for (StartPostgresOn): host is Gateway. It is "" for a
// server on loopback only.
func (p *Postgres) GatewayConnString(db string) string {
	if !p.Gateway.IsValid() {
		return ""
	}
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", p.Gateway, p.Port, postgresUser, db)
}

// appendFile appends s to the existing file at path.
func appendFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// LogTail returns at most the last n bytes of the server log. It is empty
// once Close has removed the directory.
func (p *Postgres) LogTail(n int) string { return fileTail(p.logPath, n) }

// Close stops the server (fast shutdown, SIGKILL after 15 s) and removes
// the temporary directory. It may be called more than once.
func (p *Postgres) Close() error {
	if p.proc != nil {
		p.proc.stop()
	}
	if err := os.RemoveAll(p.dir); err != nil {
		return fmt.Errorf("remove %s: %w", p.dir, err)
	}
	return nil
}
