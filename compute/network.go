package compute

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// This file holds the model engine: networks of the MLP family, a sequence
// of linear layers (dense or structured, with optional bias), elementwise
// activations and layer norms, ending in a classification head (softmax
// cross-entropy) or a regression head (mean squared error).

// LayerNormEps is the epsilon of every layer norm, as PyTorch's default.
const LayerNormEps = 1e-5

// ErrTarget is wrapped by errors about training targets: a class index that
// is not an integer in [0, classes), or a regression target that is not
// finite.
var ErrTarget = Error{"compute: invalid target"}

// LayerSpec is one step of a network's forward pass.
type LayerSpec struct {
	// Kind is KindLinear, KindActivation or KindLayerNorm.
	Kind LayerKind `json:"kind"`
	// Name prefixes the layer's parameter names; empty means the layer's
	// index in decimal ("0", "1", ...), as in a PyTorch nn.Sequential.
	Name string `json:"name,omitempty"`
	// In and Out are the widths of a linear layer. Activations and layer
	// norms keep the width; for them In and Out may be zero or must equal
	// the incoming width.
	In  int `json:"in,omitempty"`
	Out int `json:"out,omitempty"`
	// Bias adds a learnable bias to a linear layer. (A layer norm always
	// has a learnable gain and bias, as PyTorch's nn.LayerNorm.)
	Bias bool `json:"bias,omitempty"`
	// Activation is one of Activations, for a layer of kind activation.
	Activation Activation `json:"activation,omitempty"`
	// Structure is the operator of a structured linear layer (any family,
	// typically a FamilySum of a trunk and a correction); nil, or the
	// dense family, means a dense layer. Its Out and In may be zero; they
	// are taken from the layer.
	Structure *Spec `json:"structure,omitempty"`
}

// NetworkSpec describes a network of the MLP family.
type NetworkSpec struct {
	// Task is TaskClassification (the last layer's outputs are logits of
	// at least two classes) or TaskRegression.
	Task Task `json:"task"`
	// Inputs is the width of an input row.
	Inputs int `json:"inputs"`
	// Layers are in forward order; at least one is linear.
	Layers []LayerSpec `json:"layers"`
}

// Validate checks that the widths chain from Inputs through every layer,
// that activations and tasks are known, that every structure builds (which
// allocates its parameters once), that layer names are unique, and that a
// classifier has at least two outputs. Errors wrap ErrSpec and name the
// layer index.
func (s NetworkSpec) Validate() error {
	_, err := s.widths(true)
	return err
}

// Outputs returns the width of the last layer (of the inputs when there is
// no layer). It assumes a valid spec.
func (s NetworkSpec) Outputs() int {
	w := s.Inputs
	for _, l := range s.Layers {
		if l.Kind == KindLinear {
			w = l.Out
		}
	}
	return w
}

// widths validates s and returns the width after each layer, widths[0]
// being Inputs. With build it also builds each structure.
func (s NetworkSpec) widths(build bool) ([]int, error) {
	switch s.Task {
	case TaskClassification, TaskRegression:
	default:
		return nil, fmt.Errorf("%w: task %q is not %q or %q", ErrSpec, s.Task, TaskClassification, TaskRegression)
	}
	if s.Inputs < 1 {
		return nil, fmt.Errorf("%w: inputs %d must be positive", ErrSpec, s.Inputs)
	}
	ws := make([]int, len(s.Layers)+1)
	ws[0] = s.Inputs
	w := s.Inputs
	linear := false
	names := make(map[string]int, len(s.Layers))
	for i, l := range s.Layers {
		name := layerPrefix(l, i)
		if j, dup := names[name]; dup {
			return nil, fmt.Errorf("%w: layer %d: name %q already used by layer %d", ErrSpec, i, name, j)
		}
		if strings.Contains(l.Name, ".") {
			return nil, fmt.Errorf("%w: layer %d: name %q contains a dot", ErrSpec, i, l.Name)
		}
		names[name] = i
		switch l.Kind {
		case KindLinear:
			if l.In != w {
				return nil, fmt.Errorf("%w: layer %d: linear input width %d, previous width %d", ErrSpec, i, l.In, w)
			}
			if l.Out < 1 {
				return nil, fmt.Errorf("%w: layer %d: linear output width %d must be positive", ErrSpec, i, l.Out)
			}
			if st := l.Structure; st != nil {
				if (st.Out != 0 && st.Out != l.Out) || (st.In != 0 && st.In != l.In) {
					return nil, fmt.Errorf("%w: layer %d: structure shape %dx%d, layer %dx%d", ErrSpec, i, st.Out, st.In, l.Out, l.In)
				}
				if build {
					if _, err := New[float32](layerStructure(l)); err != nil {
						return nil, fmt.Errorf("layer %d: %w", i, err)
					}
				}
			}
			w = l.Out
			linear = true
		case KindActivation:
			if _, ok := parseActivation(l.Activation); !ok {
				return nil, fmt.Errorf("%w: layer %d: unknown activation %q (want one of %s)", ErrSpec, i, l.Activation, JoinNames(Activations))
			}
			if err := keepsWidth(l, i, w); err != nil {
				return nil, err
			}
		case KindLayerNorm:
			if err := keepsWidth(l, i, w); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("%w: layer %d: unknown kind %q (want %s, %s or %s)", ErrSpec, i, l.Kind, KindLinear, KindActivation, KindLayerNorm)
		}
		ws[i+1] = w
	}
	if !linear {
		return nil, fmt.Errorf("%w: a network needs at least one linear layer", ErrSpec)
	}
	if s.Task == TaskClassification && w < 2 {
		return nil, fmt.Errorf("%w: layer %d: a classifier needs at least 2 outputs, got %d", ErrSpec, len(s.Layers)-1, w)
	}
	return ws, nil
}

