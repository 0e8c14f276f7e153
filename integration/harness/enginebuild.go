package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// An engine is built, like Clair, from the Go module proxy: each lives in a
// small module of its own under integration/engines/ whose go.mod names the
// engine's commands as tools and pins their whole dependency graph (dockerd
// and containerd need different versions of shared dependencies, so they
// cannot share a module).
type engineSpec struct {
	// name is the module's directory under integration/engines/ and the
	// prefix of its builds in the cache.
	name string
	// module is the module whose version names the build.
	module string
	// packages are the main packages built, each to a binary named after
	// its last path element unless rename says otherwise.
	packages []string
	rename   map[string]string
	tags     string
	ldflags  string
}

var (
	containerdEngine = engineSpec{
		name:   "containerd",
		module: "github.com/containerd/containerd/v2",
		packages: []string{
			"github.com/containerd/containerd/v2/cmd/containerd",
			"github.com/containerd/containerd/v2/cmd/ctr",
			"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2",
		},
		tags: "no_btrfs urfave_cli_no_docs",
	}
	dockerdEngine = engineSpec{
		name:     "dockerd",
		module:   "github.com/moby/moby/v2",
		packages: []string{"github.com/moby/moby/v2/cmd/dockerd"},
		tags:     "exclude_graphdriver_btrfs exclude_graphdriver_devicemapper",
		// What Docker's release build stamps in: without it the daemon
		// calls itself version "library-import". Module v2.0.0-beta.24 is
		// Docker Engine 29.8.1 (see integration/engines/dockerd/go.mod).
		ldflags: "-X github.com/moby/moby/v2/dockerversion.Version=" + dockerdEngineVersion +
			" -X github.com/moby/moby/v2/dockerversion.GitCommit=v2.0.0-beta.24",
	}
	buildxEngine = engineSpec{
		name:     "buildx",
		module:   "github.com/docker/buildx",
		packages: []string{"github.com/docker/buildx/cmd/buildx"},
		// The docker CLI finds plugins by this name in cli-plugins/.
		rename:  map[string]string{"buildx": "docker-buildx"},
		ldflags: "-X github.com/docker/buildx/version.Version=v0.38.2",
	}
)

// dockerdEngineVersion is the Docker Engine release that dockerd's module
// version corresponds to.
const dockerdEngineVersion = "29.8.1"

// EngineBuild describes the binaries one of BuildContainerd, BuildDockerd
// and BuildBuildx returned.
type EngineBuild struct {
	// Dir holds the binaries, inside the cache directory.
	Dir string
	// Version is the version of the engine's module, such as "v2.4.2".
	Version string
	// Built is false when binaries for the same module graph and Go version
	// were already in the cache and nothing was compiled.
	Built bool
	// Duration is the time the call took, waiting for a concurrent build by
	// another process included.
	Duration time.Duration
}

// Path is the binary name in the build.
func (b EngineBuild) Path(name string) string { return filepath.Join(b.Dir, name) }

// BuildContainerd builds containerd, ctr and containerd-shim-runc-v2 from
// the module integration/engines/containerd (containerd v2.4.2; about 40 s
// on 2 cores with a cold Go build cache). moduleDir is a directory inside
// the integration module ("" means the current directory) and cacheDir the
// cache ("" means DefaultCacheDir). As BuildClair, the binaries are kept
// under a key of the module's go.mod, go.sum and the Go version, and
// concurrent callers wait for one build. They are static (CGO_ENABLED=0).
func BuildContainerd(ctx context.Context, moduleDir, cacheDir string) (EngineBuild, error) {
	return buildEngine(ctx, containerdEngine, moduleDir, cacheDir)
}

// BuildDockerd is BuildContainerd for dockerd (Docker Engine 29.8.1, from
// integration/engines/dockerd; about 5 minutes on 2 cores with a cold Go
// build cache).
func BuildDockerd(ctx context.Context, moduleDir, cacheDir string) (EngineBuild, error) {
	return buildEngine(ctx, dockerdEngine, moduleDir, cacheDir)
}

