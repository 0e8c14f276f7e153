package clairv2standin

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
)

// indexedByVersion is Clair v2's engine version, reported on every layer.
const indexedByVersion = 3

// maxBodySize is Clair v2's limit on a request body.
const maxBodySize = 1 << 20

// apiError is an error with the status Clair v2 answers it with; its
// message is the body's Error.Message.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(msg string) *apiError { return &apiError{http.StatusBadRequest, msg} }

// The errors Clair v2.1.7 answers with, verbatim.
var (
	errCouldNotFindLayer = badRequest("could not find layer")
	errParentUnknown     = badRequest("worker: parent layer is unknown, it must be processed first")
	errNoLayer           = badRequest("failed to provide layer")
	errNoName            = badRequest("could not process a layer which does not have a name")
	errNoPath            = badRequest("could not process a layer which does not have a path")
	errNoFormat          = badRequest("could not process a layer which does not have a format")
	errCouldNotExtract   = &apiError{http.StatusUnprocessableEntity, "tarutil: could not extract the archive"}
	errFileTooBig        = &apiError{http.StatusUnprocessableEntity, "tarutil: could not extract one or more files from the archive: file too big"}
	errUnsupported       = &apiError{http.StatusUnprocessableEntity, "worker: OS and/or package manager are not supported"}
	errNotFound          = &apiError{http.StatusNotFound, "the resource cannot be found"}
)

// Wire types: the JSON of Clair v2's api/v1 models (field names as sent).
type (
	wireLayerEnvelope struct {
		Layer *wireLayer `json:"Layer,omitempty"`
		Error *wireError `json:"Error,omitempty"`
	}
	wireLayer struct {
		Name             string            `json:"Name,omitempty"`
		NamespaceName    string            `json:"NamespaceName,omitempty"`
		Path             string            `json:"Path,omitempty"`
		Headers          map[string]string `json:"Headers,omitempty"`
		ParentName       string            `json:"ParentName,omitempty"`
		Format           string            `json:"Format,omitempty"`
		IndexedByVersion int               `json:"IndexedByVersion,omitempty"`
		Features         []wireFeature     `json:"Features,omitempty"`
	}
	wireFeature struct {
		Name            string              `json:"Name,omitempty"`
		NamespaceName   string              `json:"NamespaceName,omitempty"`
		VersionFormat   string              `json:"VersionFormat,omitempty"`
		Version         string              `json:"Version,omitempty"`
		Vulnerabilities []wireVulnerability `json:"Vulnerabilities,omitempty"`
		AddedBy         string              `json:"AddedBy,omitempty"`
	}
	wireVulnerability struct {
		Name          string `json:"Name,omitempty"`
		NamespaceName string `json:"NamespaceName,omitempty"`
		Description   string `json:"Description,omitempty"`
		Link          string `json:"Link,omitempty"`
		Severity      string `json:"Severity,omitempty"`
		FixedBy       string `json:"FixedBy,omitempty"`
	}
	wireNamespace struct {
		Name          string `json:"Name,omitempty"`
		VersionFormat string `json:"VersionFormat,omitempty"`
	}
	wireNamespacesEnvelope struct {
		Namespaces []wireNamespace `json:"Namespaces"`
	}
	wireError struct {
		Message string `json:"Message,omitempty"`
	}
)

// feature is one installed package version of a layer.
type feature struct {
	name, version, namespace string
}

// layer is what the stand-in keeps of a processed layer: like Clair v2, its
// own features if its apk database lists any, else its parent's.
type layer struct {
	name, parent string
	namespace    string
	features     []feature
}

// Server is the Clair v2.1.7 stand-in. Its zero value is not usable; build
// it with New. It keeps processed layers in memory for its whole life and is
// safe for concurrent use.
type Server struct {
	adv    advisories
	client *http.Client
	log    *slog.Logger
	mux    *http.ServeMux

	mu     sync.Mutex
	layers map[string]*layer
}

// Option configures a Server.
type Option func(*Server)

