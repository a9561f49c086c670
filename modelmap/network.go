package modelmap

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/inputerr"
)

// ErrGeneric is wrapped by the error for a generic checkpoint given to a
// stage that runs models.
var ErrGeneric = errors.New("finetune and validate run MLP models; this checkpoint is generic: fine-tune its exported factors in your own trainer")

// NetworkSpec maps an MLP architecture to a network spec: every layer
// 1:1 (linear, activation, layer norm), a decomposed layer's structure
// decoded strictly from its JSON. A generic architecture, an empty task and
// an undecodable structure are input errors; compute.NewNetwork checks the
// rest.
func NetworkSpec(arch arrowio.Architecture) (compute.NetworkSpec, error) {
	if arch.Kind == arrowio.ArchGeneric {
		return compute.NetworkSpec{}, inputerr.Errorf("%w", ErrGeneric)
	}
	if arch.Task == "" {
		return compute.NetworkSpec{}, inputerr.Errorf("the architecture has no task (want %s or %s)", compute.TaskClassification, compute.TaskRegression)
	}
	spec := compute.NetworkSpec{Task: arch.Task, Inputs: arch.Inputs, Layers: make([]compute.LayerSpec, len(arch.Layers))}
	for i, l := range arch.Layers {
		if l.Weight != "" || l.Layout != "" || len(l.Kernel) > 0 {
			return compute.NetworkSpec{}, inputerr.Errorf("layer %q: a weight of its own name, layout or kernel is a generic checkpoint's: %w", l.Name, ErrGeneric)
		}
		st, err := Structure(l)
		if err != nil {
			return compute.NetworkSpec{}, err
		}
		spec.Layers[i] = compute.LayerSpec{
			Kind: l.Kind, Name: l.Name, In: l.In, Out: l.Out, Bias: l.Bias,
			Activation: l.Activation, Structure: st,
		}
	}
	return spec, nil
}

// Network builds the network a model file describes and copies
// its tensors into it by name: every parameter of the network must have
// its tensor, of the same shape, and every tensor must be a parameter of
// the network (a model file holds nothing else). Sparse indices are
// validated. Problems are input errors naming the tensor. A generic
// checkpoint is refused: finetune and validate run models of the MLP
// family only.
func Network[T compute.Float](m *arrowio.Model) (*compute.Network[T], error) {
	spec, err := NetworkSpec(m.Arch)
	if err != nil {
		return nil, err
	}
	net, err := compute.NewNetwork[T](spec)
	if err != nil {
		return nil, inputerr.Errorf("architecture: %w", err)
	}
	used := make(map[string]bool, len(m.Tensors))
	for _, p := range net.Params() {
		t, ok := m.Tensor(p.Name)
		if !ok {
			return nil, inputerr.Errorf("missing tensor %q (%s of layer %q, shape %v)", p.Name, p.Role, spec.Layers[p.Layer].Name, p.Shape)
		}
		if !slices.EqualFunc(t.Shape, p.Shape, func(a int64, b int) bool { return a == int64(b) }) {
			return nil, inputerr.Errorf("tensor %q: shape %v, the architecture needs %v", p.Name, t.Shape, p.Shape)
		}
		if len(t.Data) != len(p.Data) {
			return nil, inputerr.Errorf("tensor %q: %d values, the architecture needs %d", p.Name, len(t.Data), len(p.Data))
		}
		for i, v := range t.Data {
			p.Data[i] = T(v)
		}
		used[p.Name] = true
	}
	for _, t := range m.Tensors {
		if !used[t.Name] {
			return nil, inputerr.Errorf("tensor %q is not a parameter of the architecture", t.Name)
		}
	}
	for i := range net.NumLayers() {
		if op := net.Operator(i); op != nil {
			if err := validateOperator(op); err != nil {
				return nil, inputerr.Errorf("layer %q: %w", spec.Layers[i].Name, err)
			}
		}
	}
	return net, nil
}

// Model returns the model file of net: arch (the architecture
// net was built from) with each linear layer's structure taken from its
// operator, and one float32 tensor per network parameter in Params order,
// named and with roles as convert writes them: "<layer>.weight" (weight)
// and "<layer>.bias" (bias) of a dense layer, "<layer>.trunk.<p>" (trunk)
// and "<layer>.correction.<p>" (correction) of a decomposed one, and
// "<layer>.weight" (weight) and "<layer>.bias" (bias) for a layer norm's
// gain and shift. arch's other fields (task, standardisation, classes) are
// kept; Meta is nil.
func Model[T compute.Float](net *compute.Network[T], arch arrowio.Architecture) *arrowio.Model {
	spec := net.Spec()
	if len(spec.Layers) != len(arch.Layers) {
		panic(fmt.Sprintf("modelmap: Model: network has %d layers, architecture %d", len(spec.Layers), len(arch.Layers)))
	}
	m := &arrowio.Model{Arch: arch}
	m.Arch.Layers = slices.Clone(arch.Layers)
	for i, l := range spec.Layers {
		if l.Kind != compute.KindLinear {
			continue
		}
		m.Arch.Layers[i].Structure = nil
		if l.Structure != nil {
			js, _ := json.Marshal(l.Structure)
			m.Arch.Layers[i].Structure = js
		}
	}
	for _, p := range net.Params() {
		role := p.Role
		if role == compute.RoleNorm {
			role = compute.RoleWeight
			if strings.HasSuffix(p.Name, ".bias") {
				role = compute.RoleBias
			}
		}
		m.Tensors = append(m.Tensors, tensor(p.Name, role, p.Shape, p.Data))
	}
	return m
}

// FitStandardization returns the per-feature mean and standard deviation
// (population, accumulated in float64) of ds, the statistics finetune fits
// on its training split (compute.FitStandardization). A feature with standard deviation 0 (constant,
// like the border pixels of digits) gets std 1, so it is only centred.
func FitStandardization(ds *arrowio.Dataset) *arrowio.Standardization {
	mean, std := compute.FitStandardization(ds.X, ds.N, ds.D)
	return &arrowio.Standardization{Mean: mean, Std: std}
}

// Standardize returns a copy of ds with the architecture's standardisation
// applied to every feature, x' = (x - mean) / std (a std of 0 counts as 1),
// or a copy of ds unchanged when arch has none. A dataset whose width is
// not arch.Inputs is an input error.
func Standardize(ds *arrowio.Dataset, arch *arrowio.Architecture) (*arrowio.Dataset, error) {
	if arch.Inputs > 0 && ds.D != arch.Inputs {
		return nil, inputerr.Errorf("the data has %d features, the model takes %d", ds.D, arch.Inputs)
	}
	out := &arrowio.Dataset{X: slices.Clone(ds.X), Y: slices.Clone(ds.Y), N: ds.N, D: ds.D, FeatureNames: slices.Clone(ds.FeatureNames)}
	s := arch.Standardization
	if s == nil {
		return out, nil
	}
	if len(s.Mean) != ds.D || len(s.Std) != ds.D {
		return nil, inputerr.Errorf("the standardization has %d entries, the data %d features", len(s.Mean), ds.D)
	}
	compute.Standardize(out.X, out.X, ds.N, ds.D, s.Mean, s.Std)
	return out, nil
}