// BuildBuildx is BuildContainerd for the docker CLI's buildx plugin
// (docker-buildx, from integration/engines/buildx; about 2 minutes on 2
// cores with a cold Go build cache).
func BuildBuildx(ctx context.Context, moduleDir, cacheDir string) (EngineBuild, error) {
	return buildEngine(ctx, buildxEngine, moduleDir, cacheDir)
}

func buildEngine(ctx context.Context, spec engineSpec, moduleDir, cacheDir string) (EngineBuild, error) {
	start := time.Now()
	what := "build " + spec.name
	if cacheDir == "" {
		var err error
		if cacheDir, err = DefaultCacheDir(); err != nil {
			return EngineBuild{}, fmt.Errorf("%s: %w", what, err)
		}
	}
	out, err := runGo(ctx, moduleDir, nil, "env", "GOMOD")
	if err != nil {
		return EngineBuild{}, fmt.Errorf("%s: %w", what, err)
	}
	integration := strings.TrimSpace(string(out))
	if integration == "" || integration == os.DevNull {
		return EngineBuild{}, fmt.Errorf("%s: %q is not inside the integration module", what, moduleDir)
	}
	dir := filepath.Join(filepath.Dir(integration), "engines", spec.name)
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		return EngineBuild{}, fmt.Errorf("%s: is %q inside the integration module? %w", what, moduleDir, err)
	}
	out, err = runGo(ctx, dir, nil, "list", "-m", "-f", "{{.Version}}", spec.module)
	if err != nil {
		return EngineBuild{}, fmt.Errorf("%s: %w", what, err)
	}
	version := strings.TrimSpace(string(out))
	out, err = runGo(ctx, dir, nil, "env", "GOVERSION")
	if err != nil {
		return EngineBuild{}, fmt.Errorf("%s: %w", what, err)
	}
	key, err := buildKey(filepath.Join(dir, "go.mod"), strings.TrimSpace(string(out)))
	if err != nil {
		return EngineBuild{}, fmt.Errorf("%s: %w", what, err)
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return EngineBuild{}, fmt.Errorf("%s: %w", what, err)
	}
	unlock, err := lockFile(filepath.Join(cacheDir, spec.name+".lock"))
	if err != nil {
		return EngineBuild{}, fmt.Errorf("%s: %w", what, err)
	}
	defer unlock()

	prefix := spec.name + "-"
	b := EngineBuild{Dir: filepath.Join(cacheDir, prefix+version+"-"+key), Version: version}
	if complete(b, spec) {
		markUsed(b.Dir)
		b.Duration = time.Since(start)
		return b, nil
	}
	// Under the lock, a leftover temporary directory is a build that died.
	tmp := b.Dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return EngineBuild{}, fmt.Errorf("%s: %w", what, err)
	}
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return EngineBuild{}, fmt.Errorf("%s: %w", what, err)
	}
	args := []string{"build", "-o", tmp + string(filepath.Separator)}
	if spec.tags != "" {
		args = append(args, "-tags", spec.tags)
	}
	if spec.ldflags != "" {
		args = append(args, "-ldflags", spec.ldflags)
	}
	args = append(args, spec.packages...)
	if _, err := runGo(ctx, dir, []string{"CGO_ENABLED=0"}, args...); err != nil {
		os.RemoveAll(tmp)
		return EngineBuild{}, fmt.Errorf("%s: %w", what, err)
	}
	for from, to := range spec.rename {
		if err := os.Rename(filepath.Join(tmp, from), filepath.Join(tmp, to)); err != nil {
			os.RemoveAll(tmp)
			return EngineBuild{}, fmt.Errorf("%s: %w", what, err)
		}
	}
	if err := os.Rename(tmp, b.Dir); err != nil {
		os.RemoveAll(tmp)
		return EngineBuild{}, fmt.Errorf("%s: %w", what, err)
	}
	pruneBuilds(filepath.Join(cacheDir, prefix+"v*"), b.Dir)
	b.Built = true
	b.Duration = time.Since(start)
	return b, nil
}

// complete reports whether every binary of spec is in b.
func complete(b EngineBuild, spec engineSpec) bool {
	for _, p := range spec.packages {
		name := p[strings.LastIndexByte(p, '/')+1:]
		if r, ok := spec.rename[name]; ok {
			name = r
		}
		if !isExecutable(b.Path(name)) {
			return false
		}
	}
	return true
}
