package stages

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/arrowio/onnx"
	"github.com/strata-ml/strata/arrowio/onnx/onnxpb"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/lowering"
	"github.com/strata-ml/strata/onnxrt"
)

// This file runs ONNX models for validate through ONNX Runtime: any
// architecture whose one input is a float32 (or int64) tensor and whose
// first output is [rows, outputs] (or [rows]). The evaluation rows are
// reshaped to the input's shape; every forward-only metric runs on the
// runtime, the Jacobian by central differences; the per-layer metrics come
// from the weights in the graph.

// onnxJacobianNote says how an ONNX model's Jacobian is estimated.
const onnxJacobianNote = "by central differences on the float32 model, step h = 1e-3 standardised units per feature; " +
	"an input where the forward or the backward differences give a condition more than 1% from the central one " +
	"(a ReLU or max-pool kink within the step, or rounding) is left out"

// fdStep is the central-difference step in standardised units. The cube
// root of float32's unit roundoff, 4.9e-3, would balance the truncation
// error (h^2) and the rounding error (u |f| / h) of a smooth model; models
// with ReLU and max-pool have kinks, and a smaller step crosses fewer of
// them (on the CNN of the test models 8 of 12 inputs are free of kinks at
// 1e-3, 6 of 12 at 4.9e-3) for a rounding error of about 6e-5 |f| per
// entry, which the one-sided check bounds.
const fdStep = 1e-3

// fdAgreement is the largest relative difference between the condition
// of the central differences and those of the one-sided differences of a
// row whose Jacobian is kept.
const fdAgreement = 0.01

// errNoDerivative marks a model whose input cannot be perturbed or
// differentiated (integer indices).
var errNoDerivative = errors.New("the model's input is int64 (indices): no input noise or derivative exists")

// onnxModel is an ONNX model and its ONNX Runtime session.
type onnxModel struct {
	model *onnx.Model
	sess  *onnxrt.Session
	in    onnxrt.Info
	out   onnxrt.Info
	// row is the shape of one example of the input (the input's shape
	// without its batch axis); maxBatch bounds the rows of one run (0:
	// any, else the input's fixed batch size).
	row      []int64
	maxBatch int
	// task is the task given for the model (empty: inferred).
	task compute.Task
	// params counts the values of the floating-point initializers, bytes
	// the stored bytes of every initializer.
	params, bytes int
	// layers are the linear layers found in the graph; layersNote says
	// how (a structure record, or the linear nodes as they stand).
	layers     []layerInfo
	layersNote string
}

// loadONNXModel reads an ONNX model, checks what validate relies on and
// opens it in ONNX Runtime. Its widths are known once prepare has seen the
// data.
func loadONNXModel(path string, task compute.Task) (*valModel, error) {
	m, data, in, err := readONNX(path)
	if err != nil {
		return nil, err
	}
	// The bytes hashed and checked are the bytes run (readONNX refuses
	// external data, the one reason to hand ORT the file instead).
	sess, err := onnxrt.Open(data, onnxrt.Options{Name: path})
	if err != nil {
		return nil, ortErr(path, err)
	}
	om := &onnxModel{model: m, sess: sess, task: task}
	ins, outs := sess.Inputs(), sess.Outputs()
	switch {
	case len(ins) != 1:
		err = inputerr.Errorf("%s: validate runs ONNX models of one input; this one takes %d: %v", path, len(ins), ins)
	case ins[0].Type != onnxrt.Float32 && ins[0].Type != onnxrt.Int64:
		err = inputerr.Errorf("%s: input %s: validate feeds float32 or int64 tensors", path, ins[0])
	case len(ins[0].Shape) < 2:
		err = inputerr.Errorf("%s: input %s: want a batch axis and at least one more", path, ins[0])
	case len(outs) == 0 || outs[0].Type != onnxrt.Float32 || len(outs[0].Shape) < 1 || len(outs[0].Shape) > 2:
		err = inputerr.Errorf("%s: output %v: validate compares a float32 first output of shape [rows, outputs] or [rows]", path, outs)
	}
	if err != nil {
		sess.Close()
		return nil, err
	}
	om.in, om.out = ins[0], outs[0]
	om.row = slices.Clone(om.in.Shape[1:])
	if b := om.in.Shape[0]; b > 0 {
		om.maxBatch = int(b)
	}
	om.params, om.bytes = initializerCounts(m.Proto.GetGraph())
	om.layers, om.layersNote, err = onnxLayers(m)
	if err != nil {
		sess.Close()
		return nil, classify(err)
	}
	return &valModel{path: path, input: in, onnx: om}, nil
}

