package doctor

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/layerbridge/layerbridge/clairv4"
	"github.com/layerbridge/layerbridge/reach"
	"github.com/layerbridge/layerbridge/scan"
)

var clairChecks = []string{CheckClairReachable, CheckClairAPI, CheckClairVersion, CheckClairAuth, CheckClairVulnDB}

// clair finds out whether Clair answers, which API it speaks (and so whether
// the requested one is right), which version, whether it accepts our
// credentials and whether it holds vulnerability data.
func (r *run) clair(ctx context.Context) {
	if r.cfg.Clair.URL == nil {
		r.skip("no clair url given", clairChecks...)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Wait)
	defer cancel()
	u := r.cfg.Clair.URL.Redacted()
	want := r.cfg.Clair.API
	if want == "" {
		want = scan.APIAuto
	}
	v4, v2 := r.cfg.Clair.V4, r.cfg.Clair.V2
	start := time.Now()
	api, err := scan.DetectAPI(ctx, r.cfg.Clair)
	took := time.Since(start).Round(time.Millisecond)

	var (
		down     *scan.ClairUnreachableError
		auth     *scan.AuthError
		mismatch *scan.APIMismatchError
		noClair  *scan.NoClairError
	)
	switch {
	case err == nil:
		r.add(CheckClairReachable, Passed, fmt.Sprintf("%s answered in %s%s", u, took, r.route()), "")
		r.add(CheckClairAPI, Passed, apiEvidence(api, want), "")
	case errors.As(err, &down):
		fix := r.clairNameFix(err)
		if fix == "" {
			fix = clairDownFix(r.cfg.Clair.URL.Hostname())
		}
		r.add(CheckClairReachable, Failed, down.Error(), fix)
		r.skip("clair did not answer", clairChecks[1:]...)
		return
	case errors.As(err, &auth):
		r.add(CheckClairReachable, Passed, fmt.Sprintf("%s answered 401 Unauthorized in %s", u, took), "")
		r.add(CheckClairAPI, Passed, "v4: only Clair 4 checks credentials (Clair 2 has no authentication)", "")
		r.add(CheckClairVersion, Skipped, "clair refuses our requests", "")
		if auth.Rejected {
			r.add(CheckClairAuth, Failed, fmt.Sprintf("Clair answered 401 to a token signed with --clair-psk (issuer %q): the key or the issuer is not the one in its auth.psk", r.issuer()),
				"pass auth.psk.key from Clair's config exactly as written there (base64) with --clair-psk or LAYERBRIDGE_CLAIR_PSK, and an issuer listed in auth.psk.iss with --clair-psk-issuer (clair-intraservice is always accepted); clocks more than 15 s apart also fail")
		} else {
			r.add(CheckClairAuth, Failed, "Clair answered 401 to a request without a token: it has auth.psk configured",
				"pass its auth.psk.key with --clair-psk (or LAYERBRIDGE_CLAIR_PSK) and an issuer from auth.psk.iss with --clair-psk-issuer")
		}
		r.skip("clair refuses our requests", CheckClairVulnDB)
		return
	case errors.As(err, &mismatch):
		r.add(CheckClairReachable, Passed, fmt.Sprintf("%s answered in %s", u, took), "")
		r.add(CheckClairAPI, Failed, mismatchEvidence(mismatch), mismatchFix(mismatch))
		// Go on with the API Clair speaks: the rest of the setup is worth
		// knowing before the user fixes the flag.
		api = mismatch.Found
	case errors.As(err, &noClair):
		r.add(CheckClairReachable, Passed, fmt.Sprintf("%s answered HTTP in %s", u, took), "")
		r.add(CheckClairAPI, Failed, fmt.Sprintf("it answers like neither Clair 4 (GET /indexer/api/v1/index_state) nor Clair 2 (GET /v1/namespaces): %v", noClair.Err),
			"check --clair (or CLAIR_ADDR): give Clair's API address (Clair 4: http_listen_addr, default port 6060; Clair 2: api.port, not the health port 6061), including any path prefix of a reverse proxy")
		r.skip("no clair api found", clairChecks[2:]...)
		return
	default:
		r.add(CheckClairReachable, Failed, err.Error(), "check --clair (or CLAIR_ADDR)")
		r.skip("clair could not be asked", clairChecks[1:]...)
		return
	}
	r.api = api

	switch api {
	case scan.APIv4:
		r.versionV4(ctx, v4)
		if r.cfg.Clair.V4.Issuer() != "" {
			r.add(CheckClairAuth, Passed, fmt.Sprintf("Clair accepted a token signed with --clair-psk (issuer %q), or checks none", r.issuer()), "")
		} else {
			r.add(CheckClairAuth, Passed, "Clair answered without a token: no authentication configured", "")
		}
		present, err := v4.VulnerabilityDataPresent(ctx)
		r.vulnDB(present, err, "no vulnerability updater has finished writing to Clair's matcher database",
			"wait until Clair's log shows its updaters finished (the first run takes minutes to hours), check that Clair can reach the feeds (or load them offline: clairctl import-updaters), and do not trust an empty report until then")
	case scan.APIv2:
		r.add(CheckClairVersion, Passed, "Clair 2 (API /v1); it does not report its release", "")
		r.add(CheckClairAuth, Skipped, "Clair 2 has no authentication", "")
		present, err := v2.VulnerabilityDataPresent(ctx)
		r.vulnDB(present, err, "no namespace in Clair 2's database holds a vulnerability: its updaters have not run or failed",
			"wait for Clair 2's updaters to finish (its log says when; they fetch from the internet), or seed the database; every report looks clean until then")
	}
}

