package onnx

import (
	"fmt"
	"math"

	"github.com/strata-ml/strata/arrowio/onnx/onnxpb"
)

// Layout says how a weight initializer's values, as stored, map to W (out x
// in).
type Layout int

const (
	// OutIn: stored [out, in] (Gemm with transB=1, a MatMul weight behind an
	// odd number of Transposes) or, for Conv, [out, in, k1, k2, ...]: W is
	// the values as they are, each row the in x k1 x k2 ... of one output.
	OutIn Layout = iota
	// InOut: stored [in, out] (MatMul, Gemm with transB=0): W is the stored
	// matrix transposed.
	InOut
)

func (l Layout) String() string {
	if l == InOut {
		return "in-out"
	}
	return "out-in"
}

// Linear is one linear map of the main graph that strata can convert: a
// Gemm, a MatMul whose B is a weight, or a Conv with group 1. Applied to an
// input row x (the last axis for Gemm and MatMul, the channels of a patch for
// Conv) it computes y = W x + B.
type Linear struct {
	Node string // the Gemm, MatMul or Conv node; names are unique (see NameNodes)
	Op   string // "Gemm", "MatMul" or "Conv"
	// Weight is the initializer that holds W, stored in Layout. It feeds
	// Node directly, or through the Identity and Transpose(perm=[1,0])
	// nodes of Via (in data-flow order), whose outputs nothing else reads.
	// No other node reads Weight.
	Weight string
	Layout Layout
	Via    []string
	// Bias is the initializer that holds the bias: Gemm's C, Conv's B, or
	// for a MatMul the [out] operand of the Add node BiasNode that alone
	// reads the MatMul's output (BiasNode stays its own node). "" when there
	// is none. Other nodes may read Bias too.
	Bias     string
	BiasNode string
	// W is Out x In, row-major. For a Conv, In = in channels x prod(Kernel)
	// and each row is one output channel's kernel in (channel, k1, k2, ...)
	// order, the weight as PyTorch and ONNX store it.
	Out, In int
	// Kernel is a Conv's kernel size per spatial dim (kh, kw for a 2-D
	// conv); nil for Gemm and MatMul. Conv holds its attributes (group 1).
	Kernel []int64
	Conv   *ConvAttrs
	// Pointwise is true when the map acts on each position alone: Gemm,
	// MatMul, or a Conv with a kernel of all 1s, strides 1 and no padding
	// (dilation does not matter for a 1-wide kernel). A Conv that is not
	// pointwise can only be factored as a low-rank map: a k x k conv to rank
	// r followed by a 1x1 conv.
	Pointwise bool
	// Alpha and Beta are Gemm's attributes as the model states them (1 for
	// MatMul and Conv). They are folded into W and B: y = W x + B exactly
	// reproduces the node's Gemm, so a node written in place of it must not
	// apply them again.
	Alpha, Beta float64
	DType       onnxpb.TensorProto_DataType // the weight's element type
	W           []float64
	B           []float64 // Out values; nil when Bias is ""
}

// Skipped is a weight of a Gemm, MatMul or Conv node that strata does not
// convert, with the reason.
type Skipped struct {
	Node   string // the node's label: its name, or "#i Op" when unnamed
	Op     string
	Weight string // the node's weight input (the value it reads)
	Reason string
}

