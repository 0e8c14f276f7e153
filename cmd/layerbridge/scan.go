package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/pflag"

	"github.com/layerbridge/layerbridge/bridge"
	"github.com/layerbridge/layerbridge/dockersave"
	"github.com/layerbridge/layerbridge/imageref"
	"github.com/layerbridge/layerbridge/reach"
	"github.com/layerbridge/layerbridge/report"
	"github.com/layerbridge/layerbridge/scan"
)

const scanHelp = `Usage:
    layerbridge scan [flags] IMAGE

Exports IMAGE from the local Docker daemon (or reads it from an archive
or from containerd), serves its layers over HTTP on an address Clair can
reach, asks Clair to index and match them, and prints the vulnerability
report. Clair is asked first: an image it has indexed already is not
exported, and Clair indexes the layers while the export goes on.

IMAGE is a daemon reference or image ID (alpine:3.11, sha256:…), or
    docker-archive:PATH   a "docker save" tar, optionally gzip-compressed
    oci-archive:PATH      a tar of an OCI image layout
    oci:DIR               an OCI image layout directory
    containerd:NAME       an image of containerd (Kubernetes nodes, nerdctl),
                          served from its content store: nothing is
                          exported or copied

Clair:
    --clair URL             Clair's address (default $CLAIR_ADDR, else
                            http://localhost:6060); from the host too, the
                            name or network alias of Clair's container
                            (http://clair:6060) reaches its address
    --clair-api API         auto, v4 or v2 (default auto: probe Clair)
    --clair-psk KEY         base64 pre-shared key of Clair 4's auth.psk
                            (default $LAYERBRIDGE_CLAIR_PSK)
    --clair-psk-issuer ISS  issuer claim, one of auth.psk.iss (default layerbridge)
    --timeout DURATION      give up after this long (default 30m)

Layer server:
    --listen IP:PORT        address to listen on (default: the advertised
                            address, on a free port)
    --advertise URL         base URL Clair downloads layers from (default:
                            detected: the bridge's address on Clair's Docker
                            network, or the route to Clair's host)

Report:
    -f, --format FORMAT     table, json, clair, html, sarif, junit or cyclonedx
                            (a CycloneDX 1.6 SBOM with VEX) (default table)
    -o, --output FILE       write the report to FILE instead of stdout
    --also FORMAT=FILE      write the report in FORMAT to FILE as well
                            (repeatable): --also json=report.json
    --ignore FILE           YAML list of vulnerabilities to ignore (cyclonedx
                            keeps them, with the rule as VEX analysis)
    --fail-on SEVERITY      exit 3 when a finding is at or above SEVERITY:
                            Unknown, Negligible, Low, Medium, High, Critical,
                            Defcon1 (default: never)

Sidecar:
    --server URL            ask the layerbridge sidecar at URL (see "layerbridge
                            serve") to scan IMAGE from its own Docker daemon or
                            containerd, instead of serving the layers from
                            here; it has its own Clair and cache, so the Clair,
                            layer server, --docker-host, --containerd-* and
                            --cache-dir flags do not apply
    --token-file FILE       file holding the sidecar's token (default: the
                            token in $LAYERBRIDGE_TOKEN, if set)

Image:
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

Other:
    --log-level LEVEL       debug, info, warn or error (default info);
                            debug explains every decision
    -q, --quiet             no progress display and no info messages: only
                            warnings and errors on stderr (unless --log-level)
    -h, --help              show this help

On a terminal, stderr shows each stage as it runs (exporting, with a bar,
the percentage of the image's size, bytes, rate and ETA; Clair's indexing,
with the layers it fetched; matching), then one summary line per stage.

Examples:
    layerbridge scan alpine:3.11
    layerbridge scan --clair http://clair:6060 --fail-on High myapp:latest
    layerbridge scan -f json -o report.json docker-archive:image.tar
    layerbridge scan --containerd-namespace default containerd:myapp:latest
    layerbridge scan -f sarif -o scan.sarif --also junit=junit.xml myapp:latest
    layerbridge scan -f cyclonedx -o bom.json --ignore ignore.yaml myapp:latest
    layerbridge scan --server http://layerbridge:8080 --token-file token alpine:3.11
`

