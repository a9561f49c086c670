// Package modelmap is the one place where model files meet the engine: it
// maps an arrowio.Model (its architecture and named tensors) to compute's
// operators and networks and back, materialises decomposed layers, and
// applies a model's recorded input standardisation to a dataset. Problems
// with what a file holds are bad input (inputerr.ErrInput), naming the
// layer or tensor.
package modelmap

import (
	"encoding/json"
	"strings"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/inputerr"
)

// Structure decodes a layer's structure, strictly (an unknown key is bad
// input), or returns nil for a dense layer.
func Structure(l arrowio.Layer) (*compute.Spec, error) {
	if len(l.Structure) == 0 || string(l.Structure) == "null" {
		return nil, nil
	}
	var s compute.Spec
	dec := json.NewDecoder(strings.NewReader(string(l.Structure)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, inputerr.Errorf("layer %q: structure: %v", l.Name, err)
	}
	return &s, nil
}

// Operator rebuilds a decomposed layer's operator of the given structure
// from its tensors "<layer>.<param>". A missing tensor, a tensor of the
// wrong length and invalid sparse indices are bad input.
func Operator[T compute.Float](m *arrowio.Model, layer string, spec compute.Spec) (compute.Operator[T], error) {
	return operator[T](m.Tensor, layer, spec)
}

// operator is Operator with the model's tensors looked up by tensor: a
// caller rebuilding every layer passes an index, not the model's linear
// search (quadratic in the tensors of a large checkpoint).
func operator[T compute.Float](tensor func(name string) (*arrowio.Tensor, bool), layer string, spec compute.Spec) (compute.Operator[T], error) {
	op, err := compute.New[T](spec)
	if err != nil {
		return nil, inputerr.Errorf("layer %q: %w", layer, err)
	}
	for _, p := range op.Params() {
		name := layer + "." + p.Name
		t, ok := tensor(name)
		if !ok {
			return nil, inputerr.Errorf("layer %q: missing tensor %q of its %s structure", layer, name, spec.Family)
		}
		if len(t.Data) != len(p.Data) {
			return nil, inputerr.Errorf("tensor %q: %d values, the %s structure needs %d", name, len(t.Data), spec.Family, len(p.Data))
		}
		for i, v := range t.Data {
			p.Data[i] = T(v)
		}
	}
	if err := validateOperator(op); err != nil {
		return nil, inputerr.Errorf("layer %q: %w", layer, err)
	}
	return op, nil
}

// validateOperator checks state read from a file that the operator cannot
// check itself (sparse indices).
func validateOperator[T compute.Float](op compute.Operator[T]) error {
	type validator interface{ Validate() error }
	if s, ok := op.(*compute.Sum[T]); ok {
		if err := validateOperator(s.Trunk()); err != nil {
			return err
		}
		return validateOperator(s.Correction())
	}
	if v, ok := op.(validator); ok {
		return v.Validate()
	}
	return nil
}

// OperatorTensors returns the tensors of a decomposed layer: every
// parameter of op named "<layer>.<param>", with role trunk or correction,
// as float32.
func OperatorTensors[T compute.Float](layer string, op compute.Operator[T]) []arrowio.Tensor {
	var ts []arrowio.Tensor
	for _, p := range op.Params() {
		role := compute.RoleWeight
		if part, _, ok := compute.SplitParamName(p.Name); ok {
			role = part
		}
		ts = append(ts, tensor(layer+"."+p.Name, role, p.Shape, p.Data))
	}
	return ts
}

// denseWeight materialises op, the operator of layer l, as the float32
// weight tensor l stores: named l.WeightName(), [out, in] (or l's kernel
// shape, the same values), or transposed to [in, out] for LayoutInOut.
func denseWeight[T compute.Float](l *arrowio.Layer, op compute.Operator[T]) arrowio.Tensor {
	out, in := op.Shape()
	w := make([]float64, out*in)
	op.DenseTo(w)
	if l.Layout == arrowio.LayoutInOut {
		w = transpose(w, out, in)
	}
	t := tensor(l.WeightName(), compute.RoleWeight, nil, w)
	t.Shape = l.WeightShape()
	return t
}

// transpose returns the in x out transpose of the row-major out x in w.
func transpose(w []float64, out, in int) []float64 {
	t := make([]float64, len(w))
	for r := range out {
		for c := range in {
			t[c*out+r] = w[r*in+c]
		}
	}
	return t
}

// tensor stores values of the engine (float32 or float64) as a model
// file's float32 tensor.
func tensor[T compute.Float](name string, role compute.Role, shape []int, data []T) arrowio.Tensor {
	t := arrowio.Tensor{Name: name, Role: role, Shape: make([]int64, len(shape)), Data: make([]float32, len(data))}
	for i, d := range shape {
		t.Shape[i] = int64(d)
	}
	for i, v := range data {
		t.Data[i] = float32(v)
	}
	return t
}

// Materialize returns the dense form of a model: every decomposed layer
// replaced by its weight W = S + R (accumulated in float64, stored as
// float32) under the layer's weight name, in its layout and shape (see
// arrowio.Layer), placed where the layer's first factor was; every other
// tensor, raw ones included, as it is.
func Materialize(m *arrowio.Model) (*arrowio.Model, error) {
	dense := &arrowio.Model{Arch: m.Arch, Meta: m.Meta}
	dense.Arch.Layers = append([]arrowio.Layer(nil), m.Arch.Layers...)
	index := make(map[string]*arrowio.Tensor, len(m.Tensors))
	for i := range m.Tensors {
		index[m.Tensors[i].Name] = &m.Tensors[i]
	}
	tensor := func(name string) (*arrowio.Tensor, bool) { t, ok := index[name]; return t, ok }
	// The dense weight of each decomposed layer, by layer name.
	weights := map[string]arrowio.Tensor{}
	for i, l := range dense.Arch.Layers {
		spec, err := Structure(l)
		if err != nil {
			return nil, err
		}
		if spec == nil {
			continue
		}
		op, err := operator[float64](tensor, l.Name, *spec)
		if err != nil {
			return nil, err
		}
		weights[l.Name] = denseWeight(&l, op)
		dense.Arch.Layers[i].Structure = nil
	}
	added := map[string]bool{}
	for _, t := range m.Tensors {
		if t.Role == compute.RoleTrunk || t.Role == compute.RoleCorrection {
			layer := PartLayer(t.Name, t.Role)
			w, ok := weights[layer]
			if !ok {
				return nil, inputerr.Errorf("tensor %q has role %s but layer %q is not decomposed in the architecture", t.Name, t.Role, layer)
			}
			if !added[layer] {
				added[layer] = true
				dense.Tensors = append(dense.Tensors, w)
			}
			continue
		}
		dense.Tensors = append(dense.Tensors, t)
	}
	return dense, nil
}

// PartLayer returns the layer of a trunk or correction tensor named
// "<layer>.<role>.<param>", or "" when the name has no such part.
func PartLayer(name string, role compute.Role) string {
	i := strings.LastIndex(name, "."+string(role)+".")
	if i < 0 {
		return ""
	}
	return name[:i]
}

// SetStructure records a converted weight's structure in the architecture:
// on the layer of l's name when the architecture has one (an MLP's), else
// on a new linear layer entry l (a generic checkpoint's, with its weight's
// name, layout and kernel, which make the model format version 2).
func SetStructure(m *arrowio.Model, l arrowio.Layer, spec compute.Spec) {
	js, _ := json.Marshal(spec)
	for i := range m.Arch.Layers {
		if m.Arch.Layers[i].Name == l.Name {
			m.Arch.Layers[i].Structure = js
			return
		}
	}
	l.Kind, l.Structure = compute.KindLinear, js
	if l.Weight != "" || l.Layout != "" || len(l.Kernel) > 0 {
		m.Arch.FormatVersion = max(m.Arch.FormatVersion, 2)
	}
	m.Arch.Layers = append(m.Arch.Layers, l)
}
