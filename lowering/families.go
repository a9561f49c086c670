package lowering

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/strata-ml/strata/arrowio/onnx"
	"github.com/strata-ml/strata/arrowio/onnx/onnxpb"
	"github.com/strata-ml/strata/compute"
)

// view says how the tensor a part's subgraph reads holds the features the
// map acts on.
type view int

const (
	// flat: a matrix [n, in], one row per input; every family lowers it.
	flat view = iota
	// last: the last axis of a tensor of any rank (a MatMul's [..., in]);
	// lowrank, orthogonal and sparse lower it without reshaping.
	last
	// channels: a Conv's input [N, C, spatial...], the map acting on each
	// patch (C x kernel) as the node's attributes define it; lowrank and
	// orthogonal lower it as convolutions, sparse as a gather and scatter of
	// channels (1x1 kernels) or a scattered kernel.
	channels
)

// part is one operator of a layer (a Sum's trunk or correction, or the
// whole operator) with the prefix of its parameter names.
type part struct {
	name string // "trunk", "correction" or ""
	op   compute.Operator[float32]
}

func (p part) param(name string) compute.Param[float32] {
	for _, q := range p.op.Params() {
		if q.Name == name {
			return q
		}
	}
	panic(fmt.Sprintf("lowering: %s has no parameter %q", p.op.Spec().Family, name))
}

// lowersIn reports whether family lowers in view v (flat always).
func lowersIn(family string, v view) bool {
	switch family {
	case compute.FamilyLowRank, compute.FamilyOrthogonal, compute.FamilySparse, compute.FamilyZero:
		return true
	}
	return v == flat
}

// lowering is the state of one layer's lowering: the builder, the view of
// its input and, for a Conv, the node's geometry.
type lowering struct {
	*builder
	v      view
	linear *onnx.Linear
	node   *onnxpb.NodeProto // the replaced node
	form   ConvolutionForm
}

// convAttrs copies the replaced Conv's attributes (kernel_shape, strides,
// pads, dilations, auto_pad; group is 1).
func (lw *lowering) convAttrs() []*onnxpb.AttributeProto {
	var attrs []*onnxpb.AttributeProto
	for _, a := range lw.node.Attribute {
		attrs = append(attrs, proto.Clone(a).(*onnxpb.AttributeProto))
	}
	return attrs
}

// conv adds a Conv of x by w with the replaced node's attributes (strides,
// pads, dilations, auto_pad; group is 1) and an optional bias.
func (lw *lowering) conv(x, w, bias string) string {
	return lw.op("Conv", optional(x, w, bias), lw.convAttrs()...)
}

// pointwiseConv adds a 1x1 Conv of x by w ([out, in, 1, ...]) and an
// optional bias.
func (lw *lowering) pointwiseConv(x, w, bias string) string {
	return lw.op("Conv", optional(x, w, bias))
}

// optional is the inputs a, b and, unless it is "", c.
func optional(a, b, c string) []string {
	if c == "" {
		return []string{a, b}
	}
	return []string{a, b, c}
}

// convWeight reshapes a matrix value [out, C*k1*k2...] into a Conv weight
// [out, C, k1, ...] (kernel nil: [out, C, 1, ...] for a 1x1 conv of the
// node's spatial rank).
func (lw *lowering) convWeight(w string, out, c int, kernel []int64) string {
	dims := []int64{int64(out), int64(c)}
	for _, k := range lw.linear.Kernel {
		if kernel == nil {
			k = 1
		}
		dims = append(dims, k)
	}
	return lw.reshape(w, dims...)
}

// channelsIn is the number of input channels of the replaced Conv.
func (lw *lowering) channelsIn() int {
	k := 1
	for _, d := range lw.linear.Kernel {
		k *= int(d)
	}
	return lw.linear.In / k
}

// lowRank adds y = x V U^T for values u ([out, k]) and v ([in, k]),
// with bias added by the last node when given (not in the last view).
func (lw *lowering) lowRank(x, u, v string, out, k int, bias string) string {
	switch lw.v {
	case flat:
		return lw.op("Gemm", optional(lw.matmul(x, v), u, bias), onnx.IntAttr("transB", 1))
	case last:
		return lw.matmul(lw.matmul(x, v), lw.transpose(u, 1, 0))
	}
	w1 := lw.convWeight(lw.transpose(v, 1, 0), k, lw.channelsIn(), lw.linear.Kernel)
	return lw.pointwiseConv(lw.conv(x, w1, ""), lw.convWeight(u, out, k, nil), bias)
}

