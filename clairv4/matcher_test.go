package clairv4

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/layerbridge/layerbridge/report"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// golden compares got with testdata/name, rewriting it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -run %s -update to accept):\n%s", path, t.Name(), got)
	}
}

const vulnReportPath = "/matcher/api/v1/vulnerability_report/"

func TestVulnerabilityReportRecorded(t *testing.T) {
	f, srv := newFakeClair(t)
	answer := loadExchange(t, "v4.9/GET-vulnerability_report.http")
	f.mux.Handle(vulnReportPath+string(sampleManifest), answer)

	rep, err := newTestClient(t, srv).VulnerabilityReport(t.Context(), sampleManifest)
	if err != nil {
		t.Fatal(err)
	}

	// Real Clair 4.9 with the shared SecDB: 17 (package, vulnerability)
	// pairs over 9 vulnerabilities.
	if len(rep.Findings) != 17 {
		t.Errorf("%d findings, want 17", len(rep.Findings))
	}
	names := map[string]bool{}
	for _, f := range rep.Findings {
		names[f.Name] = true
	}
	if len(names) != 9 {
		t.Errorf("%d distinct vulnerabilities, want 9", len(names))
	}
	if rep.Manifest != sampleManifest {
		t.Errorf("manifest = %s", rep.Manifest)
	}
	if !bytes.Equal(rep.Raw, answer.body) {
		t.Error("Raw is not Clair's body unchanged")
	}
	got, err := json.MarshalIndent(rep.Findings, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "vulnerability_report.golden.json", append(got, '\n'))
}

// reportBody builds a vulnerability report with the given vulnerabilities
// attached to one package (id 2, introduced in layer sha256:aa…).
func reportBody(vulns map[string]wireVulnerability, pkgVulns map[string][]string) []byte {
	w := map[string]any{
		"manifest_hash": string(sampleManifest),
		"packages": map[string]any{
			"2": map[string]any{"id": "2", "name": "busybox", "version": "1.30.1-r2", "kind": "binary"},
			"3": map[string]any{"id": "3", "name": "musl", "version": "1.1.24-r2", "kind": "binary"},
			"4": map[string]any{"id": "4", "name": "zlib", "version": "1.2", "kind": "binary"},
		},
		"environments": map[string]any{
			"2": []any{map[string]any{"package_db": "lib/apk/db/installed", "introduced_in": "sha256:" + strings.Repeat("a", 64)}},
			"4": []any{
				map[string]any{"package_db": "lib/apk/db/installed", "introduced_in": "sha256:" + strings.Repeat("b", 64)},
				map[string]any{"package_db": "lib/apk/db/installed", "introduced_in": "sha256:" + strings.Repeat("c", 64)},
			},
		},
		"vulnerabilities":         vulns,
		"package_vulnerabilities": pkgVulns,
		"enrichments":             map[string]any{},
		"Self":                    "fields a newer claircore adds are ignored",
	}
	b, _ := json.Marshal(w)
	return b
}

func TestVulnerabilityReportConversion(t *testing.T) {
	v := func(id, name, sev, norm, links, fixed string) wireVulnerability {
		return wireVulnerability{ID: id, Name: name, Severity: sev, NormalizedSeverity: norm, Links: links, FixedInVersion: fixed, Description: "d" + id}
	}
	tests := []struct {
		name     string
		vulns    map[string]wireVulnerability
		pkgVulns map[string][]string
		want     []report.Finding
	}{
		{
			name:     "normalized severity, first link, layer from environment",
			vulns:    map[string]wireVulnerability{"1": v("1", "CVE-1", "7.5", "High", "https://a https://b", "1.30.1-r3")},
			pkgVulns: map[string][]string{"2": {"1"}},
			want: []report.Finding{{Name: "CVE-1", Package: "busybox", Version: "1.30.1-r2", FixedIn: "1.30.1-r3", Severity: report.High,
				Layer: "sha256:" + strings.Repeat("a", 64), Link: "https://a", Description: "d1"}},
		},
		{
			name:     "falls back to severity when normalized is Unknown or empty; no environment, no link",
			vulns:    map[string]wireVulnerability{"1": v("1", "CVE-1", "moderate", "Unknown", "", ""), "2": v("2", "CVE-2", "Low", "", "", "")},
			pkgVulns: map[string][]string{"3": {"1", "2"}},
			want: []report.Finding{
				{Name: "CVE-1", Package: "musl", Version: "1.1.24-r2", Severity: report.Medium, Description: "d1"},
				{Name: "CVE-2", Package: "musl", Version: "1.1.24-r2", Severity: report.Low, Description: "d2"},
			},
		},
		{
			name:     "package in two environments: the first one's layer",
			vulns:    map[string]wireVulnerability{"1": v("1", "CVE-1", "", "Medium", "", "")},
			pkgVulns: map[string][]string{"4": {"1"}},
			want:     []report.Finding{{Name: "CVE-1", Package: "zlib", Version: "1.2", Severity: report.Medium, Layer: "sha256:" + strings.Repeat("b", 64), Description: "d1"}},
		},
		{
			name:     "unreadable severities are Unknown",
			vulns:    map[string]wireVulnerability{"1": v("1", "CVE-1", "CVSS:3.1/AV:N", "", "", "")},
			pkgVulns: map[string][]string{"3": {"1"}},
			want:     []report.Finding{{Name: "CVE-1", Package: "musl", Version: "1.1.24-r2", Severity: report.Unknown, Description: "d1"}},
		},
		{
			name: "same pair from two updaters is merged: highest severity, fields filled",
			vulns: map[string]wireVulnerability{
				"1": v("1", "CVE-1", "", "Low", "", ""),
				"2": v("2", "CVE-1", "", "Critical", "https://x", "9"),
			},
			pkgVulns: map[string][]string{"3": {"1", "2"}},
			want:     []report.Finding{{Name: "CVE-1", Package: "musl", Version: "1.1.24-r2", Severity: report.Critical, FixedIn: "9", Link: "https://x", Description: "d1"}},
		},
		{
			name:     "no vulnerabilities",
			vulns:    map[string]wireVulnerability{},
			pkgVulns: map[string][]string{},
			want:     []report.Finding{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := decodeVulnerabilityReport(reportBody(tt.vulns, tt.pkgVulns))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(rep.Findings, tt.want) {
				t.Errorf("findings:\n got %+v\nwant %+v", rep.Findings, tt.want)
			}
		})
	}
}

