package integration_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/layerbridge/layerbridge/integration/harness"
)

// Test data, all inside the repository: testdata/ at its root holds the real
// archives and the SecDB feed the Clair recordings were made with
// (recordedFeed); the integration module's own testdata/ holds the demo's.
const (
	recordedFeed   = "../testdata/secdb"
	alpineFixture  = "../testdata/fixtures/alpine-3.11-docker-save.tar.gz"
	alpineLayerSum = "sha256:beee9f30bc1f711043e78d4a2be0668955d4b761d587d6f60c2c8dc081efb203"
	projectFeed    = "testdata/secdb"
	demoRootFS     = "testdata/demo-image/rootfs"
)

// What real Clair v4.9 reports for the alpine 3.11 fixture fed
// ../testdata/secdb (../testdata/clair-samples/v4.9/GET-vulnerability_report):
// advisories match by source package, so libcrypto1.1 and libssl1.1 get
// openssl's, musl-utils musl's, ssl_client busybox's.
var alpine311V4 = findings(`
apk-tools 2.10.4-r3 CVE-2021-30139
busybox 1.31.1-r9 CVE-2021-28831
libcrypto1.1 1.1.1d-r3 CVE-2020-1967
libcrypto1.1 1.1.1d-r3 CVE-2020-1971
libcrypto1.1 1.1.1d-r3 CVE-2021-23840
libcrypto1.1 1.1.1d-r3 CVE-2021-23841
libcrypto1.1 1.1.1d-r3 CVE-2021-3449
libcrypto1.1 1.1.1d-r3 CVE-2021-3450
libssl1.1 1.1.1d-r3 CVE-2020-1967
libssl1.1 1.1.1d-r3 CVE-2020-1971
libssl1.1 1.1.1d-r3 CVE-2021-23840
libssl1.1 1.1.1d-r3 CVE-2021-23841
libssl1.1 1.1.1d-r3 CVE-2021-3449
libssl1.1 1.1.1d-r3 CVE-2021-3450
musl 1.1.24-r2 CVE-2020-28928
musl-utils 1.1.24-r2 CVE-2020-28928
ssl_client 1.31.1-r9 CVE-2021-28831
`)

// What Clair v2.1.7 reports for it (../testdata/clair-samples/v2.1.7): binary
// package names only.
var alpine311V2 = findings(`
apk-tools 2.10.4-r3 CVE-2021-30139
busybox 1.31.1-r9 CVE-2021-28831
musl 1.1.24-r2 CVE-2020-28928
`)

// The demo image (testdata/demo-image) against the project's feed
// (testdata/secdb/v3.12): the openssl fixes at or below 1.1.1g-r0 and
// busybox's 1.30.1-r2 fix do not apply; zlib has no advisory.
var demoV4 = findings(`
apk-tools 2.10.5-r1 CVE-2021-30139
apk-tools 2.10.5-r1 CVE-2021-36159
busybox 1.31.1-r16 CVE-2021-28831
libcrypto1.1 1.1.1g-r0 CVE-2020-1971
libcrypto1.1 1.1.1g-r0 CVE-2021-23840
libcrypto1.1 1.1.1g-r0 CVE-2021-23841
libcrypto1.1 1.1.1g-r0 CVE-2021-3449
libcrypto1.1 1.1.1g-r0 CVE-2021-3450
libssl1.1 1.1.1g-r0 CVE-2020-1971
libssl1.1 1.1.1g-r0 CVE-2021-23840
libssl1.1 1.1.1g-r0 CVE-2021-23841
libssl1.1 1.1.1g-r0 CVE-2021-3449
libssl1.1 1.1.1g-r0 CVE-2021-3450
musl 1.1.24-r8 CVE-2020-28928
`)

var demoV2 = findings(`
apk-tools 2.10.5-r1 CVE-2021-30139
apk-tools 2.10.5-r1 CVE-2021-36159
busybox 1.31.1-r16 CVE-2021-28831
musl 1.1.24-r8 CVE-2020-28928
`)

func findings(s string) []harness.Finding {
	var out []harness.Finding
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		f := strings.Fields(line)
		out = append(out, harness.Finding{Package: f[0], Version: f[1], Vulnerability: f[2]})
	}
	return out
}

func checkFindings(t *testing.T, what string, got, want []harness.Finding, pairs, vulns int) {
	t.Helper()
	if len(want) != pairs || harness.Vulnerabilities(want) != vulns {
		t.Fatalf("test table for %s: %d pairs over %d vulnerabilities, want %d over %d", what, len(want), harness.Vulnerabilities(want), pairs, vulns)
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s: got %d findings over %d vulnerabilities:\n%s\nwant %d over %d:\n%s", what,
			len(got), harness.Vulnerabilities(got), lines(got), pairs, vulns, lines(want))
	}
}