// orthogonal adds y = x (s Q)^T; the product s Q of two initializers is
// folded by the runtime when it loads the model.
func (lw *lowering) orthogonal(x string, p part, bias string) string {
	out, _ := p.op.Shape()
	qs := lw.op("Mul", []string{lw.weight(p.name, p.param("Q")), lw.weight(p.name, p.param("scale"))})
	switch lw.v {
	case flat:
		return lw.op("Gemm", optional(x, qs, bias), onnx.IntAttr("transB", 1))
	case last:
		return lw.matmul(x, lw.transpose(qs, 1, 0))
	}
	return lw.conv(x, lw.convWeight(qs, out, lw.channelsIn(), lw.linear.Kernel), bias)
}

// padded pads the flat input x from in to width columns and returns it.
func (lw *lowering) padded(x string, in, width int) string {
	if width == in {
		return x
	}
	return lw.padAxis(x, 2, 1, int64(width-in))
}

// cropped keeps the first out columns of the flat y of width columns.
func (lw *lowering) cropped(y string, out, width int) string {
	if width == out {
		return y
	}
	return lw.slice(y, 1, 0, int64(out))
}

// monarch lowers compute.Monarch (see its documentation for the layout):
// with b blocks, chunks of mi = in'/b inputs and row sets of mo = out'/b
// outputs (in', out' padded to multiples of b),
//
//	Z_k = X_k R_k              [n, b r]   X_k the k-th chunk of x's columns
//	U = [Z_0 ... Z_{b-1}] permuted        U_j[:, k r + t] = Z_k[:, j r + t]
//	Yg_j = U_j L_j^T           [n, mo]
//	y[:, i b + j] = Yg_j[:, i]
//
// the operator's own two stages, each as b MatMuls by 2-D blocks of the
// parameters (sliced from them in the graph and folded to constants when
// the runtime loads the model, which then packs them once: a batched
// MatMul by the 3-D parameter is repacked on every run), with a Transpose
// for each permutation.
func (lw *lowering) monarch(x string, p part) string {
	out, in := p.op.Shape()
	l, r := p.param("L"), p.param("R")
	b, mo, mi, br := int64(l.Shape[0]), int64(l.Shape[1]), int64(r.Shape[1]), int64(l.Shape[2])
	lv, rv := lw.weight(p.name, l), lw.weight(p.name, r)
	xs := lw.split(lw.padded(x, in, int(b*mi)), 1, int(b), mi)
	z := make([]string, b)
	for k := range b {
		z[k] = lw.matmul(xs[k], lw.block(rv, k, mi, br))
	}
	u := lw.reshape(lw.transpose(lw.reshape(lw.concat(1, z...), -1, b, b, br/b), 0, 2, 1, 3), -1, b*br)
	us := lw.split(u, 1, int(b), br)
	yg := make([]string, b)
	for j := range b {
		yg[j] = lw.matmul(us[j], lw.transpose(lw.block(lv, j, mo, br), 1, 0))
	}
	y := lw.reshape(lw.transpose(lw.reshape(lw.concat(1, yg...), -1, b, mo), 0, 2, 1), -1, b*mo)
	return lw.cropped(y, out, int(b*mo))
}

// blockDiag lowers compute.BlockDiag: y's j-th chunk of columns is x's
// j-th chunk times D_j^T, b MatMuls by 2-D blocks (folded to constants at
// load, as in monarch) and a Concat.
func (lw *lowering) blockDiag(x string, p part) string {
	out, in := p.op.Shape()
	d := p.param("D")
	b, mo, mi := int64(d.Shape[0]), int64(d.Shape[1]), int64(d.Shape[2])
	dv := lw.weight(p.name, d)
	xs := lw.split(lw.padded(x, in, int(b*mi)), 1, int(b), mi)
	y := make([]string, b)
	for j := range b {
		y[j] = lw.matmul(xs[j], lw.transpose(lw.block(dv, j, mo, mi), 1, 0))
	}
	return lw.cropped(lw.concat(1, y...), out, int(b*mo))
}

