package stages

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/inputerr"
)

// This file is the bridge between model files (arrowio.Model) and the
// training engine (compute.Network), shared by finetune and validate, and
// the data preparation they share: standardisation and seeded splits.

// errGeneric is the message for a generic checkpoint given to a stage that
// runs models.
const errGeneric = "finetune and validate run MLP models; this checkpoint is generic: fine-tune its exported factors in your own trainer"

// networkSpecOf maps an MLP architecture to a network spec: every layer
// 1:1 (linear, activation, layer norm), a decomposed layer's structure
// decoded strictly from its JSON. A generic architecture, an empty task and
// an undecodable structure are input errors; compute.NewNetwork checks the
// rest.
func networkSpecOf(arch arrowio.Architecture) (compute.NetworkSpec, error) {
	if arch.Kind == arrowio.ArchGeneric {
		return compute.NetworkSpec{}, inputerr.Errorf("%s", errGeneric)
	}
	if arch.Task == "" {
		return compute.NetworkSpec{}, inputerr.Errorf("the architecture has no task (want %s or %s)", arrowio.TaskClassification, arrowio.TaskRegression)
	}
	spec := compute.NetworkSpec{Task: arch.Task, Inputs: arch.Inputs, Layers: make([]compute.LayerSpec, len(arch.Layers))}
	for i, l := range arch.Layers {
		st, err := structureOf(l)
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

// NetworkFromModel builds the network a model file describes and copies
// its tensors into it by name: every parameter of the network must have
// its tensor, of the same shape, and every tensor must be a parameter of
// the network (a model file holds nothing else). Sparse indices are
// validated. Problems are input errors naming the tensor. A generic
// checkpoint is refused: finetune and validate run models of the MLP
// family only.
func NetworkFromModel[T compute.Float](m *arrowio.Model) (*compute.Network[T], error) {
	spec, err := networkSpecOf(m.Arch)
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
		if !sameShape(t.Shape, p.Shape) {
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

func sameShape(a []int64, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != int64(b[i]) {
			return false
		}
	}
	return true
}

// ModelFromNetwork returns the model file of net: arch (the architecture
// net was built from) with each linear layer's structure taken from its
// operator, and one float32 tensor per network parameter in Params order,
// named and with roles as convert writes them: "<layer>.weight" (weight)
// and "<layer>.bias" (bias) of a dense layer, "<layer>.trunk.<p>" (trunk)
// and "<layer>.correction.<p>" (correction) of a decomposed one, and
// "<layer>.weight" (weight) and "<layer>.bias" (bias) for a layer norm's
// gain and shift. arch's other fields (task, standardisation, classes) are
// kept; Meta is nil.
func ModelFromNetwork[T compute.Float](net *compute.Network[T], arch arrowio.Architecture) *arrowio.Model {
	spec := net.Spec()
	if len(spec.Layers) != len(arch.Layers) {
		panic(fmt.Sprintf("stages: ModelFromNetwork: network has %d layers, architecture %d", len(spec.Layers), len(arch.Layers)))
	}
	m := &arrowio.Model{Arch: arch}
	m.Arch.Layers = slices.Clone(arch.Layers)
	for i, l := range spec.Layers {
		if l.Kind != compute.KindLinear {
			continue
		}
		m.Arch.Layers[i].Structure = nil
		if l.Structure != nil {
			js, _ := jsonMarshal(l.Structure)
			m.Arch.Layers[i].Structure = js
		}
	}
	for _, p := range net.Params() {
		role := p.Role
		if role == compute.RoleNorm {
			role = RoleWeight
			if strings.HasSuffix(p.Name, ".bias") {
				role = RoleBias
			}
		}
		shape := make([]int64, len(p.Shape))
		for i, d := range p.Shape {
			shape[i] = int64(d)
		}
		data := make([]float32, len(p.Data))
		for i, v := range p.Data {
			data[i] = float32(v)
		}
		m.Tensors = append(m.Tensors, arrowio.Tensor{Name: p.Name, Role: role, Shape: shape, Data: data})
	}
	return m
}

// FitStandardization returns the per-feature mean and standard deviation
// (population, accumulated in float64) of ds, the statistics finetune fits
// on its training split. A feature with standard deviation 0 (constant,
// like the border pixels of digits) gets std 1, so it is only centred.
func FitStandardization(ds *arrowio.Dataset) *arrowio.Standardization {
	s := &arrowio.Standardization{Mean: make([]float64, ds.D), Std: make([]float64, ds.D)}
	for i := range ds.N {
		for j, v := range ds.X[i*ds.D : (i+1)*ds.D] {
			s.Mean[j] += v
		}
	}
	for j := range s.Mean {
		s.Mean[j] /= float64(ds.N)
	}
	for i := range ds.N {
		for j, v := range ds.X[i*ds.D : (i+1)*ds.D] {
			d := v - s.Mean[j]
			s.Std[j] += d * d
		}
	}
	for j := range s.Std {
		s.Std[j] = math.Sqrt(s.Std[j] / float64(ds.N))
		if !(s.Std[j] > 0) || math.IsInf(s.Std[j], 0) {
			s.Std[j] = 1
		}
	}
	return s
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
	for i := range ds.N {
		row := out.X[i*ds.D : (i+1)*ds.D]
		for j, v := range row {
			sd := s.Std[j]
			if sd == 0 {
				sd = 1
			}
			row[j] = (v - s.Mean[j]) / sd
		}
	}
	return out, nil
}

// Split divides ds into a training part and a held-out part of
// round(fraction * N) rows (at least one row each), chosen by a seeded
// shuffle: the same seed gives the same split on any machine. Both parts
// keep the rows in their original order. fraction must be in (0, 1) and
// ds must have at least two rows; otherwise the error is an input error.
func Split(ds *arrowio.Dataset, fraction float64, seed uint64) (train, held *arrowio.Dataset, err error) {
	if !(fraction > 0 && fraction < 1) {
		return nil, nil, inputerr.Errorf("split fraction %v: want a value in (0, 1)", fraction)
	}
	if ds.N < 2 {
		return nil, nil, inputerr.Errorf("cannot split %d rows into two non-empty parts", ds.N)
	}
	nHeld := min(max(int(math.Round(fraction*float64(ds.N))), 1), ds.N-1)
	perm := permutation(ds.N, seed, splitStream)
	isHeld := make([]bool, ds.N)
	for _, r := range perm[:nHeld] {
		isHeld[r] = true
	}
	train, held = subset(ds, isHeld, false), subset(ds, isHeld, true)
	return train, held, nil
}

// subset returns the rows i of ds with pick[i] == want, in order.
func subset(ds *arrowio.Dataset, pick []bool, want bool) *arrowio.Dataset {
	out := &arrowio.Dataset{D: ds.D, FeatureNames: slices.Clone(ds.FeatureNames)}
	for i := range ds.N {
		if pick[i] == want {
			out.X = append(out.X, ds.X[i*ds.D:(i+1)*ds.D]...)
			out.Y = append(out.Y, ds.Y[i])
			out.N++
		}
	}
	return out
}

// Random streams: each use of the seed draws from its own PCG stream, so
// that changing one (the split) never shifts another (the shuffles).
const (
	splitStream   uint64 = 0x5EED_5711
	shuffleStream uint64 = 0x5EED_5A0F
	initStream    uint64 = 0x5EED_1417
)

// permutation returns a permutation of [0, n) drawn from the PCG stream
// (seed, stream) by a Fisher-Yates shuffle with a fixed bounded-integer
// rule, so it does not depend on math/rand's helper algorithms.
func permutation(n int, seed, stream uint64) []int {
	rng := rand.NewPCG(seed, stream)
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	for i := n - 1; i > 0; i-- {
		// Lemire's multiply-shift maps 32 random bits to [0, i].
		j := int((rng.Uint64() >> 32) * uint64(i+1) >> 32)
		p[i], p[j] = p[j], p[i]
	}
	return p
}
