package report_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/layerbridge/layerbridge/imageref"
	"github.com/layerbridge/layerbridge/report"
)

func loadIgnore(t *testing.T, yaml string) *report.IgnoreRules {
	t.Helper()
	rules, err := report.LoadIgnore(strings.NewReader(yaml))
	if err != nil {
		t.Fatalf("LoadIgnore: %v", err)
	}
	return rules
}

func date(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

func TestLoadIgnoreShapes(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []report.IgnoreRule
	}{
		{"empty file", "", nil},
		{"only a comment", "# nothing ignored yet\n", nil},
		{"empty ignore list", "ignore:\n", nil},
		{
			name: "plain ids",
			yaml: "ignore:\n  - CVE-2021-3449\n  - CVE-2020-1967\n",
			want: []report.IgnoreRule{{ID: "CVE-2021-3449", Line: 2}, {ID: "CVE-2020-1967", Line: 3}},
		},
		{
			name: "top-level list",
			yaml: "- CVE-2021-3449\n- id: CVE-2020-1967\n  package: libssl1.1\n",
			want: []report.IgnoreRule{{ID: "CVE-2021-3449", Line: 1}, {ID: "CVE-2020-1967", Package: "libssl1.1", Line: 2}},
		},
		{
			name: "objects and strings mixed",
			yaml: `ignore:
  - CVE-2021-3449
  - id: CVE-2020-28928
    package: musl
    expires: 2027-01-31
    reason: "not reachable: no DNS resolver in this image"
  - id: CVE-2021-23840
    image: registry.example:5000/team/app
    expires: 2026-05-01T12:30:00+02:00
    reason: >
      folded
      reason
`,
			want: []report.IgnoreRule{
				{ID: "CVE-2021-3449", Line: 2},
				{ID: "CVE-2020-28928", Package: "musl", Expires: date(2027, 1, 31), Reason: "not reachable: no DNS resolver in this image", Line: 3},
				{ID: "CVE-2021-23840", Image: "registry.example:5000/team/app", Expires: time.Date(2026, 5, 1, 10, 30, 0, 0, time.UTC), Reason: "folded reason", Line: 7},
			},
		},
		{
			name: "VEX state and justification",
			yaml: `ignore:
  - id: CVE-1
    vex-justification: code_not_reachable
  - id: CVE-2
    vex-state: not_affected
    vex-justification: requires_environment
  - id: CVE-3
    vex-state: exploitable
`,
			want: []report.IgnoreRule{
				{ID: "CVE-1", VEXJustification: "code_not_reachable", Line: 2},
				{ID: "CVE-2", VEXState: "not_affected", VEXJustification: "requires_environment", Line: 4},
				{ID: "CVE-3", VEXState: "exploitable", Line: 7},
			},
		},
		{
			name: "clair-scanner whitelist",
			yaml: `generalwhitelist:
  CVE-2017-6055: XML
  CVE-2017-5969:
images:
  ubuntu:
    CVE-2017-5230: Java
`,
			want: []report.IgnoreRule{
				{ID: "CVE-2017-6055", Reason: "XML", Line: 2},
				{ID: "CVE-2017-5969", Line: 3},
				{ID: "CVE-2017-5230", Image: "ubuntu", Reason: "Java", Line: 6},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := loadIgnore(t, tt.yaml).Rules
			if len(got) != len(tt.want) {
				t.Fatalf("got %d rules %+v, want %d", len(got), got, len(tt.want))
			}
			for i := range got {
				g, w := got[i], tt.want[i]
				if !g.Expires.Equal(w.Expires) {
					t.Errorf("rule %d: Expires = %v, want %v", i, g.Expires, w.Expires)
				}
				g.Expires, w.Expires = time.Time{}, time.Time{}
				if !reflect.DeepEqual(g, w) {
					t.Errorf("rule %d = %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

func TestLoadIgnoreErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // substring of the error, naming the line
	}{
		{"unknown entry key", "ignore:\n  - id: CVE-1\n    pakage: musl\n", `line 3: unknown key "pakage"`},
		{"unknown top key", "ignore: []\nignored:\n  - CVE-1\n", `line 2: unknown key "ignored"`},
		{"tab indentation", "ignore:\n  - id: CVE-1\n\tpackage: musl\n", "line 3: invalid YAML: found a tab character that violates indentation"},
		{"bad indentation", "# rules\nignore:\n  - id: CVE-1\n   package: musl\n", "line 4: invalid YAML: did not find expected '-' indicator"},
		{"unclosed flow list", "ignore: [CVE-1, CVE-2\n", "line 1: invalid YAML: did not find expected ',' or ']'"},
		{"unclosed quote", "ignore:\n  - \"CVE-1\n  - CVE-2\n", "line 2: invalid YAML: found unexpected end of stream"},
		{"entry without id", "ignore:\n  - package: musl\n    reason: x\n", "line 2: entry without an id"},
		{"empty entry", "ignore:\n  - CVE-1\n  -\n", "line 3: empty entry"},
		{"bad date", "ignore:\n  - id: CVE-1\n    expires: next tuesday\n", `line 3: expires: "next tuesday" is not a date`},
		{"impossible date", "ignore:\n  - id: CVE-1\n    expires: 2027-02-30\n", "line 3: expires"},
		{"list as value", "ignore:\n  - id: CVE-1\n    package: [a, b]\n", "line 3: package: want a single value, got a list"},
		{"ignore not a list", "ignore: CVE-1\n", "line 1: ignore: want a list"},
		{"nested list entry", "ignore:\n  - [CVE-1]\n", "line 2: want a vulnerability id or a mapping"},
		{"repeated key", "ignore:\n  - id: CVE-1\n    id: CVE-2\n", `line 3: key "id" repeated`},
		{"scalar document", "CVE-1\n", "line 1: want a mapping with an ignore list"},
		{"alias", "base: &b CVE-1\nignore:\n  - *b\n", "line 1: unknown key \"base\""},
		{"alias entry", "- &b CVE-1\n- *b\n", "line 2: want a vulnerability id or a mapping with id, got an alias"},
		{"whitelist not a mapping", "generalwhitelist:\n  - CVE-1\n", "line 2: want a mapping of vulnerability id to reason"},
		{"images not a mapping", "images: [ubuntu]\n", "line 1: images: want a mapping"},
		{"unknown VEX state", "ignore:\n  - id: CVE-1\n    vex-state: ignored\n", `line 3: vex-state: "ignored" is not a CycloneDX analysis state (want one of not_affected, `},
		{"unknown VEX justification", "ignore:\n  - id: CVE-1\n    vex-justification: because\n", `line 3: vex-justification: "because" is not a CycloneDX justification`},
		{"justification of another state", "ignore:\n  - id: CVE-1\n    vex-state: exploitable\n    vex-justification: code_not_present\n", "line 2: vex-justification code_not_present explains a not_affected state, not exploitable"},
		{"two documents", "ignore: [CVE-1]\n---\nignore: [CVE-2]\n", "line 2: a second YAML document"},
		{"image not a reference", "- id: CVE-1\n  image: ../images\n", `line 2: image: invalid image reference "../images": it has the path component ".."`},
		{"image with capitals", "- id: CVE-1\n  image: Alpine\n", `line 2: image: invalid image reference "Alpine": the name "Alpine" has capitals`},
		{"clair-scanner image not a reference", "images:\n  alpine?:\n    CVE-1: x\n", `line 2: images: invalid image reference "alpine?"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rules, err := report.LoadIgnore(strings.NewReader(tt.yaml))
			if err == nil {
				t.Fatalf("LoadIgnore succeeded with %+v, want an error containing %q", rules, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestApply(t *testing.T) {
	now := time.Date(2026, 6, 15, 9, 0, 0, 0, time.UTC)
	const rules = `ignore:
  - CVE-ALL
  - id: CVE-MUSL
    package: musl
    reason: only musl
  - id: cve-lower
    reason: ids match ignoring case
  - id: CVE-EXPIRED
    expires: 2026-06-15
    reason: expired this very morning
  - id: CVE-FUTURE
    expires: 2026-06-16
    reason: still valid today
  - id: CVE-OTHER-IMAGE
    image: nginx
  - id: CVE-THIS-IMAGE
    image: registry.example:5000/team/app
    reason: this image
  - id: CVE-THIS-TAG
    image: registry.example:5000/team/app:1.0
  - id: CVE-OTHER-TAG
    image: registry.example:5000/team/app:2.0
generalwhitelist:
  CVE-CS: clair-scanner general
images:
  registry.example:5000/team/app:
    CVE-CS-IMAGE: clair-scanner per image
`
	tests := []struct {
		name       string
		f          report.Finding
		wantReason string // "" = not ignored
	}{
		{"bare id, any package", finding("CVE-ALL", "anything", report.High), "-"},
		{"package-limited, that package", finding("CVE-MUSL", "musl", report.High), "only musl"},
		{"package-limited, other package", finding("CVE-MUSL", "musl-utils", report.High), ""},
		{"case-insensitive id", finding("CVE-LOWER", "p", report.Low), "ids match ignoring case"},
		{"expired at midnight today", finding("CVE-EXPIRED", "p", report.Critical), ""},
		{"expires tomorrow", finding("CVE-FUTURE", "p", report.Critical), "still valid today"},
		{"other image", finding("CVE-OTHER-IMAGE", "p", report.Low), ""},
		{"this image by repository", finding("CVE-THIS-IMAGE", "p", report.Low), "this image"},
		{"this image by tag", finding("CVE-THIS-TAG", "p", report.Low), "-"},
		{"this repository, other tag", finding("CVE-OTHER-TAG", "p", report.Low), ""},
		{"clair-scanner general", finding("CVE-CS", "p", report.Low), "clair-scanner general"},
		{"clair-scanner image", finding("CVE-CS-IMAGE", "p", report.Low), "clair-scanner per image"},
		{"not listed", finding("CVE-NOT-LISTED", "p", report.Low), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &report.Report{
				Image:    scanned(t, "registry.example:5000/team/app:1.0"),
				Findings: []report.Finding{tt.f},
			}
			loadIgnore(t, rules).Apply(now, r)
			if tt.wantReason == "" {
				if len(r.Findings) != 1 || len(r.Ignored) != 0 {
					t.Fatalf("finding was ignored: Findings %+v, Ignored %+v", r.Findings, r.Ignored)
				}
				return
			}
			if len(r.Findings) != 0 || len(r.Ignored) != 1 {
				t.Fatalf("finding was not ignored: Findings %+v, Ignored %+v", r.Findings, r.Ignored)
			}
			want := tt.wantReason
			if want == "-" {
				want = ""
			}
			if r.Ignored[0].Finding != tt.f || r.Ignored[0].Reason != want {
				t.Errorf("Ignored = %+v, want the finding with reason %q", r.Ignored[0], want)
			}
			if r.Fails(report.Unknown) {
				t.Errorf("an ignored finding trips Fails")
			}
		})
	}
}

func TestApplyWarnsForExpiredRules(t *testing.T) {
	rules := loadIgnore(t, `ignore:
  - id: CVE-2021-3449
    package: libssl1.1
    expires: 2025-01-31
  - id: CVE-2020-1967
    expires: 2025-12-31T18:00:00Z
  - id: CVE-2021-3450
    expires: 2030-01-01
`)
	r := &report.Report{
		Findings: []report.Finding{finding("CVE-2021-3449", "libssl1.1", report.High)},
		Warnings: []string{"earlier warning"},
	}
	rules.Apply(date(2026, 1, 1), r)
	want := []string{
		"earlier warning",
		"ignore rule for CVE-2021-3449 in package libssl1.1 (line 2) expired on 2025-01-31: it no longer applies; renew or remove it",
		"ignore rule for CVE-2020-1967 (line 5) expired on 2025-12-31T18:00:00Z: it no longer applies; renew or remove it",
	}
	if !reflect.DeepEqual(r.Warnings, want) {
		t.Errorf("Warnings:\n got %q\nwant %q", r.Warnings, want)
	}
	if len(r.Findings) != 1 || len(r.Ignored) != 0 {
		t.Errorf("an expired rule suppressed a finding: %+v", r.Ignored)
	}
}

func TestApplyKeepsOrderAndFirstReason(t *testing.T) {
	rules := loadIgnore(t, `ignore:
  - id: CVE-1
    package: a
    reason: first, specific
  - id: CVE-1
    reason: second, general
`)
	r := &report.Report{Findings: report.Normalize([]report.Finding{
		finding("CVE-1", "a", report.Low),
		finding("CVE-1", "b", report.High),
		finding("CVE-2", "a", report.Medium),
		finding("CVE-3", "a", report.Critical),
	})}
	rules.Apply(date(2026, 1, 1), r)
	var kept []string
	for _, f := range r.Findings {
		kept = append(kept, f.Name)
	}
	if !reflect.DeepEqual(kept, []string{"CVE-3", "CVE-2"}) {
		t.Errorf("kept %q, want [CVE-3 CVE-2] in order", kept)
	}
	if len(r.Ignored) != 2 || r.Ignored[0].Package != "b" || r.Ignored[0].Reason != "second, general" ||
		r.Ignored[1].Package != "a" || r.Ignored[1].Reason != "first, specific" {
		t.Errorf("Ignored = %+v", r.Ignored)
	}
	// Each ignored finding knows the rule that suppressed it.
	if len(r.Ignored) == 2 && (r.Ignored[0].Rule == nil || r.Ignored[0].Rule.Line != 5 ||
		r.Ignored[1].Rule == nil || r.Ignored[1].Rule.Line != 2) {
		t.Errorf("Ignored rules = %+v, %+v; want those of lines 5 and 2", r.Ignored[0].Rule, r.Ignored[1].Rule)
	}
}

func TestApplyNil(t *testing.T) {
	r := &report.Report{Findings: []report.Finding{finding("CVE-1", "a", report.Low)}}
	var rules *report.IgnoreRules
	rules.Apply(time.Now(), r)
	(&report.IgnoreRules{}).Apply(time.Now(), r)
	if len(r.Findings) != 1 || len(r.Ignored) != 0 || len(r.Warnings) != 0 {
		t.Errorf("empty rules changed the report: %+v", r)
	}
}

// scanned is the report's Image of a scan of ref, as scan.Run fills it:
// the reference as given, and its normalized name given the image's tags.
func scanned(t *testing.T, ref string, repoTags ...string) report.Image {
	t.Helper()
	if ref == "" {
		return report.Image{}
	}
	r, err := imageref.Parse(ref)
	if err != nil {
		t.Fatalf("scan of %q: %v", ref, err)
	}
	return report.Image{Ref: ref, Name: r.ImageName(repoTags)}
}

func TestRuleMatchesImages(t *testing.T) {
	tests := []struct {
		image, ref string
		want       bool
	}{
		{"alpine", "alpine:3.11", true},
		{"alpine", "alpine", true},
		{"alpine", "docker.io/library/alpine:3.11", true},
		{"library/alpine", "alpine@sha256:b405b26c31194489ba0b8cb27061fe75a963223bf924dd3998c975ac6fef347a", true},
		{"alpine:3.11", "alpine:3.11", true},
		{"alpine:3.11", "docker.io/library/alpine:3.11", true},
		{"alpine:3.11", "alpine:3.12", false},
		{"alpine", "alpinex:1", false},
		{"registry:5000/app", "registry:5000/app:1.0", true}, // clair-scanner #74: the port is no tag
		{"registry:5000/app", "registry:5001/app:1.0", false},
		{"registry", "registry:5000/app:1.0", false},
		{"app", "registry:5000/app:1.0", false},
		{"alpine", "", false},
	}
	for _, tt := range tests {
		ru := report.IgnoreRule{ID: "CVE-1", Image: tt.image}
		if got := ru.Matches(scanned(t, tt.ref), finding("CVE-1", "p", report.Low)); got != tt.want {
			t.Errorf("rule image %q, ref %q: Matches = %v, want %v", tt.image, tt.ref, got, tt.want)
		}
	}
}

// TestRuleImageSpellings: a rule limited to an image matches it however
// either side spells the reference: on the rule side and on the scan side,
// short, library/, docker.io/, index.docker.io/ and docker-daemon: forms
// are one image. Without a tag a rule matches every tag; with a tag, that
// tag (a scan without one is :latest); with a digest, that digest.
func TestRuleImageSpellings(t *testing.T) {
	const (
		digestX = "sha256:b405b26c31194489ba0b8cb27061fe75a963223bf924dd3998c975ac6fef347a"
		digestY = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
	)
	spell := func(ref string) []string {
		return []string{ref, "library/" + ref, "docker.io/library/" + ref, "index.docker.io/library/" + ref,
			"docker-daemon:" + ref, "docker-daemon:docker.io/library/" + ref}
	}
	scans := map[string][]string{ // what was scanned -> its spellings
		"3.10":          spell("alpine:3.10"),
		"3.11":          spell("alpine:3.11"),
		"latest":        append(spell("alpine"), spell("alpine:latest")...),
		"digest X":      spell("alpine@" + digestX),
		"3.10+digest X": spell("alpine:3.10@" + digestX),
		"digest Y":      spell("alpine@" + digestY),
		"alpinex":       spell("alpinex:3.10"),
		"elsewhere":     {"ghcr.io/library/alpine:3.10", "alpine/alpine:3.10", "localhost/alpine:3.10", "localhost:5000/alpine:3.10"},
	}
	rules := []struct {
		spellings []string
		matches   []string // keys of scans
	}{
		{spell("alpine"), []string{"3.10", "3.11", "latest", "digest X", "3.10+digest X", "digest Y"}},
		{spell("alpine:3.10"), []string{"3.10", "3.10+digest X"}},
		{spell("alpine:latest"), []string{"latest"}},
		{spell("alpine@" + digestX), []string{"digest X", "3.10+digest X"}},
		{spell("alpine:3.10@" + digestX), []string{"3.10+digest X"}},
		{spell("alpinex"), []string{"alpinex"}},
	}
	for _, rule := range rules {
		for _, image := range rule.spellings {
			// What the ignore file accepts is what Matches sees.
			if _, err := report.LoadIgnore(strings.NewReader("- id: CVE-1\n  image: \"" + image + "\"\n")); err != nil {
				t.Errorf("rule image %q: %v", image, err)
			}
			ru := report.IgnoreRule{ID: "CVE-1", Image: image}
			for what, refs := range scans {
				want := slices.Contains(rule.matches, what)
				for _, ref := range refs {
					img := scanned(t, ref)
					if got := ru.Matches(img, finding("CVE-1", "p", report.Low)); got != want {
						t.Errorf("rule image %q, scan of %q (name %q): Matches = %v, want %v", image, ref, img.Name, got, want)
					}
				}
			}
		}
	}
}

// TestRuleImageIDsAndFiles: rules naming an image ID match that image
// whatever it was scanned as; an archive is named by its one tag, and a rule
// naming the file matches scans of that file.
func TestRuleImageIDsAndFiles(t *testing.T) {
	const id = "sha256:a187dde48cd289ac374ad8539930628314bc581a481cdb41409c9289419ddb72"
	withID := func(img report.Image) report.Image { img.ID = id; return img }
	tests := []struct {
		rule string
		img  report.Image
		want bool
	}{
		{id, withID(scanned(t, "alpine:3.11")), true},
		{id, withID(scanned(t, id)), true},
		{strings.TrimPrefix(id, "sha256:"), withID(scanned(t, "docker-archive:a.tar")), true},
		{"sha256:a187dde4", withID(scanned(t, "alpine:3.11")), true},
		{"sha256:a187dde5", withID(scanned(t, "alpine:3.11")), false},
		{id, scanned(t, "alpine:3.11"), false},
		// An image ID scanned: named by its one tag.
		{"alpine", scanned(t, id, "alpine:3.11"), true},
		{"alpine:3.11", scanned(t, "a187dde48cd2", "alpine:3.11"), true},
		{"alpine", scanned(t, id, "alpine:3.11", "alpine:latest"), false},
		// An archive: named by its one tag (manifest.json's RepoTags).
		{"alpine", scanned(t, "docker-archive:/tmp/a.tar", "alpine:3.11"), true},
		{"docker.io/library/alpine:3.11", scanned(t, "docker-archive:/tmp/a.tar", "alpine:3.11"), true},
		{"alpine:3.12", scanned(t, "docker-archive:/tmp/a.tar", "alpine:3.11"), false},
		{"alpine", scanned(t, "docker-archive:/tmp/a.tar"), false},
		{"alpine", scanned(t, "oci:/tmp/layout"), false},
		// A file rule: that file.
		{"docker-archive:/tmp/a.tar", scanned(t, "docker-archive:/tmp/./a.tar"), true},
		{"docker-archive:/tmp/a.tar", scanned(t, "docker-archive:/tmp/b.tar"), false},
		{"docker-archive:/tmp/a.tar", scanned(t, "oci-archive:/tmp/a.tar"), false},
		{"oci:layout/", scanned(t, "oci:layout"), true},
		{"docker-archive:a.tar", scanned(t, "alpine:3.11"), false},
	}
	for _, tt := range tests {
		ru := report.IgnoreRule{ID: "CVE-1", Image: tt.rule}
		if got := ru.Matches(tt.img, finding("CVE-1", "p", report.Low)); got != tt.want {
			t.Errorf("rule image %q, image %+v: Matches = %v, want %v", tt.rule, tt.img, got, tt.want)
		}
	}
}
