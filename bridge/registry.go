package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/layerbridge/layerbridge/blobs"

	"github.com/gorilla/mux"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerbridge/layerbridge/internal/mediatype"
)

// Catalog tells the registry view which images a repository name holds,
// and opens their blobs. It is read-only and must be safe for concurrent
// use. Every descriptor it returns must name a blob its Blob method can open
// (or report missing).
//
// Errors: wrap ErrRepositoryUnknown when name is not a repository, and
// ErrNotInRepository when the repository exists but the tag or digest is not
// part of it. Any other error is answered with 500.
type Catalog interface {
	blobs.Opener

	// ResolveTag returns the descriptor of the manifest or index that tag
	// names in repository name. MediaType, Digest (sha256) and Size must be
	// those of the stored blob: MediaType becomes the response's
	// Content-Type, and a Size that disagrees with the stored file is
	// answered with 500.
	ResolveTag(ctx context.Context, name, tag string) (ocispec.Descriptor, error)

	// Lookup returns the descriptor of blob d if it belongs to an image of
	// repository name: a tagged manifest or index, a manifest such an index
	// lists, or a config or layer of one of those manifests. A blob of
	// another repository must be reported with ErrNotInRepository: this
	// check is what keeps a repository from serving blobs that are not
	// part of it. For a manifest, MediaType must be its manifest media type.
	Lookup(ctx context.Context, name string, d digest.Digest) (ocispec.Descriptor, error)

	// Tags returns the tags of repository name, in any order. Every tag
	// must match the distribution spec's tag grammar, or clients cannot ask
	// for it. A repository without tags returns an empty list, not an error.
	Tags(ctx context.Context, name string) ([]string, error)
}

// Errors a Catalog wraps; see Catalog.
var (
	ErrRepositoryUnknown = errors.New("repository unknown")
	ErrNotInRepository   = errors.New("not in repository")
)

// isManifestRouteType reports whether mt is served from the manifests route:
// an OCI or Docker manifest or index. Anything else (a config, a layer) is
// MANIFEST_UNKNOWN there, as in distribution/distribution.
func isManifestRouteType(mt string) bool {
	return mediatype.IsManifest(mt) || mediatype.IsIndex(mt)
}

// maxTagsPage caps a page of tags/list; a larger n gets this many and a Link
// header to the rest, as the spec allows.
const maxTagsPage = 1000

// WithRegistry enables the registry view: read-only OCI distribution
// endpoints under /v2/ (GET /v2/, manifests and blobs with GET and HEAD,
// tags/list) over the images of cat, so that unmodified clients (docker,
// crane, skopeo, trivy, Clair's clairctl) can pull them. Pushes, uploads,
// mounts and deletes are answered 405 UNSUPPORTED; /v2/_catalog is not
// served (no pull needs it). cat must not be nil.
//
// tok is the access rule (see Guard): the zero Token lets only loopback
// clients in. The per-scan layer routes are not affected by tok.
//
// Without this option the /v2/ routes answer 404.
func WithRegistry(cat Catalog, tok Token) Option {
	return func(s *Server) {
		// New creates the router before it applies options, so the
		// handlers can be attached here; they read s (logger, clock) per
		// request, so the order of options does not matter.
		v := &registryView{server: s, catalog: cat, token: tok}
		r := s.router
		r.Get(RouteRegistryBase).Handler(v.handle(RouteRegistryBase, v.base))
		r.Get(RouteRegistryManifest).Handler(v.handle(RouteRegistryManifest, v.manifest))
		r.Get(RouteRegistryBlob).Handler(v.handle(RouteRegistryBlob, v.blob))
		r.Get(RouteRegistryTags).Handler(v.handle(RouteRegistryTags, v.tags))
		r.Get(RouteRegistryUpload).Handler(v.handle(RouteRegistryUpload, nil))
	}
}

