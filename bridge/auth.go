package bridge

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"strings"
)

// Token is the shared secret that clients of the registry view (and of the
// sidecar API) present. Create it with LoadToken or NewToken. Only its
// SHA-256 is kept, so it cannot leak through logs or a formatted struct.
//
// The zero Token means no token is configured: Guard then lets in loopback
// clients only (see Guard).
type Token struct {
	sum [sha256.Size]byte
	set bool
}

// MinTokenLength is the shortest token NewToken and LoadToken accept: a
// token guards every image in the store, so it must not be guessable.
// Generate one with, for example, `openssl rand -hex 32`.
const MinTokenLength = 16

// maxTokenFile is the largest token file LoadToken reads; anything larger
// is not a token file (a key, a config, a binary given by mistake).
const maxTokenFile = 4096

// NewToken returns the token secret. secret is used as is, not trimmed: it
// must be at least MinTokenLength characters of printable ASCII without
// spaces, so that it fits both "Authorization: Bearer <token>" and the
// password of HTTP Basic authentication.
func NewToken(secret string) (Token, error) {
	if secret == "" {
		return Token{}, errors.New("token is empty")
	}
	for i := 0; i < len(secret); i++ {
		if c := secret[i]; c <= ' ' || c > '~' {
			return Token{}, fmt.Errorf("token has a space, control or non-ASCII character at byte %d", i)
		}
	}
	if len(secret) < MinTokenLength {
		return Token{}, fmt.Errorf("token has %d characters, want at least %d", len(secret), MinTokenLength)
	}
	return Token{sum: sha256.Sum256([]byte(secret)), set: true}, nil
}

// LoadToken reads a token from the file at path (for example a Docker or
// Kubernetes secret). Leading and trailing white space, such as the final
// newline an editor or `echo` adds, is trimmed; the rest must satisfy
// NewToken.
//
// LoadToken refuses a file that is not a regular file, is larger than 4 KiB,
// or is writable by every user (anyone could replace the token). It accepts
// a world-readable file: Docker Compose mounts secrets 0444 and Kubernetes
// 0644 by default, and in a container nobody else is there to read them. On
// a shared host, keep the file 0600.
func LoadToken(path string) (Token, error) {
	tok, err := loadToken(path)
	if err != nil {
		return Token{}, fmt.Errorf("load token from %s: %w", path, err)
	}
	return tok, nil
}

func loadToken(path string) (Token, error) {
	f, err := os.Open(path)
	if err != nil {
		return Token{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Token{}, err
	}
	switch {
	case !fi.Mode().IsRegular():
		return Token{}, fmt.Errorf("not a regular file (mode %s)", fi.Mode())
	case fi.Mode().Perm()&0o002 != 0:
		return Token{}, fmt.Errorf("file is writable by every user (mode %s)", fi.Mode().Perm())
	case fi.Size() > maxTokenFile:
		return Token{}, fmt.Errorf("file has %d bytes, a token file has at most %d", fi.Size(), maxTokenFile)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return Token{}, err
	}
	if len(b) > maxTokenFile {
		return Token{}, fmt.Errorf("file has more than %d bytes, a token file has at most %d", maxTokenFile, maxTokenFile)
	}
	return NewToken(strings.TrimSpace(string(b)))
}

// IsSet reports whether t is a configured token rather than the zero Token.
func (t Token) IsSet() bool { return t.set }

// String never shows the secret.
func (t Token) String() string {
	if t.set {
		return "token(redacted)"
	}
	return "token(none)"
}

// matches compares in constant time: both sides are SHA-256 sums, so
// neither the content nor the length of the token leaks through timing.
func (t Token) matches(secret string) bool {
	sum := sha256.Sum256([]byte(secret))
	return t.set && subtle.ConstantTimeCompare(sum[:], t.sum[:]) == 1
}

// Guard returns next behind the access rule of the registry view, for
// other handlers that share the bridge's listener (the sidecar API).
// Requests it refuses get the distribution spec's JSON error.
//
//   - With a token, every request must carry it, from loopback too: as
//     "Authorization: Bearer <token>", or as the password of HTTP Basic
//     authentication with any user name (what `docker login`, crane, skopeo
//     and clairctl send from stored credentials). Otherwise: 401
//     UNAUTHORIZED with `WWW-Authenticate: Basic realm="layerbridge"`.
//   - With the zero Token, only clients whose connection comes from a
//     loopback address are let in, whatever they send; everyone else gets
//     403 DENIED, not 401, since no credentials could help.
//
// The client address is the connection's (Request.RemoteAddr):
// X-Forwarded-For is ignored, so a reverse proxy on the same host makes
// every client look local. Do not put one in front without a token.
//
// Do not wrap the per-scan layer routes: Clair fetches them with their
// capability alone.
func Guard(tok Token, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := tok.authorize(r); err != nil {
			writeRegistryError(w, r, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Admits reports whether r passes Guard's rule: it carries the token, or,
// with the zero Token, its connection comes from loopback.
func (t Token) Admits(r *http.Request) bool { return t.authorize(r) == nil }

// FromLoopback reports whether r's connection comes from a loopback address
// (Request.RemoteAddr; X-Forwarded-For is ignored, as in Guard).
func FromLoopback(r *http.Request) bool { return isLoopback(r.RemoteAddr) }

// authorize applies the rule documented on Guard. The error says why, for
// the log; the client only sees the code and the message.
func (t Token) authorize(r *http.Request) error {
	if !t.set {
		if isLoopback(r.RemoteAddr) {
			return nil
		}
		return errDenied(fmt.Errorf("client %s is not on loopback and no token is configured", r.RemoteAddr))
	}
	secret, ok := credentials(r)
	if !ok {
		return errUnauthorized(errors.New("no bearer token or basic credentials"))
	}
	if !t.matches(secret) {
		return errUnauthorized(errors.New("wrong token"))
	}
	return nil
}

// credentials returns the secret of a Bearer or Basic Authorization header.
// The scheme name is case-insensitive (RFC 9110, section 11.1).
func credentials(r *http.Request) (string, bool) {
	scheme, rest, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok {
		return "", false
	}
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		rest = strings.TrimSpace(rest)
		return rest, rest != ""
	case strings.EqualFold(scheme, "Basic"):
		_, password, ok := r.BasicAuth()
		return password, ok
	}
	return "", false
}

// isLoopback reports whether remote ("ip:port", as in Request.RemoteAddr)
// is a loopback address. Anything unparseable (a Unix socket's "@" or "")
// is not.
func isLoopback(remote string) bool {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return false
	}
	return ap.Addr().Unmap().IsLoopback()
}