func keepsWidth(l LayerSpec, i, w int) error {
	if (l.In != 0 && l.In != w) || (l.Out != 0 && l.Out != w) {
		return fmt.Errorf("%w: layer %d: %s keeps the width %d, got in %d out %d", ErrSpec, i, l.Kind, w, l.In, l.Out)
	}
	return nil
}

func layerPrefix(l LayerSpec, i int) string {
	if l.Name != "" {
		return l.Name
	}
	return strconv.Itoa(i)
}

// layerStructure returns the operator Spec of a linear layer: dense when
// Structure is nil, otherwise Structure with the layer's shape.
func layerStructure(l LayerSpec) Spec {
	if l.Structure == nil {
		return Spec{Family: FamilyDense, Out: l.Out, In: l.In}
	}
	s := *l.Structure
	s.Out, s.In = l.Out, l.In
	return s
}

// NetParam is one parameter tensor of a Network.
//
// Names are "<prefix>.<param>", the prefix being LayerSpec.Name or the
// layer index:
//
//   - a dense linear layer: "<p>.weight" (out x in, the DenseOp's "W") and
//     "<p>.bias" (out), as in PyTorch's nn.Linear;
//   - a structured linear layer: "<p>.<name>" for each parameter of its
//     operator, e.g. "<p>.trunk.L" and "<p>.correction.U" for a Sum
//     (see Sum.Params), "<p>.Q" for a bare orthogonal operator, then
//     "<p>.bias";
//   - a layer norm: "<p>.weight" (the gain) and "<p>.bias", as in
//     PyTorch's nn.LayerNorm.
//
// Roles are RoleWeight, RoleBias, RoleTrunk (every parameter of a
// structured operator that is not a Sum, and the trunk of a Sum),
// RoleCorrection and RoleNorm.
type NetParam[T Float] struct {
	Name  string
	Role  Role
	Layer int // index in NetworkSpec.Layers
	// Shape is the tensor's shape; its product is len(Data).
	Shape []int
	// Data aliases the network's storage.
	Data []T
	// Frozen marks state that is not trained (sparse indices).
	Frozen bool
}

type layerKind uint8

const (
	layerLinear layerKind = iota
	layerActivation
	layerNorm
)

type netLayer[T Float] struct {
	kind    layerKind
	in, out int
	act     activation
	op      Operator[T]
	bias    []T // nil without bias
	gain    []T // layer norm
	shift   []T
	p0, nOp int  // first parameter index; number of operator parameters
	scratch bool // initialised from scratch by InitStructured or InitLayer
}

// Network is a network of the MLP family with parameters of type T. Its
// methods that only read parameters (Forward, LossGrad, Backprop, ...) are
// safe for concurrent use with one Workspace per goroutine; the methods
// that change it (SetOperator, Init*, Retract) are not.
type Network[T Float] struct {
	spec   NetworkSpec
	layers []netLayer[T]
	params []NetParam[T]
	// widths[l+1] is the output width of layer l, widths[0] the inputs;
	// offsets[l] is the sum of the output widths of layers before l, so
	// that the forward outputs of a batch of n rows live at
	// [n offsets[l], n offsets[l+1]) of one buffer.
	widths, offsets []int
	maxWidth        int
}

