package calib

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/strata-ml/strata/arrowio/onnx"
	"github.com/strata-ml/strata/arrowio/onnx/onnxpb"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/lowering"
	"github.com/strata-ml/strata/onnxrt"
)

// onnxModel runs an ONNX model in ONNX Runtime.
type onnxModel struct {
	m       *onnx.Model
	linears []onnx.Linear
	base    *onnxrt.Session // the model as it is
	in      onnxrt.Info
	// row is one example's input shape (the input's without its batch
	// axis); batch is the input's fixed batch size, 0 when dynamic.
	row   []int64
	batch int
	task  compute.Task
	c     int // the first output's values per example
	set   Set
}

// NewONNX returns a Runner of the ONNX model m on set, whose layers are
// linears (from m.Linears, in any order). The model must have one input,
// float32 or int64 (the examples must then hold integers), with a batch
// axis first; each example's D features fill the rest of its shape in
// row-major order (a dynamic dimension other than the batch is taken from
// D when it is the only one). Its first output holds one row of values
// per example: two or more are a classifier's logits, one a regressor's
// prediction. Problems with the model or the data are bad input, as is an
// ONNX Runtime that this binary cannot load.
func NewONNX(m *onnx.Model, linears []onnx.Linear, set Set) (Runner, error) {
	data, err := m.Encode()
	if err != nil {
		return nil, err
	}
	sess, err := onnxrt.Open(data, onnxrt.Options{Name: m.File})
	if err != nil {
		return nil, ortErr(err)
	}
	r := &onnxModel{m: m, linears: linears, base: sess, set: set}
	if err := r.describe(); err != nil {
		sess.Close()
		return nil, err
	}
	return r, nil
}

// describe reads the input's shape and the task from the base session
// and one example.
func (r *onnxModel) describe() error {
	ins, outs := r.base.Inputs(), r.base.Outputs()
	switch {
	case len(ins) != 1:
		return inputerr.Errorf("%s: calibration runs ONNX models of one input; this one takes %d: %v", r.m.File, len(ins), ins)
	case ins[0].Type != onnxrt.Float32 && ins[0].Type != onnxrt.Int64:
		return inputerr.Errorf("%s: input %s: calibration feeds float32 or int64 tensors", r.m.File, ins[0])
	case len(ins[0].Shape) < 2:
		return inputerr.Errorf("%s: input %s: want a batch axis and at least one more", r.m.File, ins[0])
	case len(outs) == 0 || outs[0].Type != onnxrt.Float32:
		return inputerr.Errorf("%s: outputs %v: calibration measures the loss on a float32 first output", r.m.File, outs)
	}
	r.in = ins[0]
	if b := r.in.Shape[0]; b > 0 {
		r.batch = int(b)
	}
	d := r.set.Fit.D
	if r.set.Fit.N < 1 || r.set.Held.N < 1 {
		return inputerr.Errorf("%s: calibration needs fit and held-out examples, got %d and %d", r.m.File, r.set.Fit.N, r.set.Held.N)
	}
	row, err := exampleShape(r.in, d)
	if err != nil {
		return inputerr.Errorf("%s: %w", r.m.File, err)
	}
	r.row = row
	if r.in.Type == onnxrt.Int64 {
		for _, ex := range []Examples{r.set.Fit, r.set.Held} {
			for i, v := range ex.X {
				if v != math.Trunc(v) {
					return inputerr.Errorf("%s: input %s takes integers; calibration row %d holds %v", r.m.File, r.in, i/d, v)
				}
			}
		}
	}
	outsOne, err := r.run(r.base, r.set.Held.X[:d], 1)
	if err != nil {
		return err
	}
	r.c = len(outsOne[0].Float32)
	r.task = compute.TaskClassification
	if r.c == 1 {
		r.task = compute.TaskRegression
	}
	if r.c == 0 {
		return inputerr.Errorf("%s: the first output holds no value per example", r.m.File)
	}
	return nil
}

// exampleShape returns one example's shape for input in from d
// features: the fixed dimensions, and a single dynamic one from d.
func exampleShape(in onnxrt.Info, d int) ([]int64, error) {
	row := slices.Clone(in.Shape[1:])
	fixed, dynamic := int64(1), -1
	for i, v := range row {
		if v < 0 {
			if dynamic >= 0 {
				return nil, fmt.Errorf("input %s has more than one dynamic dimension besides the batch: the examples' shape is unknown", in)
			}
			dynamic = i
			continue
		}
		fixed *= v
	}
	switch {
	case dynamic < 0 && fixed == int64(d):
		return row, nil
	case dynamic >= 0 && fixed > 0 && int64(d)%fixed == 0:
		row[dynamic] = int64(d) / fixed
		return row, nil
	}
	return nil, fmt.Errorf("the calibration data has %d features per row, input %s takes %v per example", d, in, in.Shape[1:])
}

