package integration_test

import (
	"bufio"
	"bytes"
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
)

// A stand-in for the GitHub Actions runner, as far as a composite action
// needs one: no runner can be reached from here. It reads action.yml
// strictly, evaluates the ${{ }} expressions the action uses (and fails on
// any other), and runs the run: steps with bash as the runner does, with
// the per-step GITHUB_OUTPUT, GITHUB_ENV, GITHUB_PATH and
// GITHUB_STEP_SUMMARY files read back between steps.

// actionMetadata is action.yml in GitHub's metadata schema, the keys a
// composite action may have; decoding rejects any other.
type actionMetadata struct {
	Name        string                  `yaml:"name"`
	Description string                  `yaml:"description"`
	Author      string                  `yaml:"author"`
	Branding    map[string]string       `yaml:"branding"`
	Inputs      map[string]actionInput  `yaml:"inputs"`
	Outputs     map[string]actionOutput `yaml:"outputs"`
	Runs        struct {
		Using string       `yaml:"using"`
		Steps []actionStep `yaml:"steps"`
	} `yaml:"runs"`
}

type actionInput struct {
	Description        string  `yaml:"description"`
	Required           bool    `yaml:"required"`
	Default            *string `yaml:"default"`
	DeprecationMessage string  `yaml:"deprecationMessage"`
}

type actionOutput struct {
	Description string `yaml:"description"`
	Value       string `yaml:"value"`
}

type actionStep struct {
	ID               string            `yaml:"id"`
	Name             string            `yaml:"name"`
	If               string            `yaml:"if"`
	Run              string            `yaml:"run"`
	Shell            string            `yaml:"shell"`
	Uses             string            `yaml:"uses"`
	With             map[string]string `yaml:"with"`
	Env              map[string]string `yaml:"env"`
	WorkingDirectory string            `yaml:"working-directory"`
	ContinueOnError  bool              `yaml:"continue-on-error"`
}

// readAction decodes path strictly and checks what GitHub requires of a
// composite action, and what this project requires of its own: inputs
// reach scripts through env only.
func readAction(t *testing.T, path string) actionMetadata {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var a actionMetadata
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&a); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if a.Name == "" || a.Description == "" {
		t.Errorf("action.yml needs a name and a description")
	}
	if a.Runs.Using != "composite" {
		t.Errorf("runs.using %q, want composite", a.Runs.Using)
	}
	for name, in := range a.Inputs {
		if in.Description == "" {
			t.Errorf("input %s has no description", name)
		}
		if in.Required && in.Default != nil {
			t.Errorf("input %s is required and has a default", name)
		}
	}
	ids := map[string]bool{}
	for i, s := range a.Runs.Steps {
		where := fmt.Sprintf("step %d (%s)", i, s.ID+s.Name)
		if s.ID != "" {
			if ids[s.ID] {
				t.Errorf("%s: duplicate id", where)
			}
			ids[s.ID] = true
		}
		switch {
		case (s.Run == "") == (s.Uses == ""):
			t.Errorf("%s: wants exactly one of run and uses", where)
		case s.Run != "" && s.Shell != "bash":
			t.Errorf("%s: shell %q; a composite run step must name its shell, and these scripts are bash", where, s.Shell)
		case s.Run != "" && len(s.With) > 0:
			t.Errorf("%s: with: belongs to uses steps", where)
		case s.Uses != "" && s.Shell != "":
			t.Errorf("%s: shell: belongs to run steps", where)
		case s.Uses != "" && !regexp.MustCompile(`^[\w.-]+/[\w.-]+@[0-9a-f]{40}$`).MatchString(s.Uses):
			t.Errorf("%s: uses %q: pin actions by full commit", where, s.Uses)
		}
		// The runner replaces ${{ }} in run: before bash parses it: an
		// input would become shell code.
		if strings.Contains(s.Run, "${{") {
			t.Errorf("%s: ${{ }} inside run:; pass the value through env:", where)
		}
	}
	for name, out := range a.Outputs {
		if !regexp.MustCompile(`^\$\{\{ steps\.[\w-]+\.outputs\.[\w-]+ \}\}$`).MatchString(out.Value) {
			t.Errorf("output %s: value %q, want ${{ steps.ID.outputs.NAME }}", name, out.Value)
		} else if id := strings.Split(out.Value, ".")[1]; !ids[id] {
			t.Errorf("output %s: no step %q", name, id)
		}
	}
	return a
}

