package lowering

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/arrowio/onnx"
	"github.com/strata-ml/strata/arrowio/onnx/onnxpb"
	"github.com/strata-ml/strata/compute"
)

// lowered returns a Gemm model lowered at trunk family + residual.
func lowered(t testing.TB, family, residual string) (*testModel, compute.Operator[float32], *onnx.Model) {
	t.Helper()
	rng := rand.New(rand.NewPCG(3, 3))
	tm := newModel(t, "gemm-transB1", 16, 16, convGeometry{}, rng)
	op := randomOp(t, sumSpec(trunkSpec(family, shapes[0]), residual), rng)
	s, err := Lower(tm.m, []Layer{{Name: "fc", Node: "fc", Op: op}})
	if err != nil {
		t.Fatal(err)
	}
	return tm, op, s
}

// TestStructureRecord checks what Lower records and the opset it asks for:
// the default-domain opset stays 13 unless an op needs more (16 for
// ScatterElements' reduction, 17 for DFT), and onnx.checker accepts each.
func TestStructureRecord(t *testing.T) {
	tests := []struct {
		family, residual string
		opset            int64
		params           []string
	}{
		{compute.FamilyMonarch, "lowrank", 13, []string{"trunk.L", "trunk.R", "correction.U", "correction.V"}},
		{compute.FamilyLowRank, "none", 13, []string{"trunk.U", "trunk.V"}},
		{compute.FamilyBlockDiag, "sparse", 16, []string{"trunk.D", "correction.values", "correction.rows", "correction.cols"}},
		{compute.FamilyCirculant, "none", 17, []string{"trunk.c"}},
		{compute.FamilyToeplitz, "lowrank", 17, []string{"trunk.t", "correction.U", "correction.V"}},
	}
	checked := map[string]*onnx.Model{}
	for _, tt := range tests {
		t.Run(tt.family+"+"+tt.residual, func(t *testing.T) {
			tm, op, s := lowered(t, tt.family, tt.residual)
			if got := s.Opset(""); got != tt.opset {
				t.Errorf("opset %d, want %d", got, tt.opset)
			}
			if tt.opset > 13 && s.Proto.GetIrVersion() < 8 {
				t.Errorf("ir_version %d with opset %d", s.Proto.GetIrVersion(), tt.opset)
			}
			if tm.m.Opset("") != 13 || metadata(tm.m.Proto, MetadataKey) != nil {
				t.Errorf("Lower changed its input")
			}
			st, err := ReadStructure(s)
			if err != nil {
				t.Fatal(err)
			}
			rec := st.Layers[0]
			var names []string
			for _, p := range rec.Params {
				names = append(names, p.Name)
				if p.Initializer != "fc."+p.Name {
					t.Errorf("parameter %q is in %q, want %q", p.Name, p.Initializer, "fc."+p.Name)
				}
			}
			if !slices.Equal(names, tt.params) {
				t.Errorf("params %v, want %v", names, tt.params)
			}
			want := LayerRecord{Name: "fc", Node: "fc", Op: "Gemm", Spec: op.Spec(), Params: rec.Params, Weight: "fc.weight",
				WeightShape: []int64{16, 16}, Layout: "out-in", Alpha: 0.5, Bias: "fc.bias_1"}
			if g, w := mustJSON(t, rec), mustJSON(t, want); g != w {
				t.Errorf("record\n%s\nwant\n%s", g, w)
			}
			if n := findNode(s, "fc"); n == nil || n.Output[0] != "y" {
				t.Errorf("no node named fc writes y")
			}
			checked[tt.family+"_"+tt.residual] = s
		})
	}
	checkModels(t, checked)
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestLowerErrors checks that layers that do not fit are refused, naming
// the layer, and that the input model is left as it was.
func TestLowerErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	gemm := newModel(t, "gemm-transB1", 16, 16, convGeometry{}, rng)
	convK := newModel(t, "conv-k", 8, 27, convGeometries[0], rng)
	op := randomOp(t, sumSpec(trunkSpec(compute.FamilyMonarch, shapes[0]), "lowrank"), rng)
	_, _, done := lowered(t, compute.FamilyLowRank, "none")
	tests := []struct {
		name   string
		m      *onnx.Model
		layers []Layer
		want   error
		says   string
	}{
		{"no such node", gemm.m, []Layer{{Name: "fc", Node: "nope", Op: op}}, ErrLayer, "no Gemm, MatMul or Conv node"},
		{"shape", gemm.m, []Layer{{Name: "fc", Node: "fc", Op: randomOp(t, trunkSpec(compute.FamilyLowRank, shapes[1]), rng)}}, ErrLayer, "is 12x24"},
		{"no name", gemm.m, []Layer{{Node: "fc", Op: op}}, ErrLayer, "a name of its own"},
		{"twice", gemm.m, []Layer{{Name: "a", Node: "fc", Op: op}, {Name: "b", Node: "fc", Op: op}}, ErrLayer, "two layers"},
		{"dense", gemm.m, []Layer{{Name: "fc", Node: "fc", Op: randomOp(t, compute.Spec{Family: compute.FamilyDense, Out: 16, In: 16}, rng)}}, ErrUnsupported, "not lowered"},
		{"monarch k x k", convK.m, []Layer{{Name: "fc", Node: "fc", Op: randomOp(t, compute.Spec{Family: compute.FamilyMonarch, Out: 8, In: 27, Blocks: 2, Rank: 1}, rng)}}, ErrUnsupported, "3x3-kernel Conv"},
		{"lowered twice", done, []Layer{{Name: "fc2", Node: "fc", Op: op}}, ErrUnsupported, "already holds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := tt.m.Encode()
			_, err := Lower(tt.m, tt.layers)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.says) {
				t.Errorf("got %v, want %v saying %q", err, tt.want, tt.says)
			}
			if after, _ := tt.m.Encode(); string(after) != string(before) {
				t.Errorf("the input model changed")
			}
		})
	}
}

