// Package fakeclair provides test doubles of Clair 4.9 and Clair v2.1.7 that
// answer with the responses recorded from the real servers
// (../../testdata/clair-samples) and, like the real ones, download every layer
// they are given: Clair 4 re-hashes it against the manifest and checks its
// Content-Type; Clair 2 only needs a 2xx.
//
// For tests only (the scan package's and the CLI's).
package fakeclair

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/layerbridge/layerbridge/internal/httprec"
)

// recorded loads a recording, or answers 500 with the reason when it cannot.
func recorded(samples, name string) http.Handler {
	r, err := httprec.Load(filepath.Join(samples, name))
	if err != nil {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "fakeclair: "+err.Error(), 500)
		})
	}
	return r
}

func recordedBody(samples, name string) (httprec.Response, error) {
	return httprec.Load(filepath.Join(samples, name))
}

// download fetches a layer the way Clair does: a plain GET with the given
// headers, only 200 accepted, the body hashed against the expected digest.
// It returns Clair's error text, or "" on success.
func download(uri string, headers http.Header, want digest.Digest, checkType bool) string {
	req, err := http.NewRequest("GET", uri, nil)
	if err != nil {
		return err.Error()
	}
	req.Header = headers.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Sprintf("unexpected status code: %q for %q", resp.Status, uri)
	}
	if checkType {
		ct := resp.Header.Get("Content-Type")
		ok := ct == "application/octet-stream" || strings.HasSuffix(ct, ".tar") || strings.HasSuffix(ct, "+gzip") || strings.HasSuffix(ct, "+zstd")
		if !ok || resp.Header.Get("Content-Encoding") != "" {
			return fmt.Sprintf("fetcher: unknown content-type %q", ct)
		}
	}
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		return err.Error()
	}
	if got := digest.NewDigest(digest.SHA256, h); want != "" && got != want {
		return fmt.Sprintf("fetcher: validation failed: got %q, expected %q", got.Encoded(), want.Encoded())
	}
	return ""
}

// V4 answers like Clair 4.9 (from the recordings) and, like Clair, really
// downloads every layer of a posted manifest and re-hashes it.
type V4 struct {
	Samples string // the clair-samples directory
	PSK     []byte // when set, requests need a valid HS256 token
	EmptyDB bool   // no update operation: a never-updated database
	// IndexError, when set, makes every index fail after the layers were
	// downloaded, with this error (a scanner's, such as rhel's "unable to
	// create a mappingFile object"), as Clair 4.9 fails: 500 "failed to
	// start scan: <error>", and the stored index report in state
	// IndexError with the error.
	IndexError string

	mu          sync.Mutex
	downloads   int
	completed   []digest.Digest
	indexPosts  int
	reportCalls int
	reports     map[digest.Digest]string // index reports by manifest: "" finished, else the error
}

// Downloads is the number of layer downloads attempted so far.
func (f *V4) Downloads() int { f.mu.Lock(); defer f.mu.Unlock(); return f.downloads }

// Completed lists the layers downloaded whole with the right digest, in
// the order their downloads ended.
func (f *V4) Completed() []digest.Digest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]digest.Digest(nil), f.completed...)
}

// IndexPosts is the number of index requests that passed authentication.
func (f *V4) IndexPosts() int { f.mu.Lock(); defer f.mu.Unlock(); return f.indexPosts }

const recordedManifest = "sha256:b405b26c31194489ba0b8cb27061fe75a963223bf924dd3998c975ac6fef347a"

// recordedLayer is the name the Clair 2 recordings posted the layer under
// (its digest): the report names it as Name and as every feature's AddedBy.
const recordedLayer = "sha256:beee9f30bc1f711043e78d4a2be0668955d4b761d587d6f60c2c8dc081efb203"