// route says how Clair's host name was reached when only Docker's DNS
// knows it: "" otherwise.
func (r *run) route() string {
	if r.cfg.ClairDialer == nil {
		return ""
	}
	rt, ok := r.cfg.ClairDialer.Route()
	if !ok {
		return ""
	}
	return fmt.Sprintf(" (this host does not resolve %s: %s)", rt.Name, rt)
}

// clairNameFix is the fix when Clair's host name names no running
// container, or one this host has no route to; "" for other errors.
func (r *run) clairNameFix(err error) string {
	if ne, ok := errors.AsType[*reach.NameError](err); ok {
		var parts []string
		for _, s := range ne.Suggestions {
			parts = append(parts, fmt.Sprintf("did you mean %s? it is the name or a network alias of a running container", s))
		}
		if ne.ListErr != nil {
			parts = append(parts, "the Docker daemon could not be asked for a container of that name: see the docker.* checks, or give Clair's IP address or published port with --clair")
		} else {
			parts = append(parts, "start Clair, or give its address with --clair (or CLAIR_ADDR): a name this host resolves, an IP address, or the name or network alias of its running container")
		}
		return strings.Join(parts, "; ")
	}
	ue, ok := errors.AsType[*reach.UnroutableError](err)
	if !ok {
		return ""
	}
	port := r.cfg.Clair.URL.Port()
	if port == "" {
		port = "6060"
	}
	if ue.HostNetwork() {
		return fmt.Sprintf("Clair's container uses the host network: give the daemon host's address, --clair http://localhost:%s on that host", port)
	}
	fix := fmt.Sprintf("publish Clair's port on this host (docker run -p 127.0.0.1:%s:%s …, compose: ports: [\"127.0.0.1:%s:%s\"]) and pass --clair http://localhost:%s", port, port, port, port, port)
	run := reach.ContainerCommand{Args: []string{"doctor", "--clair", r.cfg.Clair.URL.String()}}
	if r.cfg.Image != "" {
		run.Args = append(run.Args, r.cfg.Image)
	}
	var socket, group string
	if r.daemon != nil {
		if sock := statSocket(r.daemon.Endpoint.Socket()); sock.err == nil && sock.path != "" {
			socket, group = sock.path, strconv.FormatUint(uint64(sock.gid), 10)
		}
	}
	line, ok := ue.Command(run, socket, group)
	switch {
	case !ok:
	case ue.DefaultBridge():
		// Docker's default bridge resolves no names.
		line.Network = "clair-network"
		fix += fmt.Sprintf("; or put Clair's container on a network of its own and run layerbridge as a container there: docker network create clair-network && docker network connect clair-network %s && %s", ue.Container, line)
	default:
		fix += fmt.Sprintf("; or run layerbridge as a container on network %s, where %s resolves: %s", line.Network, ue.Name, line)
	}
	return fix
}

func (r *run) issuer() string { return r.cfg.Clair.V4.Issuer() }

func (r *run) versionV4(ctx context.Context, c *clairv4.Client) {
	v, err := c.OpenAPIVersion(ctx)
	if err != nil {
		r.add(CheckClairVersion, Skipped, fmt.Sprintf("Clair 4; its release could not be told: %v", err), "")
		return
	}
	rel := clairv4.ReleasesServing(v)
	if rel == "" {
		rel = "a Clair 4 release newer than this layerbridge knows"
	}
	r.add(CheckClairVersion, Passed, fmt.Sprintf("%s (GET /openapi/v1 has info.version %s; no route reports the exact release)", rel, v), "")
}

func (r *run) vulnDB(present bool, err error, emptyEvidence, fix string) {
	switch {
	case err != nil:
		r.add(CheckClairVulnDB, Skipped, fmt.Sprintf("cannot tell: %v", err), "")
	case !present:
		r.add(CheckClairVulnDB, Warning, emptyEvidence+": every image will look clean", fix)
	default:
		r.add(CheckClairVulnDB, Passed, "Clair holds vulnerability data", "")
	}
}

func apiEvidence(api, want string) string {
	switch api {
	case scan.APIv4:
		s := "v4 (Clair 4): GET /indexer/api/v1/index_state answered"
		if want == scan.APIAuto {
			s += "; a v2 client (POST /v1/layers) would get 404 here"
		}
		return s
	default:
		s := "v2 (Clair 2): GET /v1/namespaces answered"
		if want == scan.APIAuto {
			s += "; a v4 client (/indexer/api/v1) would get 404 here"
		}
		return s
	}
}

func mismatchEvidence(e *scan.APIMismatchError) string {
	if e.Found == scan.APIv4 {
		return fmt.Sprintf("--clair-api v2 asked, but %s is Clair 4: it has no /v1/layers, so every Clair 2 call gets a bare 404 (\"404 page not found\"). This is the classic `receiving http error: 404` of v2-only clients (clairctl, klar, clair-scanner up to v13) against Clair 4", e.URL)
	}
	return fmt.Sprintf("--clair-api v4 asked, but %s is Clair 2: it has no /indexer/api/v1 or /matcher/api/v1, so every Clair 4 call gets a bare 404", e.URL)
}

func mismatchFix(e *scan.APIMismatchError) string {
	return fmt.Sprintf("use --clair-api %s, or leave --clair-api at auto: layerbridge speaks both; a tool that speaks only the other API cannot use this Clair", e.Found)
}

func clairDownFix(host string) string {
	fix := "start Clair, or give its address with --clair (or CLAIR_ADDR)"
	if host == "localhost" || host == "127.0.0.1" || host == "::1" {
		fix += "; if Clair runs in a container, publish its port (docker run -p 6060:6060) or use the container's address"
	}
	return fix
}
