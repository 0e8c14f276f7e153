package integration_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/layerbridge/layerbridge/integration/harness"
)

// The CI integrations of the repository, as a runner would run them: the
// GitHub Action (../action.yml, through the runner stand-in of
// actionrunner_test.go) and the GitLab CI template
// (../ci/gitlab/layerbridge.gitlab-ci.yml), each against real Clair 4.9 in a
// container publishing its port on this host, as a GitHub service container
// does, and an image built by the test in the real Docker daemon.
const (
	actionDir      = ".."
	gitlabTemplate = "../ci/gitlab/layerbridge.gitlab-ci.yml"
)

// TestCIIntegrations shares one Clair between the action and the template.
func TestCIIntegrations(t *testing.T) {
	t.Parallel()
	start := time.Now()
	stack := harness.StartDockerT(t, harness.Options{FeedDir: recordedFeed})
	docker := harness.DockerT(t)
	if ref := loadFixture(t, docker, "alpine-3.11-docker-save.tar.gz"); ref != "alpine:3.11" {
		t.Fatalf("loaded %q, want alpine:3.11", ref)
	}
	// "An image the workflow just built": alpine 3.11 and a layer of its
	// own, new to Clair.
	buildDir := t.TempDir()
	os.WriteFile(filepath.Join(buildDir, "Dockerfile"), []byte("FROM alpine:3.11\nCOPY nonce /nonce\n"), 0o644)
	os.WriteFile(filepath.Join(buildDir, "nonce"), []byte(fmt.Sprintf("%s %d\n", t.Name(), time.Now().UnixNano())), 0o644)
	image := harness.BuildImageT(t, docker, buildDir, "layerbridge-test-ci")
	// As a job on the runner reaches a service container with ports: 6060:6060.
	clairURL := strings.Replace(stack.Clair.URL, "127.0.0.1", "localhost", 1)
	t.Logf("clair in a container on %s, image %s: ready in %v", stack.Network.Name, image, time.Since(start).Round(time.Millisecond))

	t.Run("github action", func(t *testing.T) { testGitHubAction(t, stack, clairURL, image) })
	t.Run("gitlab template", func(t *testing.T) { testGitLabTemplate(t, clairURL, image) })
}

// actionReport is the part of the json report the action's test reads.
type actionReport struct {
	Summary         map[string]int    `json:"summary"`
	Vulnerabilities []json.RawMessage `json:"vulnerabilities"`
	Ignored         []json.RawMessage `json:"ignored"`
}

