package stages

import (
	"bytes"
	"context"
	"errors"
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
)

// TestBridgeRoundTrip checks that a model convert wrote, turned into a
// network and back, has the same tensors (names, roles, shapes, values,
// order) and the same architecture, structures included.
func TestBridgeRoundTrip(t *testing.T) {
	dir := t.TempDir()
	in := writeTestModel(t, dir, "dense.arrow", testMLP([]int{16, 32, 24, 5}, 3))
	tests := []struct {
		name string
		mod  func(*ConvertConfig)
	}{
		{"monarch+lowrank", func(c *ConvertConfig) {}},
		{"blockdiag+sparse", func(c *ConvertConfig) {
			c.Structure, c.Residual, c.ResidualDensity = compute.FamilyBlockDiag, "sparse", 0.05
		}},
		{"orthogonal+none", func(c *ConvertConfig) { c.Structure, c.Residual = compute.FamilyOrthogonal, "none" }},
		{"partial", func(c *ConvertConfig) { c.Include = []string{"2.weight"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConvertConfig()
			cfg.Model, cfg.Out = in, filepath.Join(dir, tt.name)
			tt.mod(&cfg)
			if _, err := Convert(context.Background(), cfg); err != nil {
				t.Fatal(err)
			}
			m, err := arrowio.ReadModel(filepath.Join(cfg.Out, "model.arrow"))
			if err != nil {
				t.Fatal(err)
			}
			for _, precision := range []string{"float32", "float64"} {
				var back *arrowio.Model
				if precision == "float32" {
					net, err := NetworkFromModel[float32](m)
					if err != nil {
						t.Fatal(err)
					}
					back = ModelFromNetwork(net, m.Arch)
				} else {
					net, err := NetworkFromModel[float64](m)
					if err != nil {
						t.Fatal(err)
					}
					back = ModelFromNetwork(net, m.Arch)
				}
				back.Meta = m.Meta
				var want, got bytes.Buffer
				if err := arrowio.EncodeModel(&want, m); err != nil {
					t.Fatal(err)
				}
				if err := arrowio.EncodeModel(&got, back); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(want.Bytes(), got.Bytes()) {
					for i := range min(len(m.Tensors), len(back.Tensors)) {
						a, b := m.Tensors[i], back.Tensors[i]
						if a.Name != b.Name || a.Role != b.Role || !slices.Equal(a.Shape, b.Shape) || !slices.Equal(a.Data, b.Data) {
							t.Errorf("%s: tensor %d: got %s (%s %v), want %s (%s %v)", precision, i, b.Name, b.Role, b.Shape, a.Name, a.Role, a.Shape)
						}
					}
					t.Fatalf("%s: round trip changed the model file (%d tensors, want %d)", precision, len(back.Tensors), len(m.Tensors))
				}
			}
		})
	}
}

func TestBridgeLayerNorm(t *testing.T) {
	arch, err := InitArchitecture("mlp:6-8-3:tanh+ln", "")
	if err != nil {
		t.Fatal(err)
	}
	spec, err := networkSpecOf(arch)
	if err != nil {
		t.Fatal(err)
	}
	net, err := compute.NewNetwork[float32](spec)
	if err != nil {
		t.Fatal(err)
	}
	m := ModelFromNetwork(net, arch)
	var names, roles []string
	for _, ts := range m.Tensors {
		names, roles = append(names, ts.Name), append(roles, ts.Role)
	}
	wantNames := []string{"0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"}
	wantRoles := []string{RoleWeight, RoleBias, RoleWeight, RoleBias, RoleWeight, RoleBias}
	if !slices.Equal(names, wantNames) || !slices.Equal(roles, wantRoles) {
		t.Fatalf("tensors %q roles %q, want %q %q", names, roles, wantNames, wantRoles)
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := NetworkFromModel[float32](m); err != nil {
		t.Fatal(err)
	}
}

func TestNetworkFromModelRejects(t *testing.T) {
	base := func() *arrowio.Model { return testMLP([]int{4, 6, 3}, 9) }
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
				arrowio.Tensor{Name: "2.trunk.U", Role: RoleTrunk, Shape: []int64{3, 1}, Data: []float32{1, 2, 3}},
				arrowio.Tensor{Name: "2.trunk.V", Role: RoleTrunk, Shape: []int64{6, 1}, Data: []float32{1, 2, 3, 4, 5, 6}},
				arrowio.Tensor{Name: "2.correction.values", Role: RoleCorrection, Shape: []int64{1}, Data: []float32{1}},
				arrowio.Tensor{Name: "2.correction.rows", Role: RoleCorrection, Shape: []int64{1}, Data: []float32{7}},
				arrowio.Tensor{Name: "2.correction.cols", Role: RoleCorrection, Shape: []int64{1}, Data: []float32{0}},
				m.Tensors[3])
		}, "sparse entry 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := base()
			tt.mod(m)
			_, err := NetworkFromModel[float32](m)
			if !errors.Is(err, ErrInput) {
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
	if _, err := Standardize(ds, &arch); !errors.Is(err, ErrInput) {
		t.Errorf("width mismatch: err = %v, want ErrInput", err)
	}
}

func TestSplit(t *testing.T) {
	ds := &arrowio.Dataset{N: 10, D: 1}
	for i := range 10 {
		ds.X = append(ds.X, float64(i))
		ds.Y = append(ds.Y, float64(i%2))
	}
	a1, b1, err := Split(ds, 0.25, 7)
	if err != nil {
		t.Fatal(err)
	}
	a2, b2, _ := Split(ds, 0.25, 7)
	a3, _, _ := Split(ds, 0.25, 8)
	if b1.N != 3 || a1.N != 7 {
		t.Fatalf("sizes %d/%d, want 7/3 (round(0.25*10) = 3)", a1.N, b1.N)
	}
	if !slices.Equal(a1.X, a2.X) || !slices.Equal(b1.X, b2.X) {
		t.Error("the same seed gave different splits")
	}
	if slices.Equal(a1.X, a3.X) {
		t.Error("seeds 7 and 8 gave the same split")
	}
	all := append(slices.Clone(a1.X), b1.X...)
	slices.Sort(all)
	if !slices.Equal(all, ds.X) {
		t.Errorf("parts %v + %v are not a partition of the rows", a1.X, b1.X)
	}
	if !slices.IsSorted(a1.X) || !slices.IsSorted(b1.X) {
		t.Error("parts do not keep the original row order")
	}
	for i := range a1.N {
		if a1.Y[i] != float64(int(a1.X[i])%2) {
			t.Fatal("labels do not follow their rows")
		}
	}
	for _, f := range []float64{0, 1, -0.1, math.NaN()} {
		if _, _, err := Split(ds, f, 1); !errors.Is(err, ErrInput) {
			t.Errorf("fraction %v: err = %v, want ErrInput", f, err)
		}
	}
}

func TestInitArchitecture(t *testing.T) {
	tests := []struct {
		spec, task string
		layers     []string // kind or activation per layer
		wantErr    bool
	}{
		{spec: "mlp:64-256-256-10:relu", layers: []string{"linear", "relu", "linear", "relu", "linear"}},
		{spec: "mlp:4-32-3", layers: []string{"linear", "relu", "linear"}},
		{spec: "mlp:4-8-3:gelu+ln", layers: []string{"linear", "layernorm", "gelu", "linear"}},
		{spec: "mlp:4-1", task: "regression", layers: []string{"linear"}},
		{spec: "mlp:4-1", wantErr: true},       // a classifier needs 2 outputs
		{spec: "mlp:4", wantErr: true},         // no output width
		{spec: "mlp:4-x-3", wantErr: true},     // bad width
		{spec: "mlp:4-0-3", wantErr: true},     // zero width
		{spec: "mlp:4-3:swish", wantErr: true}, // unknown activation
		{spec: "cnn:4-3", wantErr: true},
		{spec: "mlp:4-3", task: "ranking", wantErr: true},
	}
	for _, tt := range tests {
		arch, err := InitArchitecture(tt.spec, tt.task)
		if tt.wantErr {
			if !errors.Is(err, ErrInput) {
				t.Errorf("%s: err = %v, want ErrInput", tt.spec, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.spec, err)
			continue
		}
		var got []string
		for i, l := range arch.Layers {
			if l.Name != string(rune('0'+i)) {
				t.Errorf("%s: layer %d named %q", tt.spec, i, l.Name)
			}
			k := l.Kind
			if k == arrowio.KindActivation {
				k = l.Activation
			}
			got = append(got, k)
		}
		if !slices.Equal(got, tt.layers) {
			t.Errorf("%s: layers %v, want %v", tt.spec, got, tt.layers)
		}
		if _, err := networkSpecOf(arch); err != nil {
			t.Errorf("%s: %v", tt.spec, err)
		}
	}
}
