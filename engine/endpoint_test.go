package engine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeContext(t *testing.T, configDir, name, host string, skipVerify bool, withTLS bool) {
	t.Helper()
	dir := filepath.Join(configDir, "contexts", "meta", contextDirName(name))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	meta := `{"Name":"` + name + `","Metadata":{},"Endpoints":{"docker":{"Host":"` + host + `","SkipTLSVerify":` + map[bool]string{true: "true", false: "false"}[skipVerify] + `}}}`
	writeFile(t, dir, "meta.json", []byte(meta))
	if withTLS {
		tlsDir := filepath.Join(configDir, "contexts", "tls", contextDirName(name), "docker")
		os.MkdirAll(tlsDir, 0o755)
		for _, f := range []string{"ca.pem", "cert.pem", "key.pem"} {
			writeFile(t, tlsDir, f, []byte("pem"))
		}
	}
}

func TestResolveEndpoint(t *testing.T) {
	cfg := t.TempDir()
	writeContext(t, cfg, "rootless", "unix:///run/user/1000/docker.sock", false, false)
	writeContext(t, cfg, "remote", "tcp://10.0.0.5:2376", false, true)
	writeContext(t, cfg, "ssh", "ssh://me@host", false, false)
	withCurrent := t.TempDir()
	writeContext(t, withCurrent, "desktop-linux", "unix:///home/me/.docker/desktop/docker.sock", false, false)
	writeFile(t, withCurrent, "config.json", []byte(`{"auths":{},"currentContext":"desktop-linux"}`))
	badConfig := t.TempDir()
	writeFile(t, badConfig, "config.json", []byte(`{"currentContext":`))
	certs := t.TempDir()

	cases := []struct {
		name       string
		flag       string
		env        map[string]string
		dir        string
		wantHost   string
		wantSource string
		wantTLS    bool
		skipVerify bool
		wantErr    string
	}{
		{name: "default", dir: cfg, wantHost: DefaultHost, wantSource: "default"},
		{name: "flag wins", flag: "unix:///flag.sock", env: map[string]string{"DOCKER_HOST": "unix:///env.sock", "DOCKER_CONTEXT": "rootless"}, dir: cfg, wantHost: "unix:///flag.sock", wantSource: "--docker-host"},
		{name: "DOCKER_HOST over context", env: map[string]string{"DOCKER_HOST": "unix:///env.sock", "DOCKER_CONTEXT": "rootless"}, dir: withCurrent, wantHost: "unix:///env.sock", wantSource: "DOCKER_HOST"},
		{name: "DOCKER_HOST tcp with cert path, no verify", env: map[string]string{"DOCKER_HOST": "tcp://h:2376", "DOCKER_CERT_PATH": certs}, dir: cfg, wantHost: "tcp://h:2376", wantSource: "DOCKER_HOST", wantTLS: true, skipVerify: true},
		{name: "DOCKER_HOST tcp with verify", env: map[string]string{"DOCKER_HOST": "tcp://h:2376", "DOCKER_CERT_PATH": certs, "DOCKER_TLS_VERIFY": "1"}, dir: cfg, wantHost: "tcp://h:2376", wantSource: "DOCKER_HOST", wantTLS: true},
		{name: "DOCKER_HOST plain tcp", env: map[string]string{"DOCKER_HOST": "tcp://h:2375"}, dir: cfg, wantHost: "tcp://h:2375", wantSource: "DOCKER_HOST"},
		{name: "DOCKER_CONTEXT", env: map[string]string{"DOCKER_CONTEXT": "rootless"}, dir: cfg, wantHost: "unix:///run/user/1000/docker.sock", wantSource: "context rootless (DOCKER_CONTEXT)"},
		{name: "context with TLS files", env: map[string]string{"DOCKER_CONTEXT": "remote"}, dir: cfg, wantHost: "tcp://10.0.0.5:2376", wantSource: "context remote (DOCKER_CONTEXT)", wantTLS: true},
		{name: "config.json currentContext", dir: withCurrent, wantHost: "unix:///home/me/.docker/desktop/docker.sock", wantSource: "context desktop-linux (config.json)"},
		{name: "DOCKER_CONTEXT=default", env: map[string]string{"DOCKER_CONTEXT": "default"}, dir: withCurrent, wantHost: DefaultHost, wantSource: "context default (DOCKER_CONTEXT)"},
		{name: "missing context", env: map[string]string{"DOCKER_CONTEXT": "nope"}, dir: cfg, wantErr: `docker context "nope" not found`},
		{name: "ssh unsupported", env: map[string]string{"DOCKER_CONTEXT": "ssh"}, dir: cfg, wantErr: "ssh:// endpoints are not supported"},
		{name: "bad host", flag: "/var/run/docker.sock", dir: cfg, wantErr: "invalid docker host"},
		{name: "malformed config.json", dir: badConfig, wantErr: "parse docker config"},
		{name: "no config dir", dir: filepath.Join(cfg, "absent"), wantHost: DefaultHost, wantSource: "default"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			getenv := func(k string) string { return tc.env[k] }
			ep, err := ResolveEndpoint(tc.flag, getenv, tc.dir)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %+v, %v; want error %q", ep, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ep.Host != tc.wantHost || ep.Source != tc.wantSource || (ep.TLS != nil) != tc.wantTLS {
				t.Fatalf("got %+v (tls %+v), want %s from %q tls=%v", ep, ep.TLS, tc.wantHost, tc.wantSource, tc.wantTLS)
			}
			if ep.TLS != nil && ep.TLS.SkipVerify != tc.skipVerify {
				t.Fatalf("skip verify %v, want %v", ep.TLS.SkipVerify, tc.skipVerify)
			}
		})
	}
}

func TestResolveEndpointContextTLSFiles(t *testing.T) {
	cfg := t.TempDir()
	writeContext(t, cfg, "remote", "tcp://10.0.0.5:2376", true, true)
	ep, err := ResolveEndpoint("", func(k string) string { return map[string]string{"DOCKER_CONTEXT": "remote"}[k] }, cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(cfg, "contexts", "tls", contextDirName("remote"), "docker")
	if ep.TLS == nil || ep.TLS.CAFile != filepath.Join(dir, "ca.pem") || ep.TLS.CertFile != filepath.Join(dir, "cert.pem") || ep.TLS.KeyFile != filepath.Join(dir, "key.pem") || !ep.TLS.SkipVerify {
		t.Fatalf("tls %+v", ep.TLS)
	}
	if _, err := NewClient(ep); err == nil || !strings.Contains(err.Error(), "tcp://10.0.0.5:2376") {
		t.Fatalf("client with garbage pem files: %v", err)
	}
}

func TestDockerConfigDir(t *testing.T) {
	if got := DockerConfigDir(func(string) string { return "" }, "/home/me"); got != "/home/me/.docker" {
		t.Errorf("got %s", got)
	}
	if got := DockerConfigDir(func(k string) string { return map[string]string{"DOCKER_CONFIG": "/cfg"}[k] }, "/home/me"); got != "/cfg" {
		t.Errorf("got %s", got)
	}
}

func TestEndpointSocket(t *testing.T) {
	if s := (Endpoint{Host: "unix:///run/docker.sock"}).Socket(); s != "/run/docker.sock" {
		t.Errorf("got %q", s)
	}
	if s := (Endpoint{Host: "tcp://h:1"}).Socket(); s != "" {
		t.Errorf("got %q", s)
	}
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
