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

	// The registry view (registry.go): read-only OCI distribution endpoints.
	// Writes reach the handlers only to be answered 405 UNSUPPORTED.
	RouteRegistryBase     = "registry-base"     // GET /v2/
	RouteRegistryManifest = "registry-manifest" // GET, HEAD /v2/<name>/manifests/<tag-or-digest>
	RouteRegistryBlob     = "registry-blob"     // GET, HEAD /v2/<name>/blobs/<digest>
	RouteRegistryTags     = "registry-tags"     // GET /v2/<name>/tags/list
	RouteRegistryUpload   = "registry-upload"   // blob uploads and mounts: always 405 UNSUPPORTED
)

// capabilityPattern matches a capability: 43 characters of unpadded base64url
// (32 random bytes).
const capabilityPattern = `[A-Za-z0-9_-]{43}`

// digestPattern matches a sha256 digest as the path segment "sha256:<hex>".
// Only sha256 is stored, so only sha256 is routed.
const digestPattern = `sha256:[a-f0-9]{64}`

// namePattern is the distribution spec's repository name grammar
// ("<name>"), with its groups made non-capturing: gorilla/mux rejects
// capturing groups in a route variable.
const namePattern = `[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*`

// tagPattern is the distribution spec's tag grammar: at most 128 characters.
const tagPattern = `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`

type route struct {
	name    string
	path    string
	methods []string
}

var routeTable = []route{
	{RouteLayer, "/layers/{capability:" + capabilityPattern + "}/{digest:" + digestPattern + "}", []string{"GET", "HEAD"}},
	{RouteHealthz, "/healthz", []string{"GET", "HEAD"}},

	// The registry view is read-only: the write methods of the spec's
	// endpoints are routed so that they get its UNSUPPORTED error rather
	// than a bare 405.
	{RouteRegistryBase, "/v2/", []string{"GET", "HEAD"}},
	{RouteRegistryManifest, "/v2/{name:" + namePattern + "}/manifests/{reference:" + tagPattern + "|" + digestPattern + "}", []string{"GET", "HEAD", "PUT", "DELETE"}},
	{RouteRegistryBlob, "/v2/{name:" + namePattern + "}/blobs/{digest:" + digestPattern + "}", []string{"GET", "HEAD", "DELETE"}},
	{RouteRegistryTags, "/v2/{name:" + namePattern + "}/tags/list", []string{"GET"}},
	{RouteRegistryUpload, "/v2/{name:" + namePattern + "}/blobs/uploads/{session:.*}", []string{"GET", "POST", "PATCH", "PUT", "DELETE"}},
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
