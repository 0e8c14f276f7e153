package layering

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/layerbridge/layerbridge"

// rule is what one product package may import, directly (non-test files).
type rule struct {
	project    []string // packages of this module, relative to its root
	thirdParty []string // module path prefixes outside the standard library; nil means any
	env        bool     // may read the environment and use flags (only the CLI)
	// testSupport: a package that only tests import (no rule lists it),
	// which may read the environment (a helper process's settings).
	testSupport bool
}

// rules is the dependency direction (see doc.go). Every package of the
// module must have a row: a new package is a decision to write down here.
var rules = map[string]rule{
	"blobs":               {thirdParty: []string{"github.com/opencontainers/go-digest"}},
	"imageref":            {thirdParty: []string{"github.com/distribution/reference", "github.com/opencontainers/go-digest"}},
	"report":              {project: []string{"imageref"}, thirdParty: []string{"go.yaml.in/yaml/v3", "github.com/CycloneDX/cyclonedx-go", "github.com/package-url/packageurl-go", "github.com/distribution/reference"}},
	"clairv4":             {project: []string{"internal/clairhttp", "report"}, thirdParty: []string{"github.com/opencontainers/go-digest"}},
	"clairv2":             {project: []string{"internal/clairhttp", "report"}, thirdParty: []string{"github.com/opencontainers/go-digest"}},
	"engine":              {},
	"reach":               {project: []string{"engine", "internal/didyoumean"}},
	"dockersave":          {project: []string{"blobs", "engine", "imageref", "internal/directio", "internal/mediatype", "platforms", "store"}},
	"bridge":              {project: []string{"blobs", "internal/mediatype"}},
	"containerdsource":    {project: []string{"blobs", "dockersave", "imageref", "internal/mediatype", "platforms", "store"}, thirdParty: []string{"github.com/containerd/", "github.com/distribution/reference", "github.com/opencontainers/"}},
	"scan":                {project: []string{"blobs", "bridge", "clairv2", "clairv4", "dockersave", "imageref", "platforms", "report"}},
	"sidecar":             {project: []string{"blobs", "bridge", "clairv2", "clairv4", "containerdsource", "dockersave", "engine", "imageref", "platforms", "report", "scan", "store"}},
	"doctor":              {project: []string{"blobs", "bridge", "clairv2", "clairv4", "containerdsource", "dockersave", "engine", "imageref", "platforms", "reach", "scan"}},
	"cmd/layerbridge":     {project: []string{"bridge", "clairv2", "clairv4", "containerdsource", "dockersave", "doctor", "engine", "imageref", "internal/didyoumean", "platforms", "reach", "report", "scan", "sidecar", "store"}, env: true},
	"internal/clairhttp":  {thirdParty: []string{}},
	"internal/httprec":    {thirdParty: []string{}},
	"internal/fakeengine": {thirdParty: []string{}},
	"internal/fakeclair":  {project: []string{"internal/httprec"}, thirdParty: []string{"github.com/opencontainers/go-digest"}},
	"internal/layering":   {thirdParty: []string{}},
	"internal/testwait":   {thirdParty: []string{}},
	"internal/fulldisk":   {project: []string{"internal/testwait"}, thirdParty: []string{"golang.org/x/sys"}, testSupport: true},
	"internal/didyoumean": {thirdParty: []string{}},
	"internal/mediatype":  {thirdParty: []string{"github.com/opencontainers/image-spec"}},
	"platforms":           {thirdParty: []string{"github.com/opencontainers/image-spec"}},
	"internal/directio":   {thirdParty: []string{"golang.org/x/sys"}},
	"store":               {project: []string{"blobs", "platforms"}},
}

// never lists, for a package, the packages it must not depend on even
// indirectly (through any chain of imports).
var never = map[string][]string{
	"report":           {"bridge", "clairv2", "clairv4", "dockersave", "engine", "reach", "store"},
	"clairv4":          {"bridge", "clairv2", "dockersave", "engine", "reach", "store"},
	"clairv2":          {"bridge", "clairv4", "dockersave", "engine", "reach", "store"},
	"bridge":           {"clairv2", "clairv4", "dockersave", "engine", "reach", "report", "store"},
	"blobs":            {"bridge", "clairv2", "clairv4", "dockersave", "engine", "reach", "report", "store"},
	"store":            {"bridge", "clairv2", "clairv4", "dockersave", "engine", "reach", "report"},
	"engine":           {"bridge", "clairv2", "clairv4", "dockersave", "reach", "report", "store"},
	"reach":            {"bridge", "clairv2", "clairv4", "dockersave", "report", "store"},
	"dockersave":       {"clairv2", "clairv4", "containerdsource", "reach", "report", "scan", "sidecar", "doctor"},
	"containerdsource": {"bridge", "clairv2", "clairv4", "reach", "report", "scan", "sidecar", "doctor"},
}

type pkg struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	Imports    []string
	Deps       []string
}

func TestDependencyRules(t *testing.T) {
	cmd := exec.Command("go", "list", "-json", module+"/...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	seen := map[string]bool{}
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		seen[rel] = true
		r, ok := rules[rel]
		if !ok {
			t.Errorf("package %s has no dependency rule: add it to rules", rel)
			continue
		}
		for _, imp := range p.Imports {
			switch {
			case strings.HasPrefix(imp, module+"/"):
				if dep := strings.TrimPrefix(imp, module+"/"); !slices.Contains(r.project, dep) {
					t.Errorf("%s imports %s, which its rule does not allow", rel, dep)
				}
			case !strings.Contains(strings.SplitN(imp, "/", 2)[0], "."):
				if (imp == "flag") && !r.env {
					t.Errorf("%s imports flag: only cmd/layerbridge parses flags", rel)
				}
			default:
				if strings.Contains(imp, "pflag") && !r.env {
					t.Errorf("%s imports %s: only cmd/layerbridge parses flags", rel, imp)
				}
				if r.thirdParty != nil && !slices.ContainsFunc(r.thirdParty, func(prefix string) bool { return strings.HasPrefix(imp, prefix) }) {
					t.Errorf("%s imports %s: only %v outside the standard library", rel, imp, r.thirdParty)
				}
			}
		}
		for _, dep := range p.Deps {
			if d, ok := strings.CutPrefix(dep, module+"/"); ok && slices.Contains(never[rel], d) {
				t.Errorf("%s depends on %s (indirectly), which it must never do", rel, d)
			}
		}
		if r.env || r.testSupport {
			continue
		}
		for _, f := range p.GoFiles {
			src, err := os.ReadFile(filepath.Join(p.Dir, f))
			if err != nil {
				t.Fatal(err)
			}
			for _, banned := range []string{"os.Getenv(", "os.LookupEnv(", "os.Environ(", "client.FromEnv", "os.Exit(", "log.Fatal", "os.Stdout", "os.Stderr", "fmt.Print"} {
				if strings.Contains(string(src), banned) {
					t.Errorf("%s/%s uses %s: libraries take their inputs as parameters and return errors", rel, f, banned)
				}
			}
		}
	}
	for rel := range rules {
		if !seen[rel] {
			t.Errorf("rule for %s, which is not a package any more", rel)
		}
	}
	for rel := range never {
		if !seen[rel] {
			t.Errorf("never rule for %s, which is not a package any more", rel)
		}
	}
}