// WithHTTPClient sets the client layers are downloaded with. The default is
// like Clair v2's: a fresh transport honouring HTTP(S)_PROXY, TLS
// certificates verified, no timeout (a download ends with the request's
// context).
func WithHTTPClient(c *http.Client) Option { return func(s *Server) { s.client = c } }

// WithLogger sets where download failures and request errors are logged.
// The default discards them.
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// New loads the Alpine SecDB feed (a tree with vX.Y/main.yaml files, such as
// os.DirFS("../../testdata/secdb")) and returns a stand-in with no layers. The
// feed is read once: later changes to it are not seen.
func New(feed fs.FS, opts ...Option) (*Server, error) {
	adv, err := loadFeed(feed)
	if err != nil {
		return nil, fmt.Errorf("clair v2 stand-in: %w", err)
	}
	s := &Server{
		adv:    adv,
		client: &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment}},
		log:    slog.New(slog.DiscardHandler),
		layers: map[string]*layer{},
	}
	for _, o := range opts {
		o(s)
	}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("POST /v1/layers", s.postLayer)
	s.mux.HandleFunc("GET /v1/layers/{name}", s.getLayer)
	s.mux.HandleFunc("DELETE /v1/layers/{name}", s.deleteLayer)
	s.mux.HandleFunc("GET /v1/namespaces", s.getNamespaces)
	return s, nil
}

// ServeHTTP serves POST /v1/layers, GET and DELETE /v1/layers/{name} and
// GET /v1/namespaces; any other path is a plain-text 404.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *Server) postLayer(w http.ResponseWriter, r *http.Request) {
	var env wireLayerEnvelope
	if err := json.NewDecoder(io.LimitReader(r.Body, maxBodySize)).Decode(&env); err != nil {
		s.writeError(w, r, badRequest(err.Error()))
		return
	}
	l := env.Layer
	if l == nil {
		s.writeError(w, r, errNoLayer)
		return
	}
	if err := s.process(r, l); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusCreated, wireLayerEnvelope{Layer: &wireLayer{
		Name:             l.Name,
		ParentName:       l.ParentName,
		Path:             l.Path,
		Headers:          l.Headers,
		Format:           l.Format,
		IndexedByVersion: indexedByVersion,
	}})
}

// process is Clair v2's ProcessLayer: validate, skip a known layer, require
// a known parent, download and read the layer, inherit from the parent.
func (s *Server) process(r *http.Request, req *wireLayer) error {
	switch {
	case req.Name == "":
		return errNoName
	case req.Path == "":
		return errNoPath
	case req.Format == "":
		return errNoFormat
	}
	s.mu.Lock()
	_, known := s.layers[req.Name]
	parent, parentKnown := s.layers[req.ParentName]
	s.mu.Unlock()
	if known {
		return nil
	}
	if req.ParentName != "" && !parentKnown {
		return errParentUnknown
	}
	body, err := s.open(r.Context(), req.Path, req.Headers)
	if err != nil {
		return err
	}
	defer body.Close()
	if f := strings.ToLower(req.Format); f != "docker" && f != "aci" {
		return badRequest(fmt.Sprintf("unsupported image format '%s'", req.Format))
	}
	files, err := extractFiles(body)
	if err != nil {
		return err
	}
	l := &layer{name: req.Name, parent: req.ParentName, namespace: detectNamespace(files)}
	if l.namespace == "" && parent != nil {
		l.namespace = parent.namespace
	}
	l.features = listFeatures(files)
	switch {
	case len(l.features) == 0 && parent != nil:
		l.features = parent.features
	case len(l.features) > 0 && l.namespace == "":
		return errUnsupported
	default:
		for i := range l.features {
			l.features[i].namespace = l.namespace
		}
	}
	s.mu.Lock()
	s.layers[l.name] = l
	s.mu.Unlock()
	return nil
}

