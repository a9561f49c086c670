//go:build onnxruntime

package pytorch_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strata-ml/strata/gate"
	"github.com/strata-ml/strata/internal/provenance"
	"github.com/strata-ml/strata/internal/testbin"
	"github.com/strata-ml/strata/internal/testmodels"
	"github.com/strata-ml/strata/manifests/policy"
	"github.com/strata-ml/strata/onnxrt"
	"github.com/strata-ml/strata/stages"
	"github.com/strata-ml/strata/validation"
)

// loopEpochs is the fine-tuning budget of the loop test: a few epochs of
// the 1437 training rows, short enough for `make test`.
const loopEpochs = 3

// loopCases are the PyTorch models of internal/testmodels the loop runs
// on: the class in make_models.py, one example's shape, and strata
// convert's flags. The CNN's 3x3 convolutions go low-rank (conv2 is
// converted, conv1 stays dense: its S + R would be larger); the
// transformer's attention stays dense, as strata_torch.apply requires.
var loopCases = []struct {
	name, class, shape string
	flags              []string
}{
	{"cnn", "CNN", "1,8,8", []string{"--conv-structure", "lowrank"}},
	{"transformer", "Transformer", "8,8", []string{"--exclude", "encoder.self_attn.*"}},
}

// loopSide is one model of finetune_loop.py's loop.json.
type loopSide struct {
	Params    int
	Accuracy  float64
	Loss      float64
	TrainLoss []float64 `json:"train_loss"`
	Before    *struct{ Accuracy, Loss float64 }
}

// loopResult is finetune_loop.py's loop.json.
type loopResult struct {
	Torch                        string
	Epochs, Steps                int
	Swapped                      []string
	Baseline, Candidate, Control loopSide
}