// NewNetwork returns a network of the given spec with every parameter zero
// (layer norm gains included); see InitStructured.
func NewNetwork[T Float](spec NetworkSpec) (*Network[T], error) {
	widths, err := spec.widths(false)
	if err != nil {
		return nil, err
	}
	net := &Network[T]{
		spec:    NetworkSpec{Task: spec.Task, Inputs: spec.Inputs, Layers: make([]LayerSpec, len(spec.Layers))},
		layers:  make([]netLayer[T], len(spec.Layers)),
		widths:  widths,
		offsets: make([]int, len(spec.Layers)+1),
	}
	for i, l := range spec.Layers {
		nl := &net.layers[i]
		nl.in, nl.out = widths[i], widths[i+1]
		net.offsets[i+1] = net.offsets[i] + nl.out
		net.maxWidth = max(net.maxWidth, nl.in, nl.out)
		ls := l
		ls.In, ls.Out = nl.in, nl.out
		switch l.Kind {
		case KindLinear:
			nl.kind = layerLinear
			op, err := New[T](layerStructure(l))
			if err != nil {
				return nil, fmt.Errorf("layer %d: %w", i, err)
			}
			nl.op = op
			if l.Bias {
				nl.bias = make([]T, nl.out)
			}
			ls.Structure = structureOf(op)
		case KindActivation:
			nl.kind = layerActivation
			nl.act, _ = parseActivation(l.Activation)
		case KindLayerNorm:
			nl.kind = layerNorm
			nl.gain = make([]T, nl.out)
			nl.shift = make([]T, nl.out)
		}
		net.spec.Layers[i] = ls
	}
	net.buildParams()
	return net, nil
}

// structureOf returns the Spec a LayerSpec records for op: nil for a dense
// operator.
func structureOf[T Float](op Operator[T]) *Spec {
	s := op.Spec()
	if s.Family == FamilyDense {
		return nil
	}
	return &s
}

// buildParams lists the parameters of every layer in order.
func (net *Network[T]) buildParams() {
	net.params = nil // a fresh slice: callers may hold the old one
	for i := range net.layers {
		l := &net.layers[i]
		prefix := layerPrefix(net.spec.Layers[i], i) + "."
		l.p0 = len(net.params)
		switch l.kind {
		case layerLinear:
			ops := l.op.Params()
			l.nOp = len(ops)
			dense := l.op.Spec().Family == FamilyDense
			for _, p := range ops {
				np := NetParam[T]{Name: prefix + p.Name, Role: RoleTrunk, Layer: i, Shape: p.Shape, Data: p.Data, Frozen: p.Frozen}
				if dense {
					np.Name, np.Role = prefix+"weight", RoleWeight
				} else if part, _, ok := SplitParamName(p.Name); ok && part == "correction" {
					np.Role = RoleCorrection
				}
				net.params = append(net.params, np)
			}
			if l.bias != nil {
				net.params = append(net.params, NetParam[T]{Name: prefix + "bias", Role: RoleBias, Layer: i, Shape: []int{l.out}, Data: l.bias})
			}
		case layerNorm:
			net.params = append(net.params,
				NetParam[T]{Name: prefix + "weight", Role: RoleNorm, Layer: i, Shape: []int{l.out}, Data: l.gain},
				NetParam[T]{Name: prefix + "bias", Role: RoleNorm, Layer: i, Shape: []int{l.out}, Data: l.shift})
		}
	}
}

// Spec returns the network's spec, with each structured layer's Structure
// as its operator reports it (every hyper-parameter resolved) and each
// layer's In and Out filled in. The result shares nothing with net.
func (net *Network[T]) Spec() NetworkSpec {
	s := net.spec
	s.Layers = make([]LayerSpec, len(net.spec.Layers))
	for i, l := range net.spec.Layers {
		if l.Structure != nil {
			l.Structure = structureOf(net.layers[i].op)
		}
		s.Layers[i] = l
	}
	return s
}

// Task returns TaskClassification or TaskRegression.
func (net *Network[T]) Task() Task { return net.spec.Task }

// Inputs returns the width of an input row.
func (net *Network[T]) Inputs() int { return net.widths[0] }

// Outputs returns the width of an output row: the number of classes or of
// regression targets.
func (net *Network[T]) Outputs() int { return net.widths[len(net.widths)-1] }

// NumLayers returns the number of layers.
func (net *Network[T]) NumLayers() int { return len(net.layers) }

// Params returns every parameter tensor, layer by layer in forward order
// and, within a linear layer, the operator's parameters in its Params
// order followed by the bias. The Data alias the network. The order is the
// order of the grads of LossGrad and Backprop and of the optimiser state.
// The slice is shared: do not modify it.
func (net *Network[T]) Params() []NetParam[T] { return net.params }

