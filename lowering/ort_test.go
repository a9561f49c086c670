//go:build onnxruntime

package lowering

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/strata-ml/strata/arrowio/onnx"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/onnxrt"
	"gonum.org/v1/gonum/mat"
)

// tolerance is the agreement asked of ONNX Runtime's float32 output with
// compute's float32 Apply, relative to the output's scale (relDiff).
const tolerance = 1e-5

// run runs m in ONNX Runtime (one thread) on the float32 inputs.
func run(t testing.TB, m *onnx.Model, inputs ...onnxrt.Tensor) []onnxrt.Tensor {
	t.Helper()
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	s, err := onnxrt.Open(b, onnxrt.Options{Name: m.File})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := s.Run(inputs)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestLowerAgreesWithCompute lowers every trunk family with each residual
// into each node kind and layer shape, and checks in ONNX Runtime that the
// structured model computes what compute's Apply computes (and so does
// Materialize's dense copy), that its new initializers hold exactly the
// operator's parameters, that Operators reads the operator back bit for
// bit, that lowering is deterministic, and (once, for all models) that
// onnx.checker accepts every structured model.
func TestLowerAgreesWithCompute(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 17))
	checked := map[string]*onnx.Model{}
	for _, family := range compute.TrunkFamilies {
		for _, residual := range []string{"lowrank", "sparse", "none"} {
			for _, kind := range kinds {
				for _, s := range shapes {
					name := fmt.Sprintf("%s/%s/%s/%s", family, residual, kind, s.name)
					t.Run(name, func(t *testing.T) {
						tm := newModel(t, kind, s.out, s.in, convGeometry{}, rng)
						op := randomOp(t, sumSpec(trunkSpec(family, s), residual), rng)
						checked[name] = checkLowered(t, tm, op, rng)
					})
				}
			}
		}
	}
	for _, family := range []string{compute.FamilyLowRank, compute.FamilyOrthogonal} {
		for _, residual := range []string{"lowrank", "sparse", "none"} {
			for _, g := range convGeometries {
				name := fmt.Sprintf("%s/%s/conv-k/%s", family, residual, g.name)
				t.Run(name, func(t *testing.T) {
					in := g.c * g.kh * g.kw
					tm := newModel(t, "conv-k", g.out, in, g, rng)
					spec := trunkSpec(family, shapeCase{out: g.out, in: in})
					op := randomOp(t, sumSpec(spec, residual), rng)
					checked[name] = checkLowered(t, tm, op, rng)
				})
			}
		}
	}
	checkModels(t, checked)
}

// checkLowered lowers op into tm's node and checks the structured model
// against compute (see TestLowerAgreesWithCompute), and so its Densify
// twin; it returns the structured model.
func checkLowered(t *testing.T, tm *testModel, op compute.Operator[float32], rng *rand.Rand) *onnx.Model {
	t.Helper()
	layers := []Layer{{Name: "fc", Node: "fc", Op: op}}
	s, err := Lower(tm.m, layers)
	if err != nil {
		t.Fatal(err)
	}
	x := tm.randomInput(rng)
	want, shape := tm.reference(op, x)
	densified, err := Densify(s)
	if err != nil {
		t.Fatal(err)
	}
	checkDensified(t, tm, densified)
	for _, c := range []struct {
		what string
		m    *onnx.Model
	}{{"structured", s}, {"dense copy", mustMaterialize(t, tm.m, layers)}, {"densified", densified}} {
		got := run(t, c.m, onnxrt.NewFloat32(tm.xShape, x))[0]
		if !slices.Equal(got.Shape, shape) {
			t.Fatalf("%s: output shape %v, want %v", c.what, got.Shape, shape)
		}
		if d := relDiff(got.Float32, want); d > tolerance {
			t.Errorf("%s: ONNX Runtime and compute differ by %.2g relative, want <= %g", c.what, d, tolerance)
		}
	}

	// The new FLOAT values are the operator's trainable parameters (a Gemm
	// whose beta is not 1 trades its C for "<layer>.bias", beta C); its
	// index parameters are INT64 initializers.
	added := floatCount(s) - floatCount(tm.m) + tm.out*tm.in
	if want := compute.NumParams(op); added != want {
		t.Errorf("the structured model adds %d float values, the operator has %d parameters", added, want)
	}
	back, err := Operators(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != 1 || back[0].Name != "fc" || back[0].Node != "fc" {
		t.Fatalf("Operators: %+v", back)
	}
	if got, want := compute.Dense(back[0].Op), compute.Dense(op); !mat.Equal(got, want) {
		t.Errorf("Operators: the operator read back differs from the one lowered")
	}
	if stored, want := compute.StoredValues(back[0].Op), compute.StoredValues(op); stored != want {
		t.Errorf("Operators: %d stored values, want %d", stored, want)
	}
	again, err := Lower(tm.m, layers)
	if err != nil {
		t.Fatal(err)
	}
	b1, _ := s.Encode()
	b2, _ := again.Encode()
	if !bytes.Equal(b1, b2) {
		t.Errorf("two lowerings of the same model encode differently")
	}
	return s
}

func mustMaterialize(t *testing.T, m *onnx.Model, layers []Layer) *onnx.Model {
	t.Helper()
	d, err := Materialize(m, layers)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestDFTOpset20 lowers circulant and Toeplitz layers into a model that
// imports opset 21, where DFT takes its axis as an input, and checks the
// result in ONNX Runtime (onnx.checker of python3-onnx 1.12 knows opsets up
// to 17 only).
func TestDFTOpset20(t *testing.T) {
	rng := rand.New(rand.NewPCG(20, 20))
	for _, family := range []string{compute.FamilyCirculant, compute.FamilyToeplitz} {
		for _, s := range shapes {
			t.Run(family+"/"+s.name, func(t *testing.T) {
				tm := newModel(t, "gemm-transB0", s.out, s.in, convGeometry{}, rng)
				tm.m.SetOpset("", 21)
				op := randomOp(t, sumSpec(trunkSpec(family, s), "lowrank"), rng)
				lm := checkLowered(t, tm, op, rng)
				if lm.Opset("") != 21 {
					t.Errorf("opset %d, want 21 kept", lm.Opset(""))
				}
			})
		}
	}
}
