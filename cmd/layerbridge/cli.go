package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/layerbridge/layerbridge/containerdsource"
	"github.com/layerbridge/layerbridge/reach"
	"github.com/layerbridge/layerbridge/scan"
)

// newFlagSet returns a flag set that reports errors to the caller instead
// of printing them, and prints help (the command's hand-written usage) to
// stdout on -h/--help.
func newFlagSet(name, help string, stdout io.Writer) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() { io.WriteString(stdout, help) }
	fs.SortFlags = false
	return fs
}

// parseFlags parses args and turns a parse error into a usage error that
// points at the command's help.
func parseFlags(fs *pflag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if err == nil || err == pflag.ErrHelp {
		return err
	}
	ue := usageErrorf("%v", err)
	ue.hints = append(ue.hints, fmt.Sprintf(`run "%s --help" for usage`, fs.Name()))
	return ue
}

// logFlags are the logging flags every command has.
type logFlags struct {
	level string
}

func (l *logFlags) register(fs *pflag.FlagSet, e env) {
	fs.StringVar(&l.level, "log-level", envOr(e, "LAYERBRIDGE_LOG_LEVEL", "info"), "")
}

func (l *logFlags) logger(stderr io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	switch strings.ToLower(l.level) {
	case "debug":
		lvl = slog.LevelDebug
	case "info":
		lvl = slog.LevelInfo
	case "warn", "warning":
		lvl = slog.LevelWarn
	case "error":
		lvl = slog.LevelError
	default:
		return nil, usageErrorf("--log-level %q: want debug, info, warn or error", l.level)
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl})), nil
}

// storeFlags locate the image cache and the image sources: the Docker
// daemon, and containerd (named as containerd's own tools name it).
type storeFlags struct {
	cacheDir            string
	dockerHost          string
	containerdAddress   string
	containerdNamespace string
}

func (s *storeFlags) register(fs *pflag.FlagSet, e env) {
	fs.StringVar(&s.cacheDir, "cache-dir", defaultCacheDir(e), "")
	fs.StringVar(&s.dockerHost, "docker-host", "", "")
	fs.StringVar(&s.containerdAddress, "containerd-address", envOr(e, "CONTAINERD_ADDRESS", containerdsource.DefaultAddress), "")
	fs.StringVar(&s.containerdNamespace, "containerd-namespace", envOr(e, "CONTAINERD_NAMESPACE", containerdsource.DefaultNamespace), "")
}

// containerdNamed reports whether the user named a containerd
// (--containerd-address or CONTAINERD_ADDRESS), rather than leaving the
// default.
func (s *storeFlags) containerdNamed(fs *pflag.FlagSet, e env) bool {
	return fs.Changed("containerd-address") || e.getenv("CONTAINERD_ADDRESS") != ""
}

// defaultCacheDir is $LAYERBRIDGE_CACHE_DIR, else $XDG_CACHE_HOME/layerbridge,
// else ~/.cache/layerbridge.
func defaultCacheDir(e env) string {
	if d := e.getenv("LAYERBRIDGE_CACHE_DIR"); d != "" {
		return d
	}
	if d := e.getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "layerbridge")
	}
	return filepath.Join(e.home, ".cache", "layerbridge")
}