// NumParams returns the number of trainable scalars.
func (net *Network[T]) NumParams() int {
	n := 0
	for _, p := range net.params {
		if !p.Frozen {
			n += len(p.Data)
		}
	}
	return n
}

// NewGrads returns zeroed gradient buffers aligned with Params, nil for
// frozen parameters.
func (net *Network[T]) NewGrads() [][]T {
	g := make([][]T, len(net.params))
	for i, p := range net.params {
		if !p.Frozen {
			g[i] = make([]T, len(p.Data))
		}
	}
	return g
}

// Operator returns the operator of linear layer i, or nil when layer i is
// not linear. Writing to its Params changes the network.
func (net *Network[T]) Operator(i int) Operator[T] { return net.layers[i].op }

// SetOperator replaces the operator of linear layer i, for example by one
// converted from a dense layer. It must have the layer's shape. The bias is
// kept, the parameter list is rebuilt (so grads and optimisers made before
// no longer match), and the layer no longer counts as initialised from
// scratch.
func (net *Network[T]) SetOperator(i int, op Operator[T]) error {
	if i < 0 || i >= len(net.layers) || net.layers[i].kind != layerLinear {
		return fmt.Errorf("%w: layer %d is not a linear layer", ErrSpec, i)
	}
	l := &net.layers[i]
	if out, in := op.Shape(); out != l.out || in != l.in {
		return fmt.Errorf("%w: layer %d: operator shape %dx%d, layer %dx%d", ErrSpec, i, out, in, l.out, l.in)
	}
	l.op = op
	l.scratch = false
	net.spec.Layers[i].Structure = structureOf(op)
	net.buildParams()
	return nil
}

// FromScratch reports whether layer i was last initialised by
// InitStructured or InitLayer (rather than converted or loaded).
func (net *Network[T]) FromScratch(i int) bool { return net.layers[i].scratch }

// outSlice returns the forward output of layer l within the buffer outs
// of a batch of n rows.
func (net *Network[T]) outSlice(outs []T, l, n int) []T {
	return outs[n*net.offsets[l] : n*net.offsets[l+1]]
}

// layerForward computes layer l on x (n rows of its input width) into y
// (n rows of its output width). y must not alias x.
func (net *Network[T]) layerForward(l int, y, x []T, n int, ws *Workspace[T]) {
	ly := &net.layers[l]
	y = y[:n*ly.out]
	x = x[:n*ly.in]
	switch ly.kind {
	case layerLinear:
		ly.op.Apply(y, x, n, ws)
		if ly.bias != nil {
			for r := range n {
				row := y[r*ly.out : (r+1)*ly.out]
				for j, b := range ly.bias {
					row[j] += b
				}
			}
		}
	case layerActivation:
		activate(ly.act, y, x)
	case layerNorm:
		w := ly.out
		for r := range n {
			xr, yr := x[r*w:(r+1)*w], y[r*w:(r+1)*w]
			mean, rstd := normStats(xr)
			for j, v := range xr {
				yr[j] = T((float64(v)-mean)*rstd*float64(ly.gain[j]) + float64(ly.shift[j]))
			}
		}
	}
}

// normStats returns the mean of x and 1 / sqrt(var + eps), with the biased
// variance, accumulated in float64.
func normStats[T Float](x []T) (mean, rstd float64) {
	var s float64
	for _, v := range x {
		s += float64(v)
	}
	mean = s / float64(len(x))
	var q float64
	for _, v := range x {
		d := float64(v) - mean
		q += d * d
	}
	return mean, 1 / math.Sqrt(q/float64(len(x))+LayerNormEps)
}

// Forward sets y (n x Outputs) to the network's outputs for x (n x
// Inputs): logits for a classifier, predictions for a regressor.
func (net *Network[T]) Forward(y, x []T, n int, ws *Workspace[T]) {
	checkLen(x, n*net.Inputs())
	checkLen(y, n*net.Outputs())
	net.forwardFrom(0, y, x, n, ws, nil)
}

