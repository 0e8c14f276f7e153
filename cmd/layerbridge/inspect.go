package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/containerdsource"
	"github.com/layerbridge/layerbridge/dockersave"
	"github.com/layerbridge/layerbridge/imageref"
	"github.com/layerbridge/layerbridge/platforms"
	"github.com/layerbridge/layerbridge/scan"
)

const inspectHelp = `Usage:
    layerbridge inspect [flags] IMAGE

Stores IMAGE in the image cache (exporting it from the Docker daemon only if
the cache does not already hold that image ID and platform) and prints what
was stored: reference, image ID, platform, manifest digest, and per layer
the digest, size, media type and diff ID. A containerd: image is verified
where it is, in containerd's content store, and not copied.

IMAGE is a daemon reference or image ID, or docker-archive:PATH,
oci-archive:PATH, oci:DIR or containerd:NAME (see "layerbridge scan --help").

Flags:
    --format FORMAT         table or json (default table)
    --platform OS/ARCH[/VARIANT]  platform of a multi-platform image
    --docker-host HOST      Docker daemon (default: $DOCKER_HOST, then the
                            current docker context, then
                            unix:///var/run/docker.sock)
    --containerd-address PATH   containerd's socket, for containerd: images
                            (default $CONTAINERD_ADDRESS, else
                            /run/containerd/containerd.sock)
    --containerd-namespace NS   containerd namespace (default
                            $CONTAINERD_NAMESPACE, else k8s.io)
    --cache-dir DIR         image cache (default $XDG_CACHE_HOME/layerbridge)
    --log-level LEVEL       debug, info, warn or error (default info)
    -q, --quiet             no progress display and no info messages
    -h, --help              show this help

On a terminal, stderr shows the export's progress, then a summary line.

The json format is
    {"ref","id","platform","manifest_digest","index_digest",
     "layers":[{"digest","size","media_type","diff_id"}]}
index_digest is what scans hand Clair 4 as the manifest hash: the
manifest digest, or the config digest (the image ID) for an image whose
manifest layerbridge synthesized (classic docker save, graphdriver
daemons, podman).
`

type inspectOptions struct {
	format   string
	platform string
	quiet    bool
	store    storeFlags
	log      logFlags
}

// inspectOutput is the json format of inspect.
type inspectOutput struct {
	Ref            string             `json:"ref"`
	ID             string             `json:"id"`
	Platform       string             `json:"platform"`
	ManifestDigest string             `json:"manifest_digest"`
	IndexDigest    string             `json:"index_digest"`
	Layers         []dockersave.Layer `json:"layers"`
}

func runInspect(ctx context.Context, name string, args []string, e env, stdout, stderr io.Writer) error {
	o := &inspectOptions{}
	fs := newFlagSet(name, inspectHelp, stdout)
	fs.StringVar(&o.format, "format", "table", "")
	fs.StringVar(&o.platform, "platform", "", "")
	o.store.register(fs, e)
	o.log.register(fs, e)
	fs.BoolVarP(&o.quiet, "quiet", "q", false, "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		ue := usageErrorf("inspect takes one IMAGE, got %d arguments", fs.NArg())
		ue.hints = append(ue.hints, "for example: layerbridge inspect alpine:3.11")
		return ue
	}
	if _, err := imageref.Parse(fs.Arg(0)); err != nil {
		return err
	}
	if o.format != "table" && o.format != "json" {
		return usageErrorf("--format %q: want table or json", o.format)
	}
	platform, err := parsePlatformFlag(o.platform)
	if err != nil {
		return err
	}
	if o.quiet && !fs.Changed("log-level") && e.getenv("LAYERBRIDGE_LOG_LEVEL") == "" {
		o.log.level = "warn"
	}
	ref := fs.Arg(0)
	var disp *display
	var onProgress func(dockersave.Progress)
	logTo := stderr
	if !o.quiet && e.isTTY(stderr) {
		disp = newDisplay(stderr, terminalWidth(stderr))
		defer disp.close()
		logTo, onProgress = disp, disp.progress
	}
	log, err := o.log.logger(logTo)
	if err != nil {
		return err
	}
	store, loader, ctr, err := openStore(o.store, newDaemon(o.store.dockerHost, e, log), log, onProgress)
	if err != nil {
		return err
	}
	defer store.Close()
	defer ctr.Close()
	if disp != nil {
		disp.begin(scan.StageExporting, ref)
	}
	img, release, err := displayLoader{loader, disp}.Load(ctx, ref, platform)
	if disp != nil {
		disp.close()
	}
	if err != nil {
		return err
	}
	release() // inspect reads no blob
	out := inspectOutput{
		Ref:            ref,
		ID:             img.ID.String(),
		Platform:       platforms.Format(img.Platform),
		ManifestDigest: img.ManifestDigest.String(),
		IndexDigest:    img.IndexDigest.String(),
		Layers:         img.Layers(),
	}
	if o.format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Ref:\t%s\n", out.Ref)
	fmt.Fprintf(tw, "ID:\t%s\n", out.ID)
	fmt.Fprintf(tw, "Platform:\t%s\n", out.Platform)
	fmt.Fprintf(tw, "Manifest:\t%s\n", out.ManifestDigest)
	if img.IndexDigest != img.ManifestDigest {
		fmt.Fprintf(tw, "Clair key:\t%s (the config digest: the manifest is synthesized; scans key Clair on this)\n", out.IndexDigest)
	}
	if len(img.RepoTags) > 0 {
		fmt.Fprintf(tw, "Tags:\t%s\n", strings.Join(img.RepoTags, ", "))
	}
	cached := "exported"
	switch {
	case img.CacheHit:
		cached = "cache hit, not exported again"
	case img.Source == containerdsource.Kind:
		cached = "read in place from namespace " + ctr.Namespace() + " at " + ctr.Address() + ", nothing copied"
	}
	fmt.Fprintf(tw, "Source:\t%s (%s)\n", img.Source, cached)
	tw.Flush()
	fmt.Fprintln(stdout)
	tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tDIGEST\tSIZE\tMEDIA TYPE\tDIFF ID")
	for i, l := range out.Layers {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\n", i+1, l.Digest, l.Size, l.MediaType, l.DiffID)
	}
	return tw.Flush()
}

func parsePlatformFlag(s string) (*ocispec.Platform, error) {
	if s == "" {
		return nil, nil
	}
	p, err := platforms.Parse(s)
	if err != nil {
		return nil, usageErrorf("--platform %q: %v (want OS/ARCH[/VARIANT], for example linux/arm64/v8)", s, err)
	}
	return &p, nil
}