// ortErr classifies an ONNX Runtime error: a model it refuses, inputs that
// do not fit it and a runtime this binary cannot load are all bad input
// (none is fixed by a retry).
func ortErr(path string, err error) error {
	if errors.Is(err, onnxrt.ErrInvalidModel) || errors.Is(err, onnxrt.ErrInvalidInput) ||
		errors.Is(err, onnxrt.ErrUnsupported) || errors.Is(err, onnxrt.ErrUnavailable) {
		return inputerr.InFile(path, inputerr.Mark(err))
	}
	return err
}

// initializerCounts returns the number of values of the floating-point
// initializers and the bytes of all of them.
func initializerCounts(g *onnxpb.GraphProto) (params, bytes int) {
	size := map[onnxpb.TensorProto_DataType]int{
		onnxpb.TensorProto_FLOAT: 4, onnxpb.TensorProto_DOUBLE: 8, onnxpb.TensorProto_FLOAT16: 2, onnxpb.TensorProto_BFLOAT16: 2,
		onnxpb.TensorProto_INT64: 8, onnxpb.TensorProto_INT32: 4, onnxpb.TensorProto_UINT64: 8, onnxpb.TensorProto_UINT32: 4,
		onnxpb.TensorProto_INT16: 2, onnxpb.TensorProto_UINT16: 2, onnxpb.TensorProto_INT8: 1, onnxpb.TensorProto_UINT8: 1,
		onnxpb.TensorProto_BOOL: 1, onnxpb.TensorProto_COMPLEX64: 8, onnxpb.TensorProto_COMPLEX128: 16,
	}
	for _, t := range g.GetInitializer() {
		n := 1
		for _, d := range t.GetDims() {
			n *= int(d)
		}
		dt := onnxpb.TensorProto_DataType(t.GetDataType())
		bytes += n * size[dt]
		if onnx.IsFloat(t.GetDataType()) {
			params += n
		}
	}
	return params, bytes
}

// onnxLayers describes the linear layers of an ONNX model from its
// weights, in graph order. A structured model (lowering.Lower's record)
// gives each lowered layer's operator, its trunk and its structure, and
// every other linear node as a dense layer; a model without the record
// gives the linear nodes as they stand (onnx.Model.Linears): a structured
// layer exported by another tool shows as its factors, each a layer.
func onnxLayers(m *onnx.Model) ([]layerInfo, string, error) {
	g := m.Proto.GetGraph()
	position := map[string]int{}
	writes := map[string]string{} // value -> node
	for i, n := range g.GetNode() {
		position[n.GetName()] = i
		for _, o := range n.GetOutput() {
			writes[o] = n.GetName()
		}
	}
	outputs := map[string]bool{}
	for _, o := range g.GetOutput() {
		outputs[writes[o.GetName()]] = true
	}
	type placed struct {
		at int
		layerInfo
	}
	var ls []placed
	params := map[string]bool{}
	note := "the linear nodes of the graph (Gemm, MatMul and Conv with a weight initializer) as they stand, each a dense layer; " +
		"the model has no " + lowering.MetadataKey + " record (lowering.Lower writes it), so a structured layer exported by another tool shows as its factors"
	if _, err := lowering.ReadStructure(m); err == nil {
		st, _ := lowering.ReadStructure(m)
		ops, err := lowering.Operators(m)
		if err != nil {
			return nil, "", err
		}
		for i, rec := range st.Layers {
			for _, p := range rec.Params {
				params[p.Initializer] = true
			}
			op := ops[i].Op
			out, _ := op.Shape()
			ls = append(ls, placed{position[rec.Node], operatorLayer(rec.Name, op, outputs[rec.Node] && out >= 2)})
		}
		note = "the layers lowering.Lower recorded (" + lowering.MetadataKey + "), rebuilt from their initializers, and every other linear node as a dense layer"
	}
	linears, _ := m.Linears()
	for _, l := range linears {
		if params[l.Weight] {
			continue
		}
		last := l.Node
		if l.BiasNode != "" {
			last = l.BiasNode
		}
		li := layerInfo{name: lowering.DefaultName(l), out: l.Out, in: l.In, family: compute.FamilyDense,
			structure: "dense " + l.Op, logits: outputs[last] && l.Out >= 2}
		if l.Conv != nil {
			li.structure += fmt.Sprintf(" %v kernel", l.Kernel)
		}
		li.sv = layerSV[float64](compute.NewDenseOp(l.Out, l.In, l.W), li.logits)
		ls = append(ls, placed{position[l.Node], li})
	}
	slices.SortStableFunc(ls, func(a, b placed) int { return cmp.Compare(a.at, b.at) })
	out := make([]layerInfo, len(ls))
	for i, p := range ls {
		out[i] = p.layerInfo
	}
	return out, note, nil
}