// Linears returns, in graph order, every linear map of the main graph that
// strata can convert, and separately every weight of a Gemm, MatMul or Conv
// node that it cannot, with the reason. A node's operand is a weight when it
// is computed from initializers alone; a MatMul of two activations is
// neither. Skipped are: grouped and depthwise convolutions; Gemm with
// transA=1, or a C that is computed or not one bias per output; a weight or
// a Gemm or Conv bias that another node also reads (tied weights), that is a
// graph input or output, or that reaches its node through any op but
// Identity and Transpose(perm=[1,0]) (a Cast, a DequantizeLinear, a Constant
// node); a MatMul whose weight is its left operand or is not a matrix;
// element types other than FLOAT, DOUBLE, FLOAT16, BFLOAT16; non-finite
// values; nodes without a unique name. Subgraphs (If, Loop, Scan bodies) are
// not searched.
//
// W and B are decoded here: 8 bytes per weight value, owned by the caller.
func (m *Model) Linears() ([]Linear, []Skipped) {
	ix := newGraphIndex(m.Proto.GetGraph())
	var linears []Linear
	var skipped []Skipped
	for i, n := range ix.g.Node {
		if canonicalDomain(n.GetDomain()) != "" {
			continue
		}
		k := -1
		switch n.GetOpType() {
		case "Gemm", "Conv":
			k = 1
		case "MatMul":
			k = 1
			if len(n.Input) == 2 && !ix.constant[n.Input[1]] && ix.constant[n.Input[0]] {
				skipped = append(skipped, Skipped{Node: nodeLabel(i, n), Op: "MatMul", Weight: n.Input[0],
					Reason: "the weight is the left operand (W x): strata converts x W only"})
				continue
			}
		}
		if k < 0 || len(n.Input) <= k || !ix.constant[n.Input[k]] {
			continue
		}
		l, why := ix.linear(i, k)
		if why != "" {
			skipped = append(skipped, Skipped{Node: nodeLabel(i, n), Op: n.GetOpType(), Weight: n.Input[k], Reason: why})
			continue
		}
		linears = append(linears, l)
	}
	return linears, skipped
}

// linear describes the weight that node i reads as input k, or says why it
// cannot be converted.
func (ix *graphIndex) linear(i, k int) (Linear, string) {
	n := ix.g.Node[i]
	l := Linear{Node: n.GetName(), Op: n.GetOpType(), Alpha: 1, Beta: 1}
	if l.Node == "" {
		return l, "the node has no name (NameNodes gives it one)"
	}
	if ix.names[l.Node] > 1 {
		return l, fmt.Sprintf("%d nodes are named %q", ix.names[l.Node], l.Node)
	}
	src, via, why := ix.trace(n.Input[k], n.GetOpType() != "Conv")
	if why != "" {
		return l, why
	}
	t := ix.inits[src]
	l.Weight, l.DType = src, onnxpb.TensorProto_DataType(t.GetDataType())
	for _, v := range via {
		l.Via = append(l.Via, nodeLabel(v, ix.g.Node[v]))
	}
	if why := ix.private(src, via); why != "" {
		return l, why
	}
	if !IsFloat(t.GetDataType()) {
		return l, fmt.Sprintf("the weight %q is %s: only FLOAT, DOUBLE, FLOAT16 and BFLOAT16 weights are converted", src, l.DType)
	}
	transposed := false // whether W is the stored matrix transposed
	for _, v := range via {
		if ix.g.Node[v].GetOpType() == "Transpose" {
			transposed = !transposed
		}
	}
	if len(via) > 0 && transposed && len(t.Dims) != 2 {
		return l, fmt.Sprintf("the weight %q has shape %s: only a matrix is followed through a Transpose", src, shape(t.Dims))
	}
	switch l.Op {
	case "Gemm":
		if len(t.Dims) != 2 {
			return l, fmt.Sprintf("B %q has shape %s, want a matrix", src, shape(t.Dims))
		}
		l.Pointwise = true
		if why := ix.gemm(n, &l, &transposed); why != "" {
			return l, why
		}
	case "MatMul":
		if len(t.Dims) != 2 {
			return l, fmt.Sprintf("B %q has shape %s: only a matrix B is a linear map of the last axis", src, shape(t.Dims))
		}
		l.Pointwise = true
		// MatMul computes x B with B [in, out]: W is B transposed.
		transposed = !transposed
		ix.matmulBias(n, &l, t, transposed)
	case "Conv":
		if len(t.Dims) < 3 {
			return l, fmt.Sprintf("W %q has shape %s, want [out, in, k1, ...]", src, shape(t.Dims))
		}
		if why := ix.conv(n, &l, t); why != "" {
			return l, why
		}
	}
	if transposed {
		l.Layout, l.Out, l.In = InOut, int(t.Dims[1]), int(t.Dims[0])
	} else {
		l.Out = int(t.Dims[0])
		l.In = int(product(t.Dims[1:]))
	}
	if l.Out <= 0 || l.In <= 0 {
		return l, fmt.Sprintf("the weight %q has shape %s: it is empty", src, shape(t.Dims))
	}
	return l, ix.values(&l, t, transposed)
}

