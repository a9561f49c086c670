package stages

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/internal/provenance"
)

// Model file formats.
const (
	FormatArrow       = "arrow"
	FormatSafetensors = "safetensors"
)

// Tensor roles, as arrowio defines them, plus the role of the tensors of a
// generic checkpoint that are not 2-D weights.
const (
	RoleWeight     = arrowio.RoleWeight
	RoleBias       = arrowio.RoleBias
	RoleTrunk      = arrowio.RoleTrunk
	RoleCorrection = arrowio.RoleCorrection
	RoleTensor     = "tensor"
)

// loadedModel is a model read from an Arrow model file or a safetensors
// checkpoint.
type loadedModel struct {
	input  provenance.File
	format string
	model  *arrowio.Model
	// safeMeta is the safetensors __metadata__, kept for the dense copy.
	safeMeta map[string]string
	// mapped, when set, holds model's values in a read-only mapping of
	// the file until close.
	mapped *arrowio.MappedModel
}

// close releases the mapping of a model read by mapModel: its tensor
// values must not be used after. A no-op for other models.
func (lm *loadedModel) close() {
	if lm.mapped != nil {
		_ = lm.mapped.Close()
	}
}

var sequentialName = regexp.MustCompile(`^[0-9]+\.(weight|bias)$`)

// modelFormat returns the format of a model path by its extension.
func modelFormat(path string) (string, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".arrow", ".ipc", ".feather":
		return FormatArrow, nil
	case ".safetensors":
		return FormatSafetensors, nil
	}
	return "", inputerr.Errorf("%s: unknown model format (want .arrow or .safetensors)", path)
}

// loadModel reads a model file. A safetensors checkpoint whose tensors are
// all named like nn.Sequential's ("0.weight", "0.bias", "2.weight", ...) is
// an MLP, with activations from its metadata or the activation argument;
// any other safetensors checkpoint is generic.
func loadModel(path, activation string) (*loadedModel, error) {
	return readModelFile(path, activation, false)
}

// mapModel is loadModel for callers that only read the tensor values: an
// Arrow model file's values stay in a read-only memory mapping of the file
// (arrowio.MapModel) until the caller calls close.
func mapModel(path, activation string) (*loadedModel, error) {
	return readModelFile(path, activation, true)
}

func readModelFile(path, activation string, mapped bool) (*loadedModel, error) {
	format, err := modelFormat(path)
	if err != nil {
		return nil, err
	}
	in, err := provenance.HashFile(path)
	if err != nil {
		return nil, err
	}
	lm := &loadedModel{input: in, format: format}
	switch format {
	case FormatArrow:
		var m *arrowio.Model
		if mapped {
			if lm.mapped, err = arrowio.MapModel(path); err == nil {
				m = &lm.mapped.Model
			}
		} else {
			m, err = arrowio.ReadModel(path)
		}
		if err != nil {
			return nil, classify(err)
		}
		if m.Arch.Kind == "" {
			m.Arch.Kind = arrowio.ArchMLP
		}
		lm.model = m
	case FormatSafetensors:
		sf, err := arrowio.ReadSafetensors(path)
		if err != nil {
			return nil, classify(err)
		}
		lm.safeMeta = sf.Metadata
		sequential := len(sf.Tensors) > 0
		for _, t := range sf.Tensors {
			sequential = sequential && sequentialName.MatchString(t.Name)
		}
		if _, ok := sf.Metadata["strata.architecture"]; ok {
			sequential = true
		}
		if sequential {
			if activation == "" {
				activation = "relu"
			}
			m, err := arrowio.ModelFromSequential(sf, activation, path)
			if err != nil {
				return nil, classify(err)
			}
			if m.Arch.Kind == "" {
				m.Arch.Kind = arrowio.ArchMLP
			}
			lm.model = m
		} else {
			m := &arrowio.Model{Arch: arrowio.Architecture{FormatVersion: 1, Kind: arrowio.ArchGeneric}}
			for _, t := range sf.Tensors {
				t.Role = RoleTensor
				if len(t.Shape) == 2 {
					t.Role = RoleWeight
				}
				m.Tensors = append(m.Tensors, t)
			}
			lm.model = m
		}
	}
	return lm, nil
}

