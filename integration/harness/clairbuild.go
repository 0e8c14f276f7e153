package harness

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

const (
	clairModule  = "github.com/quay/clair/v4"
	clairPackage = clairModule + "/cmd/clair"
)

// ClairBuild describes the Clair binary BuildClair returned.
type ClairBuild struct {
	// Path is the binary, inside the cache directory.
	Path string
	// Version is the Clair version the module requires, such as "v4.9.0".
	Version string
	// Built is false when a binary for the same module graph and Go
	// version was already in the cache and nothing was compiled.
	Built bool
	// Duration is the time BuildClair took, waiting for a concurrent build
	// by another process included.
	Duration time.Duration
}

// DefaultCacheDir is where BuildClair keeps binaries unless told otherwise:
// layerbridge-integration/ under the user's cache directory
// (~/.cache/layerbridge-integration), apart from layerbridge's own image
// store in ~/.cache/layerbridge.
func DefaultCacheDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("user cache dir: %w", err)
	}
	return filepath.Join(d, "layerbridge-integration"), nil
}

// BuildClair builds Clair's server (github.com/quay/clair/v4/cmd/clair, the
// version the module integration/engines/clair requires as a tool, with the
// whole dependency graph that module pins: the integration module's own
// dependencies, which follow layerbridge's, never change what Clair is built
// from) with `go build` run in that module; moduleDir is a directory inside
// the integration module ("" means the current directory). The binary is
// named after the Clair version and a hash of the Clair module's go.mod,
// go.sum and the Go version, and kept in
// cacheDir ("" means DefaultCacheDir): a later call with the same inputs
// returns it without compiling; builds for other inputs are removed once
// unused for a week (staleBuild). A first build with a cold Go build cache
// takes minutes (about 2.5 on 2 cores); concurrent callers, in this or other
// processes, wait for one build and cannot be cancelled while they wait.
func BuildClair(ctx context.Context, moduleDir, cacheDir string) (ClairBuild, error) {
	return buildClair(ctx, moduleDir, cacheDir, false)
}

// BuildStaticClair is BuildClair for a container: a statically linked
// Clair (CGO_ENABLED=0; Clair is pure Go), stripped, that runs in a FROM
// scratch image (StartClairContainer). It is cached next to BuildClair's
// binary under its own name ("clair-static-v4.9.0-<key>"); a first build
// takes as long as BuildClair's (about 3 minutes on 2 cores), since no
// compiled package is shared with the cgo build.
func BuildStaticClair(ctx context.Context, moduleDir, cacheDir string) (ClairBuild, error) {
	return buildClair(ctx, moduleDir, cacheDir, true)
}

func buildClair(ctx context.Context, moduleDir, cacheDir string, static bool) (ClairBuild, error) {
	start := time.Now()
	what := "build clair"
	prefix, goEnv := "clair-", []string(nil)
	if static {
		what = "build static clair"
		prefix, goEnv = "clair-static-", []string{"CGO_ENABLED=0"}
	}
	var err error
	if cacheDir == "" {
		if cacheDir, err = DefaultCacheDir(); err != nil {
			return ClairBuild{}, fmt.Errorf("%s: %w", what, err)
		}
	}
	dir, err := clairModuleDir(ctx, moduleDir)
	if err != nil {
		return ClairBuild{}, fmt.Errorf("%s: %w", what, err)
	}
	goCmd := func(args ...string) ([]byte, error) { return runGo(ctx, dir, goEnv, args...) }
	out, err := goCmd("list", "-m", "-f", "{{.Version}}", clairModule)
	if err != nil {
		return ClairBuild{}, fmt.Errorf("%s: %w", what, err)
	}
	version := strings.TrimSpace(string(out))
	out, err = goCmd("env", "GOMOD", "GOVERSION")
	if err != nil {
		return ClairBuild{}, fmt.Errorf("%s: %w", what, err)
	}
	env := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(env) != 2 || env[0] == "" || env[0] == os.DevNull {
		return ClairBuild{}, fmt.Errorf("%s: no go.mod for %q", what, moduleDir)
	}
	key, err := buildKey(env[0], env[1])
	if err != nil {
		return ClairBuild{}, fmt.Errorf("%s: %w", what, err)
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return ClairBuild{}, fmt.Errorf("%s: %w", what, err)
	}
	unlock, err := lockFile(filepath.Join(cacheDir, "clair.lock"))
	if err != nil {
		return ClairBuild{}, fmt.Errorf("%s: %w", what, err)
	}
	defer unlock()

	b := ClairBuild{Path: filepath.Join(cacheDir, prefix+version+"-"+key), Version: version}
	if isExecutable(b.Path) {
		markUsed(b.Path)
		b.Duration = time.Since(start)
		return b, nil
	}
	tmp := b.Path + ".tmp"
	args := []string{"build", "-o", tmp, clairPackage}
	if static {
		args = []string{"build", "-trimpath", "-ldflags=-s -w", "-o", tmp, clairPackage}
	}
	if _, err := goCmd(args...); err != nil {
		os.Remove(tmp)
		return ClairBuild{}, fmt.Errorf("%s: %w", what, err)
	}
	if static {
		if err := checkStatic(tmp); err != nil {
			os.Remove(tmp)
			return ClairBuild{}, fmt.Errorf("%s: %w", what, err)
		}
	}
	if err := os.Rename(tmp, b.Path); err != nil {
		return ClairBuild{}, fmt.Errorf("%s: %w", what, err)
	}
	pruneBuilds(filepath.Join(cacheDir, prefix+"v*"), b.Path)
	b.Built = true
	b.Duration = time.Since(start)
	return b, nil
}