// prepare reshapes the data to the model's input, finds its widths and
// task with one run, and puts the data in its input space (raw: an ONNX
// model carries its own preprocessing, if any).
func (om *onnxModel) prepare(m *valModel, ds *arrowio.Dataset) error {
	row, err := rowShape(om.in, ds)
	if err != nil {
		return inputerr.Errorf("%s: %w", m.path, err)
	}
	om.row = row
	if om.in.Type == onnxrt.Int64 {
		for i, v := range ds.X {
			if v != math.Trunc(v) {
				return inputerr.Errorf("%s: input %s takes integers; the data's row %d holds %v", m.path, om.in, i/ds.D, v)
			}
		}
	}
	m.inputs, m.x, m.stdScale = ds.D, ds.X, dataStd(ds)
	probe, err := om.run(ds.X[:ds.D], 1)
	if err != nil {
		return ortErr(m.path, err)
	}
	m.outputs = len(probe)
	m.task = om.task
	if m.task == "" {
		m.task = compute.TaskClassification
		if m.outputs == 1 {
			m.task = compute.TaskRegression
		}
	}
	if m.task == compute.TaskClassification && m.outputs < 2 {
		return inputerr.Fieldf("validate", "%s: output %s has %d value per row: a classifier has at least 2 logits (give {task} regression?)", m.path, om.out, m.outputs)
	}
	if m.task == compute.TaskRegression {
		for i := range om.layers {
			om.layers[i].logits = false
		}
	}
	return nil
}

// rowShape returns the shape of one example of input in: its fixed
// dimensions, a dynamic one taken from the data's fixed_shape_tensor shape
// when the ranks agree or, when it is the only one, from the width.
func rowShape(in onnxrt.Info, ds *arrowio.Dataset) ([]int64, error) {
	want := in.Shape[1:]
	fixed, dynamic := int64(1), 0
	for _, d := range want {
		if d < 0 {
			dynamic++
		} else {
			fixed *= d
		}
	}
	row := slices.Clone(want)
	switch {
	case dynamic == 0 && fixed == int64(ds.D):
		return row, nil
	case len(ds.Shape) == len(want):
		for i, d := range want {
			if d >= 0 && int64(ds.Shape[i]) != d {
				return nil, fmt.Errorf("the data's rows are tensors of shape %v, input %s wants %v", ds.Shape, in, want)
			}
			row[i] = int64(ds.Shape[i])
		}
		return row, nil
	case dynamic == 1 && fixed > 0 && int64(ds.D)%fixed == 0:
		for i, d := range row {
			if d < 0 {
				row[i] = int64(ds.D) / fixed
			}
		}
		return row, nil
	}
	return nil, fmt.Errorf("the data has %d values per row, input %s takes %v per example (store the rows as a fixed_shape_tensor column of that shape, or flatten them in row-major order)",
		ds.D, in, want)
}