// layerOfWeight returns the layer name of a weight tensor: its name
// without a trailing ".weight".
func layerOfWeight(name string) string {
	return strings.TrimSuffix(name, ".weight")
}

// structureOf decodes a layer's structure, or returns nil for a dense one.
func structureOf(l arrowio.Layer) (*compute.Spec, error) {
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

// operatorOf rebuilds a decomposed layer's operator from its tensors.
func operatorOf[T compute.Float](m *arrowio.Model, layer string, spec compute.Spec) (compute.Operator[T], error) {
	op, err := compute.New[T](spec)
	if err != nil {
		return nil, inputerr.Errorf("layer %q: %w", layer, err)
	}
	for _, p := range op.Params() {
		name := layer + "." + p.Name
		t, ok := m.Tensor(name)
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

// operatorTensors returns the tensors of a decomposed layer: every
// parameter named "<layer>.<param>", with role trunk or correction.
func operatorTensors[T compute.Float](layer string, op compute.Operator[T]) []arrowio.Tensor {
	var ts []arrowio.Tensor
	for _, p := range op.Params() {
		role := RoleWeight
		if part, _, ok := compute.SplitParamName(p.Name); ok {
			role = part
		}
		shape := make([]int64, len(p.Shape))
		for i, d := range p.Shape {
			shape[i] = int64(d)
		}
		data := make([]float32, len(p.Data))
		for i, v := range p.Data {
			data[i] = float32(v)
		}
		ts = append(ts, arrowio.Tensor{Name: layer + "." + p.Name, Role: role, Shape: shape, Data: data})
	}
	return ts
}

// denseWeight materialises op as a float32 weight tensor.
func denseWeight[T compute.Float](name string, op compute.Operator[T]) arrowio.Tensor {
	out, in := op.Shape()
	w := make([]float64, out*in)
	op.DenseTo(w)
	data := make([]float32, len(w))
	for i, v := range w {
		data[i] = float32(v)
	}
	return arrowio.Tensor{Name: name, Role: RoleWeight, Shape: []int64{int64(out), int64(in)}, Data: data}
}

// Materialize returns the dense form of a model: every decomposed layer
// replaced by its weight W = S + R (accumulated in float64, stored as
// float32), every other tensor as it is.
func Materialize(m *arrowio.Model) (*arrowio.Model, error) {
	dense := &arrowio.Model{Arch: m.Arch, Meta: m.Meta}
	dense.Arch.Layers = append([]arrowio.Layer(nil), m.Arch.Layers...)
	decomposed := map[string]bool{}
	var weights []arrowio.Tensor
	for i, l := range dense.Arch.Layers {
		spec, err := structureOf(l)
		if err != nil {
			return nil, err
		}
		if spec == nil {
			continue
		}
		op, err := operatorOf[float64](m, l.Name, *spec)
		if err != nil {
			return nil, err
		}
		decomposed[l.Name] = true
		weights = append(weights, denseWeight(l.Name+".weight", op))
		dense.Arch.Layers[i].Structure = nil
	}
	added := map[string]bool{}
	for _, t := range m.Tensors {
		if t.Role == RoleTrunk || t.Role == RoleCorrection {
			layer := layerOfPart(t.Name, t.Role)
			if !decomposed[layer] {
				return nil, inputerr.Errorf("tensor %q has role %s but layer %q is not decomposed in the architecture", t.Name, t.Role, layer)
			}
			if !added[layer] {
				added[layer] = true
				for _, w := range weights {
					if w.Name == layer+".weight" {
						dense.Tensors = append(dense.Tensors, w)
					}
				}
			}
			continue
		}
		dense.Tensors = append(dense.Tensors, t)
	}
	return dense, nil
}

// layerOfPart returns the layer of a trunk or correction tensor named
// "<layer>.<role>.<param>", or "" when the name has no such part.
func layerOfPart(name, role string) string {
	i := strings.LastIndex(name, "."+role+".")
	if i < 0 {
		return ""
	}
	return name[:i]
}
