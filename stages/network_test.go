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
	"github.com/strata-ml/strata/modelmap"
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
					net, err := modelmap.Network[float32](m)
					if err != nil {
						t.Fatal(err)
					}
					back = modelmap.Model(net, m.Arch)
				} else {
					net, err := modelmap.Network[float64](m)
					if err != nil {
						t.Fatal(err)
					}
					back = modelmap.Model(net, m.Arch)
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
		spec    string
		task    compute.Task
		layers  []string // kind or activation per layer
		wantErr bool
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
			k := string(l.Kind)
			if l.Kind == compute.KindActivation {
				k = string(l.Activation)
			}
			got = append(got, k)
		}
		if !slices.Equal(got, tt.layers) {
			t.Errorf("%s: layers %v, want %v", tt.spec, got, tt.layers)
		}
		if _, err := modelmap.NetworkSpec(arch); err != nil {
			t.Errorf("%s: %v", tt.spec, err)
		}
	}
}
