package lowering

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/strata-ml/strata/arrowio/onnx"
	"github.com/strata-ml/strata/arrowio/onnx/onnxpb"
	"github.com/strata-ml/strata/compute"
)

// Materialize returns a copy of m, the model the layers were converted
// from, in which each layer's weight initializer holds S + R made dense
// instead of W, in the weight's own name, shape and orientation: [out, in]
// or [in, out] as stored (transposed back through a Gemm's transB=0, a
// MatMul, or a Transpose before the node), [out, C, k...] for a Conv, and
// divided by the Gemm's alpha, which the node applies again. Nothing else
// changes. m is not changed; errors wrap ErrLayer or ErrUnsupported (a
// Gemm whose alpha is 0).
//
// This is the dense twin of Lower's output: the same map, at the dense
// layer's cost, for runtimes or comparisons that want the original graph.
func Materialize(m *onnx.Model, layers []Layer) (*onnx.Model, error) {
	out := &onnx.Model{Proto: proto.Clone(m.Proto).(*onnxpb.ModelProto), File: m.File}
	linears, err := pick(out, layers)
	if err != nil {
		return nil, err
	}
	for i, layer := range layers {
		l := linears[i]
		if l.Alpha == 0 {
			return nil, fmt.Errorf("%w: layer %q (node %q): Gemm alpha is 0: no weight reproduces S + R", ErrUnsupported, layer.Name, layer.Node)
		}
		stored := storedWeight(layer.Op, l.Alpha, l.Layout)
		inits := out.Proto.GetGraph().GetInitializer()
		for k, t := range inits {
			if t.GetName() == l.Weight {
				inits[k] = onnx.Float32Tensor(l.Weight, t.Dims, stored)
			}
		}
	}
	return out, nil
}

// storedWeight returns S + R of op made dense (accumulated in float64),
// divided by alpha and laid out as a weight stored in layout: [out, in]
// (or a convolution's [out, C, k...], the same values) or [in, out].
func storedWeight(op compute.Operator[float32], alpha float64, layout onnx.Layout) []float64 {
	out, in := op.Shape()
	w := make([]float64, out*in)
	op.DenseTo(w)
	stored := make([]float64, len(w))
	for r := range out {
		for c := range in {
			v := w[r*in+c] / alpha
			if layout == onnx.InOut {
				stored[c*out+r] = v
			} else {
				stored[r*in+c] = v
			}
		}
	}
	return stored
}

// Densify returns the dense twin of s, a structured model Lower wrote,
// from s alone: each lowered layer's subgraph becomes one node of the
// replaced node's type, named as it was, that computes x W^T + b with W =
// S + R made dense (accumulated in float64, written as float32). The
// weight is the initializer the record names, in the recorded shape and
// layout: a Gemm's B with transB as the layout says and the recorded
// alpha (W / alpha stored), a MatMul's B [in, out] (or [out, in] behind a
// Transpose(perm=[1,0])), a Conv's [out, C, k...] with the strides, pads,
// dilations and auto_pad of the subgraph's convolution. The bias is the
// recorded one (a Gemm whose beta was not 1 keeps beta C, with beta 1); a
// MatMul's bias Add was never replaced. The structure record is removed;
// the opset Lower raised stays. s is not changed.
//
// Densify(Lower(m, layers)) computes what Materialize(m, layers) does,
// with the graph's other nodes and names kept. Errors are
// *arrowio.FormatError (an invalid record, see Operators) or wrap
// ErrLayer (a record whose subgraph is not in the graph).
func Densify(s *onnx.Model) (*onnx.Model, error) {
	st, err := ReadStructure(s)
	if err != nil {
		return nil, err
	}
	layers, err := Operators(s)
	if err != nil {
		return nil, err
	}
	out := &onnx.Model{Proto: proto.Clone(s.Proto).(*onnxpb.ModelProto), File: s.File}
	for i, rec := range st.Layers {
		if err := densifyLayer(out, rec, layers[i].Op); err != nil {
			return nil, fmt.Errorf("layer %q (node %q): %w", rec.Name, rec.Node, err)
		}
	}
	props := out.Proto.MetadataProps[:0]
	for _, e := range out.Proto.MetadataProps {
		if e.GetKey() != MetadataKey {
			props = append(props, e)
		}
	}
	out.Proto.MetadataProps = props
	return out, nil
}