// run runs the model on n rows of x (flattened examples) in chunks and
// returns its first output, n x outputs.
func (om *onnxModel) run(x []float64, n int) ([]float64, error) {
	per := len(x) / max(n, 1)
	chunk := 256
	if om.maxBatch > 0 {
		chunk = om.maxBatch
	}
	var y []float64
	for r0 := 0; r0 < n; r0 += chunk {
		g := min(chunk, n-r0)
		if om.maxBatch > 0 && g != om.maxBatch {
			return nil, fmt.Errorf("%w: input %s has a fixed batch of %d; %d rows do not divide into it", onnxrt.ErrInvalidInput, om.in, om.maxBatch, n)
		}
		outs, err := om.sess.Run([]onnxrt.Tensor{om.tensor(x[r0*per:(r0+g)*per], g)})
		if err != nil {
			return nil, err
		}
		o := outs[0]
		if len(o.Shape) == 0 || o.Shape[0] != int64(g) || len(o.Float32)%g != 0 {
			return nil, fmt.Errorf("%w: output %s has shape %v for %d rows", onnxrt.ErrUnsupported, om.out, o.Shape, g)
		}
		for _, v := range o.Float32 {
			y = append(y, float64(v))
		}
	}
	return y, nil
}

// tensor returns the input tensor of n examples xs (flattened), in the
// input's element type.
func (om *onnxModel) tensor(xs []float64, n int) onnxrt.Tensor {
	return onnxrt.FromFloat64(om.in.Type, append([]int64{int64(n)}, om.row...), xs)
}

// forward is the model's ForwardFunc.
func (om *onnxModel) forward(y, x []float64, n int) error {
	out, err := om.run(x, n)
	if err != nil {
		return err
	}
	if len(out) != len(y) {
		return fmt.Errorf("%w: output %s gives %d values for %d rows, want %d", onnxrt.ErrUnsupported, om.out, len(out), n, len(y))
	}
	copy(y, out)
	return nil
}

// jacobians estimates each view's JacobianStats at the k rows xs by
// central differences (see onnxJacobianNote), h = fdStep times each
// feature's data std. A row where the conditions from the forward or the
// backward differences differ from the central one by more than
// fdAgreement in the first view, the headline (a kink of the model within
// the step), is NaN in every view.
func (om *onnxModel) jacobians(m *valModel, xs []float64, k int, views []compute.JacobianView) ([]compute.JacobianStats, error) {
	if om.in.Type == onnxrt.Int64 {
		return nil, errNoDerivative
	}
	in, c := m.inputs, m.outputs
	st := make([]compute.JacobianStats, len(views))
	for v := range views {
		st[v] = compute.JacobianStats{Condition: make([]float64, k), LogSigmaStd: make([]float64, k)}
	}
	h := make([]float64, in)
	for j, s := range m.stdScale {
		h[j] = fdStep * s
	}
	round := func(v float64) float64 { return float64(float32(v)) }
	for r := range k {
		central, fwd, bwd, err := compute.CentralJacobian(om.forward, in, c, xs[r*in:(r+1)*in], h, round)
		if err != nil {
			return nil, err
		}
		agree := true
		for v, view := range views {
			cc, cs := compute.JacobianSummary(central, c, in, view)
			cf, _ := compute.JacobianSummary(fwd, c, in, view)
			cb, _ := compute.JacobianSummary(bwd, c, in, view)
			st[v].Condition[r], st[v].LogSigmaStd[r] = cc, cs
			if v > 0 {
				continue // the headline view decides
			}
			for _, o := range []float64{cf, cb} {
				agree = agree && (o == cc || math.Abs(o-cc) <= fdAgreement*cc)
			}
		}
		if !agree {
			for v := range views {
				st[v].Condition[r], st[v].LogSigmaStd[r] = math.NaN(), math.NaN()
			}
		}
	}
	return st, nil
}

// timer is valModel.timer for an ONNX model: one run of the session on
// the first batch rows, the input tensor made once.
func (om *onnxModel) timer(m *valModel, batch int) (func() (time.Duration, error), error) {
	if om.maxBatch > 0 {
		batch = om.maxBatch
	}
	t := om.tensor(m.x[:batch*m.inputs], batch)
	return func() (time.Duration, error) {
		start := time.Now()
		_, err := om.sess.Run([]onnxrt.Tensor{t})
		return time.Since(start), err
	}, nil
}

func (om *onnxModel) close() { _ = om.sess.Close() }