// TestOpsetRaiseRefused: a sparse correction needs opset 16, in which
// RoiAlign changed its default; a model at 13 with a RoiAlign is refused.
func TestOpsetRaiseRefused(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 6))
	tm := newModel(t, "gemm-transB1", 16, 16, convGeometry{}, rng)
	g := tm.m.Proto.Graph
	g.Input = append(g.Input, valueInfo("feat", []int64{1, 1, 4, 4}), valueInfo("rois", []int64{1, 4}))
	g.Initializer = append(g.Initializer, onnx.Int64Tensor("idx", []int64{1}, []int64{0}))
	g.Node = append(g.Node, onnx.NewNode("RoiAlign", "roi", []string{"feat", "rois", "idx"}, []string{"pooled"}))
	g.Output = append(g.Output, valueInfo("pooled", []int64{1, 1, 1, 1}))
	op := randomOp(t, sumSpec(trunkSpec(compute.FamilyMonarch, shapes[0]), "sparse"), rng)
	_, err := Lower(tm.m, []Layer{{Name: "fc", Node: "fc", Op: op}})
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), `"roi" (RoiAlign) changed meaning in opset 16`) {
		t.Errorf("got %v", err)
	}
}

// TestOperatorsErrors corrupts a structured model and checks that
// Operators refuses it with a FormatError naming the file and what is
// wrong, and allocates nothing for a record that claims more than the
// model holds.
func TestOperatorsErrors(t *testing.T) {
	edit := func(f func(m *onnxpb.ModelProto, st *Structure)) func(*onnxpb.ModelProto) {
		return func(m *onnxpb.ModelProto) {
			e := metadata(m, MetadataKey)
			var st Structure
			if err := json.Unmarshal([]byte(e.GetValue()), &st); err != nil {
				panic(err)
			}
			f(m, &st)
			b, _ := json.Marshal(st)
			e.Value = proto.String(string(b))
		}
	}
	setInit := func(name string, t *onnxpb.TensorProto) func(*onnxpb.ModelProto) {
		return func(m *onnxpb.ModelProto) {
			for i, x := range m.Graph.Initializer {
				if x.GetName() == name {
					m.Graph.Initializer[i] = t
				}
			}
		}
	}
	tests := []struct {
		name    string
		corrupt func(*onnxpb.ModelProto)
		want    error
		says    string
	}{
		{"no record", func(m *onnxpb.ModelProto) { m.MetadataProps = nil }, arrowio.ErrFormat, `metadata "strata.structure": missing`},
		{"not JSON", func(m *onnxpb.ModelProto) { metadata(m, MetadataKey).Value = proto.String("{") }, arrowio.ErrFormat, "not a valid structure record"},
		{"newer", edit(func(_ *onnxpb.ModelProto, st *Structure) { st.FormatVersion = 2 }), arrowio.ErrUnsupported, "format_version 2"},
		{"missing initializer", edit(func(_ *onnxpb.ModelProto, st *Structure) { st.Layers[0].Params[0].Initializer = "gone" }), arrowio.ErrFormat, `tensor "gone": missing`},
		{"huge spec", edit(func(_ *onnxpb.ModelProto, st *Structure) { st.Layers[0].Spec.Trunk.Rank = 1 << 20 }), arrowio.ErrFormat, "parameter values, its initializers hold"},
		{"misshapen", setInit("fc.trunk.R", onnx.Float32Tensor("fc.trunk.R", []int64{16, 4, 2}, make([]float64, 128))), arrowio.ErrFormat, "shape [16 4 2], want [4 4 8]"},
		{"NaN", setInit("fc.correction.values", onnx.Float32Tensor("fc.correction.values", []int64{15}, append(make([]float64, 14), math.NaN()))), arrowio.ErrFormat, "value 14 is NaN"},
		{"index outside", setInit("fc.correction.rows", onnx.Int64Tensor("fc.correction.rows", []int64{15}, append(make([]int64, 14), 16))), arrowio.ErrFormat, "outside 16x16"},
		{"float index", setInit("fc.correction.cols", onnx.Float32Tensor("fc.correction.cols", []int64{15}, make([]float64, 15))), arrowio.ErrFormat, "want INT64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, s := lowered(t, compute.FamilyMonarch, "sparse")
			tt.corrupt(s.Proto)
			_, err := Operators(s)
			var fe *arrowio.FormatError
			if !errors.As(err, &fe) || fe.File != s.File || !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.says) {
				t.Errorf("got %v, want a FormatError of %s wrapping %v saying %q", err, s.File, tt.want, tt.says)
			}
		})
	}
}