func lines(fs []harness.Finding) string {
	var b strings.Builder
	for _, f := range fs {
		b.WriteString("  " + f.String() + "\n")
	}
	return b.String()
}

func withTimeout(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestClairReportsFixtureFindings is the reference the end-to-end tests
// compare layerbridge with: real Clair v4.9, fed ../testdata/secdb, scanning
// the alpine 3.11 fixture's layer served by a plain file server, reports 17
// (package, vulnerability) pairs over 9 vulnerabilities; the Clair v2
// stand-in reports the 3 that real Clair v2.1.7 reported.
func TestClairReportsFixtureFindings(t *testing.T) {
	t.Parallel()
	start := time.Now()
	stack := harness.StartT(t, harness.Options{FeedDir: recordedFeed})
	t.Logf("harness up in %v: %+v", time.Since(start).Round(time.Millisecond), stack.Timings)

	files, err := harness.ExtractLegacyLayers(alpineFixture, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	layers := harness.ServeLayersT(t, files...)
	if got := layers.Layers(); len(got) != 1 || got[0].Digest.String() != alpineLayerSum {
		t.Fatalf("fixture layers %+v, want one with digest %s", got, alpineLayerSum)
	}
	d := layers.Layers()[0].Digest

	t.Run("v4", func(t *testing.T) {
		got, err := stack.Clair.Reference(withTimeout(t, 2*time.Minute), layers.Layers())
		if err != nil {
			t.Fatal(err)
		}
		checkFindings(t, "clair v4.9", got, alpine311V4, 17, 9)
		if n := layers.Gets(d); n != 1 {
			t.Errorf("clair downloaded the layer %d times, want 1", n)
		}
		// The same manifest again: Clair answers from its index, no download.
		again, err := stack.Clair.Reference(withTimeout(t, time.Minute), layers.Layers())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(again, got) || layers.Gets(d) != 1 {
			t.Errorf("second reference: %d findings, %d downloads; want the same findings and still 1 download", len(again), layers.Gets(d))
		}
	})
	t.Run("v2 stand-in", func(t *testing.T) {
		standin := harness.StartStandinT(t, recordedFeed)
		got, err := standin.Reference(withTimeout(t, time.Minute), layers.Layers())
		if err != nil {
			t.Fatal(err)
		}
		checkFindings(t, "clair v2 stand-in", got, alpine311V2, 3, 3)
	})
	t.Run("stayed on the machine", func(t *testing.T) {
		if ext := stack.Clair.ExternalRequests(); len(ext) > 0 {
			t.Errorf("clair tried to reach public hosts: %v", ext)
		}
	})
}

// TestDemoImageFindings checks the project's own feed against the demo
// image's layer (built in Go from testdata/demo-image/rootfs, no Docker),
// with Clair requiring PSK authentication as a secured deployment does.
func TestDemoImageFindings(t *testing.T) {
	t.Parallel()
	start := time.Now()
	psk := harness.TestPSK
	stack := harness.StartT(t, harness.Options{FeedDir: projectFeed, PSK: &psk})
	t.Logf("harness up in %v: %+v", time.Since(start).Round(time.Millisecond), stack.Timings)

	layerFile := filepath.Join(t.TempDir(), "demo-layer.tar")
	f, err := os.Create(layerFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := harness.WriteDirTar(f, demoRootFS); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	layers := harness.ServeLayersT(t, layerFile)

	t.Run("psk required", func(t *testing.T) {
		ctx := withTimeout(t, 30*time.Second)
		url := stack.Clair.URL + "/indexer/api/v1/index_state"
		for _, tc := range []struct {
			name   string
			client *http.Client
			want   int
		}{
			{"without a token", http.DefaultClient, http.StatusUnauthorized},
			{"with a token", stack.Clair.HTTPClient(), http.StatusOK},
		} {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := tc.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("%s: %d, want %d", tc.name, resp.StatusCode, tc.want)
			}
		}
	})
	t.Run("v4", func(t *testing.T) {
		got, err := stack.Clair.Reference(withTimeout(t, 2*time.Minute), layers.Layers())
		if err != nil {
			t.Fatal(err)
		}
		checkFindings(t, "clair v4.9", got, demoV4, 14, 9)
	})
	t.Run("v2 stand-in", func(t *testing.T) {
		standin := harness.StartStandinT(t, projectFeed)
		got, err := standin.Reference(withTimeout(t, time.Minute), layers.Layers())
		if err != nil {
			t.Fatal(err)
		}
		checkFindings(t, "clair v2 stand-in", got, demoV2, 4, 4)
	})
	t.Run("stayed on the machine", func(t *testing.T) {
		if ext := stack.Clair.ExternalRequests(); len(ext) > 0 {
			t.Errorf("clair tried to reach public hosts: %v", ext)
		}
	})
}
