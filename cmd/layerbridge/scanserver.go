package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/pflag"

	"github.com/layerbridge/layerbridge/bridge"
	"github.com/layerbridge/layerbridge/imageref"
	"github.com/layerbridge/layerbridge/platforms"
	"github.com/layerbridge/layerbridge/report"
	"github.com/layerbridge/layerbridge/sidecar"
)

// localOnlyScanFlags are the scan flags that configure what a sidecar has
// of its own: they make no sense with --server.
var localOnlyScanFlags = []string{"clair", "clair-api", "clair-psk", "clair-psk-issuer", "listen", "advertise", "docker-host", "cache-dir", "containerd-address", "containerd-namespace"}

// validateServer checks the flags of "scan --server" before any I/O.
func (o *scanOptions) validateServer(fs *pflag.FlagSet) error {
	if o.server == "" {
		if o.tokenFile != "" {
			ue := usageErrorf("--token-file is the token of a layerbridge sidecar: it needs --server")
			ue.hints = append(ue.hints, "for example: layerbridge scan --server http://layerbridge:8080 --token-file FILE "+o.image)
			return ue
		}
		return nil
	}
	if !isHTTPURL(o.server) {
		ue := usageErrorf("--server %q is not an http(s) URL", o.server)
		ue.hints = append(ue.hints, "give the sidecar's address, for example --server http://layerbridge:8080")
		return ue
	}
	for _, name := range localOnlyScanFlags {
		if fs.Changed(name) {
			ue := usageErrorf("--%s does not apply with --server: the sidecar has its own Clair, layer server and image cache", name)
			ue.hints = append(ue.hints, fmt.Sprintf("drop --%s, or drop --server to scan from here", name))
			return ue
		}
	}
	if o.ref.Kind != imageref.Daemon && o.ref.Kind != imageref.Containerd {
		ue := usageErrorf("--server scans images of the sidecar's Docker daemon or containerd, and %s names a file on this machine", o.image)
		ue.hints = append(ue.hints, "drop --server to scan the archive from here, or docker load it into the sidecar's daemon and name the image")
		return ue
	}
	return nil
}

// scanOnServer asks the sidecar at --server for a scan of o.image, waits
// for it and returns its report, decoded from the json format. For
// --format clair it also fetches Clair's own response.
func (o *scanOptions) scanOnServer(ctx context.Context, e env, platform *ocispec.Platform, log *slog.Logger) (*report.Report, error) {
	secret, err := o.serverToken(e)
	if err != nil {
		return nil, err
	}
	base, _ := url.Parse(o.server)
	c := sidecar.NewClient(base, secret)
	sctx, cancel := withTimeout(ctx, o.timeout)
	defer cancel()

	req := sidecar.Request{Image: o.image}
	if platform != nil {
		req.Platform = platforms.Format(*platform)
	}
	st, err := c.Submit(sctx, req)
	if err != nil {
		return nil, o.serverError(ctx, sctx, err)
	}
	log.Info("scan requested from the sidecar", "server", base.Redacted(), "scan", st.ID, "state", st.State)
	st, err = c.Wait(sctx, st.ID, func(s sidecar.Status) {
		log.Debug("sidecar scan", "scan", s.ID, "state", s.State)
	})
	if err != nil {
		return nil, o.serverError(ctx, sctx, err)
	}
	rep, err := report.Decode(bytes.NewReader(st.Report))
	if err != nil {
		return nil, fmt.Errorf("the report of scan %s from %s: %w", st.ID, base.Redacted(), err)
	}
	if o.format == "clair" {
		if rep.Raw, err = c.Report(sctx, st.ID, "clair"); err != nil {
			return nil, o.serverError(ctx, sctx, err)
		}
	}
	return rep, nil
}

// serverError adds what to do to an error of the sidecar's API.
func (o *scanOptions) serverError(ctx, sctx context.Context, err error) error {
	if ctx.Err() == nil && errors.Is(sctx.Err(), context.DeadlineExceeded) {
		return timeoutError(o.timeout, err)
	}
	var (
		unreachable *sidecar.UnreachableError
		failed      *sidecar.FailedError
		api         *sidecar.APIError
	)
	switch {
	case errors.As(err, &unreachable):
		return &hintedError{err: err, hints: []string{
			fmt.Sprintf("is layerbridge serve running at %s? check --server", unreachable.URL),
		}}
	case errors.As(err, &failed):
		return &hintedError{err: err, hints: []string{
			"the sidecar scans images of its own Docker daemon; its log (--log-level debug) tells more",
		}}
	case errors.As(err, &api) && api.Status == http.StatusUnauthorized:
		return &hintedError{err: err, hints: []string{
			"pass the sidecar's token: --token-file FILE, or LAYERBRIDGE_TOKEN",
		}}
	case errors.As(err, &api) && api.Status == http.StatusForbidden:
		return &hintedError{err: err, hints: []string{
			"the sidecar has no --token-file, so it answers clients on its own host's loopback only",
			"start it with --token-file FILE and pass the same token here (--token-file or LAYERBRIDGE_TOKEN)",
		}}
	case errors.As(err, &api) && api.Status == http.StatusServiceUnavailable:
		return &hintedError{err: err, hints: []string{"the sidecar is shutting down: try again once it is back"}}
	}
	return err
}

// serverToken returns the sidecar's token: the content of --token-file,
// else $LAYERBRIDGE_TOKEN, else "" (which a sidecar without a token
// accepts from loopback).
func (o *scanOptions) serverToken(e env) (string, error) {
	secret, from := e.getenv("LAYERBRIDGE_TOKEN"), "LAYERBRIDGE_TOKEN"
	if o.tokenFile != "" {
		b, err := readSmall(o.tokenFile, 4096)
		if err != nil {
			return "", usageErrorf("--token-file: %v", err)
		}
		secret, from = strings.TrimSpace(string(b)), "--token-file "+o.tokenFile
	}
	if secret == "" {
		return "", nil
	}
	if _, err := bridge.NewToken(secret); err != nil {
		return "", usageErrorf("the token of %s: %v", from, err)
	}
	return secret, nil
}

// readSmall reads a file of at most limit bytes.
func readSmall(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s has more than %d bytes: not a token file", path, limit)
	}
	return b, nil
}
