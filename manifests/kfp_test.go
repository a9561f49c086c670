package manifests_test

// The Kubeflow Pipelines v2 manifests, checked the way the Argo ones are:
// the pipeline spec (KFP's IR, PipelineSpec) is loaded and run task by
// task with the real binary, as KFP's driver and launcher would run it:
// importers resolve their URIs, placeholders ({{$.inputs...}},
// {{$.outputs...}}) are substituted, output parameters are read from their
// files verbatim, sub-DAGs run when their triggerPolicy condition holds on
// the real decision, and a failed task is retried by its retryPolicy.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/strata-ml/strata/mlflow/mlflowtest"
)

// kfpSpec is the part of a PipelineSpec the manifests use.
type kfpSpec struct {
	Components     map[string]*kfpComponent `yaml:"components"`
	DeploymentSpec struct {
		Executors map[string]kfpExecutor `yaml:"executors"`
	} `yaml:"deploymentSpec"`
	PipelineInfo struct {
		Name string `yaml:"name"`
	} `yaml:"pipelineInfo"`
	Root          kfpComponent `yaml:"root"`
	SchemaVersion string       `yaml:"schemaVersion"`
}

type kfpComponent struct {
	ExecutorLabel    string  `yaml:"executorLabel"`
	InputDefinitions kfpDefs `yaml:"inputDefinitions"`
	OutputDefs       kfpDefs `yaml:"outputDefinitions"`
	DAG              *kfpDAG `yaml:"dag"`
}

type kfpDefs struct {
	Parameters map[string]struct {
		ParameterType string  `yaml:"parameterType"`
		DefaultValue  *string `yaml:"defaultValue"`
	} `yaml:"parameters"`
	Artifacts map[string]any `yaml:"artifacts"`
}

type kfpDAG struct {
	Tasks   map[string]*kfpTask `yaml:"tasks"`
	Outputs struct {
		Parameters map[string]struct {
			ValueFromParameter struct {
				OutputParameterKey string `yaml:"outputParameterKey"`
				ProducerSubtask    string `yaml:"producerSubtask"`
			} `yaml:"valueFromParameter"`
		} `yaml:"parameters"`
	} `yaml:"outputs"`
}

type kfpTaskOutput struct {
	OutputKey    string `yaml:"outputParameterKey"`
	OutputArtKey string `yaml:"outputArtifactKey"`
	ProducerTask string `yaml:"producerTask"`
}

type kfpTask struct {
	ComponentRef struct {
		Name string `yaml:"name"`
	} `yaml:"componentRef"`
	DependentTasks []string `yaml:"dependentTasks"`
	Inputs         struct {
		Parameters map[string]struct {
			ComponentInputParameter string         `yaml:"componentInputParameter"`
			TaskOutputParameter     *kfpTaskOutput `yaml:"taskOutputParameter"`
			RuntimeValue            *struct {
				Constant *string `yaml:"constant"`
			} `yaml:"runtimeValue"`
		} `yaml:"parameters"`
		Artifacts map[string]struct {
			ComponentInputArtifact string         `yaml:"componentInputArtifact"`
			TaskOutputArtifact     *kfpTaskOutput `yaml:"taskOutputArtifact"`
		} `yaml:"artifacts"`
	} `yaml:"inputs"`
	TriggerPolicy *struct {
		Condition string `yaml:"condition"`
	} `yaml:"triggerPolicy"`
	RetryPolicy *struct {
		MaxRetryCount int `yaml:"maxRetryCount"`
	} `yaml:"retryPolicy"`
}

type kfpExecutor struct {
	Container *struct {
		Image   string   `yaml:"image"`
		Command []string `yaml:"command"`
		Args    []string `yaml:"args"`
		Env     []struct {
			Name  string `yaml:"name"`
			Value string `yaml:"value"`
		} `yaml:"env"`
		Resources map[string]any `yaml:"resources"`
	} `yaml:"container"`
	Importer *struct {
		ArtifactURI struct {
			RuntimeParameter string `yaml:"runtimeParameter"`
		} `yaml:"artifactUri"`
	} `yaml:"importer"`
}

