package manifests_test

// The proof that the manifests and the CLI agree: every Argo
// template is validated against the Argo schema, strictly, and then run
// step by step with the real binary, as Argo would run it: parameters
// substituted, artifacts mapped to a temporary directory, `when`
// evaluated on the real decision and `withParam` fanned out for real. A
// flag renamed in the CLI makes a step exit 2 and fails this test.

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
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/strata-ml/strata/internal/testbin"
	"go.yaml.in/yaml/v3"
)

// repo is the repository root, relative to this package's directory.
const repo = ".."

var strataBin string // the binary (internal/testbin), alone in its directory

func TestMain(m *testing.M) { os.Exit(testbin.Main(m, &strataBin)) }

// fixture is a dense baseline and a train/test split of the digits data,
// made once by `strata pilot --demo` (a few seconds).
type fixture struct {
	baseline, train, test string
}

var (
	fixtureOnce sync.Once
	theFixture  fixture
	fixtureErr  error
)

func demoFixture(t *testing.T) fixture {
	t.Helper()
	fixtureOnce.Do(func() {
		dir, err := os.MkdirTemp("", "strata-manifests-demo-")
		if err != nil {
			fixtureErr = err
			return
		}
		work := filepath.Join(dir, "demo")
		cmd := exec.Command(strataBin, "pilot", "--demo", "--workdir", work, "--no-fail")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			fixtureErr = fmt.Errorf("strata pilot --demo: %v\n%s", err, stderr.String())
			return
		}
		theFixture = fixture{
			baseline: filepath.Join(work, "baseline", "model.arrow"),
			train:    filepath.Join(work, "data", "train.arrow"),
			test:     filepath.Join(work, "data", "test.arrow"),
		}
	})
	if fixtureErr != nil {
		t.Fatal(fixtureErr)
	}
	return theFixture
}

// runStrata runs a command (the built binary, found first on PATH) and
// returns its exit code and its stderr and stdout.
func runStrata(t *testing.T, dir string, env []string, name string, args ...string) (int, string) {
	t.Helper()
	return runKilled(t, dir, env, "", name, args...)
}

// --- The Argo subset the manifests use -------------------------------------

type workflowTemplate struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		Entrypoint            string           `yaml:"entrypoint"`
		ActiveDeadlineSeconds int64            `yaml:"activeDeadlineSeconds"`
		SecurityContext       *securityContext `yaml:"securityContext"`
		Volumes               []map[string]any `yaml:"volumes"`
		Arguments             struct {
			Parameters []parameter `yaml:"parameters"`
		} `yaml:"arguments"`
		Templates []*template `yaml:"templates"`
	} `yaml:"spec"`
}

type parameter struct {
	Name      string  `yaml:"name"`
	Value     *string `yaml:"value"`
	Default   *string `yaml:"default"`
	ValueFrom *struct {
		Path      string  `yaml:"path"`
		Parameter string  `yaml:"parameter"`
		Default   *string `yaml:"default"`
	} `yaml:"valueFrom"`
}

// artifact is an Argo artifact; a key-only artifact names its key in
// whichever store the template variant is for.
type artifact struct {
	Name string `yaml:"name"`
	Path string `yaml:"path"`
	From string `yaml:"from"`
	S3   *struct {
		Key string `yaml:"key"`
	} `yaml:"s3"`
	GCS *struct {
		Key string `yaml:"key"`
	} `yaml:"gcs"`
	Azure *struct {
		Blob string `yaml:"blob"`
	} `yaml:"azure"`
	Optional bool `yaml:"optional"`
}

// key returns the artifact's key in the artifact repository, if it has one.
func (a artifact) key() (string, bool) {
	switch {
	case a.S3 != nil:
		return a.S3.Key, true
	case a.GCS != nil:
		return a.GCS.Key, true
	case a.Azure != nil:
		return a.Azure.Blob, true
	}
	return "", false
}

type inouts struct {
	Parameters []parameter `yaml:"parameters"`
	Artifacts  []artifact  `yaml:"artifacts"`
}

type step struct {
	Name      string `yaml:"name"`
	Template  string `yaml:"template"`
	When      string `yaml:"when"`
	WithParam string `yaml:"withParam"`
	Arguments inouts `yaml:"arguments"`
}

type retryStrategy struct {
	Limit       string `yaml:"limit"`
	RetryPolicy string `yaml:"retryPolicy"`
	Expression  string `yaml:"expression"`
}

type template struct {
	Name                  string           `yaml:"name"`
	Inputs                inouts           `yaml:"inputs"`
	Outputs               inouts           `yaml:"outputs"`
	Steps                 [][]step         `yaml:"steps"`
	ActiveDeadlineSeconds string           `yaml:"activeDeadlineSeconds"` // IntOrString, a string in the schema
	RetryStrategy         *retryStrategy   `yaml:"retryStrategy"`
	Container             *container       `yaml:"container"`
	Volumes               []map[string]any `yaml:"volumes"`
	Metrics               *struct {
		Prometheus []struct {
			Name   string `yaml:"name"`
			Labels []struct {
				Key   string `yaml:"key"`
				Value string `yaml:"value"`
			} `yaml:"labels"`
			Gauge struct {
				Value string `yaml:"value"`
			} `yaml:"gauge"`
		} `yaml:"prometheus"`
	} `yaml:"metrics"`
}

