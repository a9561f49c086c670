//go:build onnxruntime

package lowering

import (
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/strata-ml/strata/arrowio/onnx"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/testmodels"
	"github.com/strata-ml/strata/onnxrt"
)

// convertAll converts every convertible linear of m as strata's convert
// does by default: a 1x1 Conv, Gemm or MatMul at monarch b=4 (rank
// min(out, in)/16), a k x k Conv at lowrank (rank min(out, in)/8), each
// with a rank-8 lowrank residual of the rest (ranks capped by the shape).
func convertAll(t *testing.T, m *onnx.Model) []Layer {
	t.Helper()
	linears, _ := m.Linears()
	if len(linears) == 0 {
		t.Fatalf("%s: no convertible linear", m.File)
	}
	var layers []Layer
	for _, l := range linears {
		small := min(l.Out, l.In)
		trunk := compute.Spec{Family: compute.FamilyLowRank, Rank: max(1, small/8)}
		if l.Pointwise {
			b := min(4, small)
			r := min(max(1, small/(b*b)), (l.Out+b-1)/b, (l.In+b-1)/b)
			trunk = compute.Spec{Family: compute.FamilyMonarch, Blocks: b, Rank: r}
		}
		w := mat.NewDense(l.Out, l.In, l.W)
		op, err := compute.Decompose(w, trunk, compute.Residual{Kind: "lowrank", Rank: min(8, small)}, 1)
		if err != nil {
			t.Fatalf("%s: %s: %v", m.File, l.Node, err)
		}
		layers = append(layers, Layer{Name: DefaultName(l), Node: l.Node, Op: compute.Convert[float32, float64](op)})
	}
	return layers
}

// TestTestModels lowers every convertible linear of each test model (the
// PyTorch-trained MLP, CNN, transformer and checkpoint, and the pretrained
// openWakeWord models) and checks that ONNX Runtime computes the same
// outputs from the structured model as from Materialize's dense copy on
// the model's own evaluation input, that onnx.checker accepts both, that
// the structured model holds exactly the input's float values less the
// converted weights plus the operators' parameters, and that this is
// fewer than the input's (every layer is converted here, the ones whose
// S + R is larger than them too, such as the CNN's 16x9 first
// convolution: the others make up for them).
func TestTestModels(t *testing.T) {
	checked := map[string]*onnx.Model{}
	for _, in := range testmodels.Build(t).ONNXModels(t) {
		t.Run(in.Name, func(t *testing.T) {
			m, err := onnx.Read(in.Path)
			if err != nil {
				t.Fatal(err)
			}
			m.NameNodes()
			layers := convertAll(t, m)
			s, err := Lower(m, layers)
			if err != nil {
				t.Fatal(err)
			}
			d, err := Materialize(m, layers)
			if err != nil {
				t.Fatal(err)
			}
			x := onnxrt.NewFloat32(in.Input.Shape, in.Input.Float32)
			if in.Input.DType == "int64" {
				x = onnxrt.NewInt64(in.Input.Shape, in.Input.Int64)
			}
			got, want := run(t, s, x), run(t, d, x)
			for i := range want {
				if diff := relDiff(got[i].Float32, want[i].Float32); diff > tolerance {
					t.Errorf("output %d: structured and dense copy differ by %.2g relative, want <= %g", i, diff, tolerance)
				}
			}
			params, weights := 0, 0
			for _, l := range layers {
				params += compute.NumParams(l.Op)
				out, in := l.Op.Shape()
				weights += out * in
			}
			before, after := floatCount(m), floatCount(s)
			t.Logf("%d layers lowered, opset %d -> %d: %d float values -> %d (%.3f)",
				len(layers), m.Opset(""), s.Opset(""), before, after, float64(after)/float64(before))
			if want := before - weights + params; after != want {
				t.Errorf("the structured model holds %d float values, want %d - %d weights + %d parameters = %d",
					after, before, weights, params, want)
			}
			if after >= before {
				t.Errorf("the structured model holds %d float values, the input %d (operators %d against weights %d)",
					after, before, params, weights)
			}
			checked[in.Name] = s
			checked[in.Name+".dense"] = d
		})
	}
	checkModels(t, checked)
}