// FuzzOperators feeds Operators structure records derived from a valid
// one: whatever the record says, it returns operators or an error, never
// panics, and never allocates beyond what the model holds.
func FuzzOperators(f *testing.F) {
	_, _, s := lowered(f, compute.FamilyMonarch, "sparse")
	valid := metadata(s.Proto, MetadataKey).GetValue()
	f.Add(valid)
	f.Add(strings.Replace(valid, `"rank":2`, `"rank":16777216`, 1))
	f.Add(strings.Replace(valid, `"family":"sum"`, `"family":"circulant"`, 1))
	f.Add(`{"format_version":1,"layers":[{"name":"x","spec":{"family":"toeplitz","out":16777216,"in":16777216},"params":[]}]}`)
	f.Fuzz(func(t *testing.T, record string) {
		m := &onnx.Model{Proto: proto.Clone(s.Proto).(*onnxpb.ModelProto), File: "fuzz.onnx"}
		metadata(m.Proto, MetadataKey).Value = proto.String(record)
		layers, err := Operators(m)
		for _, l := range layers {
			if err != nil || compute.StoredValues(l.Op) > 1000 {
				t.Fatalf("Operators returned %v with a %s of %d values from a model holding fewer", err, l.Op.Spec(), compute.StoredValues(l.Op))
			}
		}
	})
}

// checkDensified checks that d, the Densify twin of a structured model of
// tm, is tm's graph again: the same ops (a MatMul's weight behind its
// Transpose, as tm has it), the same initializer names and shapes (but
// for the bias of a Gemm whose beta is not 1, which is beta C under the
// name Lower gave it, "fc.bias_1"), no structure record.
func checkDensified(t *testing.T, tm *testModel, d *onnx.Model) {
	t.Helper()
	m := tm.m
	ops := func(m *onnx.Model) []string {
		var s []string
		for _, n := range m.Proto.GetGraph().GetNode() {
			s = append(s, n.GetOpType()+" "+n.GetName())
		}
		slices.Sort(s)
		return s
	}
	inits := func(m *onnx.Model) []string {
		var s []string
		for _, t := range m.Proto.GetGraph().GetInitializer() {
			s = append(s, fmt.Sprint(t.GetName(), t.GetDims()))
		}
		slices.Sort(s)
		return s
	}
	if got, want := ops(d), ops(m); !slices.Equal(got, want) {
		t.Errorf("densified nodes %q, want %q", got, want)
	}
	got := inits(d)
	if tm.beta != 1 {
		for i, g := range got {
			got[i] = strings.Replace(g, "fc.bias_1", "fc.bias", 1)
		}
	}
	if want := inits(m); !slices.Equal(got, want) {
		t.Errorf("densified initializers %q, want %q", got, want)
	}
	if HasStructure(d) {
		t.Error("the densified model keeps the structure record")
	}
}

// TestDensifyLowRank checks Densify without a runtime on the model of
// ExampleLower: the Gemm comes back as one Gemm named as before, reading
// the dense weight by its name with the recorded transB and alpha, and
// the bias Lower made for beta 2.
func TestDensifyLowRank(t *testing.T) {
	tm, _, s := lowered(t, compute.FamilyLowRank, "lowrank")
	d, err := Densify(s)
	if err != nil {
		t.Fatal(err)
	}
	nodes := d.Proto.GetGraph().GetNode()
	if len(nodes) != 1 || nodes[0].GetOpType() != "Gemm" || nodes[0].GetName() != "fc" {
		t.Fatalf("densified graph %v", nodes)
	}
	checkDensified(t, tm, d)
	if _, err := Densify(tm.m); err == nil {
		t.Error("Densify of a model without a structure record: no error")
	}
}