func loadTemplate(t *testing.T, path string) *workflowTemplate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var wt workflowTemplate
	if err := yaml.Unmarshal(b, &wt); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &wt
}

// --- A local Argo ------------------------------------------------------------

// argoRun runs one workflow of a WorkflowTemplate locally. Every pod gets
// its own directory; a container path under /work/ maps into it, the
// image's /etc/strata/policy/ maps to manifests/policy/, and the artifact
// repository is a directory (a key is a path under it, so a key prefix
// reads as a directory, as Argo reads it). A failed pod saves the output
// artifacts it has, as Argo's wait container does, and is retried when
// its template's retryStrategy.expression says so, evaluated as Argo
// evaluates it (retryExpression).
type argoRun struct {
	t         *testing.T
	root      string
	bucket    string
	templates map[string]*template
	global    map[string]string
	pods      int
	ran       []string                     // the container templates run to success, in order, as template or template(role)
	retried   []string                     // the failed attempts that were retried, as template(role): exit code
	skipped   []string                     // the steps `when` skipped
	metrics   map[string]string            // name{labels} -> value, of every metric emitted
	env       map[string]map[string]string // the env of the last pod of each template
	logs      map[string]string            // pod directory -> its stderr
	// kill names pods to SIGKILL on their first attempt, as template(role),
	// with the file (a container path) whose appearance triggers the kill.
	kill map[string]string
}

func newArgoRun(t *testing.T, wt *workflowTemplate, args map[string]string) *argoRun {
	t.Helper()
	root := t.TempDir()
	r := &argoRun{
		t:         t,
		root:      root,
		bucket:    filepath.Join(root, "bucket"),
		templates: map[string]*template{},
		global: map[string]string{
			"workflow.name": wt.Metadata.Name + "-test",
			"workflow.uid":  "0c7e1f4a-5d0b-4b8e-9f0e-2a7d3c9b1e55",
		},
		metrics: map[string]string{},
		env:     map[string]map[string]string{},
		logs:    map[string]string{},
		kill:    map[string]string{},
	}
	for _, tpl := range wt.Spec.Templates {
		r.templates[tpl.Name] = tpl
	}
	declared := map[string]bool{}
	for _, p := range wt.Spec.Arguments.Parameters {
		declared[p.Name] = true
		if p.Value != nil {
			r.global["workflow.parameters."+p.Name] = *p.Value
		}
	}
	for k, v := range args {
		if !declared[k] {
			t.Fatalf("argument %s: the template declares no such parameter", k)
		}
		r.global["workflow.parameters."+k] = v
	}
	// Global parameters may refer to workflow variables.
	for k, v := range r.global {
		r.global[k] = r.sub(v, r.global)
	}
	return r
}

// put copies a local file into the artifact repository at key.
func (r *argoRun) put(key, src string) {
	r.t.Helper()
	dst := filepath.Join(r.bucket, filepath.FromSlash(key))
	if err := os.RemoveAll(dst); err != nil {
		r.t.Fatal(err)
	}
	if err := copyTree(src, dst); err != nil {
		r.t.Fatal(err)
	}
}

var tagRE = regexp.MustCompile(`\{\{\s*([^}]*?)\s*\}\}`)

// sub substitutes the {{...}} tags of s from scope; an unknown tag fails
// the test. Expression tags ({{=...}}) are left alone.
func (r *argoRun) sub(s string, scope map[string]string) string {
	r.t.Helper()
	return tagRE.ReplaceAllStringFunc(s, func(tag string) string {
		name := tagRE.FindStringSubmatch(tag)[1]
		if strings.HasPrefix(name, "=") {
			return tag
		}
		v, ok := scope[name]
		if !ok {
			r.t.Errorf("unresolved tag %s in %q", tag, s)
		}
		return v
	})
}

