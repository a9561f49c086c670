package stages

import (
	"context"
	"fmt"
	"slices"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/arrowio/onnx"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/lowering"
	"github.com/strata-ml/strata/modelmap"
)

// ExportConfig configures Export.
type ExportConfig struct {
	// Model is a model file, decomposed or dense: Arrow, safetensors, or a
	// structured ONNX model (the model.onnx convert writes).
	Model string `json:"model"`
	// Format is "safetensors", "arrow" or "onnx" (an ONNX Model only).
	Format string `json:"format"`
	// Out is the file to write.
	Out string `json:"out"`
	// Activation is for safetensors nn.Sequential input without metadata.
	Activation compute.Activation `json:"activation,omitempty"`
	// Factors writes the decomposed model's tensors as they are (trunk and
	// correction factors, biases, undecomposed weights) instead of
	// materialising it; see exportFactors. For a structured ONNX model:
	// its layers' factors and biases, the content of convert's model.arrow.
	Factors bool `json:"factors,omitempty"`
}

// DefaultExportConfig returns the defaults the CLI and the plugin start
// from: a safetensors file.
func DefaultExportConfig() ExportConfig {
	return ExportConfig{Format: FormatSafetensors}
}

// Export materialises a model (every decomposed layer as W = S + R) and
// writes it as one dense file in the requested format, atomically: an
// Arrow or safetensors model as Arrow or safetensors, a structured ONNX
// model as ONNX (lowering.Densify: each S + R subgraph back to one dense
// node). With Factors it re-emits the factors instead (see ExportConfig).
func Export(ctx context.Context, cfg ExportConfig) error {
	if cfg.Model == "" || cfg.Out == "" {
		return inputerr.Fieldf("export", "{model} and {out} are required")
	}
	if !slices.Contains([]string{FormatSafetensors, FormatArrow, FormatONNX}, cfg.Format) {
		return inputerr.Fieldf("export", "{format} %q: want safetensors, arrow or onnx", cfg.Format)
	}
	format, err := modelFormat(cfg.Model)
	if err != nil {
		return err
	}
	if format == FormatONNX {
		return exportONNX(ctx, cfg)
	}
	if cfg.Format == FormatONNX {
		return inputerr.Fieldf("export", "{format} onnx materialises a structured ONNX model (the model.onnx strata convert writes); %s is a %s model", cfg.Model, format)
	}
	if err := arrowio.CheckTarget(cfg.Out); err != nil {
		return inputerr.Fieldf("export", "{out} %w", err)
	}
	lm, err := mapModel(ctx, cfg.Model, cfg.Activation)
	if err != nil {
		return err
	}
	defer lm.close()
	if cfg.Factors {
		return exportFactors(ctx, cfg, lm.model)
	}
	dense, err := modelmap.Materialize(lm.model)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if cfg.Format == FormatArrow {
		err = arrowio.WriteModel(cfg.Out, dense)
	} else {
		lm.format = FormatSafetensors
		err = writeDense(cfg.Out, lm, dense)
	}
	if err != nil {
		return fmt.Errorf("export: write %s: %w", cfg.Out, err)
	}
	return nil
}