// forwardFrom runs layers lo, lo+1, ... on x (n rows of layer lo's input
// width) and sets y (n x Outputs) to the last one's output. Each layer
// computes exactly what it computes in Forward on the same rows, so a
// forward that starts from a layer's saved input gives Forward's bits.
// seen, when not nil, is called with every layer l >= lo and its input
// (n rows, valid until the call returns). x must not alias y.
func (net *Network[T]) forwardFrom(lo int, y, x []T, n int, ws *Workspace[T], seen func(l int, in []T)) {
	mark := ws.mark()
	defer ws.release(mark)
	bufs := [2][]T{ws.take(n * net.maxWidth), ws.take(n * net.maxWidth)}
	cur := x
	last := len(net.layers) - 1
	for l := lo; l <= last; l++ {
		if seen != nil {
			seen(l, cur[:n*net.layers[l].in])
		}
		dst := bufs[l%2]
		if l == last {
			dst = y
		}
		net.layerForward(l, dst, cur, n, ws)
		cur = dst
	}
}

// ForwardLayers runs the network on x (n x Inputs) and sets outs[l] (n
// rows of layer l's output width) to the output of every layer l; the
// last is Forward's result. The input of layer l > 0 is outs[l-1].
func (net *Network[T]) ForwardLayers(outs [][]T, x []T, n int, ws *Workspace[T]) {
	checkLen(x, n*net.Inputs())
	if len(outs) != len(net.layers) {
		panic(ErrShape)
	}
	cur := x
	for l := range net.layers {
		checkLen(outs[l], n*net.layers[l].out)
		net.layerForward(l, outs[l], cur, n, ws)
		cur = outs[l]
	}
}

// forwardAll runs every layer and returns the buffer holding all their
// outputs (see outSlice), taken from ws.
func (net *Network[T]) forwardAll(x []T, n int, ws *Workspace[T]) []T {
	outs := ws.take(n * net.offsets[len(net.layers)])
	cur := x
	for l := range net.layers {
		dst := net.outSlice(outs, l, n)
		net.layerForward(l, dst, cur, n, ws)
		cur = dst
	}
	return outs
}

// CheckTargets reports whether target holds n valid targets for the task:
// class indices that are integers in [0, Outputs) for a classifier (n
// values), finite values for a regressor (n x Outputs). Errors wrap
// ErrTarget and name the first bad row.
func (net *Network[T]) CheckTargets(target []T, n int) error {
	if net.spec.Task == TaskClassification {
		if len(target) < n {
			return fmt.Errorf("%w: %d class indices for %d rows", ErrTarget, len(target), n)
		}
		c := net.Outputs()
		for r, v := range target[:n] {
			f := float64(v)
			if f != math.Trunc(f) || f < 0 || f >= float64(c) {
				return fmt.Errorf("%w: row %d: class %v is not an integer in [0, %d)", ErrTarget, r, f, c)
			}
		}
		return nil
	}
	m := n * net.Outputs()
	if len(target) < m {
		return fmt.Errorf("%w: %d regression targets for %d rows of %d outputs", ErrTarget, len(target), n, net.Outputs())
	}
	for i, v := range target[:m] {
		if f := float64(v); math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("%w: row %d: target %v is not finite", ErrTarget, i/net.Outputs(), f)
		}
	}
	return nil
}

// Loss returns the mean loss of the network on x (n x Inputs): softmax
// cross-entropy for a classifier (target: n class indices), mean squared
// error over every output for a regressor (target: n x Outputs, averaged
// over n * Outputs values, as torch.nn.MSELoss). Errors wrap ErrTarget.
func (net *Network[T]) Loss(x, target []T, n int, ws *Workspace[T]) (float64, error) {
	checkLen(x, n*net.Inputs())
	if err := net.CheckTargets(target, n); err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, nil
	}
	mark := ws.mark()
	defer ws.release(mark)
	y := ws.take(n * net.Outputs())
	net.Forward(y, x, n, ws)
	return net.head(nil, y, target, n, n), nil
}

// head returns the loss contribution of n rows of outputs y to the mean
// over total rows, and when d is not nil sets d (n x Outputs) to its
// gradient with respect to y.
func (net *Network[T]) head(d, y, target []T, n, total int) float64 {
	c := net.Outputs()
	if net.spec.Task == TaskClassification {
		return softmaxCrossEntropy(d, y, target, n, c, 1/float64(total))
	}
	return squaredError(d, y, target, n, c, 1/float64(total*c))
}

// softmaxCrossEntropy returns scale * sum over the n rows of z (n x c) of
// -log softmax(z_r)[target_r], computed as logsumexp(z_r) - z_r[t] with the
// row maximum subtracted first, so large logits neither overflow nor lose
// the loss. When d is not nil it sets d = scale (softmax(z) - onehot).
func softmaxCrossEntropy[T Float](d, z, target []T, n, c int, scale float64) float64 {
	var loss float64
	for r := range n {
		zr := z[r*c : (r+1)*c]
		t := int(target[r])
		m := float64(zr[0])
		for _, v := range zr[1:] {
			m = max(m, float64(v))
		}
		var s float64
		for _, v := range zr {
			s += math.Exp(float64(v) - m)
		}
		ls := math.Log(s)
		loss += m + ls - float64(zr[t])
		if d == nil {
			continue
		}
		dr := d[r*c : (r+1)*c]
		for j, v := range zr {
			dr[j] = T(scale * math.Exp(float64(v)-m-ls))
		}
		dr[t] -= T(scale)
	}
	return scale * loss
}