func clone(m map[string]string) map[string]string {
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// run runs the template name with the given input parameters and
// artifacts (host paths) and returns its output parameters and artifacts.
func (r *argoRun) run(name string, params, arts map[string]string) (map[string]string, map[string]string) {
	r.t.Helper()
	tpl, ok := r.templates[name]
	if !ok {
		r.t.Fatalf("no template %q", name)
	}
	scope := clone(r.global)
	declared := map[string]bool{}
	for _, p := range tpl.Inputs.Parameters {
		declared[p.Name] = true
		v, ok := params[p.Name]
		if !ok && p.Value != nil {
			v, ok = *p.Value, true
		}
		if !ok && p.Default != nil {
			v, ok = *p.Default, true
		}
		if !ok {
			r.t.Fatalf("template %s: input parameter %s has no value", name, p.Name)
		}
		scope["inputs.parameters."+p.Name] = v
	}
	for k := range params {
		if !declared[k] {
			r.t.Fatalf("template %s: passed parameter %s it does not declare", name, k)
		}
	}
	switch {
	case tpl.Container != nil:
		return r.container(tpl, scope, arts)
	case tpl.Steps != nil:
		return r.steps(tpl, scope, arts)
	}
	r.t.Fatalf("template %s: neither container nor steps", name)
	return nil, nil
}

// steps runs the step groups in order; the steps of a group run one after
// the other here (Argo runs them in parallel: none reads another's output).
func (r *argoRun) steps(tpl *template, scope map[string]string, _ map[string]string) (map[string]string, map[string]string) {
	r.t.Helper()
	local := clone(scope)
	arts := map[string]string{}
	for _, group := range tpl.Steps {
		inGroup := map[string]bool{}
		for _, st := range group {
			inGroup[st.Name] = true
		}
		for _, st := range group {
			items := []any{nil}
			if st.WithParam != "" {
				items = nil
				if err := json.Unmarshal([]byte(r.sub(st.WithParam, local)), &items); err != nil {
					r.t.Fatalf("step %s: withParam: %v", st.Name, err)
				}
				if len(items) == 0 {
					r.t.Fatalf("step %s: withParam is an empty list", st.Name)
				}
			}
			for _, item := range items {
				s := clone(local)
				switch it := item.(type) {
				case nil:
				case map[string]any:
					for k, v := range it {
						s["item."+k] = fmt.Sprint(v)
					}
				default:
					s["item"] = fmt.Sprint(it)
				}
				if st.When != "" && !evalWhen(r.t, r.sub(st.When, s)) {
					r.skipped = append(r.skipped, st.Name)
					continue
				}
				params := map[string]string{}
				for _, p := range st.Arguments.Parameters {
					if p.Value == nil {
						r.t.Fatalf("step %s: parameter %s has no value", st.Name, p.Name)
					}
					params[p.Name] = r.sub(*p.Value, s)
				}
				in := map[string]string{}
				for _, a := range st.Arguments.Artifacts {
					if key, ok := a.key(); ok {
						in[a.Name] = filepath.Join(r.bucket, filepath.FromSlash(r.sub(key, s)))
						continue
					}
					ref := strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(a.From, "{{"), "}}"))
					src, ok := arts[ref]
					if !ok {
						r.t.Fatalf("step %s: artifact %s: from %q names no output of an earlier step", st.Name, a.Name, a.From)
					}
					if from := strings.Split(ref, "."); len(from) > 1 && inGroup[from[1]] {
						r.t.Fatalf("step %s: artifact %s comes from %s, a step of the same parallel group", st.Name, a.Name, from[1])
					}
					in[a.Name] = src
				}
				op, oa := r.run(st.Template, params, in)
				if st.WithParam != "" {
					continue // Argo aggregates these; the manifests use keyed artifacts instead
				}
				for k, v := range op {
					local["steps."+st.Name+".outputs.parameters."+k] = v
				}
				for k, v := range oa {
					arts["steps."+st.Name+".outputs.artifacts."+k] = v
				}
			}
		}
	}
	out := map[string]string{}
	for _, p := range tpl.Outputs.Parameters {
		if p.ValueFrom == nil || p.ValueFrom.Parameter == "" {
			r.t.Fatalf("template %s: output %s: want valueFrom.parameter", tpl.Name, p.Name)
		}
		out[p.Name] = r.sub(p.ValueFrom.Parameter, local)
	}
	return out, nil
}

// container runs a container template's pod, and its retries.
func (r *argoRun) container(tpl *template, scope map[string]string, arts map[string]string) (map[string]string, map[string]string) {
	r.t.Helper()
	name := tpl.Name
	if role, ok := scope["inputs.parameters.role"]; ok {
		name += "(" + role + ")"
	}
	limit := 0
	if rs := tpl.RetryStrategy; rs != nil {
		limit, _ = strconv.Atoi(rs.Limit)
	}
	for attempt := 0; ; attempt++ {
		kill := ""
		if attempt == 0 {
			kill = r.kill[name]
		}
		pod, mapPath, code, stderr := r.pod(tpl, scope, arts, kill)
		r.logs[pod] = stderr
		if code == 0 {
			r.ran = append(r.ran, name)
			return r.outputs(tpl, scope, mapPath, true)
		}
		// Argo's wait container saves the outputs of a failed pod too.
		r.outputs(tpl, scope, mapPath, false)
		retry := tpl.RetryStrategy != nil && attempt < limit &&
			retryExpression(r.t, tpl.RetryStrategy.Expression, strconv.Itoa(code), "Failed", "")
		if !retry {
			r.t.Fatalf("template %s (pod %s): exit %d, not retried:\n%s", name, pod, code, stderr)
		}
		r.retried = append(r.retried, fmt.Sprintf("%s: %d", name, code))
	}
}

