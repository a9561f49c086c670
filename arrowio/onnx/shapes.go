package onnx

import (
	"encoding/binary"
	"fmt"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/arrowio/onnx/onnxpb"
)

// unknown marks a dimension whose size is not known (symbolic, or not
// propagated).
const unknown = -1

// maxDim bounds the dimensions that shape arithmetic trusts; anything larger
// (only a crafted model has it) is treated as unknown, so no sum or product
// overflows.
const maxDim = 1 << 40

// knownShapes returns the shapes the main graph g states: its initializers'
// dims, and the tensor types of its inputs, value_info and outputs
// (symbolic or missing dimensions are unknown). A value whose rank is not
// stated is absent.
func knownShapes(g *onnxpb.GraphProto) map[string][]int64 {
	shapes := map[string][]int64{}
	for _, list := range [][]*onnxpb.ValueInfoProto{g.Output, g.ValueInfo, g.Input} {
		for _, vi := range list {
			tt := vi.GetType().GetTensorType()
			if tt == nil || tt.Shape == nil {
				continue
			}
			dims := make([]int64, len(tt.Shape.Dim))
			for i, d := range tt.Shape.Dim {
				dims[i] = unknown
				if v, ok := d.GetValue().(*onnxpb.TensorShapeProto_Dimension_DimValue); ok && v.DimValue >= 0 && v.DimValue <= maxDim {
					dims[i] = v.DimValue
				}
			}
			shapes[vi.GetName()] = dims
		}
	}
	for _, t := range g.Initializer {
		shapes[t.GetName()] = t.Dims
	}
	return shapes
}

// checkShapes walks the main graph g in order, propagating shapes from
// knownShapes through the ops strata understands, and checks that each
// Gemm, MatMul and Conv gets operands whose sizes agree: the in-dimension of
// a weight against its input's, Conv channels and groups, bias lengths,
// kernel_shape against the weight, and the sanity of Conv's attributes.
// Where a size is unknown the check is skipped; no shape is ever guessed.
func checkShapes(file string, g *onnxpb.GraphProto) error {
	shapes := knownShapes(g)
	consts := map[string]*onnxpb.TensorProto{}
	for _, t := range g.Initializer {
		consts[t.GetName()] = t
	}
	for i, n := range g.Node {
		if canonicalDomain(n.GetDomain()) != "" {
			continue
		}
		out, err := inferNode(n, shapes, consts)
		if err != nil {
			return formatErr(file, "node", nodeLabel(i, n), arrowio.ErrFormat, "%s: %v", n.GetOpType(), err)
		}
		if out != nil && len(n.Output) > 0 && n.Output[0] != "" {
			if _, stated := shapes[n.Output[0]]; !stated {
				shapes[n.Output[0]] = out
			}
		}
	}
	return nil
}

// input returns the shape of n's k-th input and whether it is known.
func input(n *onnxpb.NodeProto, k int, shapes map[string][]int64) ([]int64, bool) {
	if k >= len(n.Input) || n.Input[k] == "" {
		return nil, false
	}
	s, ok := shapes[n.Input[k]]
	return s, ok
}

// sameShape lists the ops whose first output has the shape of their first
// input.
var sameShape = map[string]bool{
	"Relu": true, "LeakyRelu": true, "PRelu": true, "Sigmoid": true, "Tanh": true, "Elu": true,
	"Selu": true, "Celu": true, "Softplus": true, "Softsign": true, "HardSigmoid": true,
	"HardSwish": true, "Erf": true, "Abs": true, "Neg": true, "Exp": true, "Log": true, "Sqrt": true,
	"Reciprocal": true, "Identity": true, "Dropout": true, "Softmax": true, "LogSoftmax": true,
	"Clip": true, "Cast": true, "BatchNormalization": true, "LayerNormalization": true,
	"InstanceNormalization": true, "LpNormalization": true, "Sign": true, "Floor": true, "Ceil": true,
	"Round": true, "Not": true,
}