// squaredError returns scale * sum of (y - t)^2 over n x c values, and
// sets d = 2 scale (y - t) when d is not nil.
func squaredError[T Float](d, y, target []T, n, c int, scale float64) float64 {
	var loss float64
	for i, v := range y[:n*c] {
		e := float64(v) - float64(target[i])
		loss += e * e
		if d != nil {
			d[i] = T(2 * scale * e)
		}
	}
	return scale * loss
}

// LossGrad returns the mean loss of the network on x (n x Inputs) and
// target (see Loss) and adds its gradient with respect to every parameter
// into grads (aligned with Params; nil entries are skipped): the sum over
// the batch of the per-example gradients divided by n. Errors wrap
// ErrTarget and leave grads unchanged.
func (net *Network[T]) LossGrad(x, target []T, n int, grads [][]T, ws *Workspace[T]) (float64, error) {
	checkLen(x, n*net.Inputs())
	if grads != nil && len(grads) != len(net.params) {
		panic(ErrShape)
	}
	if err := net.CheckTargets(target, n); err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, nil
	}
	return net.lossGrad(x, target, n, n, grads, ws), nil
}

// lossGrad is LossGrad on n rows of a batch of total rows, without checks:
// it returns those rows' contribution to the mean loss and adds theirs to
// the mean gradient.
func (net *Network[T]) lossGrad(x, target []T, n, total int, grads [][]T, ws *Workspace[T]) float64 {
	mark := ws.mark()
	defer ws.release(mark)
	outs := net.forwardAll(x, n, ws)
	cur := ws.take(n * net.maxWidth)
	other := ws.take(n * net.maxWidth)
	last := len(net.layers) - 1
	loss := net.head(cur[:n*net.Outputs()], net.outSlice(outs, last, n), target, n, total)
	if grads != nil {
		net.backward(nil, x, outs, cur, other, n, grads, nil, ws)
	}
	return loss
}

// Backprop runs the network on x (n x Inputs) and propagates the cotangent
// dy (n x Outputs) on its outputs back: it sets dx (n x Inputs), when not
// nil, to the vector-Jacobian product dy J(x) of each row, and adds the
// parameter gradients of <dy, f(x)> into grads (nil: none). With dy the
// unit vector e_k in every row, dx holds row k of each example's input
// Jacobian; InputJacobians does that for all k at once.
func (net *Network[T]) Backprop(dx, x, dy []T, n int, grads [][]T, ws *Workspace[T]) {
	checkLen(x, n*net.Inputs())
	checkLen(dy, n*net.Outputs())
	if dx != nil {
		checkLen(dx, n*net.Inputs())
	}
	if grads != nil && len(grads) != len(net.params) {
		panic(ErrShape)
	}
	if n == 0 {
		return
	}
	mark := ws.mark()
	defer ws.release(mark)
	outs := net.forwardAll(x, n, ws)
	cur := ws.take(n * net.maxWidth)
	other := ws.take(n * net.maxWidth)
	copy(cur, dy[:n*net.Outputs()])
	net.backward(dx, x, outs, cur, other, n, grads, nil, ws)
}

// InputJacobians sets dst (n x Outputs x Inputs) to the Jacobian of the
// outputs (logits) with respect to the input of each of the n rows of x:
// dst[e][k][j] = d f_k(x_e) / d x_e[j]. It backpropagates the Outputs unit
// cotangents of a group of examples as one batch, each example repeated
// Outputs times, so the cost is about Outputs forward-backward passes per
// example.
func (net *Network[T]) InputJacobians(dst, x []T, n int, ws *Workspace[T]) {
	in, c := net.Inputs(), net.Outputs()
	checkLen(x, n*in)
	checkLen(dst, n*c*in)
	group := max(1, 256/c)
	mark := ws.mark()
	defer ws.release(mark)
	xr := ws.take(min(group, n) * c * in)
	eye := ws.take(min(group, n) * c * c)
	for e := range min(group, n) {
		for k := range c {
			eye[(e*c+k)*c+k] = 1
		}
	}
	for e0 := 0; e0 < n; e0 += group {
		g := min(group, n-e0)
		for e := range g {
			row := x[(e0+e)*in : (e0+e+1)*in]
			for k := range c {
				copy(xr[(e*c+k)*in:(e*c+k+1)*in], row)
			}
		}
		net.Backprop(dst[e0*c*in:(e0+g)*c*in], xr[:g*c*in], eye[:g*c*c], g*c, nil, ws)
	}
}

