package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/jsonstream"
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

// BuildImage runs `docker build --network none --no-cache -t tag
// contextDir` through the Engine API with the classic builder (no BuildKit
// session needed; DOCKER_BUILDKIT=0), copying the build's output lines to
// progress (nil discards them), and returns the image ID. contextDir must
// hold a Dockerfile; it is sent as a tar stream, regular files and
// directories only, without .dockerignore processing.
func BuildImage(ctx context.Context, cli ImageBuilder, contextDir, tag string, progress io.Writer) (string, error) {
	return buildImage(ctx, cli, contextDir, tag, nil, progress)
}

// BuildOwnedImage is BuildImage for an image that lives only as long as this
// process: it is labelled as this process's, so that RemoveOrphans removes
// it should this process die before removing it (RemoveImage).
func BuildOwnedImage(ctx context.Context, cli ImageBuilder, contextDir, tag string, progress io.Writer) (string, error) {
	return buildImage(ctx, cli, contextDir, tag, ownerLabels(), progress)
}

func buildImage(ctx context.Context, cli ImageBuilder, contextDir, tag string, labels map[string]string, progress io.Writer) (string, error) {
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
		// Nothing can be fetched here, and a daemon without a bridge
		// network (Dockerd) could not run a RUN step on the default one.
		NetworkMode: "none",
		// Concurrent builds of the same content would share the cached
		// intermediate images, which the first to remove its image (with
		// its untagged parents) takes from under the other's build.
		NoCache: true,
		Labels:  labels,
	})
	if err != nil {
		return "", fmt.Errorf("build %s: %w", tag, err)
	}
	defer res.Body.Close()
	var id string
	err = ReadJSONMessages(res.Body, func(m jsonstream.Message) {
		var aux struct {
			ID string `json:"ID"`
		}
		if m.Aux != nil && json.Unmarshal(*m.Aux, &aux) == nil && aux.ID != "" {
			id = aux.ID
		}
		if m.Stream != "" {
			fmt.Fprint(progress, m.Stream)
		}
	})
	if err != nil {
		return "", fmt.Errorf("build %s: %w", tag, err)
	}
	if id == "" {
		return "", fmt.Errorf("build %s: the daemon reported no image ID", tag)
	}
	return strings.TrimSpace(id), nil
}

// ImageRemover is the part of the Engine API client RemoveImage uses.
type ImageRemover interface {
	ImageRemove(ctx context.Context, imageID string, options client.ImageRemoveOptions) (client.ImageRemoveResult, error)
}

// RemoveImage removes the image ref (a tag or an ID) and its untagged
// parents, even if stopped containers still use it; an image that is
// already gone is no error. It works after the caller's context has ended.
func RemoveImage(cli ImageRemover, ref string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := cli.ImageRemove(ctx, ref, client.ImageRemoveOptions{Force: true, PruneChildren: true}); err != nil && !isNotFound(err) {
		return fmt.Errorf("remove image %s: %w", ref, err)
	}
	return nil
}

// DockerAPI is every Engine API call the harness makes; *client.Client
// implements it.
type DockerAPI interface {
	ImageBuilder
	ImageRemover
	NetworkAPI
	ContainerAPI
	ExecAPI
	ContainerList(ctx context.Context, options client.ContainerListOptions) (client.ContainerListResult, error)
	NetworkList(ctx context.Context, options client.NetworkListOptions) (client.NetworkListResult, error)
	ImageList(ctx context.Context, options client.ImageListOptions) (client.ImageListResult, error)
}

// RemoveOrphans removes the containers, networks and images that the
// harness created (RunContainer, CreateNetwork, BuildOwnedImage) for a
// process of this host that has died without removing them: a test binary
// killed by its -timeout, say. What belongs to running processes, or to
// another host sharing the daemon, stays. It returns what it removed.
func RemoveOrphans(ctx context.Context, cli DockerAPI) ([]string, error) {
	var removed []string
	var errs []error
	filter := client.Filters{}.Add("label", labelHarness+"=true")
	cs, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: filter})
	if err != nil {
		return nil, fmt.Errorf("remove orphans: list containers: %w", err)
	}
	for _, c := range cs.Items {
		if !ownerGone(c.Labels[labelOwner]) {
			continue
		}
		if _, err := cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !isNotFound(err) {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, "container "+strings.Join(c.Names, ","))
	}
	ns, err := cli.NetworkList(ctx, client.NetworkListOptions{Filters: filter})
	if err != nil {
		return removed, fmt.Errorf("remove orphans: list networks: %w", err)
	}
	for _, n := range ns.Items {
		if !ownerGone(n.Labels[labelOwner]) {
			continue
		}
		if _, err := cli.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil && !isNotFound(err) {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, "network "+n.Name)
	}
	is, err := cli.ImageList(ctx, client.ImageListOptions{Filters: filter})
	if err != nil {
		return removed, fmt.Errorf("remove orphans: list images: %w", err)
	}
	for _, i := range is.Items {
		if !ownerGone(i.Labels[labelOwner]) {
			continue
		}
		if _, err := cli.ImageRemove(ctx, i.ID, client.ImageRemoveOptions{Force: true, PruneChildren: true}); err != nil && !isNotFound(err) {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, "image "+strings.Join(i.RepoTags, ","))
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("remove orphans: %w", err)
	}
	return removed, nil
}