func (s *Server) getLayer(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	_, withFeatures := q["features"]
	_, withVulns := q["vulnerabilities"]

	s.mu.Lock()
	l, ok := s.layers[r.PathValue("name")]
	var chain []*layer
	for p := l; p != nil; p = s.layers[p.parent] {
		chain = append(chain, p)
	}
	s.mu.Unlock()
	if !ok {
		s.writeError(w, r, errNotFound)
		return
	}
	out := &wireLayer{
		Name:             l.name,
		NamespaceName:    l.namespace,
		ParentName:       l.parent,
		IndexedByVersion: indexedByVersion,
	}
	if withFeatures || withVulns {
		addedBy := addedBy(chain)
		for _, f := range l.features {
			wf := wireFeature{
				Name:          f.name,
				NamespaceName: f.namespace,
				VersionFormat: "dpkg",
				Version:       f.version,
				AddedBy:       addedBy[f],
			}
			if withVulns {
				for _, fx := range s.adv.affecting(f.namespace, f.name, f.version) {
					wf.Vulnerabilities = append(wf.Vulnerabilities, wireVulnerability{
						Name:          fx.vulnerability,
						NamespaceName: f.namespace,
						Link:          "https://cve.mitre.org/cgi-bin/cvename.cgi?name=" + fx.vulnerability,
						Severity:      "Unknown",
						FixedBy:       fx.fixed,
					})
				}
			}
			out.Features = append(out.Features, wf)
		}
	}
	writeJSON(w, r, http.StatusOK, wireLayerEnvelope{Layer: out})
}

// addedBy maps each feature of chain[0] to the layer that introduced it:
// walking from the base, a feature is added by the first layer listing it
// after a layer that did not (Clair v2's per-layer feature diff).
func addedBy(chain []*layer) map[feature]string {
	by := map[feature]string{}
	var prev map[feature]bool
	for i := len(chain) - 1; i >= 0; i-- {
		cur := map[feature]bool{}
		for _, f := range chain[i].features {
			cur[f] = true
			if !prev[f] {
				by[f] = chain[i].name
			}
		}
		prev = cur
	}
	return by
}

func (s *Server) deleteLayer(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	s.mu.Lock()
	_, ok := s.layers[name]
	if ok {
		s.deleteTree(name)
	}
	s.mu.Unlock()
	if !ok {
		s.writeError(w, r, errNotFound)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// deleteTree removes a layer and its descendants, as Clair v2's database
// cascade does. s.mu must be held.
func (s *Server) deleteTree(name string) {
	delete(s.layers, name)
	for n, l := range s.layers {
		if l.parent == name {
			s.deleteTree(n)
		}
	}
}

func (s *Server) getNamespaces(w http.ResponseWriter, r *http.Request) {
	set := map[string]bool{}
	for _, ns := range s.adv.namespaces() {
		set[ns] = true
	}
	s.mu.Lock()
	for _, l := range s.layers {
		if l.namespace != "" {
			set[l.namespace] = true
		}
	}
	s.mu.Unlock()
	names := make([]string, 0, len(set))
	for ns := range set {
		names = append(names, ns)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(names)))
	env := wireNamespacesEnvelope{Namespaces: []wireNamespace{}}
	for _, ns := range names {
		env.Namespaces = append(env.Namespaces, wireNamespace{Name: ns, VersionFormat: "dpkg"})
	}
	writeJSON(w, r, http.StatusOK, env)
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = &apiError{http.StatusInternalServerError, err.Error()}
	}
	s.log.InfoContext(r.Context(), "clair v2 stand-in error", slog.String("method", r.Method),
		slog.String("path", r.URL.Path), slog.Int("status", ae.status), slog.String("message", ae.msg))
	writeJSON(w, r, ae.status, wireLayerEnvelope{Error: &wireError{Message: ae.msg}})
}

// writeJSON writes v as Clair v2 does: its content type, "Server: clair",
// gzip when the client accepts it, and json.Encoder's trailing newline.
func writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json;charset=utf-8")
	h.Set("Server", "clair")
	var out io.Writer = w
	if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		h.Set("Content-Encoding", "gzip")
		gz := gzip.NewWriter(w)
		defer gz.Close()
		out = gz
	}
	w.WriteHeader(status)
	// The status is sent: an encoding error can only be a broken connection.
	_ = json.NewEncoder(out).Encode(v)
}
