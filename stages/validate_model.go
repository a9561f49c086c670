package stages

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/internal/provenance"
	"github.com/strata-ml/strata/modelmap"
)

// This file holds the models validate compares: an MLP of strata's model
// files, run in-process by compute, or an ONNX model of any architecture,
// run by ONNX Runtime (validate_onnx.go). Both answer the same questions:
// their widths and task, a forward pass, the Jacobian of their outputs,
// their linear layers' weights, their cost, one timed pass.

// valModel is one model of a validation.
type valModel struct {
	path  string
	input provenance.File
	// inputs and outputs are the widths of a row as validate sees it (an
	// ONNX model's input flattened); classes names a classifier's outputs
	// when the file does.
	inputs, outputs int
	task            compute.Task
	classes         []string
	// standardization is the model's own (nil: none); x is the data in
	// the model's input space (N x inputs), rawScale d x_in / d x_raw
	// per feature (nil: 1) and stdScale d x_in / d u for u the
	// standardised input: nil (1) for a model that standardises (x_in is
	// u), the data's std for one that does not.
	standardization *arrowio.Standardization
	x               []float64
	rawScale        []float64
	stdScale        []float64

	mlp  *mlpModel
	onnx *onnxModel
}

// mlpModel is a model of the MLP family, run in-process.
type mlpModel struct {
	arch  arrowio.Architecture
	net   *compute.Network[float64]
	net32 *compute.Network[float32]
}

// Model kinds, as validation.json's notes name them.
const (
	kindMLP  = "strata MLP"
	kindONNX = "ONNX model"
)

func (m *valModel) kind() string {
	if m.onnx != nil {
		return kindONNX
	}
	return kindMLP
}

// loadValModel reads the model file at path: .onnx through ONNX Runtime,
// anything else as a strata model file of the MLP family. task is the
// task of an ONNX model (empty: inferred from its width).
func loadValModel(ctx context.Context, path string, activation compute.Activation, task compute.Task) (*valModel, error) {
	if strings.EqualFold(filepath.Ext(path), ".onnx") {
		return loadONNXModel(path, task)
	}
	lm, err := loadModel(ctx, path, activation)
	if err != nil {
		return nil, inputerr.InFile(path, err)
	}
	net, err := modelmap.Network[float64](lm.model)
	if err != nil {
		return nil, inputerr.InFile(path, err)
	}
	net32, err := modelmap.Network[float32](lm.model)
	if err != nil {
		return nil, inputerr.InFile(path, err)
	}
	arch := lm.model.Arch
	return &valModel{
		path: path, input: lm.input, inputs: net.Inputs(), outputs: net.Outputs(), task: net.Task(),
		classes: arch.Classes, standardization: arch.Standardization,
		mlp: &mlpModel{arch: arch, net: net, net32: net32},
	}, nil
}

// prepare puts the data into the model's input space.
func (m *valModel) prepare(ds *arrowio.Dataset) error {
	if m.onnx != nil {
		return m.onnx.prepare(m, ds)
	}
	x, err := modelmap.Standardize(ds, &m.mlp.arch)
	if err != nil {
		return inputerr.InFile(m.path, err)
	}
	if x.D != m.inputs {
		return inputerr.Errorf("%s: the data has %d features, the model takes %d", m.path, x.D, m.inputs)
	}
	m.x = x.X
	if st := m.standardization; st != nil {
		m.rawScale = make([]float64, len(st.Std))
		for j, sd := range st.Std {
			if sd == 0 {
				sd = 1
			}
			m.rawScale[j] = 1 / sd
		}
		return nil
	}
	m.stdScale = dataStd(ds)
	return nil
}

// dataStd is the per-feature standard deviation of the data, a constant
// feature's taken as 1 (compute.FitStandardization): the unit of the
// standardised input of a model that records no standardisation.
func dataStd(ds *arrowio.Dataset) []float64 {
	_, std := compute.FitStandardization(ds.X, ds.N, ds.D)
	return std
}

// forward returns the model's forward pass in float64 (on the float32
// model for ONNX).
func (m *valModel) forward() compute.ForwardFunc {
	if m.onnx != nil {
		return m.onnx.forward
	}
	return compute.NetworkForward(m.mlp.net, compute.NewWorkspace[float64]())
}

// outputsOf returns the model's outputs on its data (N x outputs).
func (m *valModel) outputsOf(n int) ([]float64, error) {
	y := make([]float64, n*m.outputs)
	if err := m.forward()(y, m.x, n); err != nil {
		return nil, err
	}
	return y, nil
}

// chunkedOutputs returns y, the model's outputs on its data, when its
// forward pass gives every row the same bits on any chunk of rows (an MLP:
// compute.NetworkForward runs chunks of its own), so that a metric may
// reuse them; nil otherwise (ONNX Runtime may compute a row differently
// in another batch).
func (m *valModel) chunkedOutputs(y []float64) []float64 {
	if m.onnx != nil {
		return nil
	}
	return y
}

// jacobianNote says how the Jacobian of each kind of model is computed.
func (m *valModel) jacobianNote() string {
	if m.onnx != nil {
		return onnxJacobianNote
	}
	return "exact, by backpropagation"
}

