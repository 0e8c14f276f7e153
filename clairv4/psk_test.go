package clairv4

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The key from ../testdata/clair-config (auth.psk.key), base64 of the secret.
const testPSK = "bGF5ZXJicmlkZ2UtdGVzdC1wc2stMDEyMzQ1Njc4OWFi"

func mustDecode(t *testing.T, b64 string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var clairClock = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func TestPSKTokenAcceptedByClairsCheck(t *testing.T) {
	f, srv := newFakeClair(t)
	f.auth = clairPSK{key: mustDecode(t, testPSK), issuers: []string{"layerbridge"}, now: func() time.Time { return clairClock }}.check
	f.mux.Handle("/indexer/api/v1/index_state", loadExchange(t, "v4.9/GET-index_state.http"))
	c := newTestClient(t, srv, WithPSK(testPSK, "layerbridge"))
	c.now = func() time.Time { return clairClock }

	if err := c.Probe(t.Context()); err != nil {
		t.Fatal(err)
	}

	auth := f.requests()[0].header.Get("Authorization")
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok {
		t.Fatalf("Authorization = %q", auth)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q is not a compact JWS", tok)
	}
	var header map[string]any
	var claims map[string]any
	for i, v := range []*map[string]any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatal(err)
		}
	}
	if header["alg"] != "HS256" {
		t.Errorf("header %v", header)
	}
	now := float64(clairClock.Unix())
	want := map[string]any{"iss": "layerbridge", "iat": now, "nbf": now - 60, "exp": now + 60}
	for k, v := range want {
		if claims[k] != v {
			t.Errorf("claim %s = %v, want %v", k, claims[k], v)
		}
	}
}

func TestPSKRejections(t *testing.T) {
	otherKey := base64.StdEncoding.EncodeToString([]byte("another secret"))
	tests := []struct {
		name   string
		key    string
		issuer string
		skew   time.Duration // client clock minus Clair's
		want   bool          // accepted
	}{
		{"configured issuer", testPSK, "layerbridge", 0, true},
		{"empty issuer means clair-intraservice", testPSK, "", 0, true},
		{"issuer not listed", testPSK, "someone-else", 0, false},
		{"wrong key", otherKey, "layerbridge", 0, false},
		{"client 70s slow: exp 10s ago, within 15s leeway", testPSK, "layerbridge", -70 * time.Second, true},
		{"client 80s slow: expired", testPSK, "layerbridge", -80 * time.Second, false},
		{"client 10s fast: iat within leeway", testPSK, "layerbridge", 10 * time.Second, true},
		{"client 20s fast: issued in the future", testPSK, "layerbridge", 20 * time.Second, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, srv := newFakeClair(t)
			f.auth = clairPSK{key: mustDecode(t, testPSK), issuers: []string{"layerbridge"}, now: func() time.Time { return clairClock }}.check
			f.mux.Handle("/indexer/api/v1/index_state", loadExchange(t, "v4.9/GET-index_state.http"))
			c := newTestClient(t, srv, WithPSK(tt.key, tt.issuer))
			c.now = func() time.Time { return clairClock.Add(tt.skew) }

			err := c.Probe(t.Context())
			if tt.want && err != nil {
				t.Errorf("rejected: %v", err)
			}
			if !tt.want && !IsUnauthorized(err) {
				t.Errorf("err = %v, want unauthorized", err)
			}
		})
	}
}

func TestNoPSKAgainstClairWithPSK(t *testing.T) {
	f, srv := newFakeClair(t)
	f.auth = clairPSK{key: mustDecode(t, testPSK), now: time.Now}.check
	f.mux.Handle("/indexer/api/v1/index_state", loadExchange(t, "v4.9/GET-index_state.http"))
	if err := newTestClient(t, srv).Probe(t.Context()); !IsUnauthorized(err) {
		t.Errorf("err = %v, want unauthorized", err)
	}
}

func TestPSKFreshTokenPerRequest(t *testing.T) {
	f, srv := newFakeClair(t)
	f.mux.Handle("/indexer/api/v1/index_state", loadExchange(t, "v4.9/GET-index_state.http"))
	c := newTestClient(t, srv, WithPSK(testPSK, "layerbridge"))
	clock := clairClock
	c.now = func() time.Time { return clock }

	for range 2 {
		if err := c.Probe(t.Context()); err != nil {
			t.Fatal(err)
		}
		clock = clock.Add(90 * time.Second) // longer than a token lives
	}
	reqs := f.requests()
	a, b := reqs[0].header.Get("Authorization"), reqs[1].header.Get("Authorization")
	if a == b {
		t.Error("the same token was sent twice")
	}
	later := clairPSK{key: mustDecode(t, testPSK), issuers: []string{"layerbridge"}, now: func() time.Time { return clairClock.Add(90 * time.Second) }}
	if err := later.verify(strings.TrimPrefix(b, "Bearer ")); err != nil {
		t.Errorf("second token at the second request's time: %v", err)
	}
	if err := later.verify(strings.TrimPrefix(a, "Bearer ")); err == nil {
		t.Error("first token still valid 90s later: reusing it would have worked, so this test proves nothing")
	}
}

// TestClairPSKCheckIsCaseSensitive pins the fake to Clair's fromHeader: a
// lowercase "bearer " is not a token.
func TestClairPSKCheckIsCaseSensitive(t *testing.T) {
	p, err := newPSK(testPSK, "layerbridge")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := p.token(clairClock)
	if err != nil {
		t.Fatal(err)
	}
	check := clairPSK{key: mustDecode(t, testPSK), issuers: []string{"layerbridge"}, now: func() time.Time { return clairClock }}
	for prefix, want := range map[string]bool{"Bearer ": true, "bearer ": false, "Bearer  ": false} {
		r := httptestRequest(t)
		r.Header.Set("Authorization", prefix+tok)
		if got := check.check(r); got != want {
			t.Errorf("%q: accepted = %v, want %v", prefix, got, want)
		}
	}
}

func httptestRequest(t *testing.T) *http.Request {
	t.Helper()
	return httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/indexer/api/v1/index_state", nil)
}

// Issuer says whose tokens the client signs, so that callers can tell
// "auth required" from "auth rejected" and name the issuer.
func TestIssuer(t *testing.T) {
	u := mustURL(t, "http://clair:6060")
	for _, tt := range []struct {
		opts []Option
		want string
	}{
		{nil, ""},
		{[]Option{WithPSK(testPSK, "layerbridge")}, "layerbridge"},
		{[]Option{WithPSK(testPSK, "")}, IntraserviceIssuer},
		{[]Option{WithPSK("not base64!", "layerbridge")}, ""},
	} {
		if got := New(u, tt.opts...).Issuer(); got != tt.want {
			t.Errorf("Issuer() = %q, want %q", got, tt.want)
		}
	}
}