func TestVulnerabilityReportDanglingReferences(t *testing.T) {
	for name, body := range map[string][]byte{
		"unknown vulnerability": reportBody(map[string]wireVulnerability{}, map[string][]string{"2": {"7"}}),
		"unknown package":       reportBody(map[string]wireVulnerability{"1": {Name: "CVE-1"}}, map[string][]string{"9": {"1"}}),
	} {
		if _, err := decodeVulnerabilityReport(body); err == nil {
			t.Errorf("%s: no error; a finding would be dropped silently", name)
		}
	}
}

func TestVulnerabilityReport202ThenOK(t *testing.T) {
	f, srv := newFakeClair(t)
	notReady := exchange{status: http.StatusAccepted, header: http.Header{}} // matcher_v1.go: bare 202
	f.mux.Handle(vulnReportPath+string(sampleManifest), sequence(notReady, notReady, loadExchange(t, "v4.9/GET-vulnerability_report.http")))
	var waits []int
	c := newTestClient(t, srv, WithBackoff(func(ctx context.Context, attempt int) error {
		waits = append(waits, attempt)
		return ctx.Err()
	}))

	rep, err := c.VulnerabilityReport(t.Context(), sampleManifest)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Findings) != 17 {
		t.Errorf("%d findings, want 17", len(rep.Findings))
	}
	if !reflect.DeepEqual(waits, []int{1, 2}) {
		t.Errorf("backoff attempts = %v, want [1 2]", waits)
	}
}

func TestVulnerabilityReport202UntilContextEnds(t *testing.T) {
	f, srv := newFakeClair(t)
	f.mux.Handle(vulnReportPath+string(sampleManifest), exchange{status: http.StatusAccepted, header: http.Header{}})
	ctx, cancel := context.WithCancel(t.Context())
	c := newTestClient(t, srv, WithBackoff(func(ctx context.Context, attempt int) error {
		if attempt == 3 {
			cancel() // the caller's deadline passes while waiting
		}
		return ctx.Err()
	}))

	_, err := c.VulnerabilityReport(ctx, sampleManifest)
	if !errors.Is(err, ErrNoVulnerabilityData) || !IsNoVulnerabilityData(err) {
		t.Errorf("err = %v, want ErrNoVulnerabilityData", err)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want it to carry context.Canceled", err)
	}
	if n := len(f.requests()); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
}

func TestVulnerabilityReportCancelledMidRequest(t *testing.T) {
	f, srv := newFakeClair(t)
	ctx, cancel := context.WithCancel(t.Context())
	f.mux.Handle(vulnReportPath+string(sampleManifest), sequence(
		exchange{status: http.StatusAccepted, header: http.Header{}},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			cancel()
			<-r.Context().Done()
		}),
	))

	_, err := newTestClient(t, srv).VulnerabilityReport(ctx, sampleManifest)
	if !IsNoVulnerabilityData(err) || !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want ErrNoVulnerabilityData and context.Canceled", err)
	}
}

func TestVulnerabilityReportUnknownManifest(t *testing.T) {
	f, srv := newFakeClair(t)
	unknown := digest.Digest("sha256:" + strings.Repeat("0", 64))
	f.mux.Handle(vulnReportPath+string(unknown), loadExchange(t, "v4.9/GET-vulnerability_report-unknown.http"))

	_, err := newTestClient(t, srv).VulnerabilityReport(t.Context(), unknown)
	if !IsNotFound(err) || IsWrongAPI(err) || IsNoVulnerabilityData(err) {
		t.Fatalf("err = %v, want only not found", err)
	}
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != "not-found" || ae.Message != `index report for manifest "`+string(unknown)+`" not found` {
		t.Errorf("api error %+v", ae)
	}
}