// pod runs one attempt of a container template: its input artifacts
// copied in, its command with the real binary, its env (resourceFieldRef
// resolved from the container's limits). A file named by kill makes the
// process SIGKILLed as soon as it exists; like Argo's emissary, a process
// killed by a signal exits 128 + the signal.
func (r *argoRun) pod(tpl *template, scope, arts map[string]string, kill string) (string, func(string) string, int, string) {
	r.t.Helper()
	r.pods++
	pod := filepath.Join(r.root, "pods", fmt.Sprintf("%03d-%s", r.pods, tpl.Name))
	policyDir, err := filepath.Abs(filepath.Join(repo, "manifests", "policy"))
	if err != nil {
		r.t.Fatal(err)
	}
	mapPath := strings.NewReplacer(
		"/work/", pod+"/work/",
		"/etc/strata/policy/", policyDir+"/",
	).Replace
	for _, a := range tpl.Inputs.Artifacts {
		src, ok := arts[a.Name]
		if key, has := a.key(); !ok && has {
			src, ok = filepath.Join(r.bucket, filepath.FromSlash(r.sub(key, scope))), true
		}
		if !ok {
			r.t.Fatalf("template %s: input artifact %s has no source", tpl.Name, a.Name)
		}
		if _, err := os.Stat(src); err != nil {
			if a.Optional {
				continue
			}
			r.t.Fatalf("template %s: input artifact %s: %v", tpl.Name, a.Name, err)
		}
		if err := copyTree(src, mapPath(r.sub(a.Path, scope))); err != nil {
			r.t.Fatal(err)
		}
	}
	for _, dir := range []string{"work/out", "tmp"} {
		if err := os.MkdirAll(filepath.Join(pod, dir), 0o755); err != nil {
			r.t.Fatal(err)
		}
	}
	c := tpl.Container
	if len(c.Command) == 0 {
		r.t.Fatalf("template %s: no command (the image's entrypoint runs tini, Argo's emissary needs the command)", tpl.Name)
	}
	var argv []string
	for _, a := range append(append([]string{}, c.Command...), c.Args...) {
		argv = append(argv, mapPath(r.sub(a, scope)))
	}
	if argv[0] == "strata" {
		argv[0] = strataBin
	}
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.Value != nil:
			env[e.Name] = r.sub(*e.Value, scope)
		case e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil:
			env[e.Name] = resourceFieldValue(r.t, c, e.ValueFrom.ResourceFieldRef.Resource)
		}
	}
	if env["TMPDIR"] == "/tmp" {
		env["TMPDIR"] = filepath.Join(pod, "tmp")
	}
	r.env[tpl.Name] = env
	var kv []string
	for k, v := range env {
		kv = append(kv, k+"="+v)
	}
	if kill != "" {
		kill = mapPath(kill)
	}
	code, stderr := runKilled(r.t, pod, kv, kill, argv[0], argv[1:]...)
	return pod, mapPath, code, stderr
}

// resourceFieldValue is the value Kubernetes gives a resourceFieldRef of
// limits.cpu with divisor 1: the limit in cores, rounded up.
func resourceFieldValue(t *testing.T, c *container, resource string) string {
	t.Helper()
	if resource != "limits.cpu" || c.Resources == nil || c.Resources.Limits["cpu"] == "" {
		t.Fatalf("container %s: resourceFieldRef %s: want limits.cpu, with a CPU limit", c.Name, resource)
	}
	cpu := c.Resources.Limits["cpu"]
	if m, ok := strings.CutSuffix(cpu, "m"); ok {
		n, err := strconv.Atoi(m)
		if err != nil {
			t.Fatalf("container %s: limits.cpu %q", c.Name, cpu)
		}
		return strconv.Itoa((n + 999) / 1000)
	}
	if _, err := strconv.Atoi(cpu); err != nil {
		t.Fatalf("container %s: limits.cpu %q", c.Name, cpu)
	}
	return cpu
}