// /v2/_catalog is deliberately absent: it is not part of the OCI
// distribution spec (only distribution/distribution's extension), no pull
// needs it, and listing every stored image to anyone holding the token is
// more than "pull what you name". Its path does not match the name grammar,
// so it gets a plain 404.

type registryView struct {
	server  *Server
	catalog Catalog
	token   Token
}

// handle adapts a registry handler: it refuses writes, applies the access
// rule, writes the error the handler returns as the spec's JSON, and logs
// one line per request. A handler returns an error only before it writes
// anything. h is only called for GET and HEAD; nil refuses every method.
func (v *registryView) handle(route string, h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := v.server.now()
		cw := &countingWriter{ResponseWriter: w, status: http.StatusOK}
		cw.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		var err error
		if h == nil {
			// Refused whoever asks, so without authentication.
			err = errUnsupported(r.Method, "")
		} else if r.Method != http.MethodGet && r.Method != http.MethodHead {
			err = errUnsupported(r.Method, "GET, HEAD")
		} else if err = v.token.authorize(r); err == nil {
			err = h(cw, r)
		}
		if err != nil {
			writeRegistryError(cw, r, err)
		}
		v.logRequest(r, route, cw, v.server.now().Sub(start), err)
	})
}

func (v *registryView) logRequest(r *http.Request, route string, cw *countingWriter, d time.Duration, err error) {
	vars := mux.Vars(r)
	ref := vars["reference"] // manifests
	if ref == "" {
		ref = vars["digest"] // blobs
	}
	attrs := []any{
		"route", route, "repository", vars["name"], "reference", ref,
		"client", r.RemoteAddr, "method", r.Method, "status", cw.status, "bytes", cw.n,
		"duration", d.Round(time.Microsecond),
	}
	switch {
	case err == nil:
		v.server.log.Info("registry request", attrs...)
	case cw.status >= 500:
		v.server.log.Error("registry request failed", append(attrs, "err", err)...)
	default:
		v.server.log.Info("registry request refused", append(attrs, "err", err)...)
	}
}

func (v *registryView) base(w http.ResponseWriter, r *http.Request) error {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", "2")
	if r.Method != http.MethodHead {
		w.Write([]byte("{}"))
	}
	return nil
}

func (v *registryView) manifest(w http.ResponseWriter, r *http.Request) error {
	vars := mux.Vars(r)
	name, ref := vars["name"], vars["reference"]
	// The route admits a tag or a sha256 digest; a tag has no ":".
	d, err := digest.Parse(ref)
	byDigest := err == nil
	var desc ocispec.Descriptor
	if byDigest {
		desc, err = v.catalog.Lookup(r.Context(), name, d)
	} else {
		desc, err = v.catalog.ResolveTag(r.Context(), name, ref)
	}
	unknown := errManifestUnknown(name, ref)
	if err != nil {
		return catalogError(err, name, unknown)
	}
	if byDigest && desc.Digest != d {
		return errInternal(fmt.Errorf("catalog answered %s for manifest %s", desc.Digest, d))
	}
	if !isManifestRouteType(desc.MediaType) {
		unknown.cause = fmt.Errorf("%s is %q, not a manifest", desc.Digest, desc.MediaType)
		return unknown
	}
	// Accept is not consulted: the stored bytes are the only representation
	// there is (converting would change the digest), so a client that
	// accepts only Docker types still gets an OCI manifest, labelled as
	// such, and decides for itself. distribution/distribution (registry:2
	// and 3) answers 404 MANIFEST_UNKNOWN instead when Accept lacks the OCI
	// type, even without any Accept; that breaks old clients for no gain
	// here, since nothing can be converted.
	cache := "private, no-transform"
	if !byDigest {
		cache = "private, no-cache, no-transform" // a tag can move
	}
	return v.serveBlob(w, r, desc, desc.MediaType, cache, unknown)
}