func loadKFP(t *testing.T, path string) (*kfpSpec, map[string]any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var spec kfpSpec
	if err := yaml.Unmarshal(b, &spec); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var raw map[string]any
	if err := yaml.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	return &spec, raw
}

var kfpStages = []string{"convert", "finetune", "validate", "report", "promote", "mlflow"}

// TestKFPComponents: each stage's component spec is the component and the
// executor the pipeline embeds, a valid single-component PipelineSpec of
// schema 2.1.0, and its resources and threads agree.
func TestKFPComponents(t *testing.T) {
	_, pipeline := loadKFP(t, "kfp/pilot-pipeline.yaml")
	pcomps := pipeline["components"].(map[string]any)
	pexecs := pipeline["deploymentSpec"].(map[string]any)["executors"].(map[string]any)
	for _, stage := range kfpStages {
		spec, raw := loadKFP(t, filepath.Join("kfp", "components", stage+".yaml"))
		if spec.SchemaVersion != "2.1.0" || spec.Root.DAG == nil || len(spec.Root.DAG.Tasks) != 1 {
			t.Errorf("%s: schemaVersion %q, root dag %v: want a single-component PipelineSpec 2.1.0", stage, spec.SchemaVersion, spec.Root.DAG)
		}
		comp := raw["components"].(map[string]any)["comp-"+stage]
		exec := raw["deploymentSpec"].(map[string]any)["executors"].(map[string]any)["exec-"+stage]
		if !reflect.DeepEqual(comp, pcomps["comp-"+stage]) {
			t.Errorf("%s: component differs from the pipeline's comp-%s", stage, stage)
		}
		if !reflect.DeepEqual(exec, pexecs["exec-"+stage]) {
			t.Errorf("%s: executor differs from the pipeline's exec-%s", stage, stage)
		}
		c := spec.DeploymentSpec.Executors["exec-"+stage].Container
		if c == nil || !imageTagRE.MatchString(c.Image) {
			t.Fatalf("%s: want a container of a versioned strata image", stage)
		}
		limit := fmt.Sprint(c.Resources["resourceCpuLimit"])
		for _, k := range []string{"resourceCpuRequest", "resourceMemoryRequest", "resourceMemoryLimit"} {
			if c.Resources[k] == nil {
				t.Errorf("%s: resources has no %s", stage, k)
			}
		}
		env := map[string]string{}
		for _, e := range c.Env {
			env[e.Name] = e.Value
		}
		if env["OPENBLAS_NUM_THREADS"] != limit || env["GOMAXPROCS"] != limit {
			t.Errorf("%s: env %v: want OPENBLAS_NUM_THREADS and GOMAXPROCS = the CPU limit %s", stage, env, limit)
		}
	}
}

// kfpRun runs a PipelineSpec locally.
type kfpRun struct {
	t      *testing.T
	spec   *kfpSpec
	root   string
	bucket string
	job    string
	n      int
	ran    []string // container tasks run to success, by task name
	skip   []string // condition tasks whose triggerPolicy was false
}

// kfpPlaceholderRE is a runtime placeholder of a container's command and
// arguments.
var kfpPlaceholderRE = regexp.MustCompile(`\{\{\$\.(inputs|outputs)\.(parameters|artifacts)\['([^']+)'\](\.path|\.output_file)?\}\}`)

// kfpConditionRE is the form of triggerPolicy.condition dsl.Condition
// compiles a comparison of a parameter with a string to.
var kfpConditionRE = regexp.MustCompile(`^inputs\.parameter_values\['([^']+)'\] (==|!=) '([^']*)'$`)

