package lowering

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/strata-ml/strata/arrowio/onnx"
	"github.com/strata-ml/strata/arrowio/onnx/onnxpb"
	"github.com/strata-ml/strata/compute"
)

// python is Debian's interpreter, which has python3-onnx.
const python = "/usr/bin/python3"

// checkModels runs onnx.checker.check_model(full_check=True) on every model
// (written to a temporary directory) in one python process. A missing
// python3-onnx fails the test.
func checkModels(t *testing.T, models map[string]*onnx.Model) {
	t.Helper()
	dir := t.TempDir()
	var files []string
	for name, m := range models {
		f := filepath.Join(dir, strings.ReplaceAll(name, "/", "_")+".onnx")
		if err := m.Write(f); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	slices.Sort(files)
	script := `
import sys, onnx
for path in sys.argv[1:]:
    onnx.checker.check_model(onnx.load(path), full_check=True)
print("ok", len(sys.argv) - 1)
`
	out, err := exec.Command(python, append([]string{"-c", script}, files...)...).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != fmt.Sprintf("ok %d", len(files)) {
		t.Fatalf("onnx.checker (needs Debian's python3-onnx): %v\n%s", err, out)
	}
}

// kinds are the node kinds every family is lowered for.
var kinds = []string{"gemm-transB1", "gemm-transB0", "matmul-2d", "matmul-3d", "conv-1x1"}

// shapeCase is a layer shape and the Kronecker factor shape that fits it.
type shapeCase struct {
	name    string
	out, in int
	kron    [2]int
}

// shapes are square, rectangular, and padded for the families that pad
// (b = 4 does not divide 10 or 14, nor 3 the 10; the circulant N = 14 is
// not a power of two).
var shapes = []shapeCase{
	{"square", 16, 16, [2]int{4, 4}},
	{"rect", 12, 24, [2]int{3, 4}},
	{"padded", 10, 14, [2]int{3, 4}},
}

// trunkSpec is the spec of a test trunk of family f.
func trunkSpec(f string, s shapeCase) compute.Spec {
	spec := compute.Spec{Family: f, Out: s.out, In: s.in}
	switch f {
	case compute.FamilyLowRank:
		spec.Rank = 3
	case compute.FamilyMonarch:
		spec.Blocks, spec.Rank = 4, 2
	case compute.FamilyBlockDiag:
		spec.Blocks = 4
	case compute.FamilyKronecker:
		spec.Rank, spec.FactorShape = 2, s.kron
	}
	return spec
}

// sumSpec is trunk + a residual "lowrank" (rank 2), "sparse" (15 entries)
// or "none".
func sumSpec(trunk compute.Spec, residual string) compute.Spec {
	c := compute.Spec{Family: compute.FamilyZero, Out: trunk.Out, In: trunk.In}
	switch residual {
	case "lowrank":
		c.Family, c.Rank = compute.FamilyLowRank, 2
	case "sparse":
		c.Family, c.NNZ = compute.FamilySparse, 15
	}
	return compute.Spec{Family: compute.FamilySum, Out: trunk.Out, In: trunk.In, Trunk: &trunk, Correction: &c}
}

// randomOp builds the operator of spec with every trainable parameter drawn
// from N(0, 1/in) and sparse entries at distinct random positions, sorted.
func randomOp(t testing.TB, spec compute.Spec, rng *rand.Rand) compute.Operator[float32] {
	t.Helper()
	op, err := compute.New[float32](spec)
	if err != nil {
		t.Fatal(err)
	}
	ps := op.Params()
	for i, p := range ps {
		switch {
		case strings.HasSuffix(p.Name, "rows"):
			out, in := op.Shape()
			pos := rng.Perm(out * in)[:len(p.Data)]
			slices.Sort(pos)
			for e, q := range pos {
				p.Data[e] = float32(q / in)
				ps[i+1].Data[e] = float32(q % in)
			}
		case strings.HasSuffix(p.Name, "cols"):
		default:
			_, in := op.Shape()
			for j := range p.Data {
				p.Data[j] = float32(rng.NormFloat64() / math.Sqrt(float64(in)))
			}
		}
	}
	return op
}

// convGeometry is a k x k Conv's kernel and attributes.
type convGeometry struct {
	name                string
	out, c              int
	kh, kw              int
	stride, pad, dilate int
}

var convGeometries = []convGeometry{
	{"3x3-pad1", 8, 3, 3, 3, 1, 1, 1},
	{"2x3-stride2", 5, 4, 2, 3, 2, 0, 1},
	{"3x3-dilate2-pad2", 6, 2, 3, 3, 1, 2, 2},
}

// testModel is a one-layer model and what a reference needs to run it.
type testModel struct {
	m       *onnx.Model
	xShape  []int64
	kind    string
	out, in int
	alpha   float32
	beta    float32
	bias    []float32
	geom    convGeometry // conv-k only
}

// newModel builds a model of one linear node "fc" (plus its bias Add for a
// MatMul) of the given kind with random weights: y = fc(x).
func newModel(t testing.TB, kind string, out, in int, geom convGeometry, rng *rand.Rand) *testModel {
	t.Helper()
	tm := &testModel{kind: kind, out: out, in: in, alpha: 1, beta: 1, geom: geom}
	rnd := func(n int) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = rng.NormFloat64()
		}
		return v
	}
	biasVals := rnd(out)
	for _, v := range biasVals {
		tm.bias = append(tm.bias, float32(v))
	}
	g := &onnxpb.GraphProto{Name: proto.String("test")}
	bias := onnx.Float32Tensor("fc.bias", []int64{int64(out)}, biasVals)
	var node []*onnxpb.NodeProto
	var w *onnxpb.TensorProto
	switch kind {
	case "gemm-transB1", "gemm-transB0":
		tm.xShape = []int64{3, int64(in)}
		transB := int64(1)
		w = onnx.Float32Tensor("fc.weight", []int64{int64(out), int64(in)}, rnd(out*in))
		tm.alpha, tm.beta = 0.5, 2
		if kind == "gemm-transB0" {
			transB = 0
			w = onnx.Float32Tensor("fc.weight", []int64{int64(in), int64(out)}, rnd(out*in))
			tm.alpha, tm.beta = 1.5, 1
		}
		node = append(node, onnx.NewNode("Gemm", "fc", []string{"x", "fc.weight", "fc.bias"}, []string{"y"},
			onnx.IntAttr("transB", transB), onnx.FloatAttr("alpha", tm.alpha), onnx.FloatAttr("beta", tm.beta)))
	case "matmul-2d", "matmul-3d":
		tm.xShape = []int64{3, int64(in)}
		if kind == "matmul-3d" {
			tm.xShape = []int64{2, 3, int64(in)}
		}
		w = onnx.Float32Tensor("fc.weight", []int64{int64(in), int64(out)}, rnd(out*in))
		node = append(node, onnx.NewNode("MatMul", "fc", []string{"x", "fc.weight"}, []string{"h"}),
			onnx.NewNode("Add", "fc_bias", []string{"h", "fc.bias"}, []string{"y"}))
	case "conv-1x1":
		tm.xShape = []int64{2, int64(in), 3, 4}
		w = onnx.Float32Tensor("fc.weight", []int64{int64(out), int64(in), 1, 1}, rnd(out*in))
		node = append(node, onnx.NewNode("Conv", "fc", []string{"x", "fc.weight", "fc.bias"}, []string{"y"}))
	case "conv-k":
		tm.xShape = []int64{2, int64(geom.c), 7, 6}
		w = onnx.Float32Tensor("fc.weight", []int64{int64(out), int64(geom.c), int64(geom.kh), int64(geom.kw)}, rnd(out*in))
		p, s, d := int64(geom.pad), int64(geom.stride), int64(geom.dilate)
		node = append(node, onnx.NewNode("Conv", "fc", []string{"x", "fc.weight", "fc.bias"}, []string{"y"},
			onnx.IntsAttr("pads", p, p, p, p), onnx.IntsAttr("strides", s, s), onnx.IntsAttr("dilations", d, d)))
	}
	g.Node = node
	g.Initializer = []*onnxpb.TensorProto{w, bias}
	xdims := append([]int64{-1}, tm.xShape[1:]...)
	g.Input = []*onnxpb.ValueInfoProto{valueInfo("x", xdims)}
	ydims := append([]int64{-1}, tm.xShape[1:]...)
	for i := 1; i < len(ydims); i++ {
		ydims[i] = -2
	}
	g.Output = []*onnxpb.ValueInfoProto{valueInfo("y", ydims)}
	mp := &onnxpb.ModelProto{IrVersion: proto.Int64(8), Graph: g,
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(13)}}}
	b, err := proto.Marshal(mp)
	if err != nil {
		t.Fatal(err)
	}
	if tm.m, err = onnx.Decode(b, kind+".onnx"); err != nil {
		t.Fatal(err)
	}
	return tm
}