// scanOptions are the flags of "layerbridge scan".
type scanOptions struct {
	clair   clairFlags
	timeout time.Duration

	listen    string
	advertise string

	server    string
	tokenFile string

	format  string
	output  string
	also    []string     // --also FORMAT=FILE, as given
	extra   []reportFile // o.also, parsed
	ignore  string
	failOn  string
	image   string
	quiet   bool
	ref     imageref.Ref // image, parsed
	log     logFlags
	store   storeFlags
	platfrm string
}

func setupScanFlags(name string, e env, stdout io.Writer) (*pflag.FlagSet, *scanOptions) {
	o := &scanOptions{}
	fs := newFlagSet(name, scanHelp, stdout)
	o.clair.register(fs, e)
	fs.DurationVar(&o.timeout, "timeout", 30*time.Minute, "")
	fs.StringVar(&o.listen, "listen", "", "")
	fs.StringVar(&o.advertise, "advertise", "", "")
	fs.StringVar(&o.server, "server", "", "")
	fs.StringVar(&o.tokenFile, "token-file", "", "")
	fs.StringVarP(&o.format, "format", "f", "table", "")
	fs.StringVarP(&o.output, "output", "o", "", "")
	fs.StringArrayVar(&o.also, "also", nil, "")
	fs.StringVar(&o.ignore, "ignore", "", "")
	fs.StringVar(&o.failOn, "fail-on", "", "")
	fs.StringVar(&o.platfrm, "platform", "", "")
	o.store.register(fs, e)
	o.log.register(fs, e)
	fs.BoolVarP(&o.quiet, "quiet", "q", false, "")
	return fs, o
}

// validate checks everything that can be checked before any I/O.
func (o *scanOptions) validate(args []string) error {
	switch len(args) {
	case 0:
		ue := usageErrorf("scan needs an IMAGE")
		ue.hints = append(ue.hints, "for example: layerbridge scan alpine:3.11")
		return ue
	case 1:
		o.image = args[0]
		ref, err := imageref.Parse(o.image)
		if err != nil {
			return err
		}
		o.ref = ref
	default:
		ue := usageErrorf("scan takes one IMAGE, got %d arguments: %s", len(args), strings.Join(args, " "))
		ue.hints = append(ue.hints, "put flags before or after IMAGE; scan one image per run")
		return ue
	}
	if err := o.clair.validate(); err != nil {
		return err
	}
	if err := report.CheckFormat(o.format); err != nil {
		return usageErrorf("-f/--format: %v", err)
	}
	if err := validateAdvertise(o.advertise, "http://172.18.0.1:8080"); err != nil {
		return err
	}
	if err := validateListen(o.listen); err != nil {
		return err
	}
	if o.timeout < 0 {
		return usageErrorf("--timeout %s is negative", o.timeout)
	}
	return o.parseAlso()
}

// reportFile is a report written to a file: -o, or one --also.
type reportFile struct {
	format, file string
}

// parseAlso checks every --also FORMAT=FILE and fills o.extra. Two outputs
// naming the same file would overwrite each other, so that is refused.
func (o *scanOptions) parseAlso() error {
	files := map[string]string{}
	if o.output != "" {
		files[filepath.Clean(o.output)] = "-o/--output"
	}
	for _, v := range o.also {
		format, file, ok := strings.Cut(v, "=")
		if !ok || file == "" {
			ue := usageErrorf("--also %q is not FORMAT=FILE", v)
			ue.hints = append(ue.hints, "for example: --also json=report.json")
			return ue
		}
		if err := report.CheckFormat(format); err != nil {
			return usageErrorf("--also %s: %v", v, err)
		}
		if prev, dup := files[filepath.Clean(file)]; dup {
			return usageErrorf("--also %s: %s is already written by %s", v, file, prev)
		}
		files[filepath.Clean(file)] = "--also " + v
		o.extra = append(o.extra, reportFile{format: format, file: file})
	}
	return nil
}

// checkOutputs checks, after validate and before the scan, that every
// report file (-o/--output, each --also) can be written where it is named.
// It is a scan's first I/O, so that a mistake costs no export.
func (o *scanOptions) checkOutputs() error {
	if o.output != "" {
		if err := checkOutputFile(o.output); err != nil {
			return usageErrorf("-o/--output %v", err)
		}
	}
	for _, rf := range o.extra {
		if err := checkOutputFile(rf.file); err != nil {
			return usageErrorf("--also %v", err)
		}
	}
	return nil
}