// dag runs a DAG with the given input parameters and artifacts (local
// paths); it returns every task's output parameters and artifacts.
func (k *kfpRun) dag(d *kfpDAG, params, arts map[string]string) (map[string]map[string]string, map[string]map[string]string) {
	k.t.Helper()
	outP := map[string]map[string]string{}
	outA := map[string]map[string]string{}
	done := map[string]bool{}
	for len(done) < len(d.Tasks) {
		progressed := false
		names := make([]string, 0, len(d.Tasks))
		for n := range d.Tasks {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, name := range names {
			task := d.Tasks[name]
			if done[name] || slices.ContainsFunc(task.DependentTasks, func(dep string) bool { return !done[dep] }) {
				continue
			}
			inP, inA := map[string]string{}, map[string]string{}
			for key, in := range task.Inputs.Parameters {
				switch {
				case in.ComponentInputParameter != "":
					v, ok := params[in.ComponentInputParameter]
					if !ok {
						k.t.Fatalf("task %s: input %s: no parameter %s", name, key, in.ComponentInputParameter)
					}
					inP[key] = v
				case in.TaskOutputParameter != nil:
					o := in.TaskOutputParameter
					if !slices.Contains(task.DependentTasks, o.ProducerTask) {
						k.t.Fatalf("task %s: input %s from %s, not among its dependentTasks", name, key, o.ProducerTask)
					}
					inP[key] = outP[o.ProducerTask][o.OutputKey]
				case in.RuntimeValue != nil && in.RuntimeValue.Constant != nil:
					inP[key] = strings.ReplaceAll(*in.RuntimeValue.Constant, "{{$.pipeline_job_name}}", k.job)
				default:
					k.t.Fatalf("task %s: input %s has no source", name, key)
				}
			}
			for key, in := range task.Inputs.Artifacts {
				switch {
				case in.ComponentInputArtifact != "":
					inA[key] = arts[in.ComponentInputArtifact]
				case in.TaskOutputArtifact != nil:
					o := in.TaskOutputArtifact
					if !slices.Contains(task.DependentTasks, o.ProducerTask) {
						k.t.Fatalf("task %s: artifact %s from %s, not among its dependentTasks", name, key, o.ProducerTask)
					}
					p, ok := outA[o.ProducerTask][o.OutputArtKey]
					if !ok {
						k.t.Fatalf("task %s: artifact %s: %s has no output %s", name, key, o.ProducerTask, o.OutputArtKey)
					}
					inA[key] = p
				}
				if inA[key] == "" {
					k.t.Fatalf("task %s: artifact %s has no source", name, key)
				}
			}
			done[name], progressed = true, true
			if tp := task.TriggerPolicy; tp != nil {
				m := kfpConditionRE.FindStringSubmatch(tp.Condition)
				if m == nil {
					k.t.Fatalf("task %s: condition %q: want inputs.parameter_values['X'] == or != 'V'", name, tp.Condition)
				}
				if (inP[m[1]] == m[3]) != (m[2] == "==") {
					k.skip = append(k.skip, name)
					continue
				}
			}
			comp := k.spec.Components[task.ComponentRef.Name]
			if comp == nil {
				k.t.Fatalf("task %s: no component %s", name, task.ComponentRef.Name)
			}
			if comp.DAG != nil {
				k.dag(comp.DAG, inP, inA)
				continue
			}
			retries := 0
			if task.RetryPolicy != nil {
				retries = task.RetryPolicy.MaxRetryCount
			}
			outP[name], outA[name] = k.exec(name, comp, inP, inA, retries)
		}
		if !progressed {
			k.t.Fatalf("DAG stuck: done %v of %d tasks (a dependency cycle or an unknown dependency)", done, len(d.Tasks))
		}
	}
	return outP, outA
}

// exec runs one task's executor.
func (k *kfpRun) exec(name string, comp *kfpComponent, params, arts map[string]string, retries int) (map[string]string, map[string]string) {
	k.t.Helper()
	ex := k.spec.DeploymentSpec.Executors[comp.ExecutorLabel]
	if ex.Importer != nil {
		uri := params[ex.Importer.ArtifactURI.RuntimeParameter]
		rest, ok := strings.CutPrefix(uri, "s3://")
		if !ok {
			k.t.Fatalf("importer %s: uri %q: the test's object store is s3://", name, uri)
		}
		return nil, map[string]string{"artifact": filepath.Join(k.bucket, filepath.FromSlash(rest))}
	}
	for key := range comp.InputDefinitions.Parameters {
		if _, ok := params[key]; !ok {
			k.t.Fatalf("task %s: input parameter %s has no value", name, key)
		}
	}
	for attempt := 0; ; attempt++ {
		k.n++
		pod := filepath.Join(k.root, "pods", fmt.Sprintf("%03d-%s", k.n, name))
		outA, outFiles := map[string]string{}, map[string]string{}
		for key := range comp.OutputDefs.Artifacts {
			outA[key] = filepath.Join(pod, "outputs", "artifacts", key)
		}
		for key := range comp.OutputDefs.Parameters {
			outFiles[key] = filepath.Join(pod, "outputs", "parameters", key)
		}
		for _, d := range []string{"outputs/artifacts", "outputs/parameters", "tmp"} {
			if err := os.MkdirAll(filepath.Join(pod, d), 0o755); err != nil {
				k.t.Fatal(err)
			}
		}
		sub := func(s string) string {
			return kfpPlaceholderRE.ReplaceAllStringFunc(s, func(ph string) string {
				m := kfpPlaceholderRE.FindStringSubmatch(ph)
				var v string
				var ok bool
				switch m[1] + "." + m[2] + m[4] {
				case "inputs.parameters":
					v, ok = params[m[3]]
				case "inputs.artifacts.path":
					v, ok = arts[m[3]]
				case "outputs.artifacts.path":
					v, ok = outA[m[3]]
				case "outputs.parameters.output_file":
					v, ok = outFiles[m[3]]
				}
				if !ok {
					k.t.Fatalf("task %s: placeholder %s names nothing the component declares", name, ph)
				}
				return v
			})
		}
		c := ex.Container
		var argv []string
		for _, a := range append(append([]string{}, c.Command...), c.Args...) {
			// The container's own /tmp, then the placeholders.
			a = sub(strings.ReplaceAll(a, "/tmp/", filepath.Join(pod, "tmp")+"/"))
			if strings.Contains(a, "{{$") {
				k.t.Fatalf("task %s: unknown placeholder in %q", name, a)
			}
			argv = append(argv, a)
		}
		if argv[0] == "strata" {
			argv[0] = strataBin
		}
		var env []string
		for _, e := range c.Env {
			v := e.Value
			if e.Name == "TMPDIR" {
				v = filepath.Join(pod, "tmp")
			}
			env = append(env, e.Name+"="+v)
		}
		code, stderr := runStrata(k.t, pod, env, argv[0], argv[1:]...)
		if code != 0 {
			if attempt < retries && code == 1 {
				continue
			}
			k.t.Fatalf("task %s: %q exited %d:\n%s", name, argv, code, stderr)
		}
		outP := map[string]string{}
		for key, f := range outFiles {
			b, err := os.ReadFile(f)
			if err != nil {
				k.t.Fatalf("task %s: output parameter %s: %v", name, key, err)
			}
			outP[key] = string(b) // verbatim: the component writes the exact value
		}
		for key, p := range outA {
			if _, err := os.Stat(p); err != nil {
				k.t.Fatalf("task %s: output artifact %s: %v", name, key, err)
			}
		}
		k.ran = append(k.ran, name)
		return outP, outA
	}
}

// runKFP runs the pilot pipeline on the demo fixture with parameters
// overridden; it returns the run and the pipeline's output parameters.
func runKFP(t *testing.T, override map[string]string) (*kfpRun, map[string]string) {
	t.Helper()
	fx := demoFixture(t)
	spec, _ := loadKFP(t, "kfp/pilot-pipeline.yaml")
	root := t.TempDir()
	k := &kfpRun{t: t, spec: spec, root: root, bucket: filepath.Join(root, "bucket"), job: "strata-pilot-test"}
	for src, key := range map[string]string{fx.baseline: "models/baseline.arrow", fx.train: "data/train.arrow", fx.test: "data/test.arrow"} {
		if err := copyTree(src, filepath.Join(k.bucket, key)); err != nil {
			t.Fatal(err)
		}
	}
	params := map[string]string{
		"model_uri": "s3://models/baseline.arrow", "train_uri": "s3://data/train.arrow", "test_uri": "s3://data/test.arrow",
	}
	policyDir, err := filepath.Abs("policy")
	if err != nil {
		t.Fatal(err)
	}
	for name, def := range spec.Root.InputDefinitions.Parameters {
		if _, ok := params[name]; !ok && def.DefaultValue != nil {
			params[name] = strings.ReplaceAll(*def.DefaultValue, "/etc/strata/policy/", policyDir+"/")
		}
	}
	for key, v := range override {
		params[key] = strings.ReplaceAll(v, "/etc/strata/policy/", policyDir+"/")
	}
	outP, _ := k.dag(spec.Root.DAG, params, nil)
	out := map[string]string{}
	for key, o := range spec.Root.DAG.Outputs.Parameters {
		out[key] = outP[o.ValueFromParameter.ProducerSubtask][o.ValueFromParameter.OutputParameterKey]
	}
	if _, ok := spec.Root.OutputDefs.Parameters["decision"]; !ok {
		t.Error("the pipeline declares no output parameter decision")
	}
	return k, out
}

// TestKFPPilot runs the KFP pilot: the control beside the candidate,
// validate with both (report.json has_control), the decision as the
// pipeline's output parameter and promote gated on it.
func TestKFPPilot(t *testing.T) {
	tests := []struct {
		policy, decision string
		promote          bool
	}{
		{"/etc/strata/policy/default.yaml", "go", true},
		{"/etc/strata/policy/strict.yaml", "no-go", false},
	}
	for _, tt := range tests {
		t.Run(tt.decision, func(t *testing.T) {
			k, out := runKFP(t, map[string]string{"policy": tt.policy})
			if out["decision"] != tt.decision {
				t.Fatalf("decision %q, want %q (ran %v)", out["decision"], tt.decision, k.ran)
			}
			// The runner starts ready tasks in name order.
			want := []string{"control", "convert", "finetune", "validate", "report"}
			wantSkip := []string{"condition-2"}
			if tt.promote {
				want = append(want, "promote")
			} else {
				wantSkip = []string{"condition-1", "condition-2"}
			}
			if !slices.Equal(k.ran, want) || !slices.Equal(k.skip, wantSkip) {
				t.Errorf("ran %v, skipped %v; want %v, %v", k.ran, k.skip, want, wantSkip)
			}
			reports, _ := filepath.Glob(filepath.Join(k.root, "pods", "*-report", "outputs", "artifacts", "report", "report.json"))
			if len(reports) != 1 {
				t.Fatalf("report.json: %v", reports)
			}
			b, err := os.ReadFile(reports[0])
			if err != nil || !strings.Contains(string(b), `"has_control": true`) {
				t.Errorf("report.json has no control (%v)", err)
			}
		})
	}
}

// TestKFPPilotMLflow: with a tracking server the condition opens and the
// mlflow component hands the run to the stand-in.
func TestKFPPilotMLflow(t *testing.T) {
	s := mlflowtest.NewServer()
	defer s.Close()
	k, out := runKFP(t, map[string]string{"mlflow_tracking_uri": s.URL})
	if out["decision"] != "go" || !slices.Contains(k.ran, "mlflow") {
		t.Fatalf("decision %q, ran %v: want go and mlflow", out["decision"], k.ran)
	}
	b, err := os.ReadFile(mustGlob(t, filepath.Join(k.root, "pods", "*-report", "outputs", "artifacts", "report", "report.json")))
	if err != nil {
		t.Fatal(err)
	}
	var rep map[string]any
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	checkMLflow(t, s, "go", "strata-pilot-test", rep, func(name string) string {
		dir := map[string]string{"report": "report", "finetune": "finetuned"}[name]
		return mustGlob(t, filepath.Join(k.root, "pods", "*-"+name, "outputs", "artifacts", dir))
	})
}

func mustGlob(t *testing.T, pattern string) string {
	t.Helper()
	m, err := filepath.Glob(pattern)
	if err != nil || len(m) != 1 {
		t.Fatalf("%s: %v %v", pattern, m, err)
	}
	return m[0]
}