// densifyLayer replaces the subgraph of rec in m by its dense node.
func densifyLayer(m *onnx.Model, rec LayerRecord, op compute.Operator[float32]) error {
	x, conv, err := subgraphInput(m, rec.Node)
	if err != nil {
		return err
	}
	layout := onnx.OutIn
	if rec.Layout == onnx.InOut.String() {
		layout = onnx.InOut
	}
	alpha := rec.Alpha
	if alpha == 0 {
		return fmt.Errorf("%w: alpha 0 recorded for a Gemm", ErrLayer)
	}
	weight := m.NewName(rec.Weight)
	inits := []*onnxpb.TensorProto{onnx.Float32Tensor(weight, rec.WeightShape, storedWeight(op, alpha, layout))}
	inputs := []string{x, weight}
	var nodes []*onnxpb.NodeProto
	var attrs []*onnxpb.AttributeProto
	switch rec.Op {
	case "Gemm":
		transB := int64(0)
		if layout == onnx.OutIn {
			transB = 1
		}
		attrs = append(attrs, onnx.IntAttr("transB", transB))
		if alpha != 1 {
			attrs = append(attrs, onnx.FloatAttr("alpha", float32(alpha)))
		}
	case "MatMul":
		if layout == onnx.OutIn {
			t := m.NewName(rec.Node + "/Transpose_out")
			nodes = append(nodes, onnx.NewNode("Transpose", m.NewName(rec.Node+"/Transpose"), []string{weight}, []string{t}, onnx.IntsAttr("perm", 1, 0)))
			inputs[1] = t
		}
	case "Conv":
		if conv != nil {
			for _, a := range conv.GetAttribute() {
				switch a.GetName() {
				case "strides", "pads", "dilations", "auto_pad":
					attrs = append(attrs, proto.Clone(a).(*onnxpb.AttributeProto))
				}
			}
		}
	default:
		return fmt.Errorf("%w: op %q recorded", ErrLayer, rec.Op)
	}
	if rec.Bias != "" && rec.Op != "MatMul" {
		inputs = append(inputs, rec.Bias)
	}
	last := findNode(m, rec.Node)
	nodes = append(nodes, onnx.NewNode(rec.Op, rec.Node, inputs, last.GetOutput(), attrs...))
	return m.ReplaceNode(rec.Node, nodes, inits)
}

// subgraphInput returns the one value that the subgraph of the lowered
// node (the node of that name and those named "<node>/...") reads from
// outside it and that is no initializer, its input x, with the first of
// its Conv nodes that reads x (nil if none).
func subgraphInput(m *onnx.Model, node string) (string, *onnxpb.NodeProto, error) {
	g := m.Proto.GetGraph()
	inits := map[string]bool{}
	for _, t := range g.GetInitializer() {
		inits[t.GetName()] = true
	}
	var sub []*onnxpb.NodeProto
	produced := map[string]bool{}
	for _, n := range g.GetNode() {
		if n.GetName() == node || strings.HasPrefix(n.GetName(), node+"/") {
			sub = append(sub, n)
			for _, o := range n.Output {
				produced[o] = true
			}
		}
	}
	if findNode(m, node) == nil {
		return "", nil, fmt.Errorf("%w: no node %q in the graph", ErrLayer, node)
	}
	var x string
	for _, n := range sub {
		for _, in := range n.Input {
			if in == "" || produced[in] || inits[in] || in == x {
				continue
			}
			if x != "" {
				return "", nil, fmt.Errorf("%w: the subgraph reads two values from outside, %q and %q", ErrLayer, x, in)
			}
			x = in
		}
	}
	if x == "" {
		return "", nil, fmt.Errorf("%w: the subgraph reads no input", ErrLayer)
	}
	for _, n := range sub {
		if n.GetOpType() == "Conv" && len(n.Input) > 0 && n.Input[0] == x {
			return x, n, nil
		}
	}
	return x, nil, nil
}
