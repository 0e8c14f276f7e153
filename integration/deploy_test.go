package integration_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/layerbridge/layerbridge/integration/harness"
)

// The deployment files of the repository, as a user runs them.
const (
	deployDir  = "../deploy"
	dockerfile = "../Dockerfile"
)

// composeCommand returns the Compose command of this machine: the
// `docker compose` plugin (Compose v2) if it answers, else the standalone
// `docker-compose` (v1, Debian's package). Neither goes through Unavailable.
func composeCommand(t *testing.T) []string {
	t.Helper()
	if err := exec.Command("docker", "compose", "version").Run(); err == nil {
		return []string{"docker", "compose"}
	}
	if err := exec.Command("docker-compose", "version").Run(); err == nil {
		return []string{"docker-compose"}
	}
	harness.Unavailable(t, errors.New("neither `docker compose` nor `docker-compose` runs: the compose files cannot be validated"))
	return nil
}

// composeConfig runs `<compose> -f file config`, which validates the file
// (and interpolates the environment) without contacting the daemon.
func composeConfig(t *testing.T, compose []string, file string, env ...string) ([]byte, error) {
	t.Helper()
	args := append(slices.Clone(compose[1:]), "-f", file, "config")
	cmd := exec.CommandContext(withTimeout(t, time.Minute), compose[0], args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// composeFile is the part of `compose config`'s output the tests read. Both
// Compose versions print it, v1 with short volume and secret syntax, v2
// with long.
type composeFile struct {
	Services map[string]struct {
		Image           string            `yaml:"image"`
		Command         []string          `yaml:"command"`
		Environment     map[string]string `yaml:"environment"`
		GroupAdd        []string          `yaml:"group_add"`
		Volumes         []composeMount    `yaml:"volumes"`
		Secrets         []composeMount    `yaml:"secrets"`
		Networks        map[string]any    `yaml:"networks"`
		StopGracePeriod string            `yaml:"stop_grace_period"`
		Ports           []any             `yaml:"ports"`
	} `yaml:"services"`
	Networks map[string]struct {
		Name string `yaml:"name"`
	} `yaml:"networks"`
	Secrets map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
}

// composeMount is a volume ("src:dst[:mode]" or {source, target}) or a
// secret ("name" or {source, target}).
type composeMount struct {
	Source, Target string
}

func (m *composeMount) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		parts := strings.Split(n.Value, ":")
		m.Source = parts[0]
		if len(parts) > 1 {
			m.Target = parts[1]
		}
		return nil
	}
	var long struct {
		Source string `yaml:"source"`
		Target string `yaml:"target"`
	}
	if err := n.Decode(&long); err != nil {
		return err
	}
	m.Source, m.Target = long.Source, long.Target
	return nil
}

func parseCompose(t *testing.T, out []byte) composeFile {
	t.Helper()
	var c composeFile
	if err := yaml.Unmarshal(out, &c); err != nil {
		t.Fatalf("compose config output: %v\n%s", err, out)
	}
	return c
}

// flagValue returns the value after flag in args, "" if absent.
func flagValue(args []string, flag string) string {
	i := slices.Index(args, flag)
	if i < 0 || i+1 >= len(args) {
		return ""
	}
	return args[i+1]
}