// broadcastOps lists the ops whose output has the multidirectionally
// broadcast shape of all their inputs.
var broadcastOps = map[string]bool{
	"Add": true, "Sub": true, "Mul": true, "Div": true, "Pow": true, "Where": true,
	"Max": true, "Min": true, "Sum": true, "Mean": true,
}

// inferNode checks n's operands and returns the shape of its first output,
// or nil when it is not known.
func inferNode(n *onnxpb.NodeProto, shapes map[string][]int64, consts map[string]*onnxpb.TensorProto) ([]int64, error) {
	op := n.GetOpType()
	switch {
	case op == "Gemm":
		return inferGemm(n, shapes)
	case op == "MatMul":
		return inferMatMul(n, shapes)
	case op == "Conv":
		return inferConv(n, shapes)
	case op == "Flatten":
		return inferFlatten(n, shapes)
	case op == "Reshape":
		return inferReshape(n, shapes, consts), nil
	case op == "Transpose":
		return inferTranspose(n, shapes), nil
	case sameShape[op]:
		if s, ok := input(n, 0, shapes); ok {
			return s, nil
		}
	case broadcastOps[op]:
		var out []int64
		for k := range n.Input {
			s, ok := input(n, k, shapes)
			if !ok {
				return nil, nil
			}
			if out = broadcast(out, s); out == nil {
				return nil, nil
			}
		}
		return out, nil
	}
	return nil, nil
}

// broadcast returns the numpy-style broadcast of shapes a and b, or nil if
// two known sizes disagree (ONNX Runtime would refuse the model; this
// reader only stops propagating).
func broadcast(a, b []int64) []int64 {
	if a == nil {
		return append([]int64{}, b...)
	}
	out := make([]int64, max(len(a), len(b)))
	for i := range out {
		x, y := int64(1), int64(1)
		if j := len(a) - len(out) + i; j >= 0 {
			x = a[j]
		}
		if j := len(b) - len(out) + i; j >= 0 {
			y = b[j]
		}
		switch {
		case x == y || y == 1:
			out[i] = x
		case x == 1:
			out[i] = y
		case x == unknown || y == unknown:
			out[i] = unknown
		default:
			return nil
		}
	}
	return out
}

func inferGemm(n *onnxpb.NodeProto, shapes map[string][]int64) ([]int64, error) {
	transA, err := intAttr(n, "transA", 0)
	if err != nil {
		return nil, err
	}
	transB, err := intAttr(n, "transB", 0)
	if err != nil {
		return nil, err
	}
	a, aok := input(n, 0, shapes)
	b, bok := input(n, 1, shapes)
	if aok && len(a) != 2 {
		return nil, fmt.Errorf("input A %q has shape %s, want rank 2", n.Input[0], shape(a))
	}
	if bok && len(b) != 2 {
		return nil, fmt.Errorf("input B %q has shape %s, want rank 2", n.Input[1], shape(b))
	}
	if !aok || !bok {
		return nil, nil
	}
	m, ka := a[0], a[1]
	if transA != 0 {
		m, ka = a[1], a[0]
	}
	kb, nOut := b[0], b[1]
	layout := "[in, out]"
	if transB != 0 {
		kb, nOut = b[1], b[0]
		layout = "[out, in]"
	}
	if ka != unknown && kb != unknown && ka != kb {
		return nil, fmt.Errorf("B %q has shape %s, read as %s (transB=%d): it takes %d inputs, but A %q has shape %s: %d features (transA=%d)",
			n.Input[1], shape(b), layout, transB, kb, n.Input[0], shape(a), ka, transA)
	}
	out := []int64{m, nOut}
	if c, ok := input(n, 2, shapes); ok {
		if len(c) > 2 || !broadcastTo(c, out) {
			return nil, fmt.Errorf("C %q has shape %s, which does not broadcast to the output's %s", n.Input[2], shape(c), shape(out))
		}
	}
	return out, nil
}