// outputs collects a finished pod's output parameters and artifacts and
// saves keyed artifacts to the repository. After a failure (ok false)
// only the artifacts that exist are saved, as Argo's wait container does.
func (r *argoRun) outputs(tpl *template, scope map[string]string, mapPath func(string) string, ok bool) (map[string]string, map[string]string) {
	r.t.Helper()
	outParams := map[string]string{}
	outArts := map[string]string{}
	for _, a := range tpl.Outputs.Artifacts {
		src := mapPath(r.sub(a.Path, scope))
		if _, err := os.Stat(src); err != nil {
			if !a.Optional && ok {
				r.t.Fatalf("template %s: output artifact %s: %v", tpl.Name, a.Name, err)
			}
			continue
		}
		outArts[a.Name] = src
		if key, has := a.key(); has {
			r.put(r.sub(key, scope), src)
		}
	}
	if !ok {
		return nil, nil
	}
	for _, p := range tpl.Outputs.Parameters {
		if p.ValueFrom == nil || p.ValueFrom.Path == "" {
			r.t.Fatalf("template %s: output parameter %s: want valueFrom.path", tpl.Name, p.Name)
		}
		b, err := os.ReadFile(mapPath(p.ValueFrom.Path))
		switch {
		case err == nil:
			outParams[p.Name] = strings.TrimSuffix(string(b), "\n") // as Argo's executor does (SaveParameters trims one "\n")
		case p.ValueFrom.Default != nil:
			outParams[p.Name] = *p.ValueFrom.Default
		default:
			r.t.Fatalf("template %s: output parameter %s: %v", tpl.Name, p.Name, err)
		}
	}
	if tpl.Metrics != nil {
		ms := clone(scope)
		for k, v := range outParams {
			ms["outputs.parameters."+k] = v
		}
		for _, m := range tpl.Metrics.Prometheus {
			var labels []string
			for _, l := range m.Labels {
				labels = append(labels, l.Key+"="+r.sub(l.Value, ms))
			}
			v := evalMetricValue(r.t, r.sub(m.Gauge.Value, ms), ms)
			if _, err := strconv.ParseFloat(v, 64); err != nil {
				r.t.Errorf("metric %s: value %q is not a number", m.Name, v)
			}
			r.metrics[m.Name+"{"+strings.Join(labels, ",")+"}"] = v
		}
	}
	return outParams, outArts
}

// runKilled runs a command like runStrata; when kill is not empty the
// process is SIGKILLed as soon as the file kill exists. A process killed
// by a signal exits 128 + the signal number, as a container's does.
func runKilled(t *testing.T, dir string, env []string, kill, name string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(strataBin)+string(os.PathListSeparator)+os.Getenv("PATH"))
	cmd.Env = append(cmd.Env, env...)
	var stderr bytes.Buffer
	cmd.Stderr, cmd.Stdout = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	done := make(chan struct{})
	if kill != "" {
		go func() {
			for {
				select {
				case <-done:
					return
				case <-time.After(time.Millisecond):
				}
				if _, err := os.Stat(kill); err == nil {
					_ = cmd.Process.Signal(syscall.SIGKILL)
					return
				}
			}
		}()
	}
	err := cmd.Wait()
	close(done)
	if err == nil {
		return 0, stderr.String()
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("%s %q: %v", name, args, err)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), stderr.String()
	}
	return ee.ExitCode(), stderr.String()
}

// whenRE is the form of `when` the manifests use: two quoted strings
// compared with == or != (govaluate, as Argo evaluates it).
var whenRE = regexp.MustCompile(`^"([^"]*)"\s*(==|!=)\s*"([^"]*)"$`)

func evalWhen(t *testing.T, expr string) bool {
	t.Helper()
	m := whenRE.FindStringSubmatch(strings.TrimSpace(expr))
	if m == nil {
		t.Fatalf("when %q: want \"A\" == \"B\" or \"A\" != \"B\"", expr)
	}
	return (m[1] == m[3]) == (m[2] == "==")
}

// jsonpathRE is the expression tag the metrics use:
// {{=jsonpath(outputs.parameters.NAME, '$.a.b')}}.
var jsonpathRE = regexp.MustCompile(`^\{\{=\s*jsonpath\(\s*([\w.-]+)\s*,\s*'\$((?:\.[\w-]+)+)'\s*\)\s*\}\}$`)

func evalMetricValue(t *testing.T, v string, scope map[string]string) string {
	t.Helper()
	if !strings.HasPrefix(v, "{{=") {
		return v
	}
	m := jsonpathRE.FindStringSubmatch(v)
	if m == nil {
		t.Fatalf("metric value %q: want {{=jsonpath(outputs.parameters.X, '$.a.b')}}", v)
	}
	doc, ok := scope[m[1]]
	if !ok {
		t.Fatalf("metric value %q: no %s", v, m[1])
	}
	var cur any
	if err := json.Unmarshal([]byte(doc), &cur); err != nil {
		t.Fatalf("metric value %q: %s is not JSON: %v", v, m[1], err)
	}
	for _, k := range strings.Split(strings.TrimPrefix(m[2], "."), ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("metric value %q: %s has no key %s", v, m[1], k)
		}
		if cur, ok = obj[k]; !ok {
			t.Fatalf("metric value %q: %s has no key %s", v, m[1], k)
		}
	}
	return fmt.Sprint(cur)
}

func copyTree(src, dst string) error {
	return filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}

// --- The tests -----------------------------------------------------------------

// argoFiles are the WorkflowTemplates: the S3 templates and their GCS and
// Azure variants (argoVariants).
var argoFiles = []string{
	"argo/pilot-workflowtemplate.yaml",
	"argo/sweep-workflowtemplate.yaml",
	"argo/gcs/pilot-workflowtemplate.yaml",
	"argo/gcs/sweep-workflowtemplate.yaml",
	"argo/azure/pilot-workflowtemplate.yaml",
	"argo/azure/sweep-workflowtemplate.yaml",
}

