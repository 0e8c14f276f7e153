package clairv4

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// IntraserviceIssuer is the JWT issuer every Clair v4 with a pre-shared key
// accepts, whatever its auth.psk.iss list says. WithPSK uses it when given an
// empty issuer.
const IntraserviceIssuer = "clair-intraservice"

// pskLeeway is how far nbf and exp lie from the signing time: the same minute
// Clair's own signer uses (jwt.DefaultLeeway in internal/httputil/signer.go).
const pskLeeway = time.Minute

// psk mints the bearer tokens Clair's auth.psk middleware accepts.
type psk struct {
	key    []byte
	issuer string
}

// newPSK decodes key exactly as Clair decodes auth.psk.key (standard,
// padded base64) so that a key copied from Clair's config works unchanged.
func newPSK(b64Key, issuer string) (*psk, error) {
	if b64Key == "" {
		return nil, errors.New("psk key is empty")
	}
	key, err := base64.StdEncoding.DecodeString(b64Key)
	if err != nil {
		return nil, fmt.Errorf("psk key must be standard base64, as auth.psk.key in Clair's config: %w", err)
	}
	if len(key) == 0 {
		return nil, errors.New("psk key decodes to zero bytes")
	}
	if issuer == "" {
		issuer = IntraserviceIssuer
	}
	return &psk{key: key, issuer: issuer}, nil
}

// token returns a compact HS256 JWT with iss, iat = now, nbf = now-1m and
// exp = now+1m. Mint one per request: Clair checks exp with only 15 s of
// leeway.
func (p *psk) token(now time.Time) (string, error) {
	enc := base64.RawURLEncoding
	header := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	claims, err := json.Marshal(struct {
		Issuer    string `json:"iss"`
		IssuedAt  int64  `json:"iat"`
		NotBefore int64  `json:"nbf"`
		Expiry    int64  `json:"exp"`
	}{p.issuer, now.Unix(), now.Add(-pskLeeway).Unix(), now.Add(pskLeeway).Unix()})
	if err != nil {
		return "", fmt.Errorf("encode jwt claims: %w", err)
	}
	signed := header + "." + enc.EncodeToString(claims)
	mac := hmac.New(sha256.New, p.key)
	mac.Write([]byte(signed))
	return signed + "." + enc.EncodeToString(mac.Sum(nil)), nil
}
