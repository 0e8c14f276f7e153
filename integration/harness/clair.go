package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"
)

// ClairOptions configures StartClair.
type ClairOptions struct {
	// Binary is the Clair server binary (see BuildClair). Required.
	Binary string
	// ConnString is the libpq connection string of an empty database Clair
	// may migrate (the indexer, matcher and notifier share it). Required.
	ConnString string
	// FeedURL is the base URL of an Alpine SecDB feed (see ServeFeed): the
	// only vulnerability source configured. Required.
	FeedURL string
	// PSK, if set, turns on Clair's PSK authentication: every API request
	// then needs a token (Clair.HTTPClient adds one). The introspection
	// server stays open.
	PSK *PSK
	// LogLevel is Clair's log_level; "" means "info".
	LogLevel string
	// Logger receives the harness's own progress messages; nil discards.
	Logger *slog.Logger
}

// Clair is a running Clair v4 in combo mode (indexer, matcher, notifier in
// one process) on loopback, configured to reach nothing outside the
// machine. Close stops it and removes its directory (config, log, spooled
// layers).
type Clair struct {
	// URL is the API base URL, http://127.0.0.1:<port>, without a trailing
	// slash: /indexer/api/v1/..., /matcher/api/v1/...
	URL string
	// IntrospectionURL serves /readyz, /healthz and /metrics, never
	// authenticated.
	IntrospectionURL string
	// LogPath is Clair's log (JSON lines). It is removed by Close: read it
	// (LogTail) before.
	LogPath string

	// ContainerName is the name of Clair's container, when
	// StartClairContainer started it: its DNS name on the network.
	ContainerName string
	// NetworkURL is the API base URL as containers on Clair's network see
	// it, http://<ContainerName>:6060; "" for a Clair on loopback.
	NetworkURL string
	// ContainerIP is the address of Clair's container on its network: the
	// client address of Clair's layer downloads. Invalid on loopback.
	ContainerIP netip.Addr

	psk    *PSK
	dir    string
	proc   *process   // Clair on loopback (StartClair)
	ctr    *Container // Clair in a container (StartClairContainer)
	image  string     // its image, removed by Close
	docker DockerAPI
	client *http.Client
	trap   *loopbackServer

	mu       sync.Mutex
	external []string // requests Clair tried to send outside the machine
}

// noProxy lists what Clair may reach directly: loopback and private
// addresses, the ones its airgap mode allows. Everything else goes to the
// trap proxy, which records and refuses it.
const noProxy = "localhost,127.0.0.0/8,::1,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,169.254.0.0/16,fc00::/7,fe80::/10"