// EffectiveGradNorms returns, for each linear layer in order, the
// Frobenius norm of the gradient of the mean loss on (x, target) with
// respect to the layer's effective weight W = S + R, whatever its
// structure: ||dY^T X||_F for the layer's input X and output cotangent dY.
// dst is used if it has room. Errors wrap ErrTarget.
func (net *Network[T]) EffectiveGradNorms(dst []float64, x, target []T, n int, ws *Workspace[T]) ([]float64, error) {
	checkLen(x, n*net.Inputs())
	if err := net.CheckTargets(target, n); err != nil {
		return nil, err
	}
	k := 0
	for _, l := range net.layers {
		if l.kind == layerLinear {
			k++
		}
	}
	if cap(dst) < k {
		dst = make([]float64, k)
	}
	dst = dst[:k]
	clear(dst)
	if n == 0 {
		return dst, nil
	}
	mark := ws.mark()
	defer ws.release(mark)
	outs := net.forwardAll(x, n, ws)
	cur := ws.take(n * net.maxWidth)
	other := ws.take(n * net.maxWidth)
	last := len(net.layers) - 1
	net.head(cur[:n*net.Outputs()], net.outSlice(outs, last, n), target, n, n)
	net.backward(nil, x, outs, cur, other, n, nil, dst, ws)
	return dst, nil
}

// backward propagates the cotangent in cur (n x Outputs) back through the
// layers, whose forward outputs are in outs (see outSlice) for the input
// x. It adds parameter gradients into grads (nil: none), sets dx to the
// input gradient when dx is not nil, and when eff is not nil sets eff[k]
// to ||dY^T X||_F for the k-th linear layer. cur and other are scratch of
// n * maxWidth values; cur is overwritten.
func (net *Network[T]) backward(dx, x, outs, cur, other []T, n int, grads [][]T, eff []float64, ws *Workspace[T]) {
	k := len(eff)
	for l := len(net.layers) - 1; l >= 0; l-- {
		ly := &net.layers[l]
		in := x
		if l > 0 {
			in = net.outSlice(outs, l-1, n)
		}
		in = in[:n*ly.in]
		d := cur[:n*ly.out]
		first := l == 0
		switch ly.kind {
		case layerLinear:
			if eff != nil {
				k--
				eff[k] = effectiveGradNorm(d, in, n, ly.out, ly.in, ws)
			}
			var opg [][]T
			if grads != nil {
				opg = grads[ly.p0 : ly.p0+ly.nOp]
				if ly.bias != nil {
					if gb := grads[ly.p0+ly.nOp]; gb != nil {
						for r := range n {
							for j, v := range d[r*ly.out : (r+1)*ly.out] {
								gb[j] += v
							}
						}
					}
				}
			}
			var din []T
			switch {
			case !first:
				din = other[:n*ly.in]
			case dx != nil:
				din = dx[:n*ly.in]
			}
			if din != nil || opg != nil {
				ly.op.Backward(din, in, d, n, opg, ws)
			}
			cur, other = other, cur
		case layerActivation:
			dst := d
			if first {
				if dx == nil {
					continue
				}
				dst = dx[:n*ly.in]
			}
			activateBackward(ly.act, dst, d, in, net.outSlice(outs, l, n))
		case layerNorm:
			var gg, gs []T
			if grads != nil {
				gg, gs = grads[ly.p0], grads[ly.p0+1]
			}
			dst := d
			if first {
				dst = nil
				if dx != nil {
					dst = dx[:n*ly.in]
				}
			}
			normBackward(dst, d, in, ly.gain, gg, gs, n)
		}
	}
}

