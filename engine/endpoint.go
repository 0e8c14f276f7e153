package engine

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/moby/client"
)

// DefaultHost is the endpoint used when nothing else is configured.
const DefaultHost = "unix:///var/run/docker.sock"

// maxDockerConfigSize caps config.json and context meta.json reads.
const maxDockerConfigSize = 1 << 20

// Endpoint is a resolved Docker Engine address and why it was chosen.
type Endpoint struct {
	// Host is the daemon URL: unix:///path, tcp://host:port or npipe://.
	Host string
	// Source is what selected Host: "--docker-host", "DOCKER_HOST",
	// "context NAME (DOCKER_CONTEXT)", "context NAME (config.json)" or "default".
	Source string
	// TLS is nil for a plain connection.
	TLS *EndpointTLS
}

// EndpointTLS holds client TLS settings. Empty file names are not loaded;
// SkipVerify disables server certificate verification (DOCKER_CERT_PATH
// without DOCKER_TLS_VERIFY, or a context with SkipTLSVerify), as the docker
// client library does.
type EndpointTLS struct {
	CAFile     string
	CertFile   string
	KeyFile    string
	SkipVerify bool
}

// Socket returns the unix socket path of a unix:// endpoint, or "" for other
// schemes.
func (e Endpoint) Socket() string {
	if p, ok := strings.CutPrefix(e.Host, "unix://"); ok {
		return p
	}
	return ""
}

// DockerConfigDir returns the docker CLI configuration directory: $DOCKER_CONFIG
// when set, else HOME/.docker. getenv looks up the process environment; home is the user's
// home directory (os.UserHomeDir), both supplied by the caller.
func DockerConfigDir(getenv func(string) string, home string) string {
	if d := getenv("DOCKER_CONFIG"); d != "" {
		return d
	}
	return filepath.Join(home, ".docker")
}

// ResolveEndpoint picks the Docker Engine endpoint the way the docker CLI does:
// flagHost (--docker-host), then DOCKER_HOST (with DOCKER_TLS_VERIFY and
// DOCKER_CERT_PATH), then the current context (DOCKER_CONTEXT, else
// currentContext in dockerConfigDir/config.json) read from the context store
// under dockerConfigDir/contexts, then DefaultHost. It reads only
// dockerConfigDir and the variables through getenv; it does not contact the
// daemon. A named context that does not exist, or an unparsable config.json
// or meta.json, is an error (as with the CLI), not a silent fallback.
func ResolveEndpoint(flagHost string, getenv func(string) string, dockerConfigDir string) (Endpoint, error) {
	if flagHost != "" {
		return hostEndpoint(flagHost, "--docker-host", getenv, dockerConfigDir)
	}
	if h := getenv("DOCKER_HOST"); h != "" {
		return hostEndpoint(h, "DOCKER_HOST", getenv, dockerConfigDir)
	}
	name, how := getenv("DOCKER_CONTEXT"), "DOCKER_CONTEXT"
	if name == "" {
		var err error
		name, err = currentContext(dockerConfigDir)
		if err != nil {
			return Endpoint{}, err
		}
		how = "config.json"
	}
	if name == "" {
		return Endpoint{Host: DefaultHost, Source: "default"}, nil
	}
	source := fmt.Sprintf("context %s (%s)", name, how)
	if name == "default" {
		return Endpoint{Host: DefaultHost, Source: source}, nil
	}
	ep, err := contextEndpoint(dockerConfigDir, name)
	if err != nil {
		return Endpoint{}, err
	}
	ep.Source = source
	return ep, nil
}

func hostEndpoint(host, source string, getenv func(string) string, configDir string) (Endpoint, error) {
	if err := checkHost(host); err != nil {
		return Endpoint{}, fmt.Errorf("docker host from %s: %w", source, err)
	}
	ep := Endpoint{Host: host, Source: source}
	if !strings.HasPrefix(host, "tcp://") {
		return ep, nil
	}
	certPath, verify := getenv("DOCKER_CERT_PATH"), getenv("DOCKER_TLS_VERIFY") != ""
	switch {
	case certPath != "":
		// The client library's rule: a cert path means TLS, verified only
		// when DOCKER_TLS_VERIFY is set.
		ep.TLS = &EndpointTLS{
			CAFile:     filepath.Join(certPath, "ca.pem"),
			CertFile:   filepath.Join(certPath, "cert.pem"),
			KeyFile:    filepath.Join(certPath, "key.pem"),
			SkipVerify: !verify,
		}
	case verify:
		// The CLI's rule: DOCKER_TLS_VERIFY alone uses the files in the
		// config directory that exist.
		ep.TLS = &EndpointTLS{}
		tlsFilesIn(configDir, ep.TLS)
	}
	return ep, nil
}

