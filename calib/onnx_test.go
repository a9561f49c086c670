//go:build onnxruntime

package calib

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/strata-ml/strata/arrowio/onnx"
	"github.com/strata-ml/strata/arrowio/onnx/onnxpb"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/testmodels"
	"github.com/strata-ml/strata/onnxrt"
)

// wholeCaps keep every row of the tests' examples.
var wholeCaps = Caps{FitRows: 1 << 24, HeldRows: 1 << 24, HeldValues: 1 << 30}

// nodeModel builds a model of one linear node (plus the bias Add of a
// MatMul) on input x of shape [batch, dims...], output y.
func nodeModel(t *testing.T, name string, dims []int64, rng *rand.Rand) *onnx.Model {
	t.Helper()
	rnd := func(n int) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = rng.NormFloat64()
		}
		return v
	}
	g := &onnxpb.GraphProto{Name: proto.String(name)}
	conv := func(c, out int64, kernel []int64, attrs ...*onnxpb.AttributeProto) {
		shape := append([]int64{out, c}, kernel...)
		n := out * c
		for _, k := range kernel {
			n *= k
		}
		g.Initializer = append(g.Initializer, onnx.Float32Tensor("w", shape, rnd(int(n))), onnx.Float32Tensor("b", []int64{out}, rnd(int(out))))
		g.Node = append(g.Node, onnx.NewNode("Conv", "node", []string{"x", "w", "b"}, []string{"y"}, attrs...))
	}
	switch name {
	case "gemm":
		g.Initializer = append(g.Initializer, onnx.Float32Tensor("w", []int64{dims[0], 5}, rnd(int(dims[0])*5)), onnx.Float32Tensor("b", []int64{5}, rnd(5)))
		g.Node = append(g.Node, onnx.NewNode("Gemm", "node", []string{"x", "w", "b"}, []string{"y"},
			onnx.FloatAttr("alpha", 0.5), onnx.FloatAttr("beta", 2)))
	case "matmul-3d":
		g.Initializer = append(g.Initializer, onnx.Float32Tensor("w", []int64{dims[1], 6}, rnd(int(dims[1])*6)), onnx.Float32Tensor("b", []int64{6}, rnd(6)))
		g.Node = append(g.Node, onnx.NewNode("MatMul", "node", []string{"x", "w"}, []string{"h"}),
			onnx.NewNode("Add", "add", []string{"h", "b"}, []string{"y"}))
	case "conv-3x3-pad":
		conv(dims[0], 4, []int64{3, 3}, onnx.IntsAttr("pads", 1, 1, 1, 1))
	case "conv-strided-dilated":
		conv(dims[0], 3, []int64{3, 2}, onnx.IntsAttr("strides", 2, 1), onnx.IntsAttr("dilations", 1, 2), onnx.IntsAttr("pads", 0, 1, 2, 0))
	case "conv-same-lower":
		conv(dims[0], 3, []int64{4, 3}, onnx.IntsAttr("strides", 2, 1), &onnxpb.AttributeProto{Name: proto.String("auto_pad"),
			Type: onnxpb.AttributeProto_STRING.Enum(), S: []byte("SAME_LOWER")})
	case "conv-1d":
		conv(dims[0], 5, []int64{3}, onnx.IntsAttr("strides", 2), onnx.IntsAttr("pads", 1, 0))
	case "conv-1x1":
		conv(dims[0], 7, []int64{1, 1})
	}
	info := func(v string, rank int) *onnxpb.ValueInfoProto {
		tt := &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(onnx.Float)), Shape: &onnxpb.TensorShapeProto{}}
		for i := range rank {
			dim := &onnxpb.TensorShapeProto_Dimension{}
			if i == 0 {
				dim.Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "batch"}
			} else if v == "x" {
				dim.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: dims[i-1]}
			}
			tt.Shape.Dim = append(tt.Shape.Dim, dim)
		}
		return &onnxpb.ValueInfoProto{Name: proto.String(v), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: tt}}}
	}
	g.Input = []*onnxpb.ValueInfoProto{info("x", len(dims)+1)}
	outRank := len(dims) + 1
	if name == "gemm" {
		outRank = 2
	}
	g.Output = []*onnxpb.ValueInfoProto{info("y", outRank)}
	mp := &onnxpb.ModelProto{IrVersion: proto.Int64(8), Graph: g,
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(17)}}}
	b, err := proto.Marshal(mp)
	if err != nil {
		t.Fatal(err)
	}
	m, err := onnx.Decode(b, name+".onnx")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// checkRows checks the runner's promise on m: every layer's held-out