func (f *V4) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.PSK != nil && !validToken(r, f.PSK) {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	switch {
	case r.Method == "GET" && r.URL.Path == "/indexer/api/v1/index_state":
		recorded(f.Samples, "v4.9/GET-index_state.http").ServeHTTP(w, r)
	case r.Method == "GET" && r.URL.Path == "/matcher/api/v1/internal/update_operation":
		w.Header().Set("Content-Type", "application/json")
		if f.EmptyDB {
			io.WriteString(w, `{}`)
			return
		}
		io.WriteString(w, `{"alpine-main-v3.11-updater":[{"ref":"0b8a6a5e-2c6b-4d1f-8a1e-3d8b1a0c9e11","updater":"alpine-main-v3.11-updater","fingerprint":"x","date":"2026-11-24T10:00:00Z","kind":""}]}`)
	case r.Method == "POST" && r.URL.Path == "/indexer/api/v1/index_report":
		f.index(w, r)
	case r.Method == "GET" && strings.HasPrefix(r.URL.Path, "/indexer/api/v1/index_report/"):
		f.indexReport(w, r, digest.Digest(strings.TrimPrefix(r.URL.Path, "/indexer/api/v1/index_report/")))
	case r.Method == "GET" && strings.HasPrefix(r.URL.Path, "/matcher/api/v1/vulnerability_report/"):
		f.mu.Lock()
		f.reportCalls++
		f.mu.Unlock()
		d := strings.TrimPrefix(r.URL.Path, "/matcher/api/v1/vulnerability_report/")
		rec, err := recordedBody(f.Samples, "v4.9/GET-vulnerability_report.http")
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		rec.Body = []byte(strings.ReplaceAll(string(rec.Body), recordedManifest, d))
		rec.ServeHTTP(w, r)
	default:
		recorded(f.Samples, "v4.9/POST-v1-layers-on-clair4.http").ServeHTTP(w, r)
	}
}

func (f *V4) index(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.indexPosts++
	f.mu.Unlock()
	var m struct {
		Hash   digest.Digest `json:"hash"`
		Layers []struct {
			Hash    digest.Digest       `json:"hash"`
			URI     string              `json:"uri"`
			Headers map[string][]string `json:"headers"`
		} `json:"layers"`
	}
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil || m.Hash == "" || len(m.Layers) == 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(400)
		io.WriteString(w, `{"code":"bad-request","message":"bogus manifest"}`)
		return
	}
	var errs []string
	for _, l := range m.Layers {
		f.mu.Lock()
		f.downloads++
		f.mu.Unlock()
		if e := download(l.URI, l.Headers, l.Hash, true); e != "" {
			errs = append(errs, e)
		} else {
			f.mu.Lock()
			f.completed = append(f.completed, l.Hash)
			f.mu.Unlock()
		}
	}
	fail := ""
	switch {
	case len(errs) > 0:
		fail = "failed to fetch layers: fetcher: encountered errors: " + strings.Join(errs, "; ")
	case f.IndexError != "":
		fail = f.IndexError
	}
	f.mu.Lock()
	if f.reports == nil {
		f.reports = map[digest.Digest]string{}
	}
	f.reports[m.Hash] = fail
	f.mu.Unlock()
	if fail != "" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(500)
		msg, _ := json.Marshal("failed to start scan: " + fail)
		fmt.Fprintf(w, `{"code":"internal-error","message":%s}`, msg)
		return
	}
	rec, err := recordedBody(f.Samples, "v4.9/POST-index_report.http")
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	rec.Body = []byte(strings.ReplaceAll(string(rec.Body), recordedManifest, m.Hash.String()))
	rec.ServeHTTP(w, r)
}

// indexReport answers GET /indexer/api/v1/index_report/<d> from the
// recordings: the finished report, the failed one (state IndexError, the
// error, no contents), or the 404 of an unknown manifest.
func (f *V4) indexReport(w http.ResponseWriter, r *http.Request, d digest.Digest) {
	f.mu.Lock()
	fail, known := f.reports[d]
	f.mu.Unlock()
	if !known {
		rec, err := recordedBody(f.Samples, "v4.9/GET-vulnerability_report-unknown.http")
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		rec.Body = []byte(strings.ReplaceAll(string(rec.Body), "sha256:"+strings.Repeat("0", 64), d.String()))
		rec.ServeHTTP(w, r)
		return
	}
	rec, err := recordedBody(f.Samples, "v4.9/GET-index_report.http")
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	rec.Body = []byte(strings.ReplaceAll(string(rec.Body), recordedManifest, d.String()))
	if fail != "" {
		var report map[string]any
		if err := json.Unmarshal(rec.Body, &report); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		for _, k := range []string{"packages", "distributions", "repository", "environments"} {
			report[k] = map[string]any{}
		}
		report["state"], report["success"], report["err"] = "IndexError", false, fail
		rec.Body, _ = json.Marshal(report)
	}
	rec.ServeHTTP(w, r)
}

