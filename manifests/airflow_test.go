package manifests_test

import (
	"bytes"
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/strata-ml/strata/mlflow/mlflowtest"
)

// dagTask is what the DAG passes an operator, as dagcheck.py prints it.
type dagTask struct {
	TaskID           string            `json:"task_id"`
	Kind             string            `json:"kind"`
	Class            string            `json:"class"`
	Image            string            `json:"image"`
	Cmds             []string          `json:"cmds"`
	Arguments        []string          `json:"arguments"`
	DoXComPush       bool              `json:"do_xcom_push"`
	SkipOnExitCode   []int             `json:"skip_on_exit_code"`
	Pod              *podSpec          `json:"pod"`
	ExecutionTimeout float64           `json:"execution_timeout_seconds"`
	Retry            map[string]string `json:"retry"`
}

type dagInfo struct {
	DagID              string            `json:"dag_id"`
	Params             map[string]string `json:"params"`
	DefaultArgs        map[string]string `json:"default_args"`
	Edges              [][2]string       `json:"edges"`
	Tasks              []dagTask         `json:"tasks"`
	Gate               *bool             `json:"gate"`
	GateWithoutSummary bool              `json:"gate_without_summary"`
	MLflowEnabled      map[string]bool   `json:"mlflow_enabled"`
}

func python3(t *testing.T) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("python3 not found: the Airflow DAG is untested")
		}
		t.Skip("python3 not found")
	}
	return py
}