// ClairctlCommand is `go tool clairctl args...`, run in the module Clair is
// built from (integration/engines/clair, found from moduleDir, a directory
// inside the integration module; "" means the current directory): the
// clairctl of the Clair the tests run. Paths in args must be absolute.
func ClairctlCommand(ctx context.Context, moduleDir string, args ...string) (*exec.Cmd, error) {
	dir, err := clairModuleDir(ctx, moduleDir)
	if err != nil {
		return nil, fmt.Errorf("clairctl: %w", err)
	}
	cmd := exec.CommandContext(ctx, "go", append([]string{"tool", "clairctl"}, args...)...)
	cmd.Dir = dir
	return cmd, nil
}

func clairModuleDir(ctx context.Context, moduleDir string) (string, error) {
	out, err := runGo(ctx, moduleDir, nil, "env", "GOMOD")
	if err != nil {
		return "", err
	}
	integration := strings.TrimSpace(string(out))
	if integration == "" || integration == os.DevNull {
		return "", fmt.Errorf("%q is not inside the integration module", moduleDir)
	}
	dir := filepath.Join(filepath.Dir(integration), "engines", "clair")
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		return "", fmt.Errorf("is %q inside the integration module? %w", moduleDir, err)
	}
	return dir, nil
}

// runGo runs the go command in dir ("" means the current directory) with
// env added to this process's environment, and returns its standard output;
// its error quotes the end of the command's standard error.
func runGo(ctx context.Context, dir string, env []string, args ...string) ([]byte, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("the go command is not on PATH: %w", err)
	}
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, tail(stderr.Bytes(), 8192))
	}
	return out, nil
}

// staleBuild is how long a cached build may go unused before a build with
// other inputs removes it. Builds with other inputs are not stale at once:
// another checkout on this machine (a git worktree with another go.sum) may
// be using one, and would otherwise find its binary gone between asking for
// it and starting it, and rebuild it, removing this one in turn.
const staleBuild = 7 * 24 * time.Hour

// markUsed records that the build at path was just used (its modification
// time), for pruneBuilds. Best effort.
func markUsed(path string) {
	now := time.Now()
	_ = os.Chtimes(path, now, now)
}

// pruneBuilds removes the builds matching pattern, but keep, that have not
// been used for staleBuild. The caller holds the build lock. Best effort.
func pruneBuilds(pattern, keep string) {
	old, _ := filepath.Glob(pattern)
	for _, o := range old {
		if fi, err := os.Stat(o); err == nil && o != keep && time.Since(fi.ModTime()) > staleBuild {
			os.RemoveAll(o)
		}
	}
}

// checkStatic fails for a binary that needs a dynamic loader (one with an
// ELF interpreter): it could not run in a FROM scratch image.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked (it has an ELF interpreter), so it cannot run in a FROM scratch image", path)
		}
	}
	return nil
}

// buildKey hashes what decides the binary's content: go.mod and go.sum of
// the module, the Go version and platform.
func buildKey(goMod, goVersion string) (string, error) {
	h := sha256.New()
	for _, p := range []string{goMod, strings.TrimSuffix(goMod, ".mod") + ".sum"} {
		b, err := os.ReadFile(p)
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	fmt.Fprintf(h, "%s %s/%s", goVersion, runtime.GOOS, runtime.GOARCH)
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}

// lockFile takes an exclusive flock on path, waiting for other holders.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}
