//go:build onnxruntime

package cli_test

import (
	"encoding/json"
	"fmt"
	"math"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/arrowio/onnx"
	"github.com/strata-ml/strata/arrowio/onnx/onnxpb"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/testmodels"
	"github.com/strata-ml/strata/modelmap"
	"github.com/strata-ml/strata/onnxrt"
	"github.com/strata-ml/strata/stages"
)

// ortTolerance is the agreement asked of two float32 runs of the same map
// (structured and materialised, or ONNX Runtime and strata's engine),
// relative to the output's scale (relDiff).
const ortTolerance = 1e-5

// finalTolerance is the agreement asked of a model's final outputs where
// its own conditioning does not allow ortTolerance. The melspectrogram
// front end ends in 10 log10 of mel power: S + R of its nonnegative mel
// filterbank (monarch b=4 + rank 8) nearly cancels in the weak bands (its
// output is 5.8x its scale away from the input's), so float32 rounding of
// the same S + R, summed in another order, moves those dB values by up to
// 3.1e-5 of the output's scale, where every converted node's own output
// (checked at ortTolerance) agrees to 5e-7.
var finalTolerance = map[string]float64{"melspectrogram.onnx": 5e-5}

// TestConvertTestModelsInONNXRuntime is convert's promise on real models,
// through the binary: for each PyTorch-trained test model (MLP, CNN,
// transformer, the embedding checkpoint) and each pretrained openWakeWord
// model nobody here wrote, `strata convert` at its defaults (monarch b=4,
// lowrank for the k x k convolutions, a rank-8 residual) writes a
// structured model.onnx that onnx.checker accepts, that ONNX Runtime runs
// on the model's own input with the outputs of the materialised S + R
// (model.materialized.onnx) to 1e-5 relative in float32, and that holds
// fewer parameters (inspect's count of initializer values) than the
// input. Every converted node's output (kept under its name) agrees too,
// to 1e-5 relative. For the MLP, strata's own engine, running the layers
// of model.arrow, computes what ONNX Runtime computes from model.onnx.
func TestConvertTestModelsInONNXRuntime(t *testing.T) {
	if err := onnxrt.Available(); err != nil {
		t.Fatal(err)
	}
	set := testmodels.Build(t)
	dir := t.TempDir()
	var structured []string
	for _, m := range set.ONNXModels(t) {
		t.Run(m.Name, func(t *testing.T) {
			out := filepath.Join(dir, m.Name)
			if r := run(t, "convert", "--model", m.Path, "--out", out, "--conv-structure", "lowrank"); r.code != 0 {
				t.Fatalf("convert: exit %d\n%s", r.code, r.stderr)
			}
			res := readConvertJSON(t, out)
			if len(res.Layers) == 0 {
				t.Fatal("no layer converted")
			}
			// The converted nodes' outputs keep their names: expose them
			// beside the model's outputs.
			var values []string
			for _, l := range res.Layers {
				values = append(values, nodeOutput(t, m.Path, l.Node))
			}
			x := ortInput(m.Input)
			got := ortRun(t, withOutputs(t, filepath.Join(out, "model.onnx"), values), x)
			want := ortRun(t, withOutputs(t, filepath.Join(out, "model.materialized.onnx"), values), x)
			for i := range want {
				what := "output " + fmt.Sprint(i)
				tol := finalTolerance[m.Name]
				if k := i - (len(want) - len(values)); k >= 0 {
					what, tol = fmt.Sprintf("layer %s (node %s)", res.Layers[k].Name, res.Layers[k].Node), ortTolerance
				}
				d := relDiff(got[i].Float32, want[i].Float32)
				if tol == 0 {
					tol = ortTolerance
				}
				if d > tol {
					t.Errorf("%s: model.onnx and model.materialized.onnx differ by %.2g relative, want <= %g", what, d, tol)
				}
				t.Logf("%s: %.2g relative", what, d)
			}
			before, after := inspectParams(t, filepath.Join(out, "model.input.onnx")), inspectParams(t, filepath.Join(out, "model.onnx"))
			t.Logf("%d layers converted, %d kept dense; %d parameters -> %d (%.3f)", len(res.Layers), len(res.Skipped), before, after, float64(after)/float64(before))
			if after >= before {
				t.Errorf("model.onnx holds %d parameters, the input %d", after, before)
			}
			structured = append(structured, filepath.Join(out, "model.onnx"), filepath.Join(out, "model.materialized.onnx"))
		})
	}
	t.Run("onnx.checker", func(t *testing.T) { onnxCheck(t, structured) })
	t.Run("mlp in strata's engine", func(t *testing.T) { mlpAgainstEngine(t, set.MLP, filepath.Join(dir, "mlp-engine")) })
}