// validToken checks a PSK token as Clair's auth.psk does (HS256 over the
// decoded key, "Bearer " case-sensitive, issuer "layerbridge" or
// "clair-intraservice").
func validToken(r *http.Request, key []byte) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return false
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, mac.Sum(nil)) {
		return false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return false
	}
	var claims struct {
		Iss string `json:"iss"`
	}
	return json.Unmarshal(payload, &claims) == nil && (claims.Iss == "layerbridge" || claims.Iss == "clair-intraservice")
}

// V2 answers like Clair v2.1.7 (from the recordings) and downloads each
// posted layer from its Path.
type V2 struct {
	Samples string // the clair-samples directory
	// AnalysisError, when set, makes every posted layer fail after it was
	// downloaded, with this error, as Clair 2 answers a layer its workers
	// cannot process: 500 and the error in its envelope.
	AnalysisError string

	mu     sync.Mutex
	layers map[string]string // name -> parent
	posted []string
}

// Posted returns the names of the layers Clair accepted, in order, and the
// parent each was posted with.
func (f *V2) Posted() (names []string, parents map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	parents = make(map[string]string, len(f.layers))
	for k, v := range f.layers {
		parents[k] = v
	}
	return append([]string(nil), f.posted...), parents
}

func (f *V2) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == "GET" && r.URL.Path == "/v1/namespaces":
		recorded(f.Samples, "v2.1.7/GET-v1-namespaces.http").ServeHTTP(w, r)
	case r.Method == "GET" && strings.HasPrefix(r.URL.Path, "/v1/namespaces/") && strings.HasSuffix(r.URL.Path, "/vulnerabilities"):
		w.Header().Set("Content-Type", "application/json;charset=utf-8")
		io.WriteString(w, `{"Vulnerabilities":[{"Name":"CVE-2021-30139","NamespaceName":"alpine:v3.11","Severity":"Unknown"}],"NextPage":""}`)
	case r.Method == "POST" && r.URL.Path == "/v1/layers":
		var body struct {
			Layer struct {
				Name, Path, ParentName, Format string
				Headers                        map[string]string
			}
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		l := body.Layer
		f.mu.Lock()
		_, parentKnown := f.layers[l.ParentName]
		f.mu.Unlock()
		if l.ParentName != "" && !parentKnown {
			w.Header().Set("Content-Type", "application/json;charset=utf-8")
			w.WriteHeader(400)
			io.WriteString(w, `{"Error":{"Message":"worker: parent layer is unknown, it must be processed first"}}`)
			return
		}
		h := http.Header{}
		for k, v := range l.Headers {
			h.Set(k, v)
		}
		// Clair v2 checks no digest; any download failure is "could not find layer".
		if e := download(l.Path, h, "", false); e != "" {
			recorded(f.Samples, "v2.1.7/POST-v1-layers-layer-404.http").ServeHTTP(w, r)
			return
		}
		if f.AnalysisError != "" {
			rec, err := recordedBody(f.Samples, "v2.1.7/POST-v1-layers-layer-404.http")
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			rec.Status = 500
			rec.Body, _ = json.Marshal(map[string]any{"Error": map[string]string{"Message": f.AnalysisError}})
			rec.ServeHTTP(w, r)
			return
		}
		f.mu.Lock()
		if f.layers == nil {
			f.layers = map[string]string{}
		}
		f.layers[l.Name] = l.ParentName
		f.posted = append(f.posted, l.Name)
		f.mu.Unlock()
		recorded(f.Samples, "v2.1.7/POST-v1-layers.http").ServeHTTP(w, r)
	case r.Method == "GET" && strings.HasPrefix(r.URL.Path, "/v1/layers/"):
		name := strings.TrimPrefix(r.URL.Path, "/v1/layers/")
		f.mu.Lock()
		_, ok := f.layers[name]
		base := name
		if len(f.posted) > 0 {
			base = f.posted[0]
		}
		f.mu.Unlock()
		if !ok {
			recorded(f.Samples, "v2.1.7/GET-v1-layers-unknown.http").ServeHTTP(w, r)
			return
		}
		rec, err := recordedBody(f.Samples, "v2.1.7/GET-v1-layers-features-vulnerabilities.http")
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		// Like Clair: the report is named as asked, and its features were
		// added by the first layer posted, under the name it was posted with.
		body := strings.Replace(string(rec.Body), `{"Layer":{"Name":"`+recordedLayer+`"`, `{"Layer":{"Name":"`+name+`"`, 1)
		rec.Body = []byte(strings.ReplaceAll(body, recordedLayer, base))
		rec.ServeHTTP(w, r)
	default:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(404)
		io.WriteString(w, "404 page not found\n")
	}
}