// valueInfo declares a FLOAT tensor; dims -1 are a symbolic batch axis, -2
// an unknown size.
func valueInfo(name string, dims []int64) *onnxpb.ValueInfoProto {
	tt := &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(onnx.Float)), Shape: &onnxpb.TensorShapeProto{}}
	for _, d := range dims {
		dim := &onnxpb.TensorShapeProto_Dimension{}
		if d == -1 {
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "batch"}
		} else if d >= 0 {
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}
		}
		tt.Shape.Dim = append(tt.Shape.Dim, dim)
	}
	return &onnxpb.ValueInfoProto{Name: proto.String(name),
		Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: tt}}}
}

// reference computes the model's output with op in place of its weight,
// by compute's own Apply on the rows the node maps (float32), plus the
// bias (times beta for a Gemm). It returns the output and its shape.
func (tm *testModel) reference(op compute.Operator[float32], x []float32) ([]float32, []int64) {
	ws := compute.NewWorkspace[float32]()
	apply := func(rows []float32, n int) []float32 {
		y := make([]float32, n*tm.out)
		op.Apply(y, rows, n, ws)
		for r := range n {
			for o := range tm.out {
				y[r*tm.out+o] += tm.beta * tm.bias[o]
			}
		}
		return y
	}
	switch tm.kind {
	case "conv-1x1", "conv-k":
		return tm.convReference(apply, x)
	}
	n := len(x) / tm.in
	shape := slices.Clone(tm.xShape)
	shape[len(shape)-1] = int64(tm.out)
	return apply(x, n), shape
}