// jacobians returns the JacobianStats of each view on the k rows xs (in
// the model's input space). Rows where the Jacobian cannot be trusted
// (central differences across a kink, see onnxModel.jacobians) are NaN.
func (m *valModel) jacobians(xs []float64, k int, views []compute.JacobianView) ([]compute.JacobianStats, error) {
	if m.onnx != nil {
		return m.onnx.jacobians(m, xs, k, views)
	}
	return compute.JacobianConditions(m.mlp.net, xs, k, views, compute.NewWorkspace[float64]()), nil
}

// layerInfo describes one linear layer of a model, from its weights.
type layerInfo struct {
	name      string
	out, in   int
	family    string
	structure string
	// sv are the singular values of the effective weight W = S + R (of
	// its centred rows for the layer that writes a classifier's logits,
	// see logits), trunkSV of S alone (nil for a dense layer).
	sv      []float64
	trunkSV []float64
	// logits marks the layer whose outputs are a classifier's logits:
	// its values are taken on the centred rows (compute.CentreRows), as
	// the Jacobian is taken on the centred logits.
	logits bool
}

// rows is the number of rows of the matrix the layer's values are taken
// on.
func (l *layerInfo) rows() int {
	if l.logits {
		return l.out - 1
	}
	return l.out
}

// mlpLayers describes the linear layers of an MLP.
func (mm *mlpModel) layers() []layerInfo {
	net := mm.net
	spec := net.Spec()
	lin := compute.LinearLayers(net)
	var out []layerInfo
	for k, l := range lin {
		op := net.Operator(l)
		o, _ := op.Shape()
		name := spec.Layers[l].Name
		if name == "" {
			name = fmt.Sprint(l)
		}
		// The last layer writes the logits when nothing follows it.
		logits := net.Task() == compute.TaskClassification && k == len(lin)-1 && l == net.NumLayers()-1 && o >= 2
		out = append(out, operatorLayer(name, op, logits))
	}
	return out
}

// operatorLayer describes a linear layer of operator op, whose outputs
// are a classifier's logits when logits is set.
func operatorLayer[T compute.Float](name string, op compute.Operator[T], logits bool) layerInfo {
	out, in := op.Shape()
	s := op.Spec()
	li := layerInfo{name: name, out: out, in: in, logits: logits, family: s.Family, structure: s.String(), sv: layerSV(op, logits)}
	if sum, ok := op.(*compute.Sum[T]); ok {
		li.family = sum.Trunk().Spec().Family
		li.trunkSV = layerSV(sum.Trunk(), logits)
	}
	return li
}

// layerSV returns the singular values of op, of its centred rows when
// centred.
func layerSV[T compute.Float](op compute.Operator[T], centred bool) []float64 {
	if !centred {
		return op.SingularValues(nil)
	}
	out, in := op.Shape()
	w := make([]float64, out*in)
	op.DenseTo(w)
	return compute.CentredSingularValues(w, out, in)
}

// cost returns the model's parameters, its FLOPs per example (-1 when not
// counted, flopsWhy says why) and its parameter bytes.
func (m *valModel) cost() (params, flops int, flopsWhy string, bytes int) {
	if m.onnx != nil {
		return m.onnx.params, -1, "not counted for ONNX graphs", m.onnx.bytes
	}
	net := m.mlp.net
	return net.NumParams(), compute.NetworkFLOPs(net), "", 4 * compute.NetworkStoredValues(net)
}

// timer returns one timed pass of the model on the first batch rows of
// its data, in the precision it is served in (float32), and its wall
// time.
func (m *valModel) timer(batch int) (func() (time.Duration, error), error) {
	if m.onnx != nil {
		return m.onnx.timer(m, batch)
	}
	net := m.mlp.net32
	x := make([]float32, batch*m.inputs)
	for i, v := range m.x[:batch*m.inputs] {
		x[i] = float32(v)
	}
	y := make([]float32, batch*m.outputs)
	ws := compute.NewWorkspace[float32]()
	return func() (time.Duration, error) {
		start := time.Now()
		net.Forward(y, x, batch, ws)
		return time.Since(start), nil
	}, nil
}

// close releases what the model holds (an ONNX Runtime session).
func (m *valModel) close() {
	if m.onnx != nil {
		m.onnx.close()
	}
}

// sameInterface refuses models that cannot be compared: another task,
// input width, output width or class names.
func sameInterface(b, m *valModel, side string) error {
	switch {
	case b.task != m.task:
		return inputerr.Errorf("validate: the baseline is a %s model, the %s a %s model", b.task, side, m.task)
	case b.inputs != m.inputs:
		return inputerr.Errorf("validate: the baseline takes %d inputs, the %s %d", b.inputs, side, m.inputs)
	case b.outputs != m.outputs:
		return inputerr.Errorf("validate: the baseline has %d outputs, the %s %d", b.outputs, side, m.outputs)
	case len(b.classes) > 0 && len(m.classes) > 0 && !slices.Equal(b.classes, m.classes):
		return inputerr.Errorf("validate: the baseline's classes %q differ from the %s's %q", b.classes, side, m.classes)
	}
	return nil
}

func sameStandardization(a, b *arrowio.Standardization) bool {
	if a == nil || b == nil {
		return a == b
	}
	return slices.Equal(a.Mean, b.Mean) && slices.Equal(a.Std, b.Std)
}