func (v *registryView) blob(w http.ResponseWriter, r *http.Request) error {
	vars := mux.Vars(r)
	name := vars["name"]
	d, err := digest.Parse(vars["digest"])
	if err != nil {
		return errInternal(err) // the route admits only sha256 digests
	}
	unknown := errBlobUnknown(name, d)
	desc, err := v.catalog.Lookup(r.Context(), name, d)
	if err != nil {
		return catalogError(err, name, unknown)
	}
	if desc.Digest != d {
		return errInternal(fmt.Errorf("catalog answered %s for blob %s", desc.Digest, d))
	}
	// octet-stream, whatever the blob: claircore sniffs the compression
	// behind it, and no client needs more.
	return v.serveBlob(w, r, desc, "application/octet-stream", "private, no-transform", unknown)
}

// serveBlob sends the stored blob of desc with ServeContent, which handles
// HEAD, Range and If-None-Match against the ETag. missing is returned when
// the catalog knows the blob but the store does not have it (an index of the
// containerd image store lists children that were never exported).
func (v *registryView) serveBlob(w http.ResponseWriter, r *http.Request, desc ocispec.Descriptor, contentType, cache string, missing *registryError) error {
	if err := desc.Digest.Validate(); err != nil || desc.Digest.Algorithm() != digest.SHA256 {
		return errInternal(fmt.Errorf("catalog answered unservable digest %q", desc.Digest))
	}
	blob, err := v.catalog.Blob(r.Context(), desc.Digest)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			missing.cause = err
			return missing
		}
		return errInternal(err)
	}
	defer blob.Close()
	if desc.Size > 0 && blob.Size() != desc.Size {
		return errInternal(fmt.Errorf("stored blob %s has %d bytes, descriptor says %d", desc.Digest, blob.Size(), desc.Size))
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Docker-Content-Digest", desc.Digest.String())
	h.Set("ETag", `"`+desc.Digest.String()+`"`)
	h.Set("Cache-Control", cache)
	h.Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, "", time.Time{}, blobs.ReadSeeker(blob))
	return nil
}

type tagList struct {
	Name string   `json:"name"`
	Tags []string `json:"tags"`
}

