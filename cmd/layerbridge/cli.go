package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"
	"golang.org/x/term"
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

// storeFlags locate the image cache and the Docker daemon.
type storeFlags struct {
	cacheDir   string
	dockerHost string
}

func (s *storeFlags) register(fs *pflag.FlagSet, e env) {
	fs.StringVar(&s.cacheDir, "cache-dir", defaultCacheDir(e), "")
	fs.StringVar(&s.dockerHost, "docker-host", "", "")
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