// broadcastTo reports whether c broadcasts unidirectionally to out: aligned
// on the right, each known size of c is 1 or out's.
func broadcastTo(c, out []int64) bool {
	if len(c) > len(out) {
		return false
	}
	for i, d := range c {
		o := out[len(out)-len(c)+i]
		if d != 1 && d != unknown && o != unknown && d != o {
			return false
		}
	}
	return true
}

func inferMatMul(n *onnxpb.NodeProto, shapes map[string][]int64) ([]int64, error) {
	a, aok := input(n, 0, shapes)
	b, bok := input(n, 1, shapes)
	if !aok || !bok || len(a) == 0 || len(b) == 0 {
		return nil, nil
	}
	ka := a[len(a)-1]
	kb := b[0]
	if len(b) >= 2 {
		kb = b[len(b)-2]
	}
	if ka != unknown && kb != unknown && ka != kb {
		return nil, fmt.Errorf("B %q has shape %s: it takes %d inputs, but A %q has shape %s: %d features",
			n.Input[1], shape(b), kb, n.Input[0], shape(a), ka)
	}
	switch len(b) {
	case 1:
		return append([]int64{}, a[:len(a)-1]...), nil
	case 2:
		return append(append([]int64{}, a[:len(a)-1]...), b[1]), nil
	}
	return nil, nil // batched: the batch dims broadcast; not propagated
}

// ConvAttrs are a Conv node's attributes with ONNX's defaults filled in, for
// a kernel of s spatial dims: Strides and Dilations have s entries, Pads 2s
// (all the begins, then all the ends).
type ConvAttrs struct {
	Group     int64
	Strides   []int64
	Pads      []int64
	Dilations []int64
	// AutoPad is "NOTSET" (Pads apply), "VALID" (no padding) or
	// "SAME_UPPER"/"SAME_LOWER" (padding chosen so that out = ceil(in /
	// stride); Pads are then all 0 and ignored).
	AutoPad string
}

// convAttrs reads and checks n's Conv attributes for a kernel of s spatial
// dims.
func convAttrs(n *onnxpb.NodeProto, s int) (ConvAttrs, error) {
	c := ConvAttrs{AutoPad: "NOTSET"}
	var err error
	if c.Group, err = intAttr(n, "group", 1); err != nil {
		return c, err
	}
	if c.Group < 1 || c.Group > maxDim {
		return c, fmt.Errorf("group %d, want >= 1", c.Group)
	}
	fill := func(name string, length int, def, least int64) ([]int64, error) {
		v, err := intsAttr(n, name)
		if err != nil {
			return nil, err
		}
		if v == nil {
			v = make([]int64, length)
			for i := range v {
				v[i] = def
			}
		}
		if len(v) != length {
			return nil, fmt.Errorf("%s has %d entries, want %d for a kernel of %d spatial dims", name, len(v), length, s)
		}
		for _, x := range v {
			if x < least || x > maxDim {
				return nil, fmt.Errorf("%s %v: each must be >= %d", name, v, least)
			}
		}
		return v, nil
	}
	if c.Strides, err = fill("strides", s, 1, 1); err != nil {
		return c, err
	}
	if c.Dilations, err = fill("dilations", s, 1, 1); err != nil {
		return c, err
	}
	if c.Pads, err = fill("pads", 2*s, 0, 0); err != nil {
		return c, err
	}
	if a := attr(n, "auto_pad"); a != nil {
		c.AutoPad = string(a.GetS())
		switch c.AutoPad {
		case "NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER":
		default:
			return c, fmt.Errorf("auto_pad %q, want NOTSET, VALID, SAME_UPPER or SAME_LOWER", c.AutoPad)
		}
	}
	return c, nil
}

