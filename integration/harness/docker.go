package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/client"
)

// ImageBuilder is the part of the Docker Engine API client BuildImage uses.
type ImageBuilder interface {
	ImageBuild(ctx context.Context, buildContext io.Reader, options client.ImageBuildOptions) (client.ImageBuildResult, error)
}

// DockerClient returns an Engine API client configured from the
// environment (DOCKER_HOST, ...) once the daemon has answered a ping. The
// error wraps ErrUnavailable when the daemon cannot be reached.
func DockerClient(ctx context.Context) (*client.Client, error) {
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		cli.Close()
		return nil, fmt.Errorf("docker daemon at %s not reachable (is it running, and may this user use its socket?): %v: %w", cli.DaemonHost(), err, ErrUnavailable)
	}
	return cli, nil
}

// BuildImage runs `docker build -t tag contextDir` through the Engine API
// with the classic builder (no BuildKit session needed), copying the
// build's output lines to progress (nil discards them), and returns the
// image ID. contextDir must hold a Dockerfile; it is sent as a tar stream,
// regular files and directories only, without .dockerignore processing.
func BuildImage(ctx context.Context, cli ImageBuilder, contextDir, tag string, progress io.Writer) (string, error) {
	if progress == nil {
		progress = io.Discard
	}
	if _, err := os.Stat(filepath.Join(contextDir, "Dockerfile")); err != nil {
		return "", fmt.Errorf("build %s: %w", tag, err)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(WriteDirTar(pw, contextDir)) }()
	defer pr.Close()
	res, err := cli.ImageBuild(ctx, pr, client.ImageBuildOptions{
		Tags:        []string{tag},
		Dockerfile:  "Dockerfile",
		Remove:      true,
		ForceRemove: true,
		Version:     build.BuilderV1,
	})
	if err != nil {
		return "", fmt.Errorf("build %s: %w", tag, err)
	}
	defer res.Body.Close()
	var id string
	dec := json.NewDecoder(bufio.NewReader(res.Body))
	for {
		var msg struct {
			Stream      string `json:"stream"`
			Error       string `json:"error"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
			Aux *struct {
				ID string `json:"ID"`
			} `json:"aux"`
		}
		if err := dec.Decode(&msg); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return "", fmt.Errorf("build %s: reading the build output: %w", tag, err)
		}
		if msg.ErrorDetail != nil && msg.ErrorDetail.Message != "" {
			return "", fmt.Errorf("build %s: %s", tag, msg.ErrorDetail.Message)
		}
		if msg.Error != "" {
			return "", fmt.Errorf("build %s: %s", tag, msg.Error)
		}
		if msg.Aux != nil && msg.Aux.ID != "" {
			id = msg.Aux.ID
		}
		if msg.Stream != "" {
			fmt.Fprint(progress, msg.Stream)
		}
	}
	if id == "" {
		return "", fmt.Errorf("build %s: the daemon reported no image ID", tag)
	}
	return strings.TrimSpace(id), nil
}
