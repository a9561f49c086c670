package stages

import (
	"context"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/provenance"
	"github.com/strata-ml/strata/modelmap"
)

// InspectTensor describes one tensor of a model file.
type InspectTensor struct {
	Name  string       `json:"name"`
	Role  compute.Role `json:"role"`
	Shape []int64      `json:"shape"`
	Numel int64        `json:"numel"`
	// DType is the element type of a tensor that is not float32: a raw
	// tensor's safetensors dtype, an ONNX initializer's element type.
	DType string `json:"dtype,omitempty"`
}

// InspectLayer describes one layer of a model's architecture.
type InspectLayer struct {
	Name       string             `json:"name"`
	Kind       compute.LayerKind  `json:"kind"`
	In         int                `json:"in,omitempty"`
	Out        int                `json:"out,omitempty"`
	Activation compute.Activation `json:"activation,omitempty"`
	Structure  *compute.Spec      `json:"structure,omitempty"`
	Params     int                `json:"params,omitempty"`
}

// InspectResult is what `strata inspect` prints.
type InspectResult struct {
	Input    provenance.File       `json:"input"`
	Format   string                `json:"format"`
	Kind     string                `json:"kind"`
	Task     compute.Task          `json:"task,omitempty"`
	Inputs   int                   `json:"inputs,omitempty"`
	Layers   []InspectLayer        `json:"layers"`
	Tensors  []InspectTensor       `json:"tensors"`
	Params   int64                 `json:"params"`
	Metadata map[string]string     `json:"metadata,omitempty"`
	Arch     *arrowio.Architecture `json:"architecture,omitempty"`
	// ONNX describes an ONNX model (Format onnx; Kind "onnx", or
	// "structured onnx" for a model convert wrote).
	ONNX *InspectONNX `json:"onnx,omitempty"`
}

// Inspect describes a model file (Arrow, safetensors or ONNX): its
// architecture, its tensors and parameter counts; for an ONNX model also
// its opsets, its linear maps with their orientation, the weights convert
// would keep dense with the reason, and a structured model's recorded
// structure.
func Inspect(ctx context.Context, path string, activation compute.Activation) (*InspectResult, error) {
	if format, err := modelFormat(path); err == nil && format == FormatONNX {
		return inspectONNX(path)
	}
	lm, err := mapModel(ctx, path, activation)
	if err != nil {
		return nil, err
	}
	defer lm.close()
	m := lm.model
	res := &InspectResult{Input: lm.input, Format: lm.format, Kind: m.Arch.Kind, Task: m.Arch.Task, Inputs: m.Arch.Inputs, Metadata: lm.safeMeta, Arch: &m.Arch}
	for _, l := range m.Arch.Layers {
		il := InspectLayer{Name: l.Name, Kind: l.Kind, In: l.In, Out: l.Out, Activation: l.Activation}
		spec, err := modelmap.Structure(l)
		if err != nil {
			return nil, err
		}
		il.Structure = spec
		if spec != nil {
			op, err := modelmap.Operator[float32](m, l.Name, *spec)
			if err != nil {
				return nil, err
			}
			il.Params = compute.NumParams(op)
		} else if l.Kind == "linear" {
			il.Params = l.In * l.Out
		}
		res.Layers = append(res.Layers, il)
	}
	for _, t := range m.Tensors {
		n := int64(1)
		for _, d := range t.Shape {
			n *= d
		}
		res.Tensors = append(res.Tensors, InspectTensor{Name: t.Name, Role: t.Role, Shape: t.Shape, Numel: n, DType: t.DType})
		res.Params += n
	}
	return res, nil
}