// actionRun is one use of the action by a workflow step.
type actionRun struct {
	Code        int               // the exit code of the step that failed, 0 if none did
	FailedStep  string            // its id
	Outputs     map[string]string // the action's outputs
	StepOutputs map[string]map[string]string
	Log         string   // every step's stdout and stderr, as the job log shows it
	Summary     string   // what the steps wrote to GITHUB_STEP_SUMMARY
	Annotations []string // ::error:: and ::warning:: lines, as "error: message"
	Skipped     []string // uses: steps that did not run, and why
}

// actionJob is a job of a workflow on a runner: what survives between
// uses of actions in it.
type actionJob struct {
	actionDir string // github.action_path
	ref       string // github.action_ref
	workspace string // GITHUB_WORKSPACE, the steps' working directory
	temp      string // RUNNER_TEMP
	env       []string
	path      []string // GITHUB_PATH additions, newest first
	jobEnv    map[string]string
}

func newActionJob(t *testing.T, actionDir, ref string, env []string) *actionJob {
	t.Helper()
	return &actionJob{actionDir: actionDir, ref: ref, workspace: t.TempDir(), temp: t.TempDir(), env: env, jobEnv: map[string]string{}}
}

// use runs the action with the given inputs, as `uses: ./` with `with:`.
func (j *actionJob) use(t *testing.T, a actionMetadata, with map[string]string) actionRun {
	t.Helper()
	inputs := map[string]string{}
	for name, in := range a.Inputs {
		if in.Default != nil {
			inputs[name] = *in.Default
		}
	}
	for name, v := range with {
		if _, ok := a.Inputs[name]; !ok {
			t.Fatalf("with: %s is not an input of the action", name)
		}
		inputs[name] = v
	}
	ctx := &exprContext{
		inputs: inputs,
		github: map[string]string{"action_path": j.actionDir, "action_ref": j.ref},
		steps:  map[string]map[string]string{},
		known:  map[string]bool{},
		env:    j.jobEnv,
	}
	for _, s := range a.Runs.Steps {
		ctx.known[s.ID] = true
	}
	var r actionRun
	var log strings.Builder
	for i, s := range a.Runs.Steps {
		id := s.ID
		if id == "" {
			id = fmt.Sprintf("step%d", i)
		}
		if r.Code != 0 {
			break // no step here runs on failure
		}
		if s.If != "" {
			ok, err := ctx.condition(s.If)
			if err != nil {
				t.Fatalf("step %s: if: %v", id, err)
			}
			if !ok {
				if s.Uses != "" {
					r.Skipped = append(r.Skipped, s.Uses+": if: "+s.If+" is false")
				}
				continue
			}
		}
		if s.Uses != "" {
			r.Skipped = append(r.Skipped, skipUses(t, s, ctx))
			continue
		}
		env := map[string]string{}
		for k, v := range s.Env {
			ev, err := ctx.interpolate(v)
			if err != nil {
				t.Fatalf("step %s: env %s: %v", id, k, err)
			}
			env[k] = ev
		}
		code, outputs, out, summary := j.runStep(t, s.Run, env)
		log.WriteString(out)
		r.Summary += summary
		ctx.steps[id] = outputs
		if code != 0 {
			r.Code, r.FailedStep = code, id
		}
	}
	r.Log = log.String()
	r.StepOutputs = ctx.steps
	r.Outputs = map[string]string{}
	for name, o := range a.Outputs {
		v, err := ctx.interpolate(o.Value)
		if err != nil {
			t.Fatalf("output %s: %v", name, err)
		}
		r.Outputs[name] = v
	}
	for _, line := range strings.Split(r.Log, "\n") {
		if m := regexp.MustCompile(`^::(error|warning)[^:]*::(.*)$`).FindStringSubmatch(line); m != nil {
			r.Annotations = append(r.Annotations, m[1]+": "+m[2])
		}
	}
	return r
}