// checkOutputFile says why a report cannot be written to path, before any
// scan: it is a directory, or its directory does not exist.
func checkOutputFile(path string) error {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("%s is a directory", path)
	}
	if _, err := os.Stat(filepath.Dir(path)); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func runScan(ctx context.Context, name string, args []string, e env, stdout, stderr io.Writer) error {
	fs, o := setupScanFlags(name, e, stdout)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := o.validate(fs.Args()); err != nil {
		return err
	}
	if err := o.validateServer(fs); err != nil {
		return err
	}
	if err := o.checkOutputs(); err != nil {
		return err
	}
	if o.quiet && !fs.Changed("log-level") && e.getenv("LAYERBRIDGE_LOG_LEVEL") == "" {
		o.log.level = "warn"
	}
	// The progress display, on a terminal, for a scan served from here.
	var disp *display
	logTo := stderr
	if o.server == "" && !o.quiet && e.isTTY(stderr) {
		disp = newDisplay(stderr, terminalWidth(stderr))
		defer disp.close()
		logTo = disp
	}
	log, err := o.log.logger(logTo)
	if err != nil {
		return err
	}
	var failOn *report.Severity
	if o.failOn != "" {
		sev, err := report.ParseSeverity(o.failOn)
		if err != nil {
			return usageErrorf("--fail-on: %v", err)
		}
		failOn = &sev
	}
	var ignore *report.IgnoreRules
	if o.ignore != "" {
		if ignore, err = loadIgnoreFile(o.ignore); err != nil {
			return err
		}
	}
	platform, err := parsePlatformFlag(o.platfrm)
	if err != nil {
		return err
	}
	if o.server != "" {
		rep, err := o.scanOnServer(ctx, e, platform, log)
		if err != nil {
			return err
		}
		return o.finish(rep, e, stdout, log, failOn, ignore)
	}
	var advertise *url.URL
	if o.advertise != "" {
		advertise, _ = url.Parse(o.advertise)
	}

	var onProgress func(dockersave.Progress)
	var onStage func(scan.Stage)
	var onFetch func(bridge.Fetch)
	if disp != nil {
		onProgress = disp.progress
		onStage = func(s scan.Stage) { disp.begin(s, o.image) }
		onFetch = disp.fetch
	}
	d := newDaemon(o.store.dockerHost, e, log)
	store, loader, ctr, err := openStore(o.store, d, log, onProgress)
	if err != nil {
		return err
	}
	defer store.Close()
	defer ctr.Close()

	scanCtx, cancel := withTimeout(ctx, o.timeout)
	defer cancel()
	clair, dialer := o.clair.connect(d, log)
	if _, _, err := dialer.Resolve(scanCtx); err != nil {
		args := []string{"scan", "--clair", o.clair.url}
		if o.clair.api != scan.APIAuto {
			args = append(args, "--clair-api", o.clair.api)
		}
		return clairNameError(err, clair.URL, d, reach.ContainerCommand{Args: append(args, o.image)})
	}
	// The layer server, on the address Clair can reach, for this scan.
	ep, err := reach.Listen(scanCtx, clair.URL, reach.ListenOptions{
		Advertise: advertise, Listen: o.listen,
		AdvertiseOptions: reach.AdvertiseOptions{Containers: d.containers(), Resolve: dialer.LookupNetIP, Daemon: d.info, Logger: log},
	})
	if err != nil {
		return err
	}
	srvOpts := []bridge.Option{bridge.WithLogger(log)}
	if onFetch != nil {
		srvOpts = append(srvOpts, bridge.WithFetchObserver(onFetch))
	}
	layers := bridge.New(srvOpts...)
	stop := serveLayers(ep.Listener, layers, log)
	defer stop()

	res, err := scan.Run(scanCtx, scan.Config{
		Image:    o.image,
		Platform: platform,
		Loader:   displayLoader{loader, disp},
		Stage:    onStage,
		Clair:    clair,
		Server:   layers,
		Base:     ep.Base,
		Reason:   ep.Reason,
		Logger:   log,
	})
	stop()
	if disp != nil {
		disp.end(err == nil)
		disp.close()
	}
	if err != nil {
		if ctx.Err() == nil && errors.Is(scanCtx.Err(), context.DeadlineExceeded) {
			return timeoutError(o.timeout, err)
		}
		// In a container, a loopback Clair that did not answer is most
		// likely in another container; one that answers shares this
		// container's network, and nothing is said.
		var down *scan.ClairUnreachableError
		if errors.As(err, &down) && o.clair.onLoopback() && e.inContainer != nil && e.inContainer() {
			return &hintedError{err: err, hints: []string{containerLoopbackHint}}
		}
		return err
	}
	return o.finish(res.Report, e, stdout, log, failOn, ignore)
}