func testGitHubAction(t *testing.T, stack *harness.DockerStack, clairURL, image string) {
	a := readAction(t, filepath.Join(actionDir, "action.yml"))
	for _, name := range []string{"image", "clair-url", "clair-psk", "format", "output", "fail-on", "ignore-file", "platform", "clair-api", "log-level"} {
		if _, ok := a.Inputs[name]; !ok {
			t.Errorf("no input %s", name)
		}
	}
	if in := a.Inputs["image"]; !in.Required {
		t.Errorf("input image is not required")
	}
	if d := a.Inputs["format"].Default; d == nil || *d != "table" {
		t.Errorf("format defaults to %v, want table", d)
	}
	for _, name := range []string{"report", "json-report", "exit-code", "total", "unknown", "high", "critical", "ignored", "version"} {
		if _, ok := a.Outputs[name]; !ok {
			t.Errorf("no output %s", name)
		}
	}
	absAction, err := filepath.Abs(actionDir)
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	// One job: the first use builds layerbridge, the others reuse it.
	const ref = "v0.0.0-action-test"
	job := newActionJob(t, absAction, ref, os.Environ())

	t.Run("clean run, sarif", func(t *testing.T) {
		start := time.Now()
		r := job.use(t, a, map[string]string{"image": image, "clair-url": clairURL, "format": "sarif",
			"fail-on": "High", "cache-dir": cache, "log-level": "debug"})
		t.Logf("%v; skipped: %q", time.Since(start).Round(time.Millisecond), r.Skipped)
		if r.Code != 0 {
			t.Fatalf("step %s exited %d:\n%s", r.FailedStep, r.Code, r.Log)
		}
		if !strings.Contains(r.Log, "go build layerbridge "+ref) {
			t.Errorf("the first use did not build layerbridge:\n%s", r.Log)
		}
		if want := "layerbridge " + ref + " ("; !strings.HasPrefix(r.Outputs["version"], want) {
			t.Errorf("version output %q, want %q...", r.Outputs["version"], want)
		}
		wantOutputs(t, r, map[string]string{"exit-code": "0", "total": "17", "unknown": "17", "high": "0", "critical": "0", "ignored": "0"})
		sarif := readFileT(t, r.Outputs["report"])
		if filepath.Dir(r.Outputs["report"]) == job.workspace || !strings.HasPrefix(r.Outputs["report"], job.temp) || !strings.Contains(sarif, `"version": "2.1.0"`) {
			t.Errorf("report %s: want a sarif file under RUNNER_TEMP", r.Outputs["report"])
		}
		if !strings.Contains(r.Log, sarif[:200]) {
			t.Errorf("without output, the report is not in the log")
		}
		if rep := readActionReport(t, r.Outputs["json-report"]); len(rep.Vulnerabilities) != 17 {
			t.Errorf("json report: %d vulnerabilities, want 17", len(rep.Vulnerabilities))
		}
		for _, want := range []string{"### layerbridge: `" + image + "`", "**Passed**: no finding at or above High.", "| Unknown | 17 |", "| Ignored | 0 |", "CVE-2021-3450"} {
			if !strings.Contains(r.Summary, want) {
				t.Errorf("step summary lacks %q:\n%s", want, r.Summary)
			}
		}
		// Clair, in a container, reached layerbridge on the host at the
		// gateway of its network: what the README says of service containers.
		line := logLine(t, r.Log, `msg="advertised address"`)
		if want := fmt.Sprintf("url=http://%s:", stack.Network.Gateway); !strings.Contains(line, want) {
			t.Errorf("advertised address line lacks %q:\n%s", want, line)
		}
		if len(r.Annotations) != 0 {
			t.Errorf("annotations on a clean run: %q", r.Annotations)
		}
	})

	t.Run("fail-on trips, json to a file, ignore file", func(t *testing.T) {
		out := filepath.Join(job.workspace, "out", "scan.json")
		os.MkdirAll(filepath.Dir(out), 0o755)
		ignore := filepath.Join(job.workspace, ".layerbridge-ignore.yaml")
		os.WriteFile(ignore, []byte("ignore:\n  - id: CVE-2021-3450\n    reason: not reachable in this image\n"), 0o644)
		r := job.use(t, a, map[string]string{"image": image, "clair-url": clairURL, "format": "json", "output": out,
			"fail-on": "Unknown", "ignore-file": ignore, "cache-dir": cache})
		if r.Code != 3 || r.FailedStep != "scan" {
			t.Fatalf("step %s exited %d, want scan with 3:\n%s", r.FailedStep, r.Code, r.Log)
		}
		if !strings.Contains(r.Log, "layerbridge is already built") {
			t.Errorf("the second use in the job built layerbridge again")
		}
		if r.Outputs["report"] != out || r.Outputs["json-report"] != out {
			t.Errorf("report %q, json-report %q, want both %s", r.Outputs["report"], r.Outputs["json-report"], out)
		}
		rep := readActionReport(t, out)
		if len(rep.Ignored) == 0 {
			t.Fatalf("the ignore file ignored nothing")
		}
		wantOutputs(t, r, map[string]string{"exit-code": "3",
			"total": fmt.Sprint(17 - len(rep.Ignored)), "unknown": fmt.Sprint(17 - len(rep.Ignored)), "ignored": fmt.Sprint(len(rep.Ignored))})
		if want := fmt.Sprintf("error: layerbridge: %d finding(s) at or above Unknown (--fail-on)", 17-len(rep.Ignored)); !contains(r.Annotations, want) {
			t.Errorf("annotations %q lack %q", r.Annotations, want)
		}
		if strings.Contains(r.Log, `"vulnerabilities"`) {
			t.Errorf("with an output file, the report is printed in the log too")
		}
		for _, want := range []string{"**Failed**: findings at or above Unknown.", fmt.Sprintf("| Ignored | %d |", len(rep.Ignored))} {
			if !strings.Contains(r.Summary, want) {
				t.Errorf("step summary lacks %q:\n%s", want, r.Summary)
			}
		}
	})

	t.Run("bad inputs", func(t *testing.T) {
		for _, tc := range []struct {
			name       string
			with       map[string]string
			step       string
			code       int
			annotation string
		}{
			{"unknown severity", map[string]string{"fail-on": "Severe"}, "scan", 2, `error: layerbridge: error: --fail-on: `},
			{"unknown format", map[string]string{"format": "sarf"}, "scan", 2, `error: layerbridge: error: -f/--format: unknown report format "sarf"`},
			// After --, an image is never read as a flag: it is an image
			// reference, which this is not.
			{"an image that looks like a flag", map[string]string{"image": "--server=http://127.0.0.1:1"}, "scan", 2, `error: layerbridge: error: invalid image reference "--server=http://127.0.0.1:1": character '=' at byte 8 is not allowed`},
			{"empty image", map[string]string{"image": ""}, "setup", 2, "error: the image input is empty"},
			{"summary not a boolean", map[string]string{"summary": "yes"}, "setup", 2, `error: the summary input is "yes": want true or false`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				with := map[string]string{"image": image, "clair-url": clairURL, "cache-dir": cache}
				for k, v := range tc.with {
					with[k] = v
				}
				r := job.use(t, a, with)
				if r.Code != tc.code || r.FailedStep != tc.step {
					t.Fatalf("step %s exited %d, want %s with %d:\n%s", r.FailedStep, r.Code, tc.step, tc.code, r.Log)
				}
				if !contains(r.Annotations, tc.annotation) {
					t.Errorf("annotations %q lack %q", r.Annotations, tc.annotation)
				}
				if tc.step == "scan" {
					wantOutputs(t, r, map[string]string{"exit-code": fmt.Sprint(tc.code), "report": "", "json-report": "", "total": ""})
				}
			})
		}
	})

	t.Run("go missing or too old", func(t *testing.T) {
		// The first step decides whether actions/setup-go runs: it must when
		// the runner has no Go or an older one than go.mod asks, and in a
		// fresh job (no layerbridge built yet).
		goMod := readFileT(t, filepath.Join(actionDir, "go.mod"))
		want := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(goMod)[1]
		bash, err := exec.LookPath("bash")
		if err != nil {
			t.Fatal(err)
		}
		oldGo := t.TempDir()
		os.WriteFile(filepath.Join(oldGo, "go"), []byte("#!/bin/sh\necho go1.21.0\n"), 0o755)
		for name, path := range map[string]string{
			"no go":   "/usr/bin:/bin",
			"go 1.21": oldGo + ":/usr/bin:/bin",
		} {
			t.Run(name, func(t *testing.T) {
				if name == "no go" {
					if _, err := exec.Command("sh", "-c", "PATH=/usr/bin:/bin command -v go").Output(); err == nil {
						t.Skip("go is in /usr/bin or /bin here")
					}
				}
				fresh := newActionJob(t, absAction, ref, []string{"PATH=" + path, "HOME=" + os.Getenv("HOME")})
				code, outputs, log, _ := fresh.runStep(t, a.Runs.Steps[0].Run, map[string]string{
					"ACTION_PATH": absAction, "IN_IMAGE": image, "IN_SUMMARY": "true"})
				if code != 0 || outputs["setup-go"] != "true" || outputs["go-version"] != want {
					t.Errorf("exit %d, outputs %v; want setup-go=true, go-version=%s (bash %s)\n%s", code, outputs, want, bash, log)
				}
			})
		}
	})
}