// trace follows the value v back through Identity nodes, and Transpose nodes
// too if transposes is set, to the initializer it comes from. It returns the
// initializer and the nodes passed, in data-flow order, or why it stopped.
func (ix *graphIndex) trace(v string, transposes bool) (string, []int, string) {
	var via []int
	for range len(ix.g.Node) + 1 {
		if _, ok := ix.inits[v]; ok {
			for a, b := 0, len(via)-1; a < b; a, b = a+1, b-1 {
				via[a], via[b] = via[b], via[a]
			}
			return v, via, ""
		}
		p, ok := ix.producer[v]
		if !ok {
			return "", nil, fmt.Sprintf("%q is not an initializer", v)
		}
		pn := ix.g.Node[p]
		op := pn.GetOpType()
		perm, _ := intsAttr(pn, "perm")
		switch {
		case canonicalDomain(pn.GetDomain()) != "":
		case op == "Identity" && len(pn.Input) == 1:
			via, v = append(via, p), pn.Input[0]
			continue
		case op == "Transpose" && transposes && len(pn.Input) == 1 && (perm == nil || shape(perm) == "[1 0]"):
			via, v = append(via, p), pn.Input[0]
			continue
		}
		follow := "Identity and Transpose(perm=[1,0])"
		if !transposes {
			follow = "Identity"
		}
		return "", nil, fmt.Sprintf("the weight reaches the node through %s node %q: only %s nodes are followed",
			op, nodeLabel(p, pn), follow)
	}
	return "", nil, "the weight's producers form a cycle"
}

// private says why the initializer src, read by a node through the nodes
// via, is not that node's alone, or returns "".
func (ix *graphIndex) private(src string, via []int) string {
	if ix.inputs[src] {
		return fmt.Sprintf("the initializer %q is also a graph input: its value can be replaced at run time", src)
	}
	values := []string{src}
	for _, v := range via {
		values = append(values, ix.g.Node[v].Output...)
	}
	for _, v := range values {
		if ix.outputs[v] {
			return fmt.Sprintf("the weight %q is also a graph output", v)
		}
		if len(ix.uses[v]) > 1 {
			return fmt.Sprintf("the weight %q is read by nodes %s (tied weights): converting it for one would change the others",
				v, ix.labels(ix.uses[v]))
		}
	}
	return ""
}

// gemm reads a Gemm's attributes and bias C into l, and flips *transposed
// when B is read as [out, in].
func (ix *graphIndex) gemm(n *onnxpb.NodeProto, l *Linear, transposed *bool) string {
	transA, _ := intAttr(n, "transA", 0)
	transB, _ := intAttr(n, "transB", 0)
	alpha, _ := floatAttr(n, "alpha", 1)
	beta, _ := floatAttr(n, "beta", 1)
	if transA != 0 {
		return "transA=1: the input is read transposed, so the map does not act on its rows"
	}
	l.Alpha, l.Beta = float64(alpha), float64(beta)
	if transB == 0 {
		*transposed = !*transposed // Gemm computes A B with B [in, out]
	}
	if len(n.Input) < 3 || n.Input[2] == "" {
		return ""
	}
	c := n.Input[2]
	t, ok := ix.inits[c]
	if !ok || ix.inputs[c] {
		return fmt.Sprintf("C %q is computed at run time, not an initializer", c)
	}
	if d := t.Dims; len(d) > 2 || (len(d) == 2 && d[0] != 1) {
		return fmt.Sprintf("C %q has shape %s: not one bias per output", c, shape(d))
	}
	l.Bias = c
	return ""
}