func inferConv(n *onnxpb.NodeProto, shapes map[string][]int64) ([]int64, error) {
	w, wok := input(n, 1, shapes)
	if !wok {
		return nil, nil
	}
	if len(w) < 3 {
		return nil, fmt.Errorf("W %q has shape %s, want [out, in/group, k1, ...] (rank >= 3)", n.Input[1], shape(w))
	}
	kernel := w[2:]
	c, err := convAttrs(n, len(kernel))
	if err != nil {
		return nil, err
	}
	ks, err := intsAttr(n, "kernel_shape")
	if err != nil {
		return nil, err
	}
	if ks != nil && shape(ks) != shape(kernel) {
		return nil, fmt.Errorf("kernel_shape %s, but W %q has shape %s", shape(ks), n.Input[1], shape(w))
	}
	if w[0] != unknown && w[0]%c.Group != 0 {
		return nil, fmt.Errorf("W %q has %d output channels, not a multiple of group %d", n.Input[1], w[0], c.Group)
	}
	if b, ok := input(n, 2, shapes); ok && (len(b) != 1 || (b[0] != w[0] && b[0] != unknown && w[0] != unknown)) {
		return nil, fmt.Errorf("B %q has shape %s, want [%d] (one per output channel of W %q)", n.Input[2], shape(b), w[0], n.Input[1])
	}
	x, ok := input(n, 0, shapes)
	if !ok {
		return nil, nil
	}
	if len(x) != len(w) {
		return nil, fmt.Errorf("X %q has shape %s, W %q has shape %s: want the same rank", n.Input[0], shape(x), n.Input[1], shape(w))
	}
	if x[1] != unknown && w[1] != unknown && x[1] != w[1]*c.Group {
		return nil, fmt.Errorf("W %q has shape %s and group %d: it takes %d input channels, but X %q has shape %s: %d channels",
			n.Input[1], shape(w), c.Group, w[1]*c.Group, n.Input[0], shape(x), x[1])
	}
	out := []int64{x[0], w[0]}
	for i, k := range kernel {
		out = append(out, convOut(x[2+i], k, i, c))
	}
	return out, nil
}

// convOut is the size of spatial dim i of a Conv's output for an input of
// size in and a kernel of size k, or unknown.
func convOut(in, k int64, i int, c ConvAttrs) int64 {
	if in == unknown || k == unknown {
		return unknown
	}
	s := c.Strides[i]
	switch c.AutoPad {
	case "SAME_UPPER", "SAME_LOWER":
		return (in + s - 1) / s
	case "VALID":
		return max((in-c.Dilations[i]*(k-1)-1)/s+1, 0)
	}
	span := in + c.Pads[i] + c.Pads[len(c.Strides)+i] - c.Dilations[i]*(k-1) - 1
	if span < 0 {
		return 0
	}
	return span/s + 1
}

func inferFlatten(n *onnxpb.NodeProto, shapes map[string][]int64) ([]int64, error) {
	x, ok := input(n, 0, shapes)
	if !ok {
		return nil, nil
	}
	axis, err := intAttr(n, "axis", 1)
	if err != nil {
		return nil, err
	}
	if axis < 0 {
		axis += int64(len(x))
	}
	if axis < 0 || axis > int64(len(x)) {
		return nil, fmt.Errorf("axis %d is out of range for input %q of shape %s", axis, n.Input[0], shape(x))
	}
	return []int64{product(x[:axis]), product(x[axis:])}, nil
}

// product multiplies dims, or returns unknown if one is unknown or the
// product is too large to trust.
func product(dims []int64) int64 {
	p := int64(1)
	for _, d := range dims {
		if d == unknown || (d > 0 && p > maxDim/d) {
			return unknown
		}
		p *= d
	}
	return p
}