// normBackward backpropagates d (n x w) through a layer norm of input x
// and gain g: it adds sum_r d * xhat into gg and sum_r d into gs (each when
// not nil) and, when dst is not nil, sets dst = rstd (dh - mean(dh) - xhat
// mean(dh xhat)) with dh = d g. dst may be d itself. The row statistics are
// recomputed from x.
func normBackward[T Float](dst, d, x, g, gg, gs []T, n int) {
	w := len(g)
	fw := float64(w)
	for r := range n {
		xr, dr := x[r*w:(r+1)*w], d[r*w:(r+1)*w]
		mean, rstd := normStats(xr)
		var s1, s2 float64
		for j, v := range dr {
			xh := (float64(xr[j]) - mean) * rstd
			dh := float64(v) * float64(g[j])
			s1 += dh
			s2 += dh * xh
			if gg != nil {
				gg[j] += T(float64(v) * xh)
			}
			if gs != nil {
				gs[j] += v
			}
		}
		if dst == nil {
			continue
		}
		s1 /= fw
		s2 /= fw
		or := dst[r*w : (r+1)*w]
		for j, v := range dr {
			xh := (float64(xr[j]) - mean) * rstd
			or[j] = T(rstd * (float64(v)*float64(g[j]) - s1 - xh*s2))
		}
	}
}

// effectiveGradNorm returns ||dY^T X||_F for dY n x out and X n x in:
// for a batch of fewer than out in / (out + in) rows as
// sqrt(<dY dY^T, X X^T>_F), the same value from two n x n Gram matrices
// (2 n^2 (out + in) flops instead of 2 n out in; the rounding differs),
// else from dY^T X itself.
func effectiveGradNorm[T Float](dy, x []T, n, out, in int, ws *Workspace[T]) float64 {
	mark := ws.mark()
	defer ws.release(mark)
	if n*(out+in) < out*in {
		a, b := ws.take(n*n), ws.take(n*n)
		gemm(false, true, n, n, out, 1, dy, out, dy, out, 0, a, n)
		gemm(false, true, n, n, in, 1, x, in, x, in, 0, b, n)
		return math.Sqrt(max(dot(a, b), 0))
	}
	g := ws.take(out * in)
	gemm(true, false, out, in, n, 1, dy, out, x, in, 0, g, in)
	return math.Sqrt(dot(g, g))
}

// ResidualPenalty returns lambda times the sum of squares of every
// trainable correction parameter (the factors of each decomposed layer's
// R: for a low-rank R = U V^T that is lambda (||U||^2 + ||V||^2), an upper
// bound on 2 lambda ||R||_* that keeps the correction small), and adds its
// gradient 2 lambda p into grads (aligned with Params; nil skips).
func (net *Network[T]) ResidualPenalty(lambda float64, grads [][]T) float64 {
	if lambda == 0 {
		return 0
	}
	var s float64
	for i, p := range net.params {
		if p.Role != RoleCorrection || p.Frozen {
			continue
		}
		s += dot(p.Data, p.Data)
		if grads == nil || grads[i] == nil {
			continue
		}
		g := grads[i]
		for j, v := range p.Data {
			g[j] += T(2 * lambda * float64(v))
		}
	}
	return lambda * s
}

// Retracter is implemented by structured operators that can re-project
// themselves onto their family after an unconstrained update (the
// orthogonal family: the polar retraction). Retract mutates the operator.
type Retracter interface{ Retract() error }

// Retract re-projects the trunk S of every structured layer whose family
// implements Retracter (looking through a Sum to its trunk and through
// padding to the inner operator). Errors name the layer.
func (net *Network[T]) Retract() error {
	for i, l := range net.layers {
		if l.kind != layerLinear {
			continue
		}
		if r := retracterOf(l.op); r != nil {
			if err := r.Retract(); err != nil {
				return fmt.Errorf("layer %d: retraction: %w", i, err)
			}
		}
	}
	return nil
}

// retracterOf returns op's trunk as a Retracter, or nil.
func retracterOf[T Float](op Operator[T]) Retracter {
	if s, ok := op.(*Sum[T]); ok {
		op = s.Trunk()
	}
	if p, ok := op.(interface{ Unpadded() Operator[T] }); ok {
		op = p.Unpadded()
	}
	r, _ := op.(Retracter)
	return r
}

// ConvertNetwork returns a copy of net with parameters of type U (for
// example a float64 copy of a float32 network for metrics).
func ConvertNetwork[U, T Float](net *Network[T]) *Network[U] {
	dst, err := NewNetwork[U](net.Spec())
	if err != nil {
		panic(fmt.Sprintf("compute: rebuilding a network from its own spec: %v", err))
	}
	for i, p := range net.params {
		d := dst.params[i].Data
		for j, v := range p.Data {
			d[j] = U(v)
		}
	}
	for i := range net.layers {
		dst.layers[i].scratch = net.layers[i].scratch
	}
	return dst
}

// CloneNetwork returns a deep copy of net.
func CloneNetwork[T Float](net *Network[T]) *Network[T] { return ConvertNetwork[T](net) }