// convReference maps every patch of x ([N, C, H, W], zero-padded; a 1x1
// conv's patch is one pixel's channels) through apply and lays the outputs
// out as [N, out, H', W'].
func (tm *testModel) convReference(apply func([]float32, int) []float32, x []float32) ([]float32, []int64) {
	g := tm.geom
	if tm.kind == "conv-1x1" {
		g = convGeometry{c: tm.in, kh: 1, kw: 1, stride: 1, dilate: 1}
	}
	n, h, w := int(tm.xShape[0]), int(tm.xShape[2]), int(tm.xShape[3])
	oh := (h+2*g.pad-g.dilate*(g.kh-1)-1)/g.stride + 1
	ow := (w+2*g.pad-g.dilate*(g.kw-1)-1)/g.stride + 1
	rows := make([]float32, 0, n*oh*ow*tm.in)
	for b := range n {
		for i := range oh {
			for j := range ow {
				for c := range g.c {
					for ky := range g.kh {
						for kx := range g.kw {
							yy, xx := i*g.stride-g.pad+ky*g.dilate, j*g.stride-g.pad+kx*g.dilate
							v := float32(0)
							if yy >= 0 && yy < h && xx >= 0 && xx < w {
								v = x[((b*g.c+c)*h+yy)*w+xx]
							}
							rows = append(rows, v)
						}
					}
				}
			}
		}
	}
	y := apply(rows, n*oh*ow)
	out := make([]float32, len(y))
	for b := range n {
		for p := range oh * ow {
			for o := range tm.out {
				out[(b*tm.out+o)*oh*ow+p] = y[(b*oh*ow+p)*tm.out+o]
			}
		}
	}
	return out, []int64{int64(n), int64(tm.out), int64(oh), int64(ow)}
}

// randomInput draws the model's input from N(0, 1).
func (tm *testModel) randomInput(rng *rand.Rand) []float32 {
	n := 1
	for _, d := range tm.xShape {
		n *= int(d)
	}
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	return x
}

// relDiff is max |got - want| / max |want|: the error relative to the
// output's scale, meaningful where single outputs are near zero.
func relDiff(got, want []float32) float64 {
	var d, m float64
	for i := range want {
		d = max(d, math.Abs(float64(got[i])-float64(want[i])))
		m = max(m, math.Abs(float64(want[i])))
	}
	return d / m
}

// floatCount is the number of FLOAT initializer values of m, and
// indexCount the number of INT64 values of the initializers the structure
// records as parameters.
func floatCount(m *onnx.Model) int {
	n := 0
	for _, t := range m.Proto.GetGraph().GetInitializer() {
		if onnx.IsFloat(t.GetDataType()) {
			c := 1
			for _, d := range t.Dims {
				c *= int(d)
			}
			n += c
		}
	}
	return n
}

// writeTemp writes m to a file in dir and returns its path.
func writeTemp(t testing.TB, dir string, m *onnx.Model, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := m.Write(p); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	return p
}