// rows x give the output of its node as ONNX Runtime computes it, W x
// (plus the bias for Gemm and Conv, whose node adds it), row by row in
// the node's output order, to float32 rounding.
func checkRows(t *testing.T, m *onnx.Model, held Examples) {
	t.Helper()
	m.NameNodes()
	linears, _ := m.Linears()
	if len(linears) == 0 {
		t.Fatal("no linear node")
	}
	set := Set{Fit: Examples{X: held.X[:held.D], Y: held.Y[:1], N: 1, D: held.D}, Held: held}
	r, err := NewONNX(m, linears, set)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	idx := make([]int, len(linears))
	for i := range idx {
		idx[i] = i
	}
	acts, err := r.Collect(context.Background(), idx, wholeCaps)
	if err != nil {
		t.Fatal(err)
	}
	outs := nodeOutputs(t, m, linears, held)
	for i, l := range linears {
		a := acts[i]
		y := outs[i]
		if a.HeldRows*l.Out != len(y.Float32) || a.HeldRows != a.HeldSeen {
			t.Fatalf("node %s: %d rows for an output %v", l.Node, a.HeldRows, y.Shape)
		}
		positions := 1
		if l.Op == "Conv" {
			positions = len(y.Float32) / (held.N * l.Out)
		}
		var worst, scale float64
		for r := range a.HeldRows {
			x := a.Held[r*l.In : (r+1)*l.In]
			b, p := r/positions, r%positions
			for o := range l.Out {
				var got float64
				for j, v := range x {
					got += l.W[o*l.In+j] * v
				}
				if l.Op != "MatMul" && l.B != nil {
					got += l.B[o]
				}
				want := float64(y.Float32[r*l.Out+o])
				if l.Op == "Conv" {
					want = float64(y.Float32[(b*l.Out+o)*positions+p])
				}
				worst, scale = max(worst, math.Abs(got-want)), max(scale, math.Abs(want))
			}
		}
		if worst > 1e-5*scale {
			t.Errorf("node %s (%s): W x differs from the node's output by %.3g (scale %.3g)", l.Node, l.Op, worst, scale)
		}
		t.Logf("node %s (%s): %d rows of %d, W x agrees to %.2g relative", l.Node, l.Op, a.HeldRows, l.In, worst/scale)
	}
}

// nodeOutputs runs m with each linear's node output exposed.
func nodeOutputs(t *testing.T, m *onnx.Model, linears []onnx.Linear, ex Examples) []onnxrt.Tensor {
	t.Helper()
	p := proto.Clone(m.Proto).(*onnxpb.ModelProto)
	g := p.GetGraph()
	first := len(g.Output)
	for _, l := range linears {
		for _, n := range g.Node {
			if n.GetName() == l.Node {
				g.Output = append(g.Output, &onnxpb.ValueInfoProto{Name: proto.String(n.Output[0]), Type: &onnxpb.TypeProto{
					Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(onnxpb.TensorProto_FLOAT))}}}})
			}
		}
	}
	b, err := proto.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	s, err := onnxrt.Open(b, onnxrt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := &onnxModel{in: s.Inputs()[0]}
	r.row, err = exampleShape(r.in, ex.D)
	if err != nil {
		t.Fatal(err)
	}
	y, err := s.Run([]onnxrt.Tensor{r.tensor(ex.X, ex.N)})
	if err != nil {
		t.Fatal(err)
	}
	return y[first:]
}

func TestONNXRowsSynthetic(t *testing.T) {
	tests := []struct {
		name string
		dims []int64
	}{
		{"gemm", []int64{9}},
		{"matmul-3d", []int64{4, 7}},
		{"conv-3x3-pad", []int64{3, 6, 5}},
		{"conv-strided-dilated", []int64{2, 9, 7}},
		{"conv-same-lower", []int64{2, 7, 6}},
		{"conv-1d", []int64{3, 10}},
		{"conv-1x1", []int64{4, 3, 5}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(i), 11))
			d := 1
			for _, v := range tt.dims {
				d *= int(v)
			}
			checkRows(t, nodeModel(t, tt.name, tt.dims, rng), randomExamples(rng, 5, d, 2))
		})
	}
}

// The test models' rows, on the digits evaluation rows: the MLP's Gemms,
// the CNN's convolutions and Gemms, the transformer's MatMuls on [B, 8,
// 32] and Gemms.
func TestONNXRowsTestModels(t *testing.T) {
	set := testmodels.Build(t)
	ex := digits(set, 40)
	for _, m := range []*testmodels.Model{set.MLP, set.CNN, set.Transformer} {
		t.Run(m.Name, func(t *testing.T) {
			om, err := onnx.Read(m.ONNX)
			if err != nil {
				t.Fatal(err)
			}
			checkRows(t, om, ex)
		})
	}
}

// digits returns the first n evaluation rows of the test set.
func digits(set *testmodels.Set, n int) Examples {
	ex := Examples{N: n, D: 64}
	for i := range n * 64 {
		ex.X = append(ex.X, float64(set.EvalX.Float32[i]))
	}
	for i := range n {
		ex.Y = append(ex.Y, float64(set.EvalY.Int64[i]))
	}
	return ex
}

// The baseline loss of an ONNX runner is the model's cross-entropy that
// PyTorch reported on the evaluation rows; a swap of a layer's own
// weight leaves it unchanged.
func TestONNXLoss(t *testing.T) {
	set := testmodels.Build(t)
	ex := digits(set, 360)
	m, err := onnx.Read(set.CNN.ONNX)
	if err != nil {
		t.Fatal(err)
	}
	m.NameNodes()
	linears, _ := m.Linears()
	r, err := NewONNX(m, linears, Set{Fit: ex, Held: ex})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	base, err := r.Loss(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(base-set.CNN.Loss) > 1e-5 {
		t.Errorf("loss %.7f, PyTorch's %.7f", base, set.CNN.Loss)
	}
	for i, l := range linears {
		op := denseOp(l)
		got, err := r.Loss(ctx, Swap{Layer: i, Op: op})
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(got-base) > 1e-6 {
			t.Errorf("%s swapped for its own weight: loss %.7f, %.7f", l.Node, got, base)
		}
	}
}

func denseOp(l onnx.Linear) compute.Operator[float32] {
	return compute.Convert[float32](compute.NewDenseOp(l.Out, l.In, l.W))
}