// tags answers tags/list in ASCII order, with the spec's pagination: n
// limits the page (0 gives an empty list and no Link), last starts after
// that tag, and a Link header with rel="next" points at the next page while
// there is one.
func (v *registryView) tags(w http.ResponseWriter, r *http.Request) error {
	name := mux.Vars(r)["name"]
	q := r.URL.Query()
	last := q.Get("last")
	n := -1
	if s, ok := q["n"]; ok {
		var err error
		if n, err = strconv.Atoi(s[0]); err != nil || n < 0 {
			return &registryError{
				status: http.StatusBadRequest, code: "PAGINATION_NUMBER_INVALID",
				message: "invalid number of results requested", detail: map[string]string{"n": s[0]},
			}
		}
	}
	all, err := v.catalog.Tags(r.Context(), name)
	if err != nil {
		return catalogError(err, name, errNameUnknown(name))
	}
	all = slices.Clone(all)
	slices.Sort(all)
	all = slices.Compact(all)
	// The page starts after last, whether or not last is still a tag.
	start, found := slices.BinarySearch(all, last)
	if found {
		start++
	}
	rest := all[start:]
	page := rest
	if n >= 0 {
		page = rest[:min(n, maxTagsPage, len(rest))]
	}
	if n > 0 && len(page) < len(rest) {
		u, err := v.server.router.Get(RouteRegistryTags).URLPath("name", name)
		if err != nil {
			return errInternal(fmt.Errorf("build next page url: %w", err))
		}
		u.RawQuery = url.Values{"n": {strconv.Itoa(n)}, "last": {page[len(page)-1]}}.Encode()
		w.Header().Set("Link", "<"+u.String()+`>; rel="next"`)
	}
	body, err := json.Marshal(tagList{Name: name, Tags: append([]string{}, page...)})
	if err != nil {
		return errInternal(err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
	return nil
}

// catalogError maps a Catalog error to the spec's: unknown is the answer
// for ErrNotInRepository.
func catalogError(err error, name string, unknown *registryError) error {
	switch {
	case errors.Is(err, ErrRepositoryUnknown):
		e := errNameUnknown(name)
		e.cause = err
		return e
	case errors.Is(err, ErrNotInRepository):
		unknown.cause = err
		return unknown
	default:
		return errInternal(err)
	}
}

// registryError is a failed registry request: the status and the spec's
// error code, message and detail that the client sees, and the cause that
// only the log sees.
type registryError struct {
	status  int
	code    string
	message string
	detail  any
	cause   error
	allow   string // the Allow header of a 405
}

func (e *registryError) Error() string {
	if e.cause != nil {
		return fmt.Sprintf("%s: %v", e.code, e.cause)
	}
	return e.code
}

func (e *registryError) Unwrap() error { return e.cause }

func errNameUnknown(name string) *registryError {
	return &registryError{
		status: http.StatusNotFound, code: "NAME_UNKNOWN",
		message: "repository name not known to registry", detail: map[string]string{"name": name},
	}
}

func errManifestUnknown(name, ref string) *registryError {
	return &registryError{
		status: http.StatusNotFound, code: "MANIFEST_UNKNOWN",
		message: "manifest unknown", detail: map[string]string{"name": name, "reference": ref},
	}
}

func errBlobUnknown(name string, d digest.Digest) *registryError {
	return &registryError{
		status: http.StatusNotFound, code: "BLOB_UNKNOWN",
		message: "blob unknown to registry", detail: map[string]string{"name": name, "digest": d.String()},
	}
}

// errUnsupported refuses a write; allow lists the methods the path does
// answer (empty for upload sessions, which answer none).
func errUnsupported(method, allow string) *registryError {
	return &registryError{
		status: http.StatusMethodNotAllowed, code: "UNSUPPORTED",
		message: "the registry view is read-only", cause: fmt.Errorf("%s refused", method),
		allow: allow,
	}
}

func errUnauthorized(cause error) *registryError {
	return &registryError{
		status: http.StatusUnauthorized, code: "UNAUTHORIZED",
		message: "authentication required", cause: cause,
	}
}

func errDenied(cause error) *registryError {
	return &registryError{
		status: http.StatusForbidden, code: "DENIED",
		message: "no token is configured, so only loopback clients may pull", cause: cause,
	}
}

// errInternal hides err from the client: it may name files of the store.
func errInternal(err error) *registryError {
	return &registryError{
		status: http.StatusInternalServerError, code: "UNKNOWN",
		message: "internal error", cause: err,
	}
}

type errorBody struct {
	Errors []errorEntry `json:"errors"`
}

type errorEntry struct {
	Code    string `json:"code"`
	Message string `json:"message,omitempty"`
	Detail  any    `json:"detail,omitempty"`
}

// writeRegistryError writes err as {"errors":[{"code","message","detail"}]}
// with its status; an error that is not a *registryError is a 500. A HEAD
// gets the headers only.
func writeRegistryError(w http.ResponseWriter, r *http.Request, err error) {
	var re *registryError
	if !errors.As(err, &re) {
		re = errInternal(err)
	}
	body, merr := json.Marshal(errorBody{Errors: []errorEntry{{Code: re.code, Message: re.message, Detail: re.detail}}})
	if merr != nil {
		body = []byte(`{"errors":[{"code":"UNKNOWN"}]}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Content-Type-Options", "nosniff")
	switch re.status {
	case http.StatusUnauthorized:
		h.Set("WWW-Authenticate", `Basic realm="layerbridge"`)
	case http.StatusMethodNotAllowed:
		h.Set("Allow", re.allow)
	}
	w.WriteHeader(re.status)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}