// TestComposeFiles validates deploy/compose.yaml (Clair 4) and
// deploy/compose.clair2.yaml with the machine's Compose, and checks that
// each wires layerbridge to its Clair the way the image and `serve` expect.
func TestComposeFiles(t *testing.T) {
	t.Parallel()
	compose := composeCommand(t)
	cacheDir := dockerfileCacheDir(t)
	for _, tc := range []struct {
		file, clairImage, api string
	}{
		{"compose.yaml", "quay.io/projectquay/clair:4.9.0", ""},
		{"compose.clair2.yaml", "quay.io/coreos/clair:v2.1.7", "v2"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			file := filepath.Join(deployDir, tc.file)
			out, err := composeConfig(t, compose, file, "DOCKER_GID=4242")
			if err != nil {
				t.Fatal(err)
			}
			c := parseCompose(t, out)
			if n, ok := c.Networks["clair-network"]; !ok || n.Name != "clair-network" {
				t.Errorf("networks %+v: want clair-network, named so outside the project too", c.Networks)
			}
			for _, name := range []string{"postgres", "clair", "layerbridge"} {
				s, ok := c.Services[name]
				if !ok {
					t.Fatalf("no service %s", name)
				}
				if _, ok := s.Networks["clair-network"]; !ok || len(s.Networks) != 1 {
					t.Errorf("%s is on %v, want clair-network only", name, s.Networks)
				}
			}

			clair := c.Services["clair"]
			if clair.Image != tc.clairImage {
				t.Errorf("clair image %q, want %q", clair.Image, tc.clairImage)
			}
			var clairConfig string
			for _, v := range clair.Volumes {
				if v.Target == "/config/config.yaml" {
					clairConfig = v.Source
				}
			}
			if _, err := os.Stat(clairConfig); err != nil {
				t.Errorf("clair's config file %q: %v", clairConfig, err)
			}

			lb := c.Services["layerbridge"]
			if lb.Image != "layerbridge:latest" {
				t.Errorf("layerbridge image %q, want layerbridge:latest (what make image tags)", lb.Image)
			}
			if len(lb.Command) == 0 || lb.Command[0] != "serve" {
				t.Fatalf("layerbridge command %q, want serve ...", lb.Command)
			}
			if got := flagValue(lb.Command, "--clair"); got != "http://clair:6060" {
				t.Errorf("--clair %q, want the clair service's name and port", got)
			}
			if got := flagValue(lb.Command, "--clair-api"); got != tc.api {
				t.Errorf("--clair-api %q, want %q", got, tc.api)
			}
			if len(lb.Secrets) != 1 || flagValue(lb.Command, "--token-file") != "/run/secrets/"+lb.Secrets[0].Source {
				t.Errorf("--token-file %q, secrets %+v: want the compose secret's path", flagValue(lb.Command, "--token-file"), lb.Secrets)
			} else if c.Secrets[lb.Secrets[0].Source].File == "" {
				t.Errorf("secret %s has no file", lb.Secrets[0].Source)
			}
			if !slices.Equal(lb.GroupAdd, []string{"4242"}) {
				t.Errorf("group_add %v, want [$DOCKER_GID]", lb.GroupAdd)
			}
			var socket, cache bool
			for _, v := range lb.Volumes {
				socket = socket || (v.Source == "/var/run/docker.sock" && v.Target == "/var/run/docker.sock")
				cache = cache || v.Target == cacheDir
			}
			if !socket || !cache {
				t.Errorf("layerbridge volumes %+v: want the docker socket and a volume on the image's cache %s", lb.Volumes, cacheDir)
			}
			if d, err := time.ParseDuration(lb.StopGracePeriod); err != nil || d <= 30*time.Second {
				t.Errorf("stop_grace_period %q, want more than serve's --shutdown-grace of 30s", lb.StopGracePeriod)
			}

			// Without DOCKER_GID the file is refused, naming what to set.
			if _, err := composeConfig(t, compose, file); err == nil || !strings.Contains(err.Error(), "DOCKER_GID") {
				t.Errorf("without DOCKER_GID: %v, want a refusal naming DOCKER_GID", err)
			}
		})
	}

	t.Run("an invalid file is refused", func(t *testing.T) {
		// What makes the checks above mean something: the validator does
		// reject a malformed file.
		b, err := os.ReadFile(filepath.Join(deployDir, "compose.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		bad := strings.Replace(string(b), "    group_add:", "    group_addd:", 1)
		file := filepath.Join(t.TempDir(), "compose.yaml")
		if err := os.WriteFile(file, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := composeConfig(t, compose, file, "DOCKER_GID=4242"); err == nil || !strings.Contains(err.Error(), "group_addd") {
			t.Errorf("a misspelt key: %v, want a refusal naming it", err)
		}
	})
}

// dockerfileCacheDir returns the image's cache directory: its VOLUME, which
// must also be the LAYERBRIDGE_CACHE_DIR it sets.
func dockerfileCacheDir(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	vol := regexp.MustCompile(`(?m)^VOLUME \["([^"]+)"\]`).FindSubmatch(b)
	env := regexp.MustCompile(`(?m)^ENV LAYERBRIDGE_CACHE_DIR=(\S+)`).FindSubmatch(b)
	if vol == nil || env == nil || string(vol[1]) != string(env[1]) {
		t.Fatalf("the Dockerfile's VOLUME %q and LAYERBRIDGE_CACHE_DIR %q must name the same directory", vol, env)
	}
	return string(vol[1])
}

// TestClairConfigOfComposeIsValid has Clair 4.9's own configuration loader
// (clairctl check-config, strict: unknown keys are errors) read the
// configuration deploy/compose.yaml mounts.
func TestClairConfigOfComposeIsValid(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, config string
		valid        bool
	}{
		{"deploy/clair4/config.yaml", filepath.Join(deployDir, "clair4", "config.yaml"), true},
		{"a misspelt key", "", false},
	} {
		config, err := filepath.Abs(tc.config)
		if err != nil {
			t.Fatal(err)
		}
		if tc.config == "" {
			config = filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(config, []byte("http_listen_addr: :6060\nindexer:\n  connstrin: host=postgres\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		cmd, err := harness.ClairctlCommand(withTimeout(t, 3*time.Minute), ".", "check-config", config)
		if err != nil {
			t.Fatal(err)
		}
		out, err := cmd.CombinedOutput()
		if (err == nil) != tc.valid {
			t.Errorf("%s: clairctl check-config: %v, want valid=%v\n%s", tc.name, err, tc.valid, out)
		}
	}
}