// updateOperations is GET /matcher/api/v1/internal/update_operation as
// Clair 4.9 encodes it (map of updater to []driver.UpdateOperation, json
// tags ref/updater/fingerprint/date/kind; GetLatestUpdateRefs does not scan
// kind, so it is ""). No recording exists; built from claircore v1.5.48
// libvuln/driver/updatediff.go and datastore/postgres/getupdateoperations.go.
const updateOperations = `{"alpine-community-v3.11-updater":[{"ref":"2b9a1c33-5c57-4b6b-8d8a-0c1e1f2a3b4c","updater":"alpine-community-v3.11-updater","fingerprint":"","date":"2026-11-24T10:00:01.5Z","kind":""}],` +
	`"alpine-main-v3.11-updater":[{"ref":"6b3a9f0e-8d1c-4e5f-9a2b-1c2d3e4f5a6b","updater":"alpine-main-v3.11-updater","fingerprint":"\"etag-1\"","date":"2026-11-24T10:00:00.123456Z","kind":""}]}`

func TestLatestUpdateOperations(t *testing.T) {
	f, srv := newFakeClair(t)
	f.mux.Handle("/matcher/api/v1/internal/update_operation", exchange{200, http.Header{"Etag": {`"6b3a9f0e-8d1c-4e5f-9a2b-1c2d3e4f5a6b"`}}, []byte(updateOperations)})
	c := newTestClient(t, srv)

	ops, err := c.LatestUpdateOperations(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := []UpdateOperation{
		{Updater: "alpine-community-v3.11-updater", Ref: "2b9a1c33-5c57-4b6b-8d8a-0c1e1f2a3b4c", Date: time.Date(2026, 11, 24, 10, 0, 1, 5e8, time.UTC)},
		{Updater: "alpine-main-v3.11-updater", Ref: "6b3a9f0e-8d1c-4e5f-9a2b-1c2d3e4f5a6b", Fingerprint: `"etag-1"`, Date: time.Date(2026, 11, 24, 10, 0, 0, 123456000, time.UTC)},
	}
	if !reflect.DeepEqual(ops, want) {
		t.Errorf("ops:\n got %+v\nwant %+v", ops, want)
	}
	if q := f.requests()[0].rawQuery; q != "kind=vulnerability&latest=true" {
		t.Errorf("query = %q", q)
	}
	present, err := c.VulnerabilityDataPresent(t.Context())
	if err != nil || !present {
		t.Errorf("present = %v, %v", present, err)
	}
}

func TestVulnerabilityDataPresent(t *testing.T) {
	tests := []struct {
		name      string
		register  func(mux *http.ServeMux)
		want      bool
		wantError bool
	}{
		{
			name: "never updated: {}",
			register: func(mux *http.ServeMux) {
				mux.Handle("/matcher/api/v1/internal/update_operation", exchange{200, http.Header{}, []byte("{}\n")})
			},
		},
		{
			// Clair 4.2–4.4 register only ".../update_operation/"; ServeMux
			// redirects the bare path there (301), and the client follows.
			name: "clair 4.2 route with trailing slash",
			register: func(mux *http.ServeMux) {
				mux.Handle("/matcher/api/v1/internal/update_operation/", exchange{200, http.Header{}, []byte(updateOperations)})
			},
			want: true,
		},
		{
			name:      "route not served (indexer-only address): error, caller falls back to the 202",
			register:  func(*http.ServeMux) {},
			wantError: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, srv := newFakeClair(t)
			tt.register(f.mux)
			got, err := newTestClient(t, srv).VulnerabilityDataPresent(t.Context())
			if (err != nil) != tt.wantError || got != tt.want {
				t.Errorf("got %v, %v; want %v, error %v", got, err, tt.want, tt.wantError)
			}
		})
	}
}

func TestUpdateOperationsRedirectKeepsToken(t *testing.T) {
	f, srv := newFakeClair(t)
	key := "bGF5ZXJicmlkZ2UtdGVzdC1wc2stMDEyMzQ1Njc4OWFi"
	f.auth = clairPSK{key: mustDecode(t, key), now: time.Now}.check
	f.mux.Handle("/matcher/api/v1/internal/update_operation/", exchange{200, http.Header{}, []byte(updateOperations)})

	present, err := newTestClient(t, srv, WithPSK(key, "")).VulnerabilityDataPresent(t.Context())
	if err != nil || !present {
		t.Fatalf("present = %v, %v", present, err)
	}
	reqs := f.requests()
	if len(reqs) != 2 || reqs[1].path != "/matcher/api/v1/internal/update_operation/" || reqs[1].rawQuery != "kind=vulnerability&latest=true" {
		t.Errorf("requests %+v, want the redirect followed with the query", reqs)
	}
}