// exportONNX is Export for a structured ONNX model: Densify's dense twin
// (--format onnx), or with Factors its layers' factors and biases.
func exportONNX(ctx context.Context, cfg ExportConfig) error {
	m, _, _, err := readONNX(cfg.Model)
	if err != nil {
		return err
	}
	if !lowering.HasStructure(m) {
		return inputerr.Errorf("export: %s has no %s record: not a structured model (strata convert writes one); nothing to materialise or re-emit", cfg.Model, lowering.MetadataKey)
	}
	if cfg.Factors {
		if cfg.Format == FormatONNX {
			return inputerr.Fieldf("export", "{factors} writes {format} safetensors or arrow")
		}
		factors, err := structuredFactors(m)
		if err != nil {
			return err
		}
		return exportFactors(ctx, cfg, factors)
	}
	if cfg.Format != FormatONNX {
		return inputerr.Fieldf("export", "%s is an ONNX model: {format} onnx materialises it, {factors} writes its factors as %s", cfg.Model, cfg.Format)
	}
	dense, err := lowering.Densify(m)
	if err != nil {
		return classify(fmt.Errorf("export: %w", err))
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := dense.Write(cfg.Out); err != nil {
		return fmt.Errorf("export: write %s: %w", cfg.Out, err)
	}
	return nil
}

// structuredFactors returns the factors model (onnxFactors) of the
// structured ONNX model m, from its structure record and initializers
// alone: what convert wrote as model.arrow beside it.
func structuredFactors(m *onnx.Model) (*arrowio.Model, error) {
	st, err := lowering.ReadStructure(m)
	if err != nil {
		return nil, classify(err)
	}
	ops, err := lowering.Operators(m)
	if err != nil {
		return nil, classify(err)
	}
	var layers []factorLayer
	for i, rec := range st.Layers {
		fl := factorLayer{op: compute.Convert[float64](ops[i].Op), layer: arrowio.Layer{Name: rec.Name, Kind: compute.KindLinear,
			Out: rec.Spec.Out, In: rec.Spec.In, Kernel: rec.Kernel}}
		if rec.Weight != rec.Name+".weight" {
			fl.layer.Weight = rec.Weight
		}
		if rec.Layout == onnx.InOut.String() {
			fl.layer.Layout = arrowio.LayoutInOut
		}
		bias := rec.Bias
		if rec.Op == "MatMul" {
			bias = addedBias(m, rec.Node, rec.Spec.Out)
		}
		if bias != "" {
			if fl.bias, err = initializerValues(m, bias); err != nil {
				return nil, err
			}
			if len(fl.bias) == 1 && rec.Spec.Out > 1 { // a Gemm's C broadcast to every output
				fl.bias = slices.Repeat(fl.bias, rec.Spec.Out)
			}
			fl.layer.Bias = true
		}
		layers = append(layers, fl)
	}
	return onnxFactors(layers), nil
}

// addedBias returns the bias initializer of a MatMul node: the [out]
// (or [1, ..., out]) FLOAT initializer that the one Add node reading the
// node's output adds, or "" (onnx.Model.Linears reads it the same way).
func addedBias(m *onnx.Model, node string, out int) string {
	g := m.Proto.GetGraph()
	var y string
	for _, n := range g.GetNode() {
		if n.GetName() == node && len(n.Output) == 1 {
			y = n.Output[0]
		}
	}
	var readers []int
	for i, n := range g.GetNode() {
		if slices.Contains(n.Input, y) {
			readers = append(readers, i)
		}
	}
	if y == "" || len(readers) != 1 {
		return ""
	}
	add := g.GetNode()[readers[0]]
	if add.GetOpType() != "Add" || len(add.Input) != 2 {
		return ""
	}
	b := add.Input[0]
	if b == y {
		b = add.Input[1]
	}
	for _, t := range g.GetInitializer() {
		if t.GetName() != b || !onnx.IsFloat(t.GetDataType()) || len(t.Dims) == 0 || t.Dims[len(t.Dims)-1] != int64(out) {
			continue
		}
		n := int64(1)
		for _, d := range t.Dims {
			n *= d
		}
		if n == int64(out) {
			return b
		}
	}
	return ""
}

// initializerValues returns the float values of the initializer name.
func initializerValues(m *onnx.Model, name string) ([]float64, error) {
	for _, t := range m.Proto.GetGraph().GetInitializer() {
		if t.GetName() == name {
			v, err := onnx.Floats(t)
			if err != nil {
				return nil, inputerr.Errorf("%s: %w", m.File, err)
			}
			return v, nil
		}
	}
	return nil, inputerr.Errorf("%s: no initializer %q", m.File, name)
}