// skipUses stands in for a uses: step, which this test cannot run: it
// skips the step only when the tool it installs is present already, so that
// running it would change nothing. actions/setup-go is the only one the
// action has.
func skipUses(t *testing.T, s actionStep, ctx *exprContext) string {
	t.Helper()
	if !strings.HasPrefix(s.Uses, "actions/setup-go@") {
		t.Fatalf("uses %s: this test cannot run it", s.Uses)
	}
	want, err := ctx.interpolate(s.With["go-version"])
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		t.Fatalf("the action runs setup-go for Go %s, and this machine has no go to stand in for it: %v", want, err)
	}
	have := strings.TrimPrefix(strings.Fields(string(out))[0], "go")
	if !versionAtLeast(have, want) {
		t.Fatalf("the action runs setup-go for Go %s, and this machine's Go %s is older", want, have)
	}
	return fmt.Sprintf("%s: skipped, Go %s is installed (the action asked for %s)", s.Uses, have, want)
}

// versionAtLeast compares dotted release numbers: 1.26.8 >= 1.26.
func versionAtLeast(have, want string) bool {
	h, w := strings.Split(have, "."), strings.Split(want, ".")
	for i := range w {
		var hn, wn int
		if i < len(h) {
			fmt.Sscan(h[i], &hn)
		}
		fmt.Sscan(w[i], &wn)
		if hn != wn {
			return hn > wn
		}
	}
	return true
}

