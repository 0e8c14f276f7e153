package harness

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// PSK is Clair v4's pre-shared-key authentication (auth.psk in its config):
// every request must carry "Authorization: Bearer <JWT>" signed with HS256
// by Key, whose "iss" claim is Issuer (or "clair-intraservice").
type PSK struct {
	// Key is the base64 (standard encoding) of the HMAC secret, exactly as
	// it appears in Clair's config and as layerbridge takes it; the secret
	// itself is the decoded bytes.
	Key string
	// Issuer is the one issuer Clair accepts besides its own.
	Issuer string
}

// TestPSK is a fixed key and issuer for tests and the demo. Never use it
// outside loopback.
var TestPSK = PSK{Key: "bGF5ZXJicmlkZ2UtdGVzdC1wc2stMDEyMzQ1Njc4OWFi", Issuer: "layerbridge"}

// Token signs a JWT for Issuer valid from now-1m to now+1m, the window
// Clair's own signer uses. Mint one per request.
func (p PSK) Token(now time.Time) (string, error) {
	key, err := base64.StdEncoding.DecodeString(p.Key)
	if err != nil {
		return "", fmt.Errorf("psk key is not standard base64: %w", err)
	}
	enc := base64.RawURLEncoding
	header := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	claims, err := json.Marshal(map[string]any{
		"iss": p.Issuer,
		"iat": now.Unix(),
		"nbf": now.Add(-time.Minute).Unix(),
		"exp": now.Add(time.Minute).Unix(),
	})
	if err != nil {
		return "", err
	}
	signed := header + "." + enc.EncodeToString(claims)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(signed))
	return signed + "." + enc.EncodeToString(mac.Sum(nil)), nil
}

// pskTransport adds a fresh PSK token to every request it sends.
type pskTransport struct {
	psk  PSK
	base http.RoundTripper
}

func (t pskTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	tok, err := t.psk.Token(time.Now())
	if err != nil {
		return nil, err
	}
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", "Bearer "+tok)
	return t.base.RoundTrip(req)
}