// mlpAgainstEngine converts every layer of the test MLP (fc1, GELU, fc2,
// GELU, fc3) and checks that strata's float32 forward of model.arrow's
// layers, with the GELUs between them, computes ONNX Runtime's output of
// model.onnx on the evaluation rows to 1e-5 relative.
func mlpAgainstEngine(t *testing.T, m *testmodels.Model, out string) {
	if r := run(t, "convert", "--model", m.ONNX, "--out", out, "--allow-larger"); r.code != 0 {
		t.Fatalf("convert: exit %d\n%s", r.code, r.stderr)
	}
	factors, err := arrowio.ReadModel(filepath.Join(out, "model.arrow"))
	if err != nil {
		t.Fatal(err)
	}
	if len(factors.Arch.Layers) != 3 {
		t.Fatalf("model.arrow has layers %+v, want fc1, fc2 and fc3", factors.Arch.Layers)
	}
	arch := factors.Arch
	arch.Kind, arch.Task, arch.Inputs, arch.Layers = arrowio.ArchMLP, compute.TaskClassification, 64, nil
	for i, l := range factors.Arch.Layers {
		if i > 0 {
			arch.Layers = append(arch.Layers, arrowio.Layer{Name: fmt.Sprintf("act%d", i), Kind: compute.KindActivation, Activation: compute.ActGELU})
		}
		arch.Layers = append(arch.Layers, l)
	}
	net, err := modelmap.Network[float32](&arrowio.Model{Arch: arch, Tensors: factors.Tensors})
	if err != nil {
		t.Fatal(err)
	}
	n := int(m.Input.Shape[0])
	y := make([]float32, n*net.Outputs())
	net.Forward(y, m.Input.Float32, n, compute.NewWorkspace[float32]())
	got := ortRun(t, filepath.Join(out, "model.onnx"), ortInput(m.Input))[0]
	if d := relDiff(y, got.Float32); d > ortTolerance {
		t.Errorf("strata's engine and ONNX Runtime differ by %.2g relative, want <= %g", d, ortTolerance)
	}
	if d := relDiff(y, m.Logits.Float32); d > 0.5 {
		t.Errorf("S + R before fine-tuning is %.2g from PyTorch's dense logits: not the same model", d)
	}
}

func ortInput(a testmodels.Array) onnxrt.Tensor {
	if a.DType == "int64" {
		return onnxrt.NewInt64(a.Shape, a.Int64)
	}
	return onnxrt.NewFloat32(a.Shape, a.Float32)
}

// ortRun runs the model file in ONNX Runtime on x.
func ortRun(t *testing.T, path string, x onnxrt.Tensor) []onnxrt.Tensor {
	t.Helper()
	s, err := onnxrt.OpenFile(path, onnxrt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	y, err := s.Run([]onnxrt.Tensor{x})
	if err != nil {
		t.Fatal(err)
	}
	return y
}

// inspectParams is the number of parameters strata inspect counts in a
// model file.
func inspectParams(t *testing.T, path string) int64 {
	t.Helper()
	r := run(t, "inspect", "--json", path)
	var res stages.InspectResult
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &res) != nil {
		t.Fatalf("inspect %s: exit %d\n%s", path, r.code, r.stderr)
	}
	return res.Params
}

// nodeOutput returns the first output of the node called node in the ONNX
// model at path.
func nodeOutput(t *testing.T, path, node string) string {
	t.Helper()
	m, err := onnx.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	m.NameNodes() // as convert names them
	for _, n := range m.Proto.GetGraph().GetNode() {
		if n.GetName() == node {
			return n.Output[0]
		}
	}
	t.Fatalf("%s: no node %q", path, node)
	return ""
}

// withOutputs writes a copy of the ONNX model at path with the float
// values added to the graph's outputs, and returns its path.
func withOutputs(t *testing.T, path string, values []string) string {
	t.Helper()
	m, err := onnx.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	g := m.Proto.GetGraph()
	for _, v := range values {
		g.Output = append(g.Output, &onnxpb.ValueInfoProto{Name: proto.String(v), Type: &onnxpb.TypeProto{
			Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(onnxpb.TensorProto_FLOAT))}}}})
	}
	out := strings.TrimSuffix(path, ".onnx") + ".outputs.onnx"
	if err := m.Write(out); err != nil {
		t.Fatal(err)
	}
	return out
}

// relDiff is max |got - want| / max |want|.
func relDiff(got, want []float32) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var d, m float64
	for i := range want {
		d = max(d, math.Abs(float64(got[i])-float64(want[i])))
		m = max(m, math.Abs(float64(want[i])))
	}
	return d / m
}

// onnxCheck runs onnx.checker.check_model(full_check=True) on every file
// in one process of Debian's python3, which has python3-onnx; a missing
// python3-onnx fails the test.
func onnxCheck(t *testing.T, files []string) {
	t.Helper()
	const script = `
import sys, onnx
for f in sys.argv[1:]:
    onnx.checker.check_model(onnx.load(f), full_check=True)
print("checked", len(sys.argv) - 1)
`
	out, err := exec.Command("/usr/bin/python3", append([]string{"-c", script}, files...)...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), fmt.Sprintf("checked %d", len(files))) {
		t.Fatalf("onnx.checker (Debian's python3-onnx): %v\n%s", err, out)
	}
}