func testGitLabTemplate(t *testing.T, clairURL, image string) {
	tmpl := readGitLabTemplate(t)
	job, ok := tmpl[".layerbridge"]
	if !ok {
		t.Fatalf("no hidden job .layerbridge to extend")
	}
	aliases := map[string]string{}
	for _, s := range job.Services {
		aliases[s.Alias] = s.Name
	}
	for alias, image := range map[string]string{"docker": "docker.io/library/docker:27-dind", "postgres": "docker.io/library/postgres:17", "clair": "quay.io/projectquay/clair:4.9.0"} {
		if aliases[alias] != image {
			t.Errorf("service %s is %q, want %s", alias, aliases[alias], image)
		}
	}
	if job.Variables["CLAIR_ADDR"] != "http://clair:6060" || job.Variables["DOCKER_HOST"] != "tcp://docker:2375" || job.Variables["FF_NETWORK_PER_BUILD"] != "true" {
		t.Errorf("variables: CLAIR_ADDR %q, DOCKER_HOST %q, FF_NETWORK_PER_BUILD %q", job.Variables["CLAIR_ADDR"], job.Variables["DOCKER_HOST"], job.Variables["FF_NETWORK_PER_BUILD"])
	}
	if job.Artifacts.When != "always" || job.Artifacts.Reports.JUnit != job.Variables["LAYERBRIDGE_JUNIT"] {
		t.Errorf("artifacts: when %q, junit report %q: want always, and the file of LAYERBRIDGE_JUNIT", job.Artifacts.When, job.Artifacts.Reports.JUnit)
	}

	// The template's install line goes install's layerbridge when the job
	// image has none; here the binary under test is on PATH, as in a job
	// image that ships it, and the line is skipped.
	binDir := t.TempDir()
	if err := os.Symlink(layerbridgeBin(t), filepath.Join(binDir, "layerbridge")); err != nil {
		t.Fatal(err)
	}
	dockerHost := os.Getenv("DOCKER_HOST")
	if dockerHost == "" {
		dockerHost = "unix:///var/run/docker.sock"
	}
	cache := t.TempDir()
	run := func(t *testing.T, vars map[string]string) (int, string, string) {
		t.Helper()
		dir := t.TempDir()
		env := map[string]string{}
		for _, kv := range os.Environ() {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		for k, v := range job.Variables {
			env[k] = v
		}
		// What GitLab sets, then the extending job's variables.
		for k, v := range map[string]string{"CI": "true", "GITLAB_CI": "true", "CI_PROJECT_DIR": dir, "CI_JOB_NAME": "layerbridge",
			"PATH": binDir + ":" + os.Getenv("PATH"), "DOCKER_HOST": dockerHost, "LAYERBRIDGE_CACHE_DIR": cache,
			"CLAIR_ADDR": clairURL, "LAYERBRIDGE_IMAGE": image} {
			env[k] = v
		}
		for k, v := range vars {
			env[k] = v
		}
		var envList []string
		for k, v := range env {
			envList = append(envList, k+"="+v)
		}
		// The runner joins the script lines into one script; sh, as in the
		// template's alpine image, stops at the first failing command.
		script := filepath.Join(t.TempDir(), "script.sh")
		os.WriteFile(script, []byte("set -e\n"+strings.Join(append(job.BeforeScript, job.Script...), "\n")+"\n"), 0o644)
		cmd := exec.CommandContext(withTimeout(t, 3*time.Minute), "sh", script)
		cmd.Dir, cmd.Env = dir, envList
		out, err := cmd.CombinedOutput()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, string(out), dir
	}
	// checkArtifacts checks that the job wrote the files its artifacts
	// name: the report among paths, the JUnit report.
	checkArtifacts := func(t *testing.T, dir, report string) {
		t.Helper()
		matched := false
		for _, p := range job.Artifacts.Paths {
			if ok, _ := filepath.Match(p, report); ok {
				matched = true
			}
		}
		if !matched {
			t.Errorf("report %s matches none of the artifacts' paths %q", report, job.Artifacts.Paths)
		}
		if _, err := os.Stat(filepath.Join(dir, report)); err != nil {
			t.Errorf("report: %v", err)
		}
		if junit := readFileT(t, filepath.Join(dir, job.Artifacts.Reports.JUnit)); !strings.Contains(junit, "<testsuites") {
			t.Errorf("junit report:\n%s", junit)
		}
	}

	t.Run("clean run", func(t *testing.T) {
		code, out, dir := run(t, map[string]string{"LAYERBRIDGE_FAIL_ON": "High"})
		if code != 0 || !strings.Contains(out, "CVE-2021-3450") || !strings.Contains(out, "layerbridge ") {
			t.Fatalf("exit %d, want 0 with the version and the table in the log:\n%s", code, out)
		}
		checkArtifacts(t, dir, "layerbridge-report.txt")
	})
	t.Run("fail-on trips, sarif", func(t *testing.T) {
		code, out, dir := run(t, map[string]string{"LAYERBRIDGE_FAIL_ON": "Unknown", "LAYERBRIDGE_FORMAT": "sarif"})
		if code != 3 || !strings.Contains(out, "17 finding(s) at or above Unknown") {
			t.Fatalf("exit %d, want 3:\n%s", code, out)
		}
		checkArtifacts(t, dir, "layerbridge-report.sarif")
		if sarif := readFileT(t, filepath.Join(dir, "layerbridge-report.sarif")); !strings.Contains(sarif, `"version": "2.1.0"`) {
			t.Errorf("not sarif:\n%.300s", sarif)
		}
	})
	t.Run("bad inputs", func(t *testing.T) {
		for _, tc := range []struct {
			vars map[string]string
			want string
		}{
			{map[string]string{"LAYERBRIDGE_IMAGE": ""}, "layerbridge: error: LAYERBRIDGE_IMAGE is empty"},
			{map[string]string{"LAYERBRIDGE_FAIL_ON": "Severe"}, "layerbridge: error: --fail-on: "},
			{map[string]string{"LAYERBRIDGE_FORMAT": "sarf"}, `unknown report format "sarf"`},
		} {
			if code, out, _ := run(t, tc.vars); code != 2 || !strings.Contains(out, tc.want) {
				t.Errorf("%v: exit %d, want 2 with %q:\n%s", tc.vars, code, tc.want, out)
			}
		}
	})
}

// gitlabJob is a job of the template, the keys it may use; decoding rejects
// any other.
type gitlabJob struct {
	Image        string            `yaml:"image"`
	Services     []gitlabService   `yaml:"services"`
	Variables    map[string]string `yaml:"variables"`
	BeforeScript []string          `yaml:"before_script"`
	Script       []string          `yaml:"script"`
	Artifacts    struct {
		When     string   `yaml:"when"`
		Paths    []string `yaml:"paths"`
		ExpireIn string   `yaml:"expire_in"`
		Reports  struct {
			JUnit string `yaml:"junit"`
		} `yaml:"reports"`
	} `yaml:"artifacts"`
}

type gitlabService struct {
	Name       string            `yaml:"name"`
	Alias      string            `yaml:"alias"`
	Entrypoint []string          `yaml:"entrypoint"`
	Command    []string          `yaml:"command"`
	Variables  map[string]string `yaml:"variables"`
}

func readGitLabTemplate(t *testing.T) map[string]gitlabJob {
	t.Helper()
	b, err := os.ReadFile(gitlabTemplate)
	if err != nil {
		t.Fatal(err)
	}
	var tmpl map[string]gitlabJob
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&tmpl); err != nil {
		t.Fatalf("%s: %v", gitlabTemplate, err)
	}
	for name := range tmpl {
		// An included template defines hidden jobs only: the including
		// project decides which jobs run, and in which stage.
		if !strings.HasPrefix(name, ".") {
			t.Errorf("job %s is not hidden", name)
		}
	}
	return tmpl
}

