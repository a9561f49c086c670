package modelmap

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/inputerr"
	"gonum.org/v1/gonum/mat"
)

// mlp is a 4 -> 6 -> relu -> 3 classifier with seeded weights, written as
// a model file from the network (Model).
func mlp(t *testing.T, seed uint64) *arrowio.Model {
	t.Helper()
	arch := arrowio.Architecture{FormatVersion: arrowio.FormatVersion, Kind: arrowio.ArchMLP, Task: compute.TaskClassification, Inputs: 4,
		Layers: []arrowio.Layer{
			{Name: "0", Kind: compute.KindLinear, In: 4, Out: 6, Bias: true},
			{Name: "1", Kind: compute.KindActivation, Activation: compute.ActReLU},
			{Name: "2", Kind: compute.KindLinear, In: 6, Out: 3, Bias: true},
		}}
	spec, err := NetworkSpec(arch)
	if err != nil {
		t.Fatal(err)
	}
	net, err := compute.NewNetwork[float64](spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := net.InitStructured(rand.New(rand.NewPCG(seed, 1))); err != nil {
		t.Fatal(err)
	}
	return Model(net, arch)
}

// TestMaterialize: a decomposed layer becomes the dense weight of its
// operator, W = S + R, and the other tensors pass through.
func TestMaterialize(t *testing.T) {
	m := mlp(t, 3)
	w, _ := m.Tensor("2.weight")
	dense := mat.NewDense(3, 6, nil)
	for i, v := range w.Data {
		dense.RawMatrix().Data[i] = float64(v)
	}
	sum, err := compute.Decompose(dense, compute.Spec{Family: compute.FamilyLowRank, Rank: 1}, compute.Residual{Kind: compute.ResidualLowRank, Rank: 1}, 1)
	if err != nil {
		t.Fatal(err)
	}
	var tensors []arrowio.Tensor
	for _, ts := range m.Tensors {
		if ts.Name == "2.weight" {
			tensors = append(tensors, OperatorTensors[float64]("2", sum)...)
			continue
		}
		tensors = append(tensors, ts)
	}
	m.Tensors = tensors
	SetStructure(m, arrowio.Layer{Name: "2", In: 6, Out: 3}, sum.Spec())
	back, err := Materialize(m)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := back.Tensor("2.weight")
	if !ok || back.Arch.Layers[2].Structure != nil || len(back.Tensors) != 4 {
		t.Fatalf("materialised model: %d tensors, layer 2 structure %s", len(back.Tensors), back.Arch.Layers[2].Structure)
	}
	op, err := Operator[float64](m, "2", sum.Spec())
	if err != nil {
		t.Fatal(err)
	}
	want := compute.Dense(op).RawMatrix().Data
	for i, v := range got.Data {
		if v != float32(want[i]) {
			t.Fatalf("W[%d] = %v, want S + R = %v", i, v, want[i])
		}
	}
	if PartLayer("2.trunk.U", compute.RoleTrunk) != "2" || PartLayer("2.weight", compute.RoleTrunk) != "" {
		t.Error("PartLayer")
	}
}

// TestMaterializeStorage: a generic checkpoint's decomposed weight comes
// back under its own name, in its own layout and shape: a name without
// ".weight", an [in, out] weight (stored W^T) and a 3x3 convolution
// [out, c, 3, 3] (W's rows are the kernels, as they are); a raw int64
// tensor passes through byte for byte.
func TestMaterializeStorage(t *testing.T) {
	ids := arrowio.Tensor{Name: "position_ids", Role: "position_ids", Shape: []int64{2}, DType: "I64", Raw: []byte{0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0}}
	tests := []struct {
		name      string
		layer     arrowio.Layer
		wantName  string
		wantShape []int64
		// at maps an index of W (out x in, row-major) to its index in the
		// stored tensor.
		at func(r, c int) int
	}{
		{"own name", arrowio.Layer{Name: "linear_77.w_0", Weight: "linear_77.w_0", Out: 5, In: 4},
			"linear_77.w_0", []int64{5, 4}, func(r, c int) int { return r*4 + c }},
		{"in-out", arrowio.Layer{Name: "c_attn", Layout: arrowio.LayoutInOut, Out: 5, In: 4},
			"c_attn.weight", []int64{4, 5}, func(r, c int) int { return c*5 + r }},
		{"3x3 kernel", arrowio.Layer{Name: "conv", Kernel: []int64{3, 3}, Out: 5, In: 18},
			"conv.weight", []int64{5, 2, 3, 3}, func(r, c int) int { return r*18 + c }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(5, 5))
			out, in := tt.layer.Out, tt.layer.In
			w := mat.NewDense(out, in, nil)
			for i := range w.RawMatrix().Data {
				w.RawMatrix().Data[i] = rng.NormFloat64()
			}
			sum, err := compute.Decompose(w, compute.Spec{Family: compute.FamilyLowRank, Rank: 1}, compute.Residual{Kind: compute.ResidualLowRank, Rank: 1}, 1)
			if err != nil {
				t.Fatal(err)
			}
			m := &arrowio.Model{Arch: arrowio.Architecture{FormatVersion: 1, Kind: arrowio.ArchGeneric}}
			m.Tensors = append(OperatorTensors[float64](tt.layer.Name, sum), ids)
			SetStructure(m, tt.layer, sum.Spec())
			if m.Version() != 2 || m.Arch.FormatVersion != 2 {
				t.Errorf("version %d, architecture %d: want 2", m.Version(), m.Arch.FormatVersion)
			}
			back, err := Materialize(m)
			if err != nil {
				t.Fatal(err)
			}
			if len(back.Tensors) != 2 || back.Tensors[0].Name != tt.wantName || !slices.Equal(back.Tensors[0].Shape, tt.wantShape) {
				t.Fatalf("materialised tensors %v, want %s %v then position_ids", back.Tensors, tt.wantName, tt.wantShape)
			}
			if g := back.Tensors[1]; g.Name != ids.Name || g.DType != "I64" || !bytes.Equal(g.Raw, ids.Raw) {
				t.Errorf("raw tensor changed: %+v", g)
			}
			op, err := Operator[float64](m, tt.layer.Name, sum.Spec()) // the float32 factors the file holds
			if err != nil {
				t.Fatal(err)
			}
			want := compute.Dense(op)
			got := back.Tensors[0].Data
			for r := range out {
				for c := range in {
					if v := got[tt.at(r, c)]; v != float32(want.At(r, c)) {
						t.Fatalf("W[%d][%d] stored as %v, want %v", r, c, v, want.At(r, c))
					}
				}
			}
			if err := back.Validate(); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestLayerNorm: a layer norm's gain and shift are stored as weight and
// bias, the network's params in order, and read back.
func TestLayerNorm(t *testing.T) {
	arch := arrowio.Architecture{FormatVersion: arrowio.FormatVersion, Task: compute.TaskClassification, Inputs: 6, Layers: []arrowio.Layer{
		{Name: "0", Kind: compute.KindLinear, In: 6, Out: 8, Bias: true}, {Name: "1", Kind: compute.KindLayerNorm, In: 8, Out: 8},
		{Name: "2", Kind: compute.KindActivation, Activation: compute.ActTanh}, {Name: "3", Kind: compute.KindLinear, In: 8, Out: 3, Bias: true},
	}}
	spec, err := NetworkSpec(arch)
	if err != nil {
		t.Fatal(err)
	}
	net, err := compute.NewNetwork[float32](spec)
	if err != nil {
		t.Fatal(err)
	}
	m := Model(net, arch)
	var names []string
	var roles []compute.Role
	for _, ts := range m.Tensors {
		names, roles = append(names, ts.Name), append(roles, ts.Role)
	}
	wantNames := []string{"0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"}
	wantRoles := []compute.Role{compute.RoleWeight, compute.RoleBias, compute.RoleWeight, compute.RoleBias, compute.RoleWeight, compute.RoleBias}
	if !slices.Equal(names, wantNames) || !slices.Equal(roles, wantRoles) {
		t.Fatalf("tensors %q roles %q, want %q %q", names, roles, wantNames, wantRoles)
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := Network[float32](m); err != nil {
		t.Fatal(err)
	}
}

// TestNetworkRejects: every way a model file can fail to describe its
// network is bad input naming what is wrong.
func TestNetworkRejects(t *testing.T) {
	base := func() *arrowio.Model { return mlp(t, 9) }
	tests := []struct {
		name string
		mod  func(*arrowio.Model)
		want string
	}{
		{"generic", func(m *arrowio.Model) { m.Arch.Kind = arrowio.ArchGeneric }, "this checkpoint is generic"},
		{"no task", func(m *arrowio.Model) { m.Arch.Task = "" }, "no task"},
		{"missing tensor", func(m *arrowio.Model) { m.Tensors = m.Tensors[1:] }, `missing tensor "0.weight"`},
		{"transposed", func(m *arrowio.Model) { m.Tensors[0].Shape = []int64{4, 6} }, `tensor "0.weight": shape [4 6]`},
		{"extra tensor", func(m *arrowio.Model) {
			m.Tensors = append(m.Tensors, arrowio.Tensor{Name: "x", Role: "weight", Shape: []int64{1}, Data: []float32{1}})
		}, `tensor "x" is not a parameter`},
		{"bias not declared", func(m *arrowio.Model) { m.Arch.Layers[0].Bias = false }, `"0.bias" is not a parameter`},
		{"widths do not chain", func(m *arrowio.Model) { m.Arch.Layers[2].In = 5 }, "linear input width"},
		{"bad structure json", func(m *arrowio.Model) { m.Arch.Layers[0].Structure = []byte(`{"family":"monarch","bogus":1}`) }, "structure"},
		{"sparse index out of range", func(m *arrowio.Model) {
			m.Arch.Layers[2].Structure = []byte(`{"family":"sum","out":3,"in":6,"trunk":{"family":"lowrank","out":3,"in":6,"rank":1},"correction":{"family":"sparse","out":3,"in":6,"nnz":1}}`)
			m.Tensors = append(m.Tensors[:2:2],
				arrowio.Tensor{Name: "2.trunk.U", Role: compute.RoleTrunk, Shape: []int64{3, 1}, Data: []float32{1, 2, 3}},
				arrowio.Tensor{Name: "2.trunk.V", Role: compute.RoleTrunk, Shape: []int64{6, 1}, Data: []float32{1, 2, 3, 4, 5, 6}},
				arrowio.Tensor{Name: "2.correction.values", Role: compute.RoleCorrection, Shape: []int64{1}, Data: []float32{1}},
				arrowio.Tensor{Name: "2.correction.rows", Role: compute.RoleCorrection, Shape: []int64{1}, Data: []float32{7}},
				arrowio.Tensor{Name: "2.correction.cols", Role: compute.RoleCorrection, Shape: []int64{1}, Data: []float32{0}},
				m.Tensors[3])
		}, "sparse entry 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := base()
			tt.mod(m)
			_, err := Network[float32](m)
			if !errors.Is(err, inputerr.ErrInput) {
				t.Fatalf("err = %v, want ErrInput", err)
			}
			if !bytes.Contains([]byte(err.Error()), []byte(tt.want)) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestStandardize(t *testing.T) {
	ds := &arrowio.Dataset{N: 4, D: 2, X: []float64{1, 5, 3, 5, 5, 5, 7, 5}, Y: []float64{0, 1, 0, 1}}
	s := FitStandardization(ds)
	// Column 0: mean 4, population std sqrt(5); column 1 is constant.
	if s.Mean[0] != 4 || math.Abs(s.Std[0]-math.Sqrt(5)) > 1e-15 || s.Mean[1] != 5 || s.Std[1] != 1 {
		t.Fatalf("fit = %+v, want mean [4 5] std [sqrt(5) 1]", s)
	}
	arch := arrowio.Architecture{Inputs: 2, Standardization: s}
	out, err := Standardize(ds, &arch)
	if err != nil {
		t.Fatal(err)
	}
	if ds.X[0] != 1 {
		t.Fatal("Standardize modified its input")
	}
	want := []float64{-3 / math.Sqrt(5), 0, -1 / math.Sqrt(5), 0, 1 / math.Sqrt(5), 0, 3 / math.Sqrt(5), 0}
	for i := range want {
		if math.Abs(out.X[i]-want[i]) > 1e-15 {
			t.Fatalf("X[%d] = %v, want %v", i, out.X[i], want[i])
		}
	}
	arch.Inputs = 3
	if _, err := Standardize(ds, &arch); !errors.Is(err, inputerr.ErrInput) {
		t.Errorf("width mismatch: err = %v, want ErrInput", err)
	}
}