// serveLayers runs the layer server h on ln until the returned stop is
// called (more than once is fine); stop lets the requests in flight finish
// (for at most 10 seconds) before it closes their connections.
func serveLayers(ln net.Listener, h http.Handler, log *slog.Logger) (stop func()) {
	srv := bridge.NewHTTPServer(h, log, bridge.Limits{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("layer server stopped", "err", err)
		}
	}()
	return sync.OnceFunc(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			srv.Close()
		}
		<-done
	})
}

// timeoutError is err after --timeout ran out, with what to do.
func timeoutError(timeout time.Duration, err error) error {
	return &hintedError{err: fmt.Errorf("gave up after --timeout %s: %w", timeout, err), hints: []string{
		fmt.Sprintf("raise --timeout (now %s) if Clair is busy or the image is large; --log-level debug shows where the time went", timeout),
	}}
}

// finish applies --ignore to a scan's report, renders it (--format, -o,
// --also) and turns --fail-on into the exit code: the same for a local scan
// and one asked of a sidecar.
func (o *scanOptions) finish(rep *report.Report, e env, stdout io.Writer, log *slog.Logger, failOn *report.Severity, ignore *report.IgnoreRules) error {
	now := time.Now()
	ignore.Apply(now, rep)
	rep.Normalize()
	for _, w := range rep.Warnings {
		log.Warn(w)
	}
	ropts := report.Options{FailOn: failOn, ToolVersion: version, Time: now}
	files := o.extra
	if o.output == "" {
		color := ropts
		color.Color = o.format == "table" && e.isTTY(stdout) && e.getenv("NO_COLOR") == ""
		if err := color.Render(stdout, o.format, rep); err != nil {
			return fmt.Errorf("write %s report: %w", o.format, err)
		}
	} else {
		files = append([]reportFile{{format: o.format, file: o.output}}, files...)
	}
	for _, f := range files {
		if err := writeFileAtomic(f.file, func(w io.Writer) error { return ropts.Render(w, f.format, rep) }); err != nil {
			return fmt.Errorf("write %s report to %s: %w", f.format, f.file, err)
		}
		log.Info("report written", "file", f.file, "format", f.format, "findings", len(rep.Findings))
	}
	if failOn != nil && rep.Fails(*failOn) {
		n := 0
		for _, f := range rep.Findings {
			if f.Severity >= *failOn {
				n++
			}
		}
		return &findingsError{count: n, threshold: failOn.String()}
	}
	return nil
}

var _ scan.ImageLoader = displayLoader{}

// displayLoader ends the display's exporting stage once the image is
// loaded, before anything else is logged. A nil display is no display.
type displayLoader struct {
	loader *dockersave.Loader
	d      *display
}

func (l displayLoader) Load(ctx context.Context, ref string, platform *ocispec.Platform, opts ...dockersave.LoadOption) (dockersave.Image, func(), error) {
	img, release, err := l.loader.Load(ctx, ref, platform, opts...)
	if l.d != nil {
		l.d.loaded(img, err)
	}
	return img, release, err
}

func loadIgnoreFile(path string) (*report.IgnoreRules, error) {
	f, err := os.Open(path)
	if err != nil {
		ue := usageErrorf("--ignore: %v", err)
		return nil, ue
	}
	defer f.Close()
	rules, err := report.LoadIgnore(f)
	if err != nil {
		return nil, usageErrorf("--ignore %s: %v", path, err)
	}
	return rules, nil
}

// writeFileAtomic writes a report file through a temporary file in the
// same directory, so that a failed run never leaves a partial report
// behind. A path that is not a regular file (-o /dev/null, /dev/stdout, a
// FIFO) is written in place: renaming over it would replace the device
// with a file. A symbolic link is followed, and the file it names replaced.
func writeFileAtomic(path string, write func(io.Writer) error) error {
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() && !fi.IsDir() {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		if err := write(f); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	if target, err := filepath.EvalSymlinks(path); err == nil {
		path = target
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
