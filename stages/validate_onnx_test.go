//go:build onnxruntime

package stages

import (
	"context"
	"encoding/binary"
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

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/testmodels"
	"github.com/strata-ml/strata/onnxrt"
	"github.com/strata-ml/strata/validation"
)

// TestValidateONNX validates PyTorch's test models as ONNX files in ONNX
// Runtime, each reading the same 64 evaluation values a row in its own
// input shape: the MLP [N, 64] as the baseline, the CNN [N, 1, 8, 8] as the
// candidate and the transformer [N, 8, 8] as the control. Every accuracy is
// the one PyTorch computed on the same rows, exactly, and every loss within
// 1e-5 (testmodels' reference.json); the forward-only metrics have values,
// the gradient ones are not applicable, the layers come from the weights.
func TestValidateONNX(t *testing.T) {
	if err := onnxrt.Available(); err != nil {
		t.Fatalf("ONNX Runtime: %v (make deps, then test with -tags onnxruntime)", err)
	}
	set := testmodels.Build(t)
	dir := t.TempDir()
	cfg := validation.DefaultConfig()
	cfg.Baseline, cfg.Candidate, cfg.Control = set.MLP.ONNX, set.CNN.ONNX, set.Transformer.ONNX
	cfg.Data, cfg.Out, cfg.Seed = set.EvalCSV, filepath.Join(dir, "val"), 3
	cfg.Bootstrap, cfg.LatencyRuns, cfg.MaxJacobianSamples = 200, 25, 16
	res, err := Validate(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.NExamples != 360 || res.OutputWidth != 10 || res.Task != "classification" {
		t.Fatalf("n %d, outputs %d, task %s", res.NExamples, res.OutputWidth, res.Task)
	}
	acc, loss := res.Metrics[validation.MetricAccuracy], res.Metrics[validation.MetricLoss]
	for _, side := range []struct {
		name      string
		m         *testmodels.Model
		acc, loss *validation.NullableFloat
	}{
		{"baseline (MLP)", set.MLP, acc.Baseline, loss.Baseline},
		{"candidate (CNN)", set.CNN, acc.Candidate, loss.Candidate},
		{"control (transformer)", set.Transformer, acc.Control, loss.Control},
	} {
		if side.acc == nil || float64(*side.acc) != side.m.Accuracy {
			t.Errorf("%s: accuracy %s, PyTorch %v", side.name, fv(side.acc), side.m.Accuracy)
		}
		if side.loss == nil || math.Abs(float64(*side.loss)-side.m.Loss) > 1e-5 {
			t.Errorf("%s: loss %s, PyTorch %v", side.name, fv(side.loss), side.m.Loss)
		}
	}
	// The Jacobian by central differences: the MLP (GELU) is smooth; a
	// model with ReLU and max-pool may have kinks within the step at most
	// inputs, and is then null with that reason.
	if j := res.Metrics[validation.MetricJacobianCondition]; j.Baseline == nil {
		t.Errorf("jacobian_condition of the MLP: null (%s)", j.Reason)
	} else if (j.Candidate == nil || j.Control == nil) && !strings.Contains(j.Reason, "kinks of the model within the step") {
		t.Errorf("jacobian_condition: null without the reason (%s)", j.Reason)
	}
	for _, key := range []string{validation.MetricPerturbationSensitivity, validation.MetricPerturbationSensitivityRelative,
		validation.MetricPredictionFlipRate, validation.MetricLatencyMS, validation.MetricParams, validation.MetricBytes,
		validation.MetricLayerCondition} {
		m := res.Metrics[key]
		if m.Baseline == nil || m.Candidate == nil || m.Control == nil || m.NotApplicable {
			t.Errorf("%s: values %s %s %s (%s)", key, fv(m.Baseline), fv(m.Candidate), fv(m.Control), m.Reason)
		}
	}
	if g := res.Metrics[validation.MetricGradNormRatio]; !g.NotApplicable || !strings.Contains(g.Reason, "no gradients") {
		t.Errorf("grad_norm_ratio: not applicable %v, reason %q", g.NotApplicable, g.Reason)
	}
	if p := res.Metrics[validation.MetricParams]; *p.Baseline != 64*128+128+128*128+128+128*10+10 {
		t.Errorf("MLP params %v, want the fc1, fc2, fc3 weights and biases", *p.Baseline)
	}
	// Per layer, the candidate's (the CNN's) linear nodes in graph order:
	// conv1 3x3 (16 x 1*3*3), conv2 3x3 (32 x 16*3*3), conv3 1x1 (64 x 32),
	// fc (64 x 1024), head (10 x 64).
	var shapes [][2]int
	for _, l := range res.Layers {
		shapes = append(shapes, l.Shape)
	}
	if want := [][2]int{{16, 9}, {32, 144}, {64, 32}, {64, 1024}, {10, 64}}; !slices.Equal(shapes, want) {
		t.Errorf("candidate layers %v, want %v", shapes, want)
	}
	if !strings.Contains(strings.Join(res.Warnings, "\n"), "per-layer metrics from the linear nodes of the graph") {
		t.Errorf("warnings %q: the layers of an ONNX model without a structure record are not explained", res.Warnings)
	}
}

// TestValidateONNXIndexInput validates the checkpoint model, whose input
// is int64 pixel indices, on the evaluation rows as integers: accuracy as
// PyTorch's, and the metrics of input noise and derivatives not
// applicable.
func TestValidateONNXIndexInput(t *testing.T) {
	set := testmodels.Build(t)
	dir := t.TempDir()
	ds, err := arrowio.ReadDataset(set.EvalCSV)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ds.X {
		ds.X[i] = math.Round(ds.X[i] * 16)
	}
	data := filepath.Join(dir, "pixels.csv")
	if err := arrowio.WriteDataset(data, ds); err != nil {
		t.Fatal(err)
	}
	cfg := validation.DefaultConfig()
	cfg.Baseline, cfg.Candidate, cfg.Data, cfg.Out = set.Checkpoint.ONNX, set.Checkpoint.ONNX, data, filepath.Join(dir, "val")
	cfg.Bootstrap, cfg.LatencyRuns = 100, 5
	res, err := Validate(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if a := res.Metrics[validation.MetricAccuracy].Baseline; a == nil || float64(*a) != set.Checkpoint.Accuracy {
		t.Errorf("accuracy %s, PyTorch %v", fv(a), set.Checkpoint.Accuracy)
	}
	for _, key := range []string{validation.MetricJacobianCondition, validation.MetricPerturbationSensitivity} {
		if m := res.Metrics[key]; !m.NotApplicable || !strings.Contains(m.Reason, "int64") {
			t.Errorf("%s: not applicable %v, reason %q", key, m.NotApplicable, m.Reason)
		}
	}
}

// autogradScript computes, for rows of the digits evaluation data (raw
// float64 in rows.f64) and a column scale (scale.f64), the condition of
// the centred Jacobian of each test model's logits, J diag(scale) with its
// row mean removed, by PyTorch's autograd in float64 on the model rebuilt
// from make_models.py and its state_dict: an implementation that shares
// nothing with strata's central differences.
const autogradScript = `
import json, struct, sys
import numpy as np
import torch
sys.path.insert(0, sys.argv[1])
import make_models as mm
torch.set_default_dtype(torch.float64)
n, d = int(sys.argv[3]), 64
rows = np.fromfile(sys.argv[2] + "/rows.f64", dtype="<f8").reshape(n, d)
scale = np.fromfile(sys.argv[2] + "/scale.f64", dtype="<f8")
def load(path):
    with open(path, "rb") as f:
        k = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(k))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        dt = {"F32": "<f4", "I64": "<i8"}[e["dtype"]]
        out[name] = torch.from_numpy(np.frombuffer(data[a:b], dtype=dt).reshape(e["shape"]).copy())
    return out
result = {}
for name in ("mlp", "cnn", "transformer"):
    cls, shape, _ = mm.MODELS[name]
    model = cls()
    model.load_state_dict(load(sys.argv[1] + "/" + name + ".safetensors"))
    model = model.double().eval()
    conds = []
    for r in rows:
        x = torch.tensor(r)
        j = torch.autograd.functional.jacobian(lambda v: model(shape(v.unsqueeze(0)))[0], x).numpy()
        j = j * scale[None, :]
        j = j - j.mean(axis=0, keepdims=True)
        s = np.linalg.svd(j, compute_uv=False)[: j.shape[0] - 1]
        conds.append(float(s[0] / s[-1]))
    result[name] = conds
print(json.dumps(result))
`

// TestONNXJacobianAgainstAutograd checks the central-difference
// Jacobians validate takes of ONNX models against PyTorch's autograd on
// the same weights and rows (python3-torch): on every row the central
// differences keep, the condition of the centred Jacobian with respect
// to the standardised input agrees to 2%: the kept rows have one-sided
// conditions within 1% of the central one on either side, and the
// derivative lies between the one-sided differences to first order.
func TestONNXJacobianAgainstAutograd(t *testing.T) {
	set := testmodels.Build(t)
	dir := t.TempDir()
	ds, err := arrowio.ReadDataset(set.EvalCSV)
	if err != nil {
		t.Fatal(err)
	}
	const k = 12
	rows := ds.X[:k*ds.D]
	scale := dataStd(ds)
	write := func(name string, v []float64) {
		b := make([]byte, 8*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(x))
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("rows.f64", rows)
	write("scale.f64", scale)
	cmd := exec.Command(set.Python, "-c", autogradScript, set.Dir, dir, strconv.Itoa(k))
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=1")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("%s: %v\n%s", set.Python, err, ee.Stderr)
		}
		t.Fatal(err)
	}
	var want map[string][]float64
	if err := json.Unmarshal(out, &want); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, tm := range []*testmodels.Model{set.MLP, set.CNN, set.Transformer} {
		t.Run(tm.Name, func(t *testing.T) {
			m, err := loadValModel(context.Background(), tm.ONNX, "", "")
			if err != nil {
				t.Fatal(err)
			}
			defer m.close()
			if err := m.prepare(ds); err != nil {
				t.Fatal(err)
			}
			st, err := m.jacobians(rows, k, []compute.JacobianView{{ColumnScale: m.stdScale, Centre: true}})
			if err != nil {
				t.Fatal(err)
			}
			kept := 0
			for i, c := range st[0].Condition {
				if math.IsNaN(c) {
					continue
				}
				kept++
				if d := math.Abs(c-want[tm.Name][i]) / want[tm.Name][i]; d > 2*fdAgreement {
					t.Errorf("row %d: central differences %.6g, autograd %.6g (relative %.2g)", i, c, want[tm.Name][i], d)
				}
			}
			t.Logf("%s: %d of %d rows kept; conditions %v", tm.Name, kept, k, want[tm.Name])
			if 2*kept < k {
				t.Errorf("only %d of %d rows kept: the step check rejects most of the model", kept, k)
			}
		})
	}
}
