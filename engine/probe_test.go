package engine

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/moby/moby/client"
)

// infoDaemon answers Ping and Info with a recorded /info.
type infoDaemon struct {
	t    *testing.T
	info string // file under ../testdata/engine-samples
}

func (d infoDaemon) Ping(context.Context, client.PingOptions) (client.PingResult, error) {
	return client.PingResult{APIVersion: "1.41", OSType: "linux"}, nil
}

func (d infoDaemon) Info(context.Context, client.InfoOptions) (client.SystemInfoResult, error) {
	var res client.SystemInfoResult
	b, err := os.ReadFile("../testdata/engine-samples/" + d.info)
	if err != nil {
		d.t.Fatal(err)
	}
	return res, json.Unmarshal(b, &res.Info)
}

func (infoDaemon) ImageInspect(context.Context, string, ...client.ImageInspectOption) (client.ImageInspectResult, error) {
	return client.ImageInspectResult{}, errors.New("not here")
}

func (infoDaemon) ImageSave(context.Context, []string, ...client.ImageSaveOption) (client.ImageSaveResult, error) {
	return nil, errors.New("not here")
}

// Probe tells Docker Desktop and rootless Docker from a plain daemon by
// their /info (recorded from Docker 20.10 rootful and rootless; Docker
// Desktop's synthesized), and Where says where their networks are.
func TestProbeTellsDesktopAndRootless(t *testing.T) {
	for _, tc := range []struct {
		info, host        string
		desktop, rootless bool
		remote            bool
		where             string
	}{
		{"docker-20.10/info.json", "unix:///var/run/docker.sock", false, false, false, ""},
		{"docker-20.10-rootless/info.json", "unix:///run/user/1001/docker.sock", false, true, false, "rootlesskit's network namespace"},
		{"docker-desktop/info.json", "unix:///Users/me/.docker/run/docker.sock", true, false, false, "Docker Desktop's, whose networks are inside its VM"},
		{"docker-20.10/info.json", "tcp://192.0.2.50:2376", false, false, true, "at tcp://192.0.2.50:2376 runs on another host"},
		{"docker-20.10/info.json", "tcp://127.0.0.1:2375", false, false, false, ""},
		{"docker-20.10/info.json", "ssh://me@build-box", false, false, true, "runs on another host"},
	} {
		t.Run(tc.info+" at "+tc.host, func(t *testing.T) {
			ep := Endpoint{Host: tc.host}
			info, err := Probe(t.Context(), infoDaemon{t, tc.info}, ep)
			if err != nil {
				t.Fatal(err)
			}
			if info.Desktop() != tc.desktop || info.Rootless() != tc.rootless || info.Remote() != tc.remote {
				t.Errorf("desktop %v, rootless %v, remote %v; want %v, %v, %v (os %q, security %q)",
					info.Desktop(), info.Rootless(), info.Remote(), tc.desktop, tc.rootless, tc.remote, info.OperatingSystem, info.SecurityOptions)
			}
			if w := info.Where(); (tc.where == "") != (w == "") || !strings.Contains(w, tc.where) {
				t.Errorf("Where() = %q, want it to contain %q", w, tc.where)
			}
		})
	}
}