func (r *onnxModel) Engine() string { return "onnxruntime" }

func (r *onnxModel) Close() error { return r.base.Close() }

// run runs sess on the n examples x (flattened) in batches and returns
// every output of every batch, concatenated along the first axis
// (outputs whose first axis is not the batch's are returned per batch,
// see runBatches).
func (r *onnxModel) run(sess *onnxrt.Session, x []float64, n int) ([]onnxrt.Tensor, error) {
	var all []onnxrt.Tensor
	err := r.runBatches(sess, x, n, func(_, _ int, outs []onnxrt.Tensor) error {
		if all == nil {
			all = make([]onnxrt.Tensor, len(outs))
		}
		for i, o := range outs {
			all[i].Type, all[i].Shape = o.Type, o.Shape
			all[i].Float32 = append(all[i].Float32, o.Float32...)
			all[i].Int64 = append(all[i].Int64, o.Int64...)
		}
		return nil
	})
	return all, err
}

// runBatches runs sess on the n examples x in batches of batchExamples
// (of the input's fixed batch size, the last batch padded with zero
// examples whose outputs are cut off when the output's first axis is the
// batch) and calls each with the first example's index, the batch's
// examples and the outputs.
func (r *onnxModel) runBatches(sess *onnxrt.Session, x []float64, n int, each func(lo, g int, outs []onnxrt.Tensor) error) error {
	per := int(product64(r.row))
	size := batchExamples
	if r.batch > 0 {
		size = r.batch
	}
	for lo := 0; lo < n; lo += size {
		g := min(size, n-lo)
		rows := g
		if r.batch > 0 {
			rows = r.batch
		}
		xs := make([]float64, rows*per)
		copy(xs, x[lo*per:(lo+g)*per])
		outs, err := sess.Run([]onnxrt.Tensor{r.tensor(xs, rows)})
		if err != nil {
			return ortErr(err)
		}
		if rows != g {
			for i, o := range outs {
				outs[i] = cutBatch(o, rows, g)
			}
		}
		if err := each(lo, g, outs); err != nil {
			return err
		}
	}
	return nil
}

// cutBatch keeps the first g of rows examples of an output whose first
// axis is the batch.
func cutBatch(t onnxrt.Tensor, rows, g int) onnxrt.Tensor {
	if len(t.Shape) == 0 || t.Shape[0] != int64(rows) {
		return t
	}
	k := t.Len() / rows * g
	t.Shape = append([]int64{int64(g)}, t.Shape[1:]...)
	if t.Float32 != nil {
		t.Float32 = t.Float32[:k]
	}
	if t.Int64 != nil {
		t.Int64 = t.Int64[:k]
	}
	return t
}

// tensor is the input tensor of n examples xs.
func (r *onnxModel) tensor(xs []float64, n int) onnxrt.Tensor {
	return onnxrt.FromFloat64(r.in.Type, append([]int64{int64(n)}, r.row...), xs)
}

