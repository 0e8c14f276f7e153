package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/layerbridge/layerbridge/containerdsource"
	"github.com/layerbridge/layerbridge/doctor"
	"github.com/layerbridge/layerbridge/imageref"
)

const doctorHelp = `Usage:
    layerbridge doctor [flags] [IMAGE]

Finds why a scan would fail. Runs these checks in order and prints each as
passed, warning, failed or skipped, with what it saw and the fix:

    docker.*        which daemon was chosen and why, whether it answers,
                    whether your user may open its socket (user and groups
                    against the socket's owner, group and mode), its API
                    version and image store; with IMAGE: the image and its
                    platforms
    containerd.*    for a containerd: IMAGE (or a containerd named with
                    --containerd-address or CONTAINERD_ADDRESS): containerd
                    answers, its version, the namespace, and the image with
                    all its content, verified as a scan would
    store.*         the cache directory is writable and has room for IMAGE
    clair.*         Clair answers; which API (v4 or v2) and version; a
                    client of the other API is the classic "404"; the
                    pre-shared key; whether Clair has vulnerability data
    reachability.*  proves that Clair can download from layerbridge: serves
                    a tiny canary layer on the address a scan would
                    advertise, asks Clair to index it and watches for
                    Clair's download; where Clair's container and
                    layerbridge sit on Docker's networks

IMAGE is what you would scan: a daemon reference or image ID, or
docker-archive:PATH, oci-archive:PATH, oci:DIR or containerd:NAME (then
Docker problems are only warnings). The checks change nothing, except that Clair keeps the
index of the canary (a few kilobytes under a random digest).

Exit status: 0 when no check failed (warnings allowed), 1 otherwise.

Clair:
    --clair URL             Clair's address (default $CLAIR_ADDR, else
                            http://localhost:6060); from the host too, the
                            name or network alias of Clair's container
                            (http://clair:6060) reaches its address
    --clair-api API         auto, v4 or v2 (default auto: probe Clair)
    --clair-psk KEY         base64 pre-shared key of Clair 4's auth.psk
                            (default $LAYERBRIDGE_CLAIR_PSK)
    --clair-psk-issuer ISS  issuer claim, one of auth.psk.iss (default layerbridge)
    --wait DURATION         how long Clair has to fetch the canary layer;
                            also bounds each group of checks (default 30s)

Layer server (as for scan):
    --listen IP:PORT        address to listen on (default: the advertised
                            address, on a free port)
    --advertise URL         base URL Clair downloads layers from (default:
                            detected)

Image:
    --platform OS/ARCH[/VARIANT]  platform you would scan
    --docker-host HOST      Docker daemon (default: $DOCKER_HOST, then the
                            current docker context, then
                            unix:///var/run/docker.sock)
    --containerd-address PATH   containerd's socket, for containerd: images
                            (default $CONTAINERD_ADDRESS, else
                            /run/containerd/containerd.sock)
    --containerd-namespace NS   containerd namespace (default
                            $CONTAINERD_NAMESPACE, else k8s.io)
    --cache-dir DIR         image cache (default $XDG_CACHE_HOME/layerbridge)

Output:
    -f, --format FORMAT     table or json (default table)
    --log-level LEVEL       debug, info, warn or error (default error: the
                            checklist is the output); debug logs every
                            request the checks make
    -h, --help              show this help

The json format is a list, in the order above, of
    {"check","status","evidence","fix"}
with status one of passed, warning, failed, skipped.

Examples:
    layerbridge doctor
    layerbridge doctor --clair http://clair:6060 myapp:latest
    layerbridge doctor --clair http://10.0.0.5:6060 --advertise http://10.0.0.7:8080 --listen 0.0.0.0:8080
`

type doctorOptions struct {
	clair     clairFlags
	wait      time.Duration
	listen    string
	advertise string
	platform  string
	format    string
	image     string
	store     storeFlags
	log       logFlags
}

func setupDoctorFlags(name string, e env, stdout io.Writer) (*pflag.FlagSet, *doctorOptions) {
	o := &doctorOptions{}
	fs := newFlagSet(name, doctorHelp, stdout)
	o.clair.register(fs, e)
	fs.DurationVar(&o.wait, "wait", doctor.DefaultWait, "")
	fs.StringVar(&o.listen, "listen", "", "")
	fs.StringVar(&o.advertise, "advertise", "", "")
	fs.StringVar(&o.platform, "platform", "", "")
	fs.StringVarP(&o.format, "format", "f", "table", "")
	o.store.register(fs, e)
	o.log.register(fs, e)
	if e.getenv("LAYERBRIDGE_LOG_LEVEL") == "" {
		// The checklist is the output; log lines would only interleave.
		o.log.level = "error"
	}
	return fs, o
}

