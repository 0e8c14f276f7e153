package bridge

import (
	"fmt"
	"net/url"

	"github.com/gorilla/mux"
	"github.com/opencontainers/go-digest"
)

// Route names. Every path the bridge serves is in routeTable, and every URL
// it hands out is built from the same named route, so the two cannot drift.
const (
	RouteLayer   = "layer"
	RouteHealthz = "healthz"
)

// capabilityPattern matches a capability: 43 characters of unpadded base64url
// (32 random bytes).
const capabilityPattern = `[A-Za-z0-9_-]{43}`

// digestPattern matches a sha256 digest as the path segment "sha256:<hex>".
// Only sha256 is stored, so only sha256 is routed.
const digestPattern = `sha256:[a-f0-9]{64}`

type route struct {
	name    string
	path    string
	methods []string
}

var routeTable = []route{
	{RouteLayer, "/layers/{capability:" + capabilityPattern + "}/{digest:" + digestPattern + "}", []string{"GET", "HEAD"}},
	{RouteHealthz, "/healthz", []string{"GET", "HEAD"}},
}

// newRouter returns a router with every route of routeTable registered by
// name and no handlers attached; handlers are attached by the caller.
func newRouter() *mux.Router {
	r := mux.NewRouter()
	// No path cleaning: a path with "." or ".." segments matches no route
	// and gets a 404, instead of a redirect to the cleaned path.
	r.SkipClean(true)
	for _, rt := range routeTable {
		r.Path(rt.path).Methods(rt.methods...).Name(rt.name)
	}
	return r
}

// urlBuilder builds absolute URLs on an advertised base URL from named routes.
type urlBuilder struct {
	base   *url.URL
	router *mux.Router
}

func (b urlBuilder) layerURL(capability string, d digest.Digest) (string, error) {
	u, err := b.router.Get(RouteLayer).URLPath("capability", capability, "digest", d.String())
	if err != nil {
		return "", fmt.Errorf("build layer url for %s: %w", d, err)
	}
	return b.base.JoinPath(u.Path).String(), nil
}