// matmulBias finds the bias of a MatMul: the [out] initializer that the one
// Add node reading the MatMul's output adds.
func (ix *graphIndex) matmulBias(n *onnxpb.NodeProto, l *Linear, t *onnxpb.TensorProto, transposed bool) {
	out := t.Dims[1]
	if !transposed {
		out = t.Dims[0]
	}
	y := n.Output[0]
	if ix.outputs[y] || len(ix.uses[y]) != 1 {
		return
	}
	add := ix.g.Node[ix.uses[y][0]]
	if add.GetOpType() != "Add" || canonicalDomain(add.GetDomain()) != "" || len(add.Input) != 2 {
		return
	}
	b := add.Input[0]
	if b == y {
		b = add.Input[1]
	}
	bt, ok := ix.inits[b]
	if !ok || ix.inputs[b] || b == y || !IsFloat(bt.GetDataType()) {
		return
	}
	for k, d := range bt.Dims {
		if (k < len(bt.Dims)-1 && d != 1) || (k == len(bt.Dims)-1 && d != out) {
			return
		}
	}
	if len(bt.Dims) == 0 {
		return
	}
	l.Bias, l.BiasNode = b, add.GetName()
}

// conv reads a Conv's attributes and bias into l.
func (ix *graphIndex) conv(n *onnxpb.NodeProto, l *Linear, t *onnxpb.TensorProto) string {
	c, err := convAttrs(n, len(t.Dims)-2)
	if err != nil {
		return err.Error()
	}
	if c.Group != 1 {
		return fmt.Sprintf("group=%d: a grouped or depthwise convolution is not one linear map of the channels", c.Group)
	}
	l.Conv, l.Kernel = &c, append([]int64(nil), t.Dims[2:]...)
	l.Pointwise = true
	for i, k := range l.Kernel {
		l.Pointwise = l.Pointwise && k == 1 && c.Strides[i] == 1 && c.Pads[i] == 0 && c.Pads[len(l.Kernel)+i] == 0
	}
	if len(n.Input) < 3 || n.Input[2] == "" {
		return ""
	}
	b := n.Input[2]
	if _, ok := ix.inits[b]; !ok || ix.inputs[b] {
		return fmt.Sprintf("the bias %q is computed at run time, not an initializer", b)
	}
	l.Bias = b
	return ""
}

// values decodes W (and B) into l, folding in Gemm's alpha and beta.
func (ix *graphIndex) values(l *Linear, t *onnxpb.TensorProto, transposed bool) string {
	stored, err := Floats(t)
	if err != nil {
		return err.Error()
	}
	l.W = stored
	if transposed {
		l.W = make([]float64, len(stored))
		for r := range l.In {
			for c := range l.Out {
				l.W[c*l.In+r] = stored[r*l.Out+c]
			}
		}
	}
	for j := range l.W {
		l.W[j] *= l.Alpha
		if math.IsInf(l.W[j], 0) || math.IsNaN(l.W[j]) {
			return fmt.Sprintf("the weight %q has a non-finite value at W[%d][%d] (alpha folded in)", l.Weight, j/l.In, j%l.In)
		}
	}
	if l.Bias == "" {
		return ""
	}
	bt := ix.inits[l.Bias]
	if !IsFloat(bt.GetDataType()) {
		return fmt.Sprintf("the bias %q is %s: only FLOAT, DOUBLE, FLOAT16 and BFLOAT16 are converted",
			l.Bias, onnxpb.TensorProto_DataType(bt.GetDataType()))
	}
	b, err := Floats(bt)
	if err != nil {
		return err.Error()
	}
	if len(b) != 1 && len(b) != l.Out {
		return fmt.Sprintf("the bias %q has shape %s, want [%d]", l.Bias, shape(bt.Dims), l.Out)
	}
	l.B = make([]float64, l.Out)
	for j := range l.B {
		l.B[j] = l.Beta * b[min(j, len(b)-1)]
		if math.IsInf(l.B[j], 0) || math.IsNaN(l.B[j]) {
			return fmt.Sprintf("the bias %q has a non-finite value at %d (beta folded in)", l.Bias, j)
		}
	}
	return ""
}