func checkHost(host string) error {
	scheme, addr, ok := strings.Cut(host, "://")
	if !ok || addr == "" {
		return fmt.Errorf("invalid docker host %q: want unix:///path or tcp://host:port", host)
	}
	switch scheme {
	case "unix", "tcp", "npipe":
		return nil
	case "ssh":
		return fmt.Errorf("docker host %q: ssh:// endpoints are not supported; forward the socket and use unix:// or tcp://", host)
	default:
		return fmt.Errorf("invalid docker host %q: unsupported scheme %q", host, scheme)
	}
}

func currentContext(configDir string) (string, error) {
	b, err := readSmallFile(filepath.Join(configDir, "config.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read docker config: %w", err)
	}
	var cfg struct {
		CurrentContext string `json:"currentContext"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return "", fmt.Errorf("parse docker config %s: %w", filepath.Join(configDir, "config.json"), err)
	}
	return cfg.CurrentContext, nil
}

func contextDirName(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:])
}

func contextEndpoint(configDir, name string) (Endpoint, error) {
	id := contextDirName(name)
	metaPath := filepath.Join(configDir, "contexts", "meta", id, "meta.json")
	b, err := readSmallFile(metaPath)
	if errors.Is(err, fs.ErrNotExist) {
		return Endpoint{}, fmt.Errorf("docker context %q not found (no %s)", name, metaPath)
	}
	if err != nil {
		return Endpoint{}, fmt.Errorf("read docker context %q: %w", name, err)
	}
	var meta struct {
		Name      string
		Endpoints map[string]struct {
			Host          string
			SkipTLSVerify bool
		}
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		return Endpoint{}, fmt.Errorf("parse docker context %q (%s): %w", name, metaPath, err)
	}
	d, ok := meta.Endpoints["docker"]
	if !ok || d.Host == "" {
		return Endpoint{}, fmt.Errorf("docker context %q has no docker endpoint", name)
	}
	if err := checkHost(d.Host); err != nil {
		return Endpoint{}, fmt.Errorf("docker context %q: %w", name, err)
	}
	ep := Endpoint{Host: d.Host}
	t := &EndpointTLS{SkipVerify: d.SkipTLSVerify}
	tlsFilesIn(filepath.Join(configDir, "contexts", "tls", id, "docker"), t)
	if t.CAFile != "" || t.CertFile != "" || d.SkipTLSVerify {
		ep.TLS = t
	}
	return ep, nil
}

// tlsFilesIn fills ca/cert/key file names that exist in dir.
func tlsFilesIn(dir string, t *EndpointTLS) {
	exists := func(name string) string {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p
		}
		return ""
	}
	t.CAFile = exists("ca.pem")
	t.CertFile, t.KeyFile = exists("cert.pem"), exists("key.pem")
	if t.CertFile == "" || t.KeyFile == "" {
		t.CertFile, t.KeyFile = "", ""
	}
}

func readSmallFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxDockerConfigSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxDockerConfigSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxDockerConfigSize)
	}
	return b, nil
}

// NewClient builds a Docker Engine API client for ep. It reads no
// environment variables (DOCKER_API_VERSION included): the API version is
// negotiated on the first request. It does not connect; the first call does.
// The caller closes the client.
func NewClient(ep Endpoint) (*client.Client, error) {
	if err := checkHost(ep.Host); err != nil {
		return nil, err
	}
	opts := []client.Opt{client.WithUserAgent("layerbridge")}
	if ep.TLS != nil {
		cfg, err := tlsConfig(ep.TLS)
		if err != nil {
			return nil, fmt.Errorf("docker endpoint %s: %w", ep.Host, err)
		}
		opts = append(opts,
			client.WithHTTPClient(&http.Client{
				Transport:     &http.Transport{TLSClientConfig: cfg},
				CheckRedirect: client.CheckRedirect,
			}),
			client.WithScheme("https"))
	}
	opts = append(opts, client.WithHost(ep.Host))
	c, err := client.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker client for %s: %w", ep.Host, err)
	}
	return c, nil
}

func tlsConfig(t *EndpointTLS) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: t.SkipVerify} //nolint:gosec // the user's explicit choice
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca file %s: no certificates", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" || t.KeyFile != "" {
		pair, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}