// pilotRun is a run of the pilot template on the demo fixture.
func pilotRun(t *testing.T, file string, args map[string]string) *argoRun {
	t.Helper()
	fx := demoFixture(t)
	wt := loadTemplate(t, file)
	all := map[string]string{
		"model":      "models/baseline.arrow",
		"train-data": "data/train.arrow",
		"test-data":  "data/test.arrow",
	}
	for k, v := range args {
		all[k] = v
	}
	r := newArgoRun(t, wt, all)
	r.put("models/baseline.arrow", fx.baseline)
	r.put("data/train.arrow", fx.train)
	r.put("data/test.arrow", fx.test)
	return r
}

// reportJSON reads report.json of the run's report pod.
func (r *argoRun) reportJSON(t *testing.T) map[string]any {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(r.root, "pods", "*-report", "work", "out", "report", "report.json"))
	if err != nil || len(matches) != 1 {
		t.Fatalf("report.json of the report pod: %v %v", matches, err)
	}
	b, err := os.ReadFile(matches[0])
	if err != nil {
		t.Fatal(err)
	}
	var rep map[string]any
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestArgoPilot runs the pilot template step by step with the real
// binary, in each store's variant: the control is fine-tuned beside the
// candidate and validate compares with it (report.json has_control, and
// the policy's rule versus the control is judged, not skipped); the
// decision gates promote; the MLflow step is skipped without a server.
func TestArgoPilot(t *testing.T) {
	tests := []struct {
		name         string
		file         string
		policy       string
		wantDecision string
		wantPromote  bool
	}{
		{"default policy: GO, promoted", "argo/pilot-workflowtemplate.yaml", "/etc/strata/policy/default.yaml", "go", true},
		// strict.yaml asks for at most 50% of the baseline's parameters;
		// the candidate keeps about 55%: an exact NO-GO.
		{"strict policy: NO-GO, not promoted", "argo/pilot-workflowtemplate.yaml", "/etc/strata/policy/strict.yaml", "no-go", false},
		{"GCS variant: GO", "argo/gcs/pilot-workflowtemplate.yaml", "/etc/strata/policy/default.yaml", "go", true},
		{"Azure variant: GO", "argo/azure/pilot-workflowtemplate.yaml", "/etc/strata/policy/default.yaml", "go", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := pilotRun(t, tt.file, map[string]string{"policy": tt.policy})
			out, _ := r.run("pilot", nil, nil)
			if got := out["decision"]; got != tt.wantDecision {
				t.Fatalf("decision = %q, want %q (ran %v)", got, tt.wantDecision, r.ran)
			}
			wantRan := []string{"convert", "finetune(candidate)", "finetune(control)", "validate", "report"}
			wantSkipped := []string{"mlflow"}
			if tt.wantPromote {
				wantRan = append(wantRan, "promote")
			} else {
				wantSkipped = []string{"promote", "mlflow"}
			}
			if got := strings.Join(r.ran, " "); got != strings.Join(wantRan, " ") {
				t.Errorf("ran %q, want %q", got, strings.Join(wantRan, " "))
			}
			if !slices.Equal(r.skipped, wantSkipped) {
				t.Errorf("skipped %q, want %q", r.skipped, wantSkipped)
			}
			if len(r.retried) != 0 {
				t.Errorf("retried %q, want none", r.retried)
			}
			promoted := filepath.Join(r.bucket, "models", "promoted", "model.safetensors")
			if _, err := os.Stat(promoted); (err == nil) != tt.wantPromote {
				t.Errorf("promoted model exists: %v, want %v", err == nil, tt.wantPromote)
			}
			rep := r.reportJSON(t)
			if rep["has_control"] != true {
				t.Errorf("report.json has_control = %v, want true: validate did not get the control", rep["has_control"])
			}
			judged := 0
			for _, rule := range rep["rules"].([]any) {
				rule := rule.(map[string]any)
				if rule["versus"] == "control" {
					judged++
					if rule["outcome"] != "pass" && rule["outcome"] != "fail" && rule["outcome"] != "inconclusive" {
						t.Errorf("rule %v: outcome %v, want it judged", rule["rule"], rule["outcome"])
					}
				}
			}
			if judged == 0 {
				t.Error("no rule versus the control in report.json")
			}
			key := "strata_pilot_decision{decision=" + tt.wantDecision + ",structure=monarch}"
			if r.metrics[key] != "1" {
				t.Errorf("metrics %v: want %s = 1", r.metrics, key)
			}
			if len(r.metrics) != 4 {
				t.Errorf("metrics %v: want 4", r.metrics)
			}
			// OpenBLAS and Go follow the CPU limit (2 cores), not the node's.
			if env := r.env["finetune"]; env["OPENBLAS_NUM_THREADS"] != "2" || env["GOMAXPROCS"] != "2" {
				t.Errorf("finetune env %v: want OPENBLAS_NUM_THREADS=2 GOMAXPROCS=2 from limits.cpu", env)
			}
		})
	}
}