// block is the k-th [rows, cols] matrix of the 3-D value w.
func (lw *lowering) block(w string, k, rows, cols int64) string {
	return lw.reshape(lw.slice(w, 0, k, k+1), rows, cols)
}

// kronecker lowers compute.Kronecker as its Apply does: with each input
// row as X (n1 x n2), (sum_i A_i (x) B_i) vec(X) = vec(sum_i A_i X B_i^T):
//
//	T = X [B_0; ...; B_{r-1}]^T     one MatMul of all n n1 rows, [n n1, r m2]
//	P = T permuted                  [r n1, n m2]
//	Z = [A_0 ... A_{r-1}] P         one MatMul, [m1, n m2]
//	y = Z permuted                  [n, m1 m2]
func (lw *lowering) kronecker(x string, p part) string {
	out, in := p.op.Shape()
	a, bp := p.param("A"), p.param("B")
	r, m1, n1 := int64(a.Shape[0]), int64(a.Shape[1]), int64(a.Shape[2])
	m2, n2 := int64(bp.Shape[1]), int64(bp.Shape[2])
	x = lw.padded(x, in, int(n1*n2))
	bt := lw.transpose(lw.reshape(lw.weight(p.name, bp), r*m2, n2), 1, 0)
	t := lw.matmul(lw.reshape(x, -1, n2), bt)
	pm := lw.reshape(lw.transpose(lw.reshape(t, -1, n1, r, m2), 2, 1, 0, 3), r*n1, -1)
	as := lw.reshape(lw.transpose(lw.weight(p.name, a), 1, 0, 2), m1, r*n1)
	z := lw.reshape(lw.op("MatMul", []string{as, pm}), m1, -1, m2)
	y := lw.reshape(lw.transpose(z, 1, 0, 2), -1, m1*m2)
	return lw.cropped(y, out, int(m1*m2))
}

// sparse scatter-adds x's contributions into y (the trunk's output, same
// view): y[..., rows[e]] += values[e] x[..., cols[e]] for every entry e in
// order, as compute.Sparse.Apply sums them. ScatterElements' reduction
// needs opset 16.
func (lw *lowering) sparse(x, y string, p part) string {
	lw.need(16)
	values := lw.weight(p.name, p.param("values"))
	rows := lw.index(p.name, p.param("rows"))
	cols := lw.index(p.name, p.param("cols"))
	if lw.v == channels && !lw.linear.Pointwise {
		return lw.add(y, lw.conv(x, lw.scatteredKernel(p, values, rows, cols), ""))
	}
	axis := int64(-1)
	if lw.v == channels {
		axis = 1
		nnz := int64(p.op.Spec().NNZ)
		shape := append([]int64{nnz}, ones(len(lw.linear.Kernel))...)
		values = lw.reshape(values, shape...)
		rows = lw.reshape(rows, append([]int64{1}, shape...)...)
	}
	upd := lw.op("Mul", []string{lw.op("Gather", []string{x, cols}, onnx.IntAttr("axis", axis)), values})
	idx := lw.op("Expand", []string{rows, lw.op("Shape", []string{upd})})
	return lw.op("ScatterElements", []string{y, idx, upd}, onnx.IntAttr("axis", axis), stringAttr("reduction", "add"))
}

// scatteredKernel builds the dense Conv weight [out, C, k...] of a sparse
// correction of a k x k convolution from its entries: exact, and folded
// into a constant by the runtime, but then as costly as the dense conv.
func (lw *lowering) scatteredKernel(p part, values, rows, cols string) string {
	out, in := p.op.Shape()
	flatIdx := lw.add(lw.op("Mul", []string{rows, lw.int64s(int64(in))}), cols)
	zeros := lw.op("ConstantOfShape", []string{lw.int64s(int64(out * in))}, floatTensorAttr("value", 0))
	w := lw.op("ScatterElements", []string{zeros, flatIdx, values}, onnx.IntAttr("axis", 0), stringAttr("reduction", "add"))
	return lw.convWeight(w, out, lw.channelsIn(), lw.linear.Kernel)
}

func ones(n int) []int64 {
	v := make([]int64, n)
	for i := range v {
		v[i] = 1
	}
	return v
}