// runStep runs script as the runner runs a `shell: bash` step: a file run
// by `bash --noprofile --norc -eo pipefail`, in the workspace, with fresh
// command files, then reads them back.
func (j *actionJob) runStep(t *testing.T, script string, stepEnv map[string]string) (code int, outputs map[string]string, log, summary string) {
	t.Helper()
	dir, err := os.MkdirTemp(j.temp, "_runner_file_commands-")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, name := range []string{"GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_PATH", "GITHUB_STEP_SUMMARY", "GITHUB_STATE"} {
		files[name] = filepath.Join(dir, strings.ToLower(name))
		if err := os.WriteFile(files[name], nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	scriptFile := filepath.Join(dir, "script.sh")
	if err := os.WriteFile(scriptFile, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, kv := range j.env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	for k, v := range j.jobEnv {
		env[k] = v
	}
	for k, v := range map[string]string{
		"CI": "true", "GITHUB_ACTIONS": "true", "RUNNER_OS": "Linux", "RUNNER_TEMP": j.temp,
		"GITHUB_WORKSPACE": j.workspace, "GITHUB_ACTION_PATH": j.actionDir, "GITHUB_ACTION_REF": j.ref,
	} {
		env[k] = v
	}
	for k, v := range files {
		env[k] = v
	}
	for k, v := range stepEnv {
		env[k] = v
	}
	if len(j.path) > 0 {
		env["PATH"] = strings.Join(j.path, ":") + ":" + env["PATH"]
	}
	var envList []string
	for k, v := range env {
		envList = append(envList, k+"="+v)
	}
	cmd := exec.CommandContext(withTimeout(t, 5*time.Minute), "bash", "--noprofile", "--norc", "-eo", "pipefail", scriptFile)
	cmd.Dir = j.workspace
	cmd.Env = envList
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("run step: %v", err)
	}
	outputs = readCommandFile(t, files["GITHUB_OUTPUT"])
	for k, v := range readCommandFile(t, files["GITHUB_ENV"]) {
		j.jobEnv[k] = v
	}
	if b, err := os.ReadFile(files["GITHUB_PATH"]); err == nil {
		for _, p := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if p != "" {
				j.path = append([]string{p}, j.path...)
			}
		}
	}
	b, err := os.ReadFile(files["GITHUB_STEP_SUMMARY"])
	if err != nil {
		t.Fatal(err)
	}
	return code, outputs, string(out), string(b)
}

// readCommandFile reads GITHUB_OUTPUT or GITHUB_ENV: NAME=VALUE lines, or
// NAME<<DELIMITER, the value's lines, DELIMITER.
func readCommandFile(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		if name, delim, ok := strings.Cut(line, "<<"); ok && !strings.Contains(name, "=") {
			var lines []string
			closed := false
			for sc.Scan() {
				if sc.Text() == delim {
					closed = true
					break
				}
				lines = append(lines, sc.Text())
			}
			if !closed {
				t.Fatalf("%s: %s<<%s is never closed", path, name, delim)
			}
			m[name] = strings.Join(lines, "\n")
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok || name == "" {
			t.Fatalf("%s: line %q is neither NAME=VALUE nor NAME<<DELIMITER", path, line)
		}
		m[name] = value
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

// exprContext evaluates the part of GitHub's expression language the
// action uses: the contexts inputs, github.action_path, github.action_ref,
// steps.ID.outputs.NAME and env; string literals; ==, !=, &&, || and !.
// Anything else is an error, so that the action cannot come to use an
// expression this test does not understand.
type exprContext struct {
	inputs map[string]string
	github map[string]string
	steps  map[string]map[string]string
	known  map[string]bool // step ids of the action
	env    map[string]string
}

var exprRE = regexp.MustCompile(`\$\{\{(.*?)\}\}`)

// interpolate replaces each ${{ expr }} in s with its value.
func (c *exprContext) interpolate(s string) (string, error) {
	var firstErr error
	out := exprRE.ReplaceAllStringFunc(s, func(m string) string {
		v, err := c.eval(exprRE.FindStringSubmatch(m)[1])
		if err != nil && firstErr == nil {
			firstErr = err
		}
		return v.String()
	})
	if firstErr == nil && strings.Contains(out, "${{") {
		firstErr = fmt.Errorf("unclosed ${{ in %q", s)
	}
	return out, firstErr
}

// condition evaluates an if: (with or without ${{ }}).
func (c *exprContext) condition(s string) (bool, error) {
	s = strings.TrimSpace(s)
	if m := regexp.MustCompile(`^\$\{\{(.*)\}\}$`).FindStringSubmatch(s); m != nil {
		s = m[1]
	}
	v, err := c.eval(s)
	return v.truthy(), err
}

// exprValue is a string or a boolean.
type exprValue struct {
	s      string
	b      bool
	isBool bool
}

func (v exprValue) String() string {
	if v.isBool {
		return fmt.Sprint(v.b)
	}
	return v.s
}

func (v exprValue) truthy() bool {
	if v.isBool {
		return v.b
	}
	return v.s != ""
}

func (c *exprContext) eval(expr string) (exprValue, error) {
	p := &exprParser{c: c, toks: regexp.MustCompile(`\s*('(?:[^']|'')*'|==|!=|&&|\|\||!|\(|\)|[A-Za-z_][\w.-]*|\S)`).FindAllStringSubmatch(expr, -1)}
	v, err := p.or()
	if err == nil && p.i < len(p.toks) {
		err = fmt.Errorf("unexpected %q", p.toks[p.i][1])
	}
	if err != nil {
		return exprValue{}, fmt.Errorf("expression %q: %w", strings.TrimSpace(expr), err)
	}
	return v, nil
}

type exprParser struct {
	c    *exprContext
	toks [][]string
	i    int
}

func (p *exprParser) peek() string {
	if p.i < len(p.toks) {
		return p.toks[p.i][1]
	}
	return ""
}

func (p *exprParser) or() (exprValue, error) {
	l, err := p.and()
	for err == nil && p.peek() == "||" {
		p.i++
		var r exprValue
		r, err = p.and()
		if !l.truthy() {
			l = r
		}
	}
	return l, err
}

func (p *exprParser) and() (exprValue, error) {
	l, err := p.cmp()
	for err == nil && p.peek() == "&&" {
		p.i++
		var r exprValue
		r, err = p.cmp()
		if l.truthy() {
			l = r
		}
	}
	return l, err
}

func (p *exprParser) cmp() (exprValue, error) {
	l, err := p.unary()
	if err != nil || (p.peek() != "==" && p.peek() != "!=") {
		return l, err
	}
	op := p.peek()
	p.i++
	r, err := p.unary()
	if err != nil {
		return l, err
	}
	if l.isBool != r.isBool {
		return l, fmt.Errorf("comparing a boolean with a string: GitHub converts both to numbers, which this test does not do")
	}
	// GitHub compares strings ignoring case.
	eq := strings.EqualFold(l.String(), r.String())
	return exprValue{b: eq == (op == "=="), isBool: true}, nil
}

func (p *exprParser) unary() (exprValue, error) {
	switch tok := p.peek(); {
	case tok == "":
		return exprValue{}, errors.New("unexpected end")
	case tok == "!":
		p.i++
		v, err := p.unary()
		return exprValue{b: !v.truthy(), isBool: true}, err
	case tok == "(":
		p.i++
		v, err := p.or()
		if err == nil && p.peek() != ")" {
			err = errors.New("missing )")
		}
		p.i++
		return v, err
	case strings.HasPrefix(tok, "'"):
		p.i++
		return exprValue{s: strings.ReplaceAll(tok[1:len(tok)-1], "''", "'")}, nil
	default:
		p.i++
		s, err := p.c.lookup(tok)
		return exprValue{s: s}, err
	}
}

// lookup resolves a context path.
func (p *exprContext) lookup(path string) (string, error) {
	parts := strings.Split(path, ".")
	switch {
	case len(parts) == 2 && parts[0] == "inputs":
		v, ok := p.inputs[parts[1]]
		if !ok {
			return "", fmt.Errorf("inputs.%s: the action has no such input", parts[1])
		}
		return v, nil
	case len(parts) == 2 && parts[0] == "github" && slices.Contains([]string{"action_path", "action_ref"}, parts[1]):
		return p.github[parts[1]], nil
	case len(parts) == 4 && parts[0] == "steps" && parts[2] == "outputs":
		if !p.known[parts[1]] {
			return "", fmt.Errorf("steps.%s: the action has no step with that id", parts[1])
		}
		return p.steps[parts[1]][parts[3]], nil // "" for a step that did not run, as on GitHub
	case len(parts) == 2 && parts[0] == "env":
		return p.env[parts[1]], nil
	}
	return "", fmt.Errorf("%s: this test does not evaluate that", path)
}

// TestActionRunnerStandIn checks the stand-in itself, without Docker: what
// makes TestCIIntegrations's verdicts on action.yml mean something.
func TestActionRunnerStandIn(t *testing.T) {
	t.Parallel()
	ctx := &exprContext{
		inputs: map[string]string{"format": "sarif", "empty": ""},
		github: map[string]string{"action_path": "/a", "action_ref": "v1"},
		steps:  map[string]map[string]string{"setup": {"setup-go": "true"}},
		known:  map[string]bool{"setup": true, "later": true},
		env:    map[string]string{"X": "1"},
	}
	for expr, want := range map[string]string{
		"${{ inputs.format }}": "sarif",
		"a ${{ github.action_path }}/b ${{ github.action_ref }}": "a /a/b v1",
		"${{ steps.setup.outputs.setup-go }}":                    "true",
		"${{ steps.later.outputs.x }}":                           "",
		"${{ env.X }}":                                           "1",
		"${{ inputs.format == 'SARIF' }}":                        "true",
		"${{ inputs.empty || 'it''s' }}":                         "it's",
		"${{ !(inputs.format != 'sarif') && inputs.format }}":    "sarif",
	} {
		got, err := ctx.interpolate(expr)
		if err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", expr, got, err, want)
		}
	}
	for _, expr := range []string{
		"${{ inputs.nope }}", "${{ github.token }}", "${{ steps.nope.outputs.x }}", "${{ runner.temp }}",
		"${{ always() }}", "${{ inputs.format == }}", "${{ inputs.format == true }}", "${{ inputs.format",
	} {
		if got, err := ctx.interpolate(expr); err == nil {
			t.Errorf("%s = %q, want an error", expr, got)
		}
	}
	if ok, err := ctx.condition("steps.setup.outputs.setup-go == 'true'"); !ok || err != nil {
		t.Errorf("if: without ${{ }}: %v, %v", ok, err)
	}

	file := filepath.Join(t.TempDir(), "output")
	os.WriteFile(file, []byte("a=1\nb<<EOF\nline 1\nline 2\nEOF\nc=x=y\n"), 0o644)
	if got := readCommandFile(t, file); got["a"] != "1" || got["b"] != "line 1\nline 2" || got["c"] != "x=y" || len(got) != 3 {
		t.Errorf("command file read as %q", got)
	}

	// Strict decoding: a misspelt key is refused, not ignored.
	var a actionMetadata
	dec := yaml.NewDecoder(strings.NewReader("name: x\nruns:\n  using: composite\n  steps:\n    - run: echo\n      shel: bash\n"))
	dec.KnownFields(true)
	if err := dec.Decode(&a); err == nil || !strings.Contains(err.Error(), "shel") {
		t.Errorf("a misspelt key: %v, want a refusal naming it", err)
	}
}