// inferReshape propagates a Reshape whose target shape is a small INT64
// initializer.
func inferReshape(n *onnxpb.NodeProto, shapes map[string][]int64, consts map[string]*onnxpb.TensorProto) []int64 {
	x, ok := input(n, 0, shapes)
	if !ok || len(n.Input) < 2 {
		return nil
	}
	target, ok := int64Values(consts[n.Input[1]], 64)
	if !ok {
		return nil
	}
	allowZero, _ := intAttr(n, "allowzero", 0)
	out := make([]int64, len(target))
	infer := -1
	for i, v := range target {
		switch {
		case v == 0 && allowZero == 0:
			if i >= len(x) {
				return nil
			}
			out[i] = x[i]
		case v == -1 && infer < 0:
			infer = i
		case v < 0 || v > maxDim:
			return nil
		default:
			out[i] = v
		}
	}
	if infer >= 0 {
		out[infer] = unknown
		others := append(append([]int64{}, out[:infer]...), out[infer+1:]...)
		if rest, total := product(others), product(x); rest > 0 && total != unknown && total%rest == 0 {
			out[infer] = total / rest
		}
	}
	return out
}

// int64Values returns the values of an INT64 tensor of at most limit
// elements.
func int64Values(t *onnxpb.TensorProto, limit int64) ([]int64, bool) {
	if t == nil || onnxpb.TensorProto_DataType(t.GetDataType()) != onnxpb.TensorProto_INT64 || len(t.Dims) > 1 {
		return nil, false
	}
	n, err := numElements(t.Dims)
	if err != nil || n > limit {
		return nil, false
	}
	if t.RawData != nil {
		if int64(len(t.RawData)) != 8*n {
			return nil, false
		}
		v := make([]int64, n)
		for i := range v {
			v[i] = int64(binary.LittleEndian.Uint64(t.RawData[8*i:]))
		}
		return v, true
	}
	if int64(len(t.Int64Data)) != n {
		return nil, false
	}
	return t.Int64Data, true
}

func inferTranspose(n *onnxpb.NodeProto, shapes map[string][]int64) []int64 {
	x, ok := input(n, 0, shapes)
	if !ok {
		return nil
	}
	perm, err := intsAttr(n, "perm")
	if err != nil {
		return nil
	}
	if perm == nil {
		for i := len(x) - 1; i >= 0; i-- {
			perm = append(perm, int64(i))
		}
	}
	if len(perm) != len(x) {
		return nil
	}
	out := make([]int64, len(x))
	seen := make([]bool, len(x))
	for i, p := range perm {
		if p < 0 || p >= int64(len(x)) || seen[p] {
			return nil
		}
		seen[p] = true
		out[i] = x[p]
	}
	return out
}

// attr returns n's attribute called name, or nil.
func attr(n *onnxpb.NodeProto, name string) *onnxpb.AttributeProto {
	for _, a := range n.Attribute {
		if a.GetName() == name {
			return a
		}
	}
	return nil
}

// intAttr returns n's INT attribute called name, or def when it is absent.
func intAttr(n *onnxpb.NodeProto, name string, def int64) (int64, error) {
	a := attr(n, name)
	if a == nil {
		return def, nil
	}
	if a.GetType() != onnxpb.AttributeProto_INT {
		return 0, fmt.Errorf("attribute %q is %s, want INT", name, a.GetType())
	}
	return a.GetI(), nil
}

// intsAttr returns n's INTS attribute called name, or nil when it is absent.
func intsAttr(n *onnxpb.NodeProto, name string) ([]int64, error) {
	a := attr(n, name)
	if a == nil {
		return nil, nil
	}
	if a.GetType() != onnxpb.AttributeProto_INTS {
		return nil, fmt.Errorf("attribute %q is %s, want INTS", name, a.GetType())
	}
	return a.GetInts(), nil
}

// floatAttr returns n's FLOAT attribute called name, or def when it is
// absent.
func floatAttr(n *onnxpb.NodeProto, name string, def float32) (float32, error) {
	a := attr(n, name)
	if a == nil {
		return def, nil
	}
	if a.GetType() != onnxpb.AttributeProto_FLOAT {
		return 0, fmt.Errorf("attribute %q is %s, want FLOAT", name, a.GetType())
	}
	return a.GetF(), nil
}