// StartClair writes an offline configuration and starts Clair in combo mode
// on free loopback ports, and returns once its readiness endpoint answers
// (HTTP API up, migrations done). The vulnerability update runs in the
// background from then on: call WaitForUpdaters before expecting matches.
//
// Offline means: indexer.airgap (Clair's own dialer refuses public
// addresses), only the alpine updater set, pointed at FeedURL, the RHEL
// scanners given an empty mapping file instead of fetching one, and
// HTTP(S)_PROXY pointing at a loopback trap that refuses and records any
// request for a public host (see ExternalRequests).
//
// Clair runs until Close or until ctx ends; Close must be called either way.
func StartClair(ctx context.Context, opts ClairOptions) (*Clair, error) {
	if opts.Binary == "" || opts.ConnString == "" || opts.FeedURL == "" {
		return nil, errors.New("start clair: Binary, ConnString and FeedURL are required")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir, err := tempDir("layerbridge-clair-")
	if err != nil {
		return nil, fmt.Errorf("start clair: %w", err)
	}
	c := &Clair{dir: dir, LogPath: filepath.Join(dir, "clair.log"), psk: opts.PSK}
	c.client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	if opts.PSK != nil {
		c.client.Transport = pskTransport{psk: *opts.PSK, base: c.client.Transport}
	}
	if err := c.start(ctx, opts, log); err != nil {
		return nil, errors.Join(fmt.Errorf("start clair: %w", err), c.Close())
	}
	return c, nil
}

func (c *Clair) start(ctx context.Context, opts ClairOptions, log *slog.Logger) error {
	var err error
	c.trap, err = serveLoopback(ctx, http.HandlerFunc(c.refuseExternal))
	if err != nil {
		return err
	}
	mapping := filepath.Join(c.dir, "rhel-mapping.json")
	if err := os.WriteFile(mapping, []byte(`{"data":{}}`+"\n"), 0o644); err != nil {
		return err
	}
	tmp := filepath.Join(c.dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return err
	}
	logFile, err := os.Create(c.LogPath)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child has its own copy of the descriptor
	env := []string{"TMPDIR=" + tmp}
	for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"} {
		env = append(env, k+"="+c.trap.url)
	}
	env = append(env, "NO_PROXY="+noProxy, "no_proxy="+noProxy)
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "TMPDIR", "CLAIR_CONF", "CLAIR_MODE":
			continue
		}
		env = append(env, kv)
	}

	const attempts = 3
	for attempt := 1; ; attempt++ {
		apiPort, err := freePort()
		if err != nil {
			return err
		}
		introPort, err := freePort()
		if err != nil {
			return err
		}
		c.URL = "http://127.0.0.1:" + strconv.Itoa(apiPort)
		c.IntrospectionURL = "http://127.0.0.1:" + strconv.Itoa(introPort)
		conf := filepath.Join(c.dir, "config.yaml")
		if err := writeClairConfig(conf, opts, "127.0.0.1:"+strconv.Itoa(apiPort), "127.0.0.1:"+strconv.Itoa(introPort), mapping); err != nil {
			return err
		}
		// Each attempt starts a fresh log: readiness is judged from it.
		if err := logFile.Truncate(0); err != nil {
			return err
		}
		if _, err := logFile.Seek(0, io.SeekStart); err != nil {
			return err
		}
		cmd := exec.Command(opts.Binary, "-conf", conf, "-mode", "combo")
		cmd.Env = env
		cmd.Dir = c.dir
		cmd.Stdout, cmd.Stderr = logFile, logFile
		// Clair shuts down in order on SIGINT.
		if c.proc, err = startProcess(ctx, "clair", cmd, syscall.SIGINT, 15*time.Second); err != nil {
			return err
		}
		log.DebugContext(ctx, "clair started", slog.String("url", c.URL), slog.String("dir", c.dir))
		err = c.waitReady(ctx, 2*time.Minute)
		if err == nil {
			return nil
		}
		c.proc.stop()
		logTail := c.LogTail(8192)
		if attempt == attempts || !strings.Contains(logTail, "address already in use") {
			return fmt.Errorf("%w\nclair log (%s):\n%s", err, c.LogPath, logTail)
		}
		log.InfoContext(ctx, "clair port taken, retrying", slog.String("url", c.URL))
	}
}

// writeClairConfig writes the offline combo-mode configuration, the shape
// of ../../testdata/clair-config/clair4.yaml.
func writeClairConfig(path string, opts ClairOptions, apiAddr, introAddr, mapping string) error {
	level := opts.LogLevel
	if level == "" {
		level = "info"
	}
	feedURL := strings.TrimSuffix(opts.FeedURL, "/") + "/"
	conf := map[string]any{
		"http_listen_addr":   apiAddr,
		"introspection_addr": introAddr,
		"log_level":          level,
		"indexer": map[string]any{
			"connstring":             opts.ConnString,
			"scanlock_retry":         10,
			"layer_scan_concurrency": 5,
			"migrations":             true,
			"airgap":                 true,
			"scanner": map[string]any{
				"repo": map[string]any{
					"rhel-repository-scanner": map[string]any{"repo2cpe_mapping_file": mapping},
				},
				"package": map[string]any{
					"rhel_containerscanner": map[string]any{"name2repos_mapping_file": mapping},
				},
			},
		},
		"matcher": map[string]any{
			"connstring":       opts.ConnString,
			"max_conn_pool":    20,
			"migrations":       true,
			"disable_updaters": false,
		},
		"updaters": map[string]any{
			"sets":   []string{"alpine"},
			"config": map[string]any{"alpine": map[string]any{"url": feedURL}},
		},
		"matchers": map[string]any{"names": []string{"alpine-matcher"}},
		"notifier": map[string]any{
			"connstring": opts.ConnString,
			"migrations": true,
		},
	}
	if opts.PSK != nil {
		conf["auth"] = map[string]any{"psk": map[string]any{"key": opts.PSK.Key, "iss": []string{opts.PSK.Issuer}}}
	}
	b, err := yaml.Marshal(conf)
	if err != nil {
		return fmt.Errorf("clair config: %w", err)
	}
	return os.WriteFile(path, b, 0o600)
}

