package clairv4

import (
	"testing"
	"testing/synctest"
	"time"
)

// TestDefaultBackoffWaitsFor202 runs the real default policy on a fake clock:
// two 202s cost 0.5 s + 1 s before the report arrives.
func TestDefaultBackoffWaitsFor202(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := 0
		fake := &fakeTransportClient{answer: func() exchange {
			n++
			if n <= 2 {
				return exchange{status: 202}
			}
			return loadExchange(t, "v4.9/GET-vulnerability_report.http")
		}}
		c := New(mustURL(t, "http://clair.invalid"), WithHTTPClient(fake.client()))
		start := time.Now()
		rep, err := c.VulnerabilityReport(t.Context(), sampleManifest)
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Findings) != 17 {
			t.Errorf("%d findings", len(rep.Findings))
		}
		if got := time.Since(start); got != 1500*time.Millisecond {
			t.Errorf("waited %v, want 1.5s", got)
		}
	})
}