// TestCIExamples checks what README.md shows of the CI integrations against
// what they are: the workflow's use of the action, its services and Clair
// configuration, the GitLab job's use of the template; and has Clair 4.9's
// own configuration loader (strict: unknown keys are errors) read the
// README's Clair configuration and the template's.
func TestCIExamples(t *testing.T) {
	t.Parallel()
	readme := readFileT(t, "../README.md")
	block := func(firstLine string) string {
		t.Helper()
		m := regexp.MustCompile("(?s)```yaml\n(" + regexp.QuoteMeta(firstLine) + "\n.*?)```").FindStringSubmatch(readme)
		if m == nil {
			t.Fatalf("README.md has no yaml block starting %q", firstLine)
		}
		return m[1]
	}
	tmpl := readGitLabTemplate(t)
	configs := map[string]string{
		"the README's .github/clair/config.yaml":         block("# .github/clair/config.yaml"),
		"the gitlab template's LAYERBRIDGE_CLAIR_CONFIG": tmpl[".layerbridge"].Variables["LAYERBRIDGE_CLAIR_CONFIG"],
	}

	t.Run("github workflow", func(t *testing.T) {
		var wf struct {
			Jobs map[string]struct {
				Services map[string]struct {
					Image string   `yaml:"image"`
					Ports []string `yaml:"ports"`
				} `yaml:"services"`
				Steps []struct {
					ID   string            `yaml:"id"`
					Uses string            `yaml:"uses"`
					Run  string            `yaml:"run"`
					With map[string]string `yaml:"with"`
				} `yaml:"steps"`
			} `yaml:"jobs"`
		}
		if err := yaml.Unmarshal([]byte(block("# .github/workflows/scan.yml")), &wf); err != nil {
			t.Fatal(err)
		}
		job := wf.Jobs["scan"]
		if job.Services["clair"].Image != "quay.io/projectquay/clair:4.9.0" || !strings.HasPrefix(job.Services["postgres"].Image, "docker.io/library/postgres:") {
			t.Errorf("services: %+v", job.Services)
		}
		a := readAction(t, filepath.Join(actionDir, "action.yml"))
		var scan, upload bool
		for _, s := range job.Steps {
			switch {
			case strings.HasPrefix(s.Uses, "layerbridge/layerbridge@"):
				scan = true
				for k := range s.With {
					if _, ok := a.Inputs[k]; !ok {
						t.Errorf("the workflow gives the action %s, which is not an input", k)
					}
				}
				if s.With["format"] != "sarif" || s.ID == "" {
					t.Errorf("scan step: format %q, id %q", s.With["format"], s.ID)
				}
				if port := strings.TrimPrefix(s.With["clair-url"], "http://localhost:"); !slices.Contains(job.Services["clair"].Ports, port+":6060") {
					t.Errorf("clair-url %s: no service publishes that port", s.With["clair-url"])
				}
			case strings.HasPrefix(s.Uses, "github/codeql-action/upload-sarif@"):
				upload = true
				if !strings.Contains(s.With["sarif_file"], ".outputs.report }}") {
					t.Errorf("upload-sarif's sarif_file %q is not the action's report output", s.With["sarif_file"])
				}
			}
		}
		if !scan || !upload {
			t.Errorf("the workflow lacks the scan (%v) or the upload (%v)", scan, upload)
		}
	})

	t.Run("gitlab job", func(t *testing.T) {
		var doc map[string]yaml.Node
		if err := yaml.Unmarshal([]byte(block("include:")), &doc); err != nil {
			t.Fatal(err)
		}
		var job struct {
			Extends   string            `yaml:"extends"`
			Variables map[string]string `yaml:"variables"`
		}
		node := doc["layerbridge"]
		if err := node.Decode(&job); err != nil {
			t.Fatal(err)
		}
		if _, ok := tmpl[job.Extends]; !ok {
			t.Errorf("the README's job extends %q, which the template does not define", job.Extends)
		}
		for k := range job.Variables {
			if _, ok := tmpl[".layerbridge"].Variables[k]; !ok {
				t.Errorf("the README's job sets %s, which the template does not use", k)
			}
		}
	})

	for name, config := range configs {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(file, []byte(config), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd, err := harness.ClairctlCommand(withTimeout(t, 3*time.Minute), ".", "check-config", file)
			if err != nil {
				t.Fatal(err)
			}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("clairctl check-config of %s: %v\n%s", name, err, out)
			}
		})
	}
}

func wantOutputs(t *testing.T, r actionRun, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got, ok := r.Outputs[k]; !ok || got != v {
			t.Errorf("output %s = %q, want %q", k, got, v)
		}
	}
}

func readActionReport(t *testing.T, path string) actionReport {
	t.Helper()
	var rep actionReport
	if err := json.Unmarshal([]byte(readFileT(t, path)), &rep); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return rep
}

func readFileT(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// contains reports whether an element of list starts with prefix.
func contains(list []string, prefix string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}