func (r *onnxModel) Collect(ctx context.Context, layers []int, caps Caps) ([]*Activations, error) {
	caps = caps.withDefaults()
	sess, values, err := r.withInputs(layers)
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	cols := make([]*collector, len(layers))
	for i, l := range layers {
		cols[i] = newCollector(l, r.linears[l].In, caps, r.set.Fit.N, r.set.Held.N)
	}
	for part, ex := range [2]Examples{r.set.Fit, r.set.Held} {
		err := r.runBatches(sess, ex.X, ex.N, func(lo, g int, outs []onnxrt.Tensor) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			for i, l := range layers {
				var x onnxrt.Tensor
				if values[i] < 0 {
					x = r.tensor(ex.X[lo*ex.D:(lo+g)*ex.D], g)
				} else {
					x = outs[values[i]]
				}
				src, err := r.rowsOf(l, x)
				if err != nil {
					return err
				}
				if err := cols[i].add(part, g, src); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	acts := make([]*Activations, len(cols))
	for i, c := range cols {
		if acts[i], err = c.finish(); err != nil {
			return nil, fmt.Errorf("%s: node %q: %w", r.m.File, r.linears[layers[i]].Node, err)
		}
	}
	return acts, nil
}

// withInputs opens a copy of the model whose outputs also hold the input
// of each layer's node, and returns it with the index of each layer's
// input among its outputs (-1: the layer reads the graph's input, which
// the caller has).
func (r *onnxModel) withInputs(layers []int) (*onnxrt.Session, []int, error) {
	p := proto.Clone(r.m.Proto).(*onnxpb.ModelProto)
	g := p.GetGraph()
	nodes := map[string]*onnxpb.NodeProto{}
	for _, n := range g.GetNode() {
		nodes[n.GetName()] = n
	}
	outputs := map[string]int{}
	for i, o := range g.GetOutput() {
		outputs[o.GetName()] = i
	}
	values := make([]int, len(layers))
	for i, l := range layers {
		n := nodes[r.linears[l].Node]
		if n == nil || len(n.GetInput()) == 0 {
			return nil, nil, fmt.Errorf("%s: node %q not found", r.m.File, r.linears[l].Node)
		}
		v := n.GetInput()[0]
		if v == r.in.Name {
			values[i] = -1
			continue
		}
		k, ok := outputs[v]
		if !ok {
			k = len(g.Output)
			outputs[v] = k
			g.Output = append(g.Output, &onnxpb.ValueInfoProto{Name: proto.String(v), Type: &onnxpb.TypeProto{
				Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(onnxpb.TensorProto_FLOAT))}}}})
		}
		values[i] = k
	}
	data, err := (&onnx.Model{Proto: p, File: r.m.File}).Encode()
	if err != nil {
		return nil, nil, err
	}
	sess, err := onnxrt.Open(data, onnxrt.Options{Name: r.m.File})
	if err != nil {
		return nil, nil, ortErr(err)
	}
	return sess, values, nil
}

// rowsOf returns the rows layer l sees in its node's input x.
func (r *onnxModel) rowsOf(l int, x onnxrt.Tensor) (rowSource, error) {
	lin := &r.linears[l]
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: node %q (%s): "+format, append([]any{r.m.File, lin.Node, lin.Op}, args...)...)
	}
	if x.Type != onnxrt.Float32 {
		return nil, bad("its input is %s, not float32", x.Type)
	}
	if lin.Op != "Conv" {
		if len(x.Shape) == 0 || x.Shape[len(x.Shape)-1] != int64(lin.In) || len(x.Float32)%lin.In != 0 {
			return nil, bad("its input has shape %v, want a last axis of %d", x.Shape, lin.In)
		}
		return matrixRows[float32]{x.Float32, lin.In}, nil
	}
	p, err := newPatches(x.Float32, x.Shape, lin.Kernel, lin.Conv)
	if err != nil {
		return nil, bad("%v", err)
	}
	if p.width() != lin.In {
		return nil, bad("its input has %d channels, the weight %d", p.c, lin.In/len(p.offsets))
	}
	return p, nil
}

func (r *onnxModel) Loss(ctx context.Context, swaps ...Swap) (float64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	sess := r.base
	if len(swaps) > 0 {
		layers := make([]lowering.Layer, len(swaps))
		for i, s := range swaps {
			l := r.linears[s.Layer]
			layers[i] = lowering.Layer{Name: lowering.DefaultName(l), Node: l.Node, Op: s.Op}
		}
		swapped, err := lowering.Materialize(r.m, layers)
		if err != nil {
			return 0, err
		}
		data, err := swapped.Encode()
		if err != nil {
			return 0, err
		}
		if sess, err = onnxrt.Open(data, onnxrt.Options{Name: r.m.File}); err != nil {
			return 0, ortErr(err)
		}
		defer sess.Close()
	}
	held := r.set.Held
	outs, err := r.run(sess, held.X, held.N)
	if err != nil {
		return 0, err
	}
	z := outs[0].Float32
	if len(z) != held.N*r.c {
		return 0, fmt.Errorf("%s: the first output holds %d values for %d examples, want %d each", r.m.File, len(z), held.N, r.c)
	}
	return meanLoss(r.task, z, held.Y, r.c)
}

// ortErr classifies an ONNX Runtime error: a model it refuses, inputs
// that do not fit it and a runtime this binary cannot load are bad input
// (a retry fixes none of them).
func ortErr(err error) error {
	if errors.Is(err, onnxrt.ErrInvalidModel) || errors.Is(err, onnxrt.ErrInvalidInput) ||
		errors.Is(err, onnxrt.ErrUnsupported) || errors.Is(err, onnxrt.ErrUnavailable) {
		return inputerr.Mark(err)
	}
	return err
}

func product64(d []int64) int64 {
	n := int64(1)
	for _, v := range d {
		n *= v
	}
	return n
}