// waitReady polls the introspection server's /readyz until it answers 200,
// Clair exits or the timeout passes.
func (c *Clair) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return c.poll(ctx, 100*time.Millisecond, func() (bool, error) {
		// Clair carries on without its introspection server when that port
		// is taken (a lost race for a free port): /readyz would never answer.
		if strings.Contains(fileTail(c.LogPath, 64<<10), "introspection server failed to launch") {
			return false, errors.New("clair's introspection server could not listen")
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.IntrospectionURL+"/readyz", nil)
		if err != nil {
			return false, err
		}
		resp, err := c.client.Do(req)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}

// poll calls check every interval until it reports done or fails, Clair
// exits or ctx ends.
func (c *Clair) poll(ctx context.Context, interval time.Duration, check func() (bool, error)) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if exited, err := c.exited(); exited {
			return fmt.Errorf("clair exited: %v", err)
		}
		done, err := check()
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("clair not ready: %w", context.Cause(ctx))
		case <-c.done():
		case <-tick.C:
		}
	}
}

// exited reports whether Clair's process or container has ended, and how.
func (c *Clair) exited() (bool, error) {
	if c.ctr != nil {
		return c.ctr.Exited()
	}
	return c.proc.exited()
}

// done is closed when Clair's process or container has ended.
func (c *Clair) done() <-chan struct{} {
	if c.ctr != nil {
		return c.ctr.Done()
	}
	return c.proc.done
}

// WaitForUpdaters waits until the matcher has recorded a vulnerability
// update operation for every updater in names (see ExpectedUpdaters), that
// is until the first update from the feed is in the database. It asks the
// matcher's own API (GET /matcher/api/v1/internal/update_operation); an
// updater whose run failed never gets an operation, so once Clair logs that
// its initial run is over ("starting background updates") a missing one
// fails at once, with the log. Otherwise it waits until ctx ends.
func (c *Clair) WaitForUpdaters(ctx context.Context, names []string) error {
	var missing []string
	err := c.poll(ctx, 200*time.Millisecond, func() (bool, error) {
		runOver := strings.Contains(fileTail(c.LogPath, 1<<20), `"starting background updates"`)
		ops, err := c.updateOperations(ctx)
		if err != nil {
			return false, nil
		}
		missing = missing[:0]
		for _, n := range names {
			if len(ops[n]) == 0 {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 {
			return true, nil
		}
		if runOver {
			return false, fmt.Errorf("clair's first update run ended without updating %v", missing)
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("wait for clair's vulnerability update (missing %v): %w\nclair log (%s):\n%s", missing, err, c.LogPath, c.LogTail(8192))
	}
	return nil
}

func (c *Clair) updateOperations(ctx context.Context) (map[string][]json.RawMessage, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+"/matcher/api/v1/internal/update_operation?kind=vulnerability", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("update_operation: %s", resp.Status)
	}
	var ops map[string][]json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&ops); err != nil {
		return nil, fmt.Errorf("update_operation: %w", err)
	}
	return ops, nil
}

// HTTPClient returns a client for Clair's API: with a PSK configured it
// signs every request with a fresh token. It does not follow the PSK onto
// other hosts: use it for Clair only.
func (c *Clair) HTTPClient() *http.Client { return c.client }

// PSK returns the PSK Clair was started with, nil if none.
func (c *Clair) PSK() *PSK { return c.psk }

// refuseExternal is the trap proxy: it records the target of every request
// Clair sends through it (a plain proxy request or an HTTPS CONNECT) and
// refuses it.
func (c *Clair) refuseExternal(w http.ResponseWriter, r *http.Request) {
	target := r.Host
	if r.Method != http.MethodConnect && r.URL.IsAbs() {
		target = r.URL.String()
	}
	c.mu.Lock()
	c.external = append(c.external, r.Method+" "+target)
	c.mu.Unlock()
	http.Error(w, "layerbridge harness: no external network", http.StatusForbidden)
}

// ExternalRequests lists the requests for public hosts Clair attempted
// (method and target), sorted. Empty means it stayed on the machine, as far
// as HTTP goes.
func (c *Clair) ExternalRequests() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := append([]string(nil), c.external...)
	sort.Strings(out)
	return out
}

// LogTail returns at most the last n bytes of Clair's log; "" after Close.
func (c *Clair) LogTail(n int) string { return fileTail(c.LogPath, n) }

// Close stops Clair (SIGINT, SIGKILL after 15 s; in a container SIGTERM,
// then SIGKILL), the trap proxy, and removes Clair's directory (and its
// container and image). It may be called more than once.
func (c *Clair) Close() error {
	var errs []error
	if c.proc != nil {
		c.proc.stop()
	}
	if c.ctr != nil {
		errs = append(errs, c.ctr.Close())
	}
	if c.image != "" {
		errs = append(errs, RemoveImage(c.docker, c.image))
		c.image = ""
	}
	if c.trap != nil {
		if err := c.trap.close(); err != nil {
			errs = append(errs, err)
		}
		c.trap = nil
	}
	if err := os.RemoveAll(c.dir); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", c.dir, err))
	}
	return errors.Join(errs...)
}
