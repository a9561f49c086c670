package lowering

import (
	"encoding/binary"
	"fmt"
	"math"

	"google.golang.org/protobuf/proto"

	"github.com/strata-ml/strata/arrowio/onnx"
	"github.com/strata-ml/strata/arrowio/onnx/onnxpb"
	"github.com/strata-ml/strata/compute"
)

// builder collects the nodes and initializers of one replacement subgraph.
// Nodes are appended in data-flow order; every value and node name comes
// from the model's NewName, so nothing clashes with the rest of the graph.
type builder struct {
	m      *onnx.Model
	prefix string // the replaced node's name: new nodes are "<prefix>/<Op>"
	layer  string // the layer name: new weights are "<layer>.<param>"
	nodes  []*onnxpb.NodeProto
	inits  []*onnxpb.TensorProto
	opset  int64             // the least default-domain opset the nodes need
	params map[string]string // compute parameter name -> initializer name
	ints   map[string]string // int64 constants already added, by value
}

func newBuilder(m *onnx.Model, prefix, layer string) *builder {
	return &builder{m: m, prefix: prefix, layer: layer, opset: onnx.MinOpset,
		params: map[string]string{}, ints: map[string]string{}}
}

// op appends a node of type op reading inputs and returns its one output.
func (b *builder) op(op string, inputs []string, attrs ...*onnxpb.AttributeProto) string {
	out := b.m.NewName(b.prefix + "/" + op + "_out")
	b.nodes = append(b.nodes, onnx.NewNode(op, b.m.NewName(b.prefix+"/"+op), inputs, []string{out}, attrs...))
	return out
}

// split splits x along axis into parts pieces of size each and returns
// them.
func (b *builder) split(x string, axis int64, parts int, size int64) []string {
	if parts == 1 {
		return []string{x}
	}
	sizes := make([]int64, parts)
	outs := make([]string, parts)
	for i := range outs {
		sizes[i] = size
		outs[i] = b.m.NewName(b.prefix + "/Split_out")
	}
	b.nodes = append(b.nodes, onnx.NewNode("Split", b.m.NewName(b.prefix+"/Split"),
		[]string{x, b.int64s(sizes...)}, outs, onnx.IntAttr("axis", axis)))
	return outs
}

// need raises the opset the subgraph needs to at least v.
func (b *builder) need(v int64) { b.opset = max(b.opset, v) }

// int64s returns an INT64 initializer holding v as a 1-D tensor (a
// Reshape's shape, a Slice's bounds), shared by every use of the same
// values within the subgraph.
func (b *builder) int64s(v ...int64) string {
	key := fmt.Sprint(v)
	if name, ok := b.ints[key]; ok {
		return name
	}
	name := b.m.NewName(b.prefix + "/const")
	b.inits = append(b.inits, onnx.Int64Tensor(name, []int64{int64(len(v))}, v))
	b.ints[key] = name
	return name
}

// scalar64 returns an INT64 scalar initializer (a DFT's dft_length).
func (b *builder) scalar64(v int64) string {
	name := b.m.NewName(b.prefix + "/const")
	b.inits = append(b.inits, onnx.Int64Tensor(name, nil, []int64{v}))
	return name
}

// weight adds the parameter p of the operator part (a compute.Sum's
// "trunk" or "correction", or "" for a bare operator) as the FLOAT
// initializer "<layer>.<part>.<p.Name>" (a fresh variant if that name is
// taken) with p's shape and values, and returns its name.
func (b *builder) weight(part string, p compute.Param[float32]) string {
	raw := make([]byte, 4*len(p.Data))
	for i, v := range p.Data {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	return b.param(part, p, onnx.Float, raw)
}

// index adds the integer-valued parameter p (a sparse operator's rows or
// cols, which compute stores as floats) as an INT64 initializer named as
// weight names it, and returns its name.
func (b *builder) index(part string, p compute.Param[float32]) string {
	raw := make([]byte, 8*len(p.Data))
	for i, v := range p.Data {
		binary.LittleEndian.PutUint64(raw[8*i:], uint64(int64(v)))
	}
	return b.param(part, p, onnxpb.TensorProto_INT64, raw)
}

// param adds the initializer of p holding raw, of element type dt.
func (b *builder) param(part string, p compute.Param[float32], dt onnxpb.TensorProto_DataType, raw []byte) string {
	key := qualify(part, p.Name)
	name := b.m.NewName(b.layer + "." + key)
	dims := make([]int64, len(p.Shape))
	for i, d := range p.Shape {
		dims[i] = int64(d)
	}
	b.inits = append(b.inits, &onnxpb.TensorProto{Name: proto.String(name), Dims: dims,
		DataType: proto.Int32(int32(dt)), RawData: raw})
	b.params[key] = name
	return name
}

// qualify names a parameter within a layer: "trunk.L", or "L" for a bare
// operator.
func qualify(part, name string) string {
	if part == "" {
		return name
	}
	return part + "." + name
}

// The small node constructors below each add one node and return its
// output. Shapes and axes are int64 initializers (opset 13 takes them as
// inputs).

func (b *builder) reshape(x string, shape ...int64) string {
	return b.op("Reshape", []string{x, b.int64s(shape...)})
}

func (b *builder) transpose(x string, perm ...int64) string {
	return b.op("Transpose", []string{x}, onnx.IntsAttr("perm", perm...))
}

func (b *builder) matmul(x, w string) string { return b.op("MatMul", []string{x, w}) }

func (b *builder) add(x, y string) string { return b.op("Add", []string{x, y}) }

// slice keeps [start, end) of axis.
func (b *builder) slice(x string, axis, start, end int64) string {
	return b.op("Slice", []string{x, b.int64s(start), b.int64s(end), b.int64s(axis)})
}

// padAxis appends after zeros to the last axis of the rank-r tensor x.
func (b *builder) padAxis(x string, rank int, axis int, after int64) string {
	pads := make([]int64, 2*rank)
	pads[rank+axis] = after
	return b.op("Pad", []string{x, b.int64s(pads...)})
}

func (b *builder) concat(axis int64, xs ...string) string {
	return b.op("Concat", xs, onnx.IntAttr("axis", axis))
}

func stringAttr(name, v string) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_STRING.Enum(), S: []byte(v)}
}

// floatTensorAttr is a TENSOR attribute holding the one FLOAT v (a
// ConstantOfShape's value).
func floatTensorAttr(name string, v float32) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_TENSOR.Enum(),
		T: onnx.Float32Tensor("", []int64{1}, []float64{float64(v)})}
}