func envOr(e env, key, def string) string {
	if v := e.getenv(key); v != "" {
		return v
	}
	return def
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// clairFlags say which Clair to talk to, and how to authenticate to it.
type clairFlags struct {
	url       string
	api       string
	psk       string
	pskIssuer string
}

func (c *clairFlags) register(fs *pflag.FlagSet, e env) {
	fs.StringVar(&c.url, "clair", envOr(e, "CLAIR_ADDR", "http://localhost:6060"), "")
	fs.StringVar(&c.api, "clair-api", "auto", "")
	fs.StringVar(&c.psk, "clair-psk", e.getenv("LAYERBRIDGE_CLAIR_PSK"), "")
	fs.StringVar(&c.pskIssuer, "clair-psk-issuer", "layerbridge", "")
}

func (c *clairFlags) validate() error {
	if !isHTTPURL(c.url) {
		ue := usageErrorf("--clair %q is not an http(s) URL", c.url)
		ue.hints = append(ue.hints, "for example: --clair http://localhost:6060 (or set CLAIR_ADDR)")
		return ue
	}
	if !slices.Contains([]string{"auto", "v4", "v2"}, c.api) {
		return usageErrorf("--clair-api %q: want auto, v4 or v2", c.api)
	}
	if c.psk == "" {
		return nil
	}
	if c.api == "v2" {
		return usageErrorf("--clair-psk is for Clair 4's auth.psk; --clair-api v2 has no authentication")
	}
	if _, err := base64.StdEncoding.DecodeString(c.psk); err != nil {
		ue := usageErrorf("--clair-psk is not standard base64: %v", err)
		ue.hints = append(ue.hints, "copy auth.psk.key from Clair's config as it is written there")
		return ue
	}
	return nil
}

// connect builds the Clair clients that every request of this command to
// Clair uses; call validate first. They dial Clair's host with the
// returned Dialer: a name only Docker's DNS knows (http://clair:6060 seen
// from the host) goes to the address of the container it names.
func (c *clairFlags) connect(d *daemon, log *slog.Logger) (scan.Clair, *reach.Dialer) {
	u := c.clairURL()
	dialer := reach.NewDialer(u.Hostname(), d.names(log))
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = dialer.DialContext
	return scan.NewClair(u, c.api, scan.ClairOptions{
		HTTPClient: &http.Client{Transport: tr},
		PSK:        c.psk, PSKIssuer: c.pskIssuer, Logger: log,
	}), dialer
}

// clairURL is the parsed --clair; call validate first.
func (c *clairFlags) clairURL() *url.URL {
	u, _ := url.Parse(c.url)
	return u
}

// onLoopback reports whether --clair names loopback: localhost or a
// loopback IP address.
func (c *clairFlags) onLoopback() bool {
	host := c.clairURL().Hostname()
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// containerLoopbackHint is what to do when --clair names loopback, nothing
// answered there, and layerbridge runs in a container: that loopback is the
// container's own, where Clair is only when it shares the container's
// network (one pod, --network container:..., --network host, or Clair
// running in the same container). The usual mistake is the default URL in
// a sidecar.
const containerLoopbackHint = "layerbridge runs in a container, whose loopback is its own: Clair is there only when it shares the container's network (same pod, --network container:... or host); " +
	"give Clair's address on the container network, for example --clair http://clair:6060 (or set CLAIR_ADDR)"

// clairMissingFromContainerLoopback reports whether --clair names loopback,
// layerbridge runs in a container, and nothing accepts connections at
// Clair's address on that loopback (within a few seconds). A Clair that
// answers there shares the container's network, and nothing is wrong:
// being in a container alone says nothing about where Clair is.
func (c *clairFlags) clairMissingFromContainerLoopback(ctx context.Context, e env) bool {
	if !c.onLoopback() || e.inContainer == nil || !e.inContainer() {
		return false
	}
	u := c.clairURL()
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return ctx.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded)
	}
	conn.Close()
	return false
}

// validateListen checks a --listen value: IP:PORT, where IP may be empty
// (every interface) and PORT is a number; "" (choose for me) is valid too.
func validateListen(listen string) error {
	if listen == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return usageErrorf("--listen %q: want IP:PORT (for example 0.0.0.0:8080): %v", listen, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return usageErrorf("--listen %q: port %q is not a number from 0 to 65535", listen, port)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			return usageErrorf("--listen %q: %q is not an IP address (use 0.0.0.0 for every interface)", listen, host)
		}
	}
	return nil
}

// validateAdvertise checks an --advertise value ("" is valid: detect it);
// example is a URL to suggest.
func validateAdvertise(advertise, example string) error {
	if advertise == "" || isHTTPURL(advertise) {
		return nil
	}
	ue := usageErrorf("--advertise %q is not an http(s) URL", advertise)
	ue.hints = append(ue.hints, "give the base URL Clair should download layers from, for example --advertise "+example)
	return ue
}

func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}