// validate checks everything that can be checked before any I/O.
func (o *doctorOptions) validate(args []string) error {
	switch len(args) {
	case 0:
	case 1:
		o.image = args[0]
		if _, err := imageref.Parse(o.image); err != nil {
			return err
		}
	default:
		return usageErrorf("doctor takes at most one IMAGE, got %d arguments: %s", len(args), strings.Join(args, " "))
	}
	if err := o.clair.validate(); err != nil {
		return err
	}
	if err := validateAdvertise(o.advertise, "http://172.18.0.1:8080"); err != nil {
		return err
	}
	if err := validateListen(o.listen); err != nil {
		return err
	}
	if o.format != "table" && o.format != "json" {
		return usageErrorf("-f/--format %q: want table or json", o.format)
	}
	if o.wait <= 0 {
		return usageErrorf("--wait %s: want a positive duration, for example 30s", o.wait)
	}
	return nil
}

func runDoctor(ctx context.Context, name string, args []string, e env, stdout, stderr io.Writer) error {
	fs, o := setupDoctorFlags(name, e, stdout)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := o.validate(fs.Args()); err != nil {
		return err
	}
	log, err := o.log.logger(stderr)
	if err != nil {
		return err
	}
	platform, err := parsePlatformFlag(o.platform)
	if err != nil {
		return err
	}
	var advertise *url.URL
	if o.advertise != "" {
		advertise, _ = url.Parse(o.advertise)
	}
	d := newDaemon(o.store.dockerHost, e, log)
	clair, dialer := o.clair.connect(d, log)
	ctr := containerdsource.New(containerdsource.Config{Address: o.store.containerdAddress, Namespace: o.store.containerdNamespace, Logger: log})
	defer ctr.Close()
	results := doctor.Run(ctx, doctor.Config{
		Docker:           d.engine,
		Containerd:       ctr,
		ContainerdNamed:  o.store.containerdNamed(fs, e),
		SocketCandidates: dockerSocketCandidates(e),
		Image:            o.image,
		Platform:         platform,
		CacheDir:         o.store.cacheDir,
		Clair:            clair,
		ClairDialer:      dialer,
		Listen:           o.listen,
		Advertise:        advertise,
		Containers:       d.containers(),
		Wait:             o.wait,
		Logger:           log,
	})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if o.format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(results); err != nil {
			return fmt.Errorf("write results: %w", err)
		}
	} else if err := writeChecklist(stdout, results); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	if failed := doctor.Failures(results); len(failed) > 0 {
		names := make([]string, len(failed))
		for i, f := range failed {
			names[i] = f.Check
		}
		return fmt.Errorf("%d check(s) failed: %s", len(failed), strings.Join(names, ", "))
	}
	return nil
}

// dockerSocketCandidates are where Docker sockets usually are besides the
// chosen endpoint: the rootless daemon's and Docker Desktop's.
func dockerSocketCandidates(e env) []string {
	var out []string
	if d := e.getenv("XDG_RUNTIME_DIR"); d != "" {
		out = append(out, filepath.Join(d, "docker.sock"))
	}
	if e.home != "" {
		out = append(out, filepath.Join(e.home, ".docker", "desktop", "docker.sock"), filepath.Join(e.home, ".docker", "run", "docker.sock"))
	}
	return append(out, "/var/run/docker.sock")
}

// writeChecklist prints one line per check, its fix on the next line, and a
// count at the end:
//
//	passed   docker.endpoint        unix:///var/run/docker.sock, chosen by …
//	FAILED   reachability.fetch     no request from Clair arrived at …
//	                                fix: give an address Clair can reach …
func writeChecklist(w io.Writer, results []doctor.Result) error {
	width := 0
	for _, r := range results {
		width = max(width, len(r.Check))
	}
	counts := map[doctor.Status]int{}
	var b strings.Builder
	for _, r := range results {
		counts[r.Status]++
		label := string(r.Status)
		if r.Status == doctor.Failed {
			label = "FAILED"
		}
		fmt.Fprintf(&b, "%-8s %-*s  %s\n", label, width, r.Check, r.Evidence)
		if r.Fix != "" {
			fmt.Fprintf(&b, "%-8s %-*s  fix: %s\n", "", width, "", r.Fix)
		}
	}
	fmt.Fprintf(&b, "\n%d passed, %d warning(s), %d failed, %d skipped\n",
		counts[doctor.Passed], counts[doctor.Warning], counts[doctor.Failed], counts[doctor.Skipped])
	_, err := io.WriteString(w, b.String())
	return err
}