// TestArgoPilotResumesAfterKill: the candidate's fine-tuning is SIGKILLed
// (exit 137, as an OOM kill) right after its first checkpoint; the
// checkpoint, saved as the failed pod's output artifact, is the retry's
// input, the retry resumes from it (--resume), and the result is the
// bytes an uninterrupted fine-tuning writes.
func TestArgoPilotResumesAfterKill(t *testing.T) {
	r := pilotRun(t, "argo/pilot-workflowtemplate.yaml", nil)
	r.kill["finetune(candidate)"] = "/work/out/finetune/checkpoint/CURRENT"
	out, _ := r.run("pilot", nil, nil)
	if out["decision"] != "go" {
		t.Errorf("decision %q, want go", out["decision"])
	}
	if want := []string{"finetune(candidate): 137"}; !slices.Equal(r.retried, want) {
		t.Fatalf("retried %q, want %q", r.retried, want)
	}
	ckpt := filepath.Join(r.bucket, "strata", r.global["workflow.uid"], "candidate", "checkpoint", "CURRENT")
	if _, err := os.Stat(ckpt); err != nil {
		t.Fatalf("the killed pod's checkpoint was not saved: %v", err)
	}
	pods, err := filepath.Glob(filepath.Join(r.root, "pods", "*-finetune"))
	if err != nil || len(pods) != 3 {
		t.Fatalf("finetune pods %v, want the killed one, its retry and the control", pods)
	}
	resumed := filepath.Join(pods[1], "work", "out", "finetune", "model.arrow")
	if _, err := os.Stat(filepath.Join(pods[0], "work", "out", "finetune", "model.arrow")); err == nil {
		t.Fatal("the killed pod finished its fine-tuning: the kill came too late to test a resume")
	}

	// The same fine-tuning, uninterrupted, in a run of its own.
	ref := pilotRun(t, "argo/pilot-workflowtemplate.yaml", nil)
	ref.run("convert", map[string]string{"model": "models/baseline.arrow", "structure": "monarch", "blocks": "4",
		"rank": "0", "residual": "lowrank", "residual-rank": "8"}, nil)
	converted := filepath.Join(ref.root, "pods", "001-convert", "work", "out", "convert", "model.arrow")
	_, oa := ref.run("finetune", map[string]string{"role": "candidate", "model-file": "model.arrow"},
		map[string]string{"model": converted})
	want, err := os.ReadFile(filepath.Join(oa["finetuned"], "model.arrow"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(resumed)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r.logs[pods[1]], "resuming from checkpoint") {
		t.Errorf("the retry did not resume:\n%s", r.logs[pods[1]])
	}
	if !bytes.Equal(got, want) {
		t.Errorf("resumed model.arrow (%d bytes) differs from the uninterrupted one (%d bytes)", len(got), len(want))
	}
}

func TestArgoSweep(t *testing.T) {
	fx := demoFixture(t)
	wt := loadTemplate(t, "argo/sweep-workflowtemplate.yaml")
	r := newArgoRun(t, wt, map[string]string{
		"model":      "models/baseline.arrow",
		"train-data": "data/train.arrow",
		"test-data":  "data/test.arrow",
		"bootstrap":  "500",
	})
	r.put("models/baseline.arrow", fx.baseline)
	r.put("data/train.arrow", fx.train)
	r.put("data/test.arrow", fx.test)

	var candidates []map[string]string
	if err := json.Unmarshal([]byte(r.global["workflow.parameters.candidates"]), &candidates); err != nil {
		t.Fatalf("candidates: %v", err)
	}
	out, _ := r.run(wt.Spec.Entrypoint, nil, nil)

	if got, want := len(r.ran), len(candidates)+1; got != want {
		t.Errorf("ran %d pods %v, want %d", got, r.ran, want)
	}
	for _, c := range candidates {
		p := filepath.Join(r.bucket, "strata", "strata-sweep-test", "candidates", c["name"], "seed-7", c["name"], "validate", "validation.json")
		if _, err := os.Stat(p); err != nil {
			t.Errorf("candidate %s: %v", c["name"], err)
		}
	}
	if got := out["decision"]; got != "go" {
		t.Errorf("decision = %q, want go", got)
	}
	// The report judged every candidate and selected one.
	var rep struct {
		Decision   string `json:"decision"`
		Candidates []struct {
			Selected bool `json:"selected"`
		} `json:"candidates"`
	}
	summary := filepath.Join(r.root, "pods", fmt.Sprintf("%03d-select-best", r.pods), "work", "out", "report", "report.json")
	b, err := os.ReadFile(summary)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	selected := 0
	for _, c := range rep.Candidates {
		if c.Selected {
			selected++
		}
	}
	if len(rep.Candidates) != len(candidates) || selected != 1 {
		t.Errorf("report.json: %d candidates, %d selected; want %d and 1", len(rep.Candidates), selected, len(candidates))
	}
}

func TestArgoShardedConvert(t *testing.T) {
	fx := demoFixture(t)
	wt := loadTemplate(t, "argo/sweep-workflowtemplate.yaml")
	r := newArgoRun(t, wt, map[string]string{"model": "models/baseline.arrow"})
	r.put("models/baseline.arrow", fx.baseline)
	r.run("sharded-convert", nil, nil)

	var shards []string
	if err := json.Unmarshal([]byte(r.global["workflow.parameters.shards"]), &shards); err != nil {
		t.Fatal(err)
	}
	if got, want := len(r.ran), len(shards)+1; got != want {
		t.Errorf("ran %v, want %d shards and merge", r.ran, len(shards))
	}
	merged := filepath.Join(r.bucket, "strata", "strata-sweep-test", "converted")
	b, err := os.ReadFile(filepath.Join(merged, "convert.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cj struct {
		Totals struct {
			Layers int `json:"layers"`
		} `json:"totals"`
		Skipped []struct {
			Tensor string `json:"tensor"`
			Code   string `json:"code"`
		} `json:"skipped"`
	}
	if err := json.Unmarshal(b, &cj); err != nil {
		t.Fatal(err)
	}
	// Of the baseline's 3 layers, the 10 x 128 head stays dense: its
	// monarch trunk plus a rank-8 residual would be larger than it.
	if cj.Totals.Layers != 2 || len(cj.Skipped) != 1 || cj.Skipped[0].Code != "larger" {
		t.Errorf("merged convert.json: %d layers and kept dense %+v, want 2 and the head (larger)", cj.Totals.Layers, cj.Skipped)
	}
	// The merged model is usable: inspect reads it.
	if code, stderr := runStrata(t, merged, nil, strataBin, "inspect", filepath.Join(merged, "model.arrow")); code != 0 {
		t.Errorf("strata inspect merged model: exit %d\n%s", code, stderr)
	}
}

// argoSchema compiles the Argo v4.1.2 schema's WorkflowTemplate, made
// strict: the schema declares no additionalProperties, so every object
// schema that lists properties gets additionalProperties: false (what
// `argo lint --strict` and the API server's strict decoding enforce).
func argoSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	return argoSchemaDef(t, "io.argoproj.workflow.v1alpha1.WorkflowTemplate")
}

// argoSchemaDef compiles one definition of the Argo schema, made strict.
func argoSchemaDef(t *testing.T, def string) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open("argo/schema/argo-workflows-v4.1.2.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	strict(doc)
	const url = "file:///argo-workflows-v4.1.2.schema.json"
	c := jsonschema.NewCompiler()
	if err := c.AddResource(url, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(url + "#/definitions/" + def)
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

func strict(v any) {
	switch v := v.(type) {
	case map[string]any:
		if _, ok := v["properties"].(map[string]any); ok {
			if _, ok := v["additionalProperties"]; !ok {
				v["additionalProperties"] = false
			}
		}
		for _, c := range v {
			strict(c)
		}
	case []any:
		for _, c := range v {
			strict(c)
		}
	}
}

// yamlToJSON decodes a YAML document into the JSON value the schema
// library validates (anchors resolved, as kubectl and argo resolve them).
func yamlToJSON(t *testing.T, b []byte) any {
	t.Helper()
	var y any
	if err := yaml.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(y)
	if err != nil {
		t.Fatal(err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestArgoSchema(t *testing.T) {
	sch := argoSchema(t)
	for _, f := range argoFiles {
		t.Run(f, func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := sch.Validate(yamlToJSON(t, b)); err != nil {
				t.Errorf("%s: %v", f, err)
			}
		})
	}
	// The check is strict: a misspelt field, a field at the wrong level
	// and a value of the wrong type are each an error.
	pilot, err := os.ReadFile(argoFiles[0])
	if err != nil {
		t.Fatal(err)
	}
	bad := []struct{ name, old, new string }{
		{"misspelt field", "retryStrategy: &retry", "retryStrategey: &retry"},
		{"field at the wrong level", "  entrypoint: pilot", "  entrypoint: pilot\n  when: x"},
		{"wrong type", "retryPolicy: Always", "retryPolicy: [Always]"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			mutated := strings.Replace(string(pilot), tt.old, tt.new, 1)
			if mutated == string(pilot) {
				t.Fatalf("%q not found in %s", tt.old, argoFiles[0])
			}
			err := sch.Validate(yamlToJSON(t, []byte(mutated)))
			if err == nil {
				t.Fatalf("schema accepted the %s", tt.name)
			}
			t.Logf("%s: %v", tt.name, err)
		})
	}
}
