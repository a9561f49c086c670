package manifests_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// dagTask is what the DAG passes an operator, as dagcheck.py prints it.
type dagTask struct {
	TaskID         string   `json:"task_id"`
	Kind           string   `json:"kind"`
	Image          string   `json:"image"`
	Cmds           []string `json:"cmds"`
	Arguments      []string `json:"arguments"`
	DoXComPush     bool     `json:"do_xcom_push"`
	SkipOnExitCode []int    `json:"skip_on_exit_code"`
}

type dagInfo struct {
	DagID              string            `json:"dag_id"`
	Params             map[string]string `json:"params"`
	Edges              [][2]string       `json:"edges"`
	Tasks              []dagTask         `json:"tasks"`
	Gate               *bool             `json:"gate"`
	GateWithoutSummary bool              `json:"gate_without_summary"`
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

// TestAirflowDAG loads the DAG under Airflow 2's and 3's import paths and
// runs every stage's arguments with the real binary, in order, on a
// temporary /shared: GO, the summary the report pushes to XCom, and the
// gate opening on it.
func TestAirflowDAG(t *testing.T) {
	fx := demoFixture(t)
	for _, airflow := range []string{"2", "3"} {
		t.Run("airflow"+airflow, func(t *testing.T) {
			dag := loadDAG(t, airflow, "")
			if dag.DagID != "strata_pilot" {
				t.Errorf("dag_id %q", dag.DagID)
			}
			wantEdges := [][2]string{{"convert", "finetune"}, {"finetune", "validate"}, {"validate", "report"}, {"report", "gate"}, {"gate", "promote"}}
			if !slices.Equal(dag.Edges, wantEdges) {
				t.Errorf("edges %v, want %v", dag.Edges, wantEdges)
			}
			if dag.GateWithoutSummary {
				t.Error("the gate opens without a summary in XCom")
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

			var ran []string
			for _, task := range dag.Tasks {
				if task.Kind != "KubernetesPodOperator" {
					// The gate, on the summary report pushed to XCom.
					xcom := mapPath("/airflow/xcom/return.json")
					if gated := loadDAG(t, airflow, xcom); gated.Gate == nil || !*gated.Gate {
						b, _ := os.ReadFile(xcom)
						t.Fatalf("the gate stays shut on the report's summary %.300s", b)
					}
					continue
				}
				if len(task.Cmds) != 0 || task.Image != "{{ params.image }}" {
					t.Errorf("%s: cmds %q, image %q: want the image's entrypoint (strata) and the image parameter", task.TaskID, task.Cmds, task.Image)
				}
				if got, want := task.DoXComPush, task.TaskID == "report"; got != want {
					t.Errorf("%s: do_xcom_push %v, want %v", task.TaskID, got, want)
				}
				if task.TaskID == "report" {
					if !slices.Equal(task.SkipOnExitCode, []int{4}) {
						t.Errorf("report: skip_on_exit_code %v, want [4] (INCONCLUSIVE)", task.SkipOnExitCode)
					}
					if !slices.Contains(task.Arguments, "--xcom-file=/airflow/xcom/return.json") {
						t.Errorf("report: arguments %q lack --xcom-file=/airflow/xcom/return.json", task.Arguments)
					}
				}
				var args []string
				for _, a := range task.Arguments {
					args = append(args, mapPath(render(a)))
				}
				code, stderr := runStrata(t, root, nil, strataBin, args...)
				if code != 0 {
					t.Fatalf("%s: strata %q: exit %d\n%s", task.TaskID, args, code, stderr)
				}
				ran = append(ran, task.TaskID)
			}
			if want := []string{"convert", "finetune", "validate", "report", "promote"}; !slices.Equal(ran, want) {
				t.Errorf("ran %v, want %v", ran, want)
			}
			if _, err := os.Stat(mapPath(render("/shared/runs/{{ run_id }}/promoted.safetensors"))); err != nil {
				t.Errorf("promoted model: %v", err)
			}
		})
	}
}