// loadDAG runs dagcheck.py with Airflow 2's or 3's import paths stubbed.
func loadDAG(t *testing.T, airflow string, xcom string) dagInfo {
	t.Helper()
	args := []string{"-B", "airflow/dagcheck.py", airflow}
	if xcom != "" {
		args = append(args, xcom)
	}
	cmd := exec.Command(python3(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("python3 %q: %v\n%s", args, err, stderr.String())
	}
	var info dagInfo
	if err := json.Unmarshal(stdout.Bytes(), &info); err != nil {
		t.Fatalf("dagcheck.py output: %v\n%s", err, stdout.String())
	}
	return info
}

// jinjaRE is the Jinja the DAG's arguments use: {{ params.x }}, {{ run_id }}.
var jinjaRE = regexp.MustCompile(`\{\{\s*([\w.]+)\s*\}\}`)

func TestAirflowDAGCompiles(t *testing.T) {
	py := python3(t)
	out := filepath.Join(t.TempDir(), "dag.pyc")
	cmd := exec.Command(py, "-c", "import py_compile, sys; py_compile.compile(sys.argv[1], cfile=sys.argv[2], doraise=True)",
		"airflow/strata_pilot_dag.py", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("py_compile: %v\n%s", err, b)
	}
}

// airflowOrder is the order the test runs the DAG's tasks in: an order
// the edges allow (checked), with the candidate's and the control's
// fine-tuning side by side.
var airflowOrder = []string{"convert", "finetune", "control", "validate", "report", "gate", "promote", "mlflow_enabled", "mlflow"}

// TestAirflowDAGPods: every pod the DAG's operators build passes the
// restricted profile (the XCom sidecar included) and strata's hardening;
// each task has a deadline and a timeout; the retries follow what failed.
func TestAirflowDAGPods(t *testing.T) {
	dag := loadDAG(t, "3", "")
	for _, task := range dag.Tasks {
		if task.Kind != "KubernetesPodOperator" {
			continue
		}
		if task.Class != "StrataPodOperator" || task.Pod == nil {
			t.Errorf("%s: %s, want a StrataPodOperator", task.TaskID, task.Class)
			continue
		}
		for _, v := range restrictedViolations(*task.Pod) {
			t.Errorf("%s: %s", task.TaskID, v)
		}
		for _, v := range hardeningViolations(task.Pod.Containers[0], task.TaskID != "mlflow") {
			t.Errorf("%s: %s", task.TaskID, v)
		}
		if d := float64(task.Pod.ActiveDeadlineSeconds); d <= 0 || task.ExecutionTimeout <= d {
			t.Errorf("%s: activeDeadlineSeconds %v, execution_timeout %v s: want both, the timeout past the deadline",
				task.TaskID, d, task.ExecutionTimeout)
		}
		want := map[string]string{"1": "retry", "2": "fail", "3": "fail", "4": "fail", "134": "fail", "137": "retry", "evicted": "retry"}
		if !maps.Equal(task.Retry, want) {
			t.Errorf("%s: failures %v, want %v", task.TaskID, task.Retry, want)
		}
		if task.SkipOnExitCode != nil {
			t.Errorf("%s: skip_on_exit_code %v: report runs with --no-fail, nothing to skip", task.TaskID, task.SkipOnExitCode)
		}
	}
	if dag.DefaultArgs["retries"] != "3" {
		t.Errorf("default_args %v: want retries 3", dag.DefaultArgs)
	}
	if !imageTagRE.MatchString(dag.Params["image"]) {
		t.Errorf("image %q: want a version tag, never latest", dag.Params["image"])
	}
}

// TestAirflowDAG loads the DAG under Airflow 2's and 3's import paths and
// runs every stage's arguments with the real binary, in an order its
// edges allow, on a temporary /shared: the control fine-tuned beside the
// candidate and given to validate (report.json has_control), the summary
// report pushes to XCom for every decision, and the gate opening on GO
// only.
func TestAirflowDAG(t *testing.T) {
	fx := demoFixture(t)
	for _, airflow := range []string{"2", "3"} {
		for _, policy := range []string{"default", "strict"} {
			t.Run("airflow"+airflow+"/"+policy, func(t *testing.T) {
				runAirflowDAG(t, fx, airflow, map[string]string{"policy": "/etc/strata/policy/" + policy + ".yaml"}, nil)
			})
		}
	}
	// With a tracking server: the mlflow task hands the run over.
	t.Run("airflow3/mlflow", func(t *testing.T) {
		s := mlflowtest.NewServer()
		defer s.Close()
		run := runAirflowDAG(t, fx, "3", map[string]string{"mlflow_tracking_uri": s.URL}, nil)
		b, err := os.ReadFile(filepath.Join(run, "report", "report.json"))
		if err != nil {
			t.Fatal(err)
		}
		var rep map[string]any
		if err := json.Unmarshal(b, &rep); err != nil {
			t.Fatal(err)
		}
		checkMLflow(t, s, "go", "manual__2026-01-01T00:00:00+00:00", rep, func(name string) string { return filepath.Join(run, name) })
	})
}

// runAirflowDAG runs the DAG's tasks with params overridden and extra
// environment for the pods; it returns the run's /shared/runs directory.
func runAirflowDAG(t *testing.T, fx fixture, airflow string, override map[string]string, env []string) string {
	t.Helper()
	dag := loadDAG(t, airflow, "")
	if dag.DagID != "strata_pilot" {
		t.Errorf("dag_id %q", dag.DagID)
	}
	wantEdges := [][2]string{{"convert", "finetune"}, {"finetune", "validate"}, {"control", "validate"},
		{"validate", "report"}, {"report", "gate"}, {"gate", "promote"}, {"report", "mlflow_enabled"}, {"mlflow_enabled", "mlflow"}}
	if !slices.Equal(dag.Edges, wantEdges) {
		t.Errorf("edges %v, want %v", dag.Edges, wantEdges)
	}
	pos := map[string]int{}
	for i, id := range airflowOrder {
		pos[id] = i
	}
	for _, e := range dag.Edges {
		if pos[e[0]] >= pos[e[1]] {
			t.Fatalf("edge %v: the test's order runs them the other way", e)
		}
	}
	if dag.GateWithoutSummary {
		t.Error("the gate opens without a summary in XCom")
	}
	if dag.MLflowEnabled["without_uri"] || !dag.MLflowEnabled["with_uri"] {
		t.Errorf("mlflow_enabled %v: want it open only with a tracking URI", dag.MLflowEnabled)
	}

	root := t.TempDir()
	policyDir, err := filepath.Abs("policy")
	if err != nil {
		t.Fatal(err)
	}
	mapPath := strings.NewReplacer(
		"/shared/", filepath.Join(root, "shared")+"/",
		"/airflow/xcom/", filepath.Join(root, "xcom")+"/",
		"/etc/strata/policy/", policyDir+"/",
	).Replace
	params := map[string]string{}
	for k, v := range dag.Params {
		params["params."+k] = v
	}
	params["params.model"] = "models/baseline.arrow"
	params["params.train"] = "data/train.arrow"
	params["params.test"] = "data/test.arrow"
	for k, v := range override {
		params["params."+k] = v
	}
	params["run_id"] = "manual__2026-01-01T00:00:00+00:00"
	render := func(s string) string {
		return jinjaRE.ReplaceAllStringFunc(s, func(tag string) string {
			v, ok := params[jinjaRE.FindStringSubmatch(tag)[1]]
			if !ok {
				t.Errorf("unknown Jinja %s in %q", tag, s)
			}
			return v
		})
	}
	for src, dst := range map[string]string{
		fx.baseline: "/shared/in/models/baseline.arrow",
		fx.train:    "/shared/in/data/train.arrow",
		fx.test:     "/shared/in/data/test.arrow",
	} {
		if err := copyTree(src, mapPath(dst)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(mapPath("/airflow/xcom/"), 0o755); err != nil {
		t.Fatal(err)
	}

	tasks := map[string]dagTask{}
	for _, task := range dag.Tasks {
		tasks[task.TaskID] = task
	}
	var ran []string
	open := map[string]bool{}
	xcom := mapPath("/airflow/xcom/return.json")
	for _, id := range airflowOrder {
		task, ok := tasks[id]
		if !ok {
			t.Fatalf("no task %s", id)
		}
		// A closed ShortCircuitOperator skips what follows it.
		if slices.ContainsFunc(dag.Edges, func(e [2]string) bool {
			return e[1] == id && tasks[e[0]].Kind == "ShortCircuitOperator" && !open[e[0]]
		}) {
			continue
		}
		switch id {
		case "gate":
			gated := loadDAG(t, airflow, xcom)
			open[id] = gated.Gate != nil && *gated.Gate
			continue
		case "mlflow_enabled":
			open[id] = params["params.mlflow_tracking_uri"] != ""
			continue
		}
		if len(task.Cmds) != 0 || task.Image != "{{ params.image }}" {
			t.Errorf("%s: cmds %q, image %q: want the image's entrypoint (strata) and the image parameter", id, task.Cmds, task.Image)
		}
		if got, want := task.DoXComPush, id == "report"; got != want {
			t.Errorf("%s: do_xcom_push %v, want %v", id, got, want)
		}
		var args []string
		for _, a := range task.Arguments {
			args = append(args, mapPath(render(a)))
		}
		podEnv := append([]string{}, env...)
		for _, e := range task.Pod.Containers[0].Env {
			if e.Value != nil {
				podEnv = append(podEnv, e.Name+"="+mapPath(render(*e.Value)))
			}
		}
		code, stderr := runStrata(t, root, podEnv, strataBin, args...)
		if code != 0 {
			t.Fatalf("%s: strata %q: exit %d\n%s", id, args, code, stderr)
		}
		ran = append(ran, id)
	}

	summary, err := os.ReadFile(xcom)
	if err != nil {
		t.Fatalf("no XCom summary: %v", err)
	}
	var sum struct {
		Decision string `json:"decision"`
	}
	if err := json.Unmarshal(summary, &sum); err != nil {
		t.Fatal(err)
	}
	wantRan := []string{"convert", "finetune", "control", "validate", "report"}
	if sum.Decision == "go" {
		wantRan = append(wantRan, "promote")
	}
	if params["params.mlflow_tracking_uri"] != "" {
		wantRan = append(wantRan, "mlflow")
	}
	if !slices.Equal(ran, wantRan) {
		t.Errorf("decision %s: ran %v, want %v", sum.Decision, ran, wantRan)
	}
	run := mapPath(render("/shared/runs/{{ run_id }}"))
	if _, err := os.Stat(filepath.Join(run, "promoted.safetensors")); (err == nil) != (sum.Decision == "go") {
		t.Errorf("decision %s: promoted model exists %v", sum.Decision, err == nil)
	}
	var rep struct {
		HasControl bool `json:"has_control"`
	}
	b, err := os.ReadFile(filepath.Join(run, "report", "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil || !rep.HasControl {
		t.Errorf("report.json has_control %v (%v): validate did not get the control", rep.HasControl, err)
	}
	return run
}