// TestPyTorchLoop runs the README's loop for any nn.Module end to end on a
// PyTorch-trained CNN and transformer encoder, through the strata binary
// and Debian's python3-torch: the safetensors checkpoint -> strata convert
// -> strata export --factors -> finetune_loop.py (strata_torch.apply on
// the module, 3 epochs of an ordinary seeded training loop on the digits
// training rows, the dense module fine-tuned the same way as the
// equal-budget control, torch.onnx.export of all three) -> strata validate
// of the three ONNX files in ONNX Runtime -> strata report with the
// default policy. It checks that
//   - apply swapped exactly the layers strata converted;
//   - validation.json is about the files the loop wrote (their SHA-256),
//     and its accuracy is, for each model, exactly the one PyTorch computes
//     on the same evaluation rows, its loss within 1e-5: the metrics are
//     the fine-tuned candidate's (fine-tuning moved its loss by more than
//     1e-3) and the control's;
//   - the candidate ONNX holds exactly the parameters of the applied
//     module, fewer than the baseline's: the savings reach the exported
//     model;
//   - report writes its files, decides (GO, NO-GO or INCONCLUSIVE: any is
//     a decision), writes the word to --decision-file and exits with its
//     code, under the embedded default policy.
func TestPyTorchLoop(t *testing.T) {
	if err := onnxrt.Available(); err != nil {
		t.Fatalf("ONNX Runtime: %v (make deps, then test with -tags onnxruntime)", err)
	}
	set := testmodels.Build(t) // fails without python3-torch and python3-onnx
	strata, err := testbin.Path()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range loopCases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			checkpoint := filepath.Join(set.Dir, c.name+".safetensors")
			dir := t.TempDir()
			conv, tuned, val, rep := filepath.Join(dir, "convert"), filepath.Join(dir, "tuned"), filepath.Join(dir, "val"), filepath.Join(dir, "report")
			factors := filepath.Join(conv, "factors.safetensors")
			run(t, strata, append([]string{"convert", "--model", checkpoint, "--out", conv}, c.flags...)...)
			run(t, strata, "export", "--model", filepath.Join(conv, "model.arrow"), "--factors", "--format", "safetensors", "--out", factors)
			run(t, set.Python, "finetune_loop.py", "--model-class", filepath.Join(set.Dir, "make_models.py")+":"+c.class,
				"--checkpoint", checkpoint, "--factors", factors, "--train", set.TrainCSV, "--eval", set.EvalCSV,
				"--input-shape", c.shape, "--epochs", strconv.Itoa(loopEpochs), "--seed", "1", "--out", tuned)
			var loop loopResult
			readJSON(t, filepath.Join(tuned, "loop.json"), &loop)
			onnx := func(name string) string { return filepath.Join(tuned, name+".onnx") }
			run(t, strata, "validate", "--baseline", onnx("baseline"), "--candidate", onnx("candidate"), "--control", onnx("control"),
				"--data", set.EvalCSV, "--out", val)
			decisionFile := filepath.Join(dir, "decision.txt")
			code := runCode(t, strata, "report", "--validation", filepath.Join(val, validation.FileName), "--out", rep, "--decision-file", decisionFile)
			t.Logf("torch %s: %s in %.1f s (%d epochs, %d steps); swapped %v", loop.Torch, c.name, time.Since(start).Seconds(), loop.Epochs, loop.Steps, loop.Swapped)

			var cv stages.ConvertResult
			readJSON(t, filepath.Join(conv, "convert.json"), &cv)
			var converted []string
			for _, l := range cv.Layers {
				converted = append(converted, l.Name)
			}
			if swapped := slices.Sorted(slices.Values(loop.Swapped)); len(swapped) == 0 || !slices.Equal(swapped, slices.Sorted(slices.Values(converted))) {
				t.Errorf("apply swapped %v, strata converted %v", loop.Swapped, converted)
			}
			if loop.Epochs != loopEpochs || loop.Candidate.Before == nil || len(loop.Candidate.TrainLoss) != loopEpochs || len(loop.Control.TrainLoss) != loopEpochs {
				t.Fatalf("loop.json: epochs %d, candidate %+v, control %+v", loop.Epochs, loop.Candidate, loop.Control)
			}
			if d := math.Abs(loop.Candidate.Loss - loop.Candidate.Before.Loss); d < 1e-3 {
				t.Errorf("fine-tuning moved the candidate's loss by %.2g only: the metrics cannot tell it from the model before", d)
			}

			v, _, err := validation.Read(filepath.Join(val, validation.FileName))
			if err != nil {
				t.Fatal(err)
			}
			for _, side := range []struct {
				name string
				in   *provenance.File
				loop loopSide
				acc  *validation.NullableFloat
				loss *validation.NullableFloat
			}{
				{"baseline", v.Inputs.Baseline, loop.Baseline, v.Metrics[validation.MetricAccuracy].Baseline, v.Metrics[validation.MetricLoss].Baseline},
				{"candidate", v.Inputs.Candidate, loop.Candidate, v.Metrics[validation.MetricAccuracy].Candidate, v.Metrics[validation.MetricLoss].Candidate},
				{"control", v.Inputs.Control, loop.Control, v.Metrics[validation.MetricAccuracy].Control, v.Metrics[validation.MetricLoss].Control},
			} {
				if side.in == nil || side.in.SHA256 != sha256File(t, onnx(side.name)) {
					t.Errorf("%s: validation.json read %+v, not %s", side.name, side.in, onnx(side.name))
				}
				if side.acc == nil || float64(*side.acc) != side.loop.Accuracy {
					t.Errorf("%s: validate's accuracy %v, PyTorch's %v", side.name, fmtNullable(side.acc), side.loop.Accuracy)
				}
				if side.loss == nil || math.Abs(float64(*side.loss)-side.loop.Loss) > 1e-5 {
					t.Errorf("%s: validate's loss %v, PyTorch's %v (want within 1e-5)", side.name, fmtNullable(side.loss), side.loop.Loss)
				}
			}
			params := v.Metrics[validation.MetricParams]
			if params.Candidate == nil || int(*params.Candidate) != loop.Candidate.Params || params.Baseline == nil || *params.Candidate >= *params.Baseline {
				t.Errorf("params: candidate.onnx %v, the applied module %d, the baseline %v", fmtNullable(params.Candidate), loop.Candidate.Params, fmtNullable(params.Baseline))
			}

			var rr stages.ReportResult
			readJSON(t, filepath.Join(rep, "report.json"), &rr)
			word, err := os.ReadFile(decisionFile)
			if err != nil {
				t.Fatal(err)
			}
			d := gate.Decision(strings.TrimSpace(string(word)))
			if !slices.Contains([]gate.Decision{gate.DecisionGo, gate.DecisionNoGo, gate.DecisionInconclusive}, d) || d != rr.Decision || code != int(d.ExitCode(false)) {
				t.Errorf("decision file %q, report.json %q, exit code %d", word, rr.Decision, code)
			}
			if rr.Inputs.Policy.Path != policy.DefaultName || len(rr.Rules) == 0 {
				t.Errorf("report judged %d rules of %s, want the default policy", len(rr.Rules), rr.Inputs.Policy.Path)
			}
			for _, f := range []string{rr.Outputs.Markdown, rr.Outputs.HTML} {
				if b, err := os.ReadFile(filepath.Join(rep, f)); err != nil || !bytes.Contains(b, []byte(rr.Decision.Label())) {
					t.Errorf("%s: %v, or the decision %s is not in it", f, err, rr.Decision.Label())
				}
			}
			t.Logf("%s: %s (%s); accuracy baseline %.4f control %.4f candidate %.4f; params %d -> %d",
				c.name, rr.Decision.Label(), rr.Why, loop.Baseline.Accuracy, loop.Control.Accuracy, loop.Candidate.Accuracy, loop.Baseline.Params, loop.Candidate.Params)
		})
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func fmtNullable(v *validation.NullableFloat) any {
	if v == nil {
		return "null"
	}
	return float64(*v)
}

// runCode runs a command and returns its exit code, failing the test
// when it does not run or is killed.
func runCode(t *testing.T, name string, args ...string) int {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee) && ee.ExitCode() > 0:
		return ee.ExitCode()
	}
	t.Fatalf("%s %v: %v\n%s", filepath.Base(name), args, err, stderr.String())
	return -1
}
