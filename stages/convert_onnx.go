package stages

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"time"

	"gonum.org/v1/gonum/mat"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/arrowio/onnx"
	"github.com/strata-ml/strata/calib"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/internal/inputfile"
	"github.com/strata-ml/strata/internal/provenance"
	"github.com/strata-ml/strata/lowering"
	"github.com/strata-ml/strata/modelmap"
)

// convertONNX is Convert for an ONNX model: the weights are found through
// the graph (onnx.Model.Linears, after NameNodes names the unnamed nodes),
// the converted ones lowered into model.onnx (lowering.Lower) and made
// dense into model.materialized.onnx (lowering.Materialize).
func convertONNX(ctx context.Context, cfg ConvertConfig, start time.Time) (*ConvertResult, error) {
	log := cfg.Logger
	if cfg.WeightLayout != "" && cfg.WeightLayout != WeightLayoutAuto {
		return nil, inputerr.Fieldf("convert", "{weight_layout} %s: an ONNX graph states each weight's layout (Gemm's transB, MatMul's [in, out])", cfg.WeightLayout)
	}
	m, data, input, err := readONNX(cfg.Model)
	if err != nil {
		return nil, err
	}
	m.NameNodes()
	res := newConvertResult(cfg, input, FormatONNX)
	refs, err := onnxLinears(m, &cfg, res)
	if err != nil {
		return nil, err
	}
	shard, err := parseShard(cfg.Layers, len(refs))
	if err != nil {
		return nil, err
	}
	jobs := make([]layerJob, len(shard))
	linears := make([]onnx.Linear, len(shard))
	for k, idx := range shard {
		l := &refs[idx].linear
		linears[k] = *l
		linears[k].W = nil // the runner reads the graph, not W
		jobs[k] = layerJob{ref: &refs[idx].ref,
			weight: func() (*mat.Dense, rowReader, error) {
				// convertLayer overwrites its matrix; the errors read the
				// decoded values (kept by rows until it has stopped).
				src := l.W
				rows := func(i int, dst []float64) { copy(dst, src[i*l.In:(i+1)*l.In]) }
				return mat.NewDense(l.Out, l.In, slices.Clone(src)), rows, nil
			},
			release: func() { l.W = nil }} // decoded by Linears; no longer needed
	}
	cal, err := cfg.startCalibration(ctx, jobs, func(set calib.Set) (calib.Runner, error) { return calib.NewONNX(m, linears, set) })
	if err != nil {
		return nil, err
	}
	defer cal.close()
	var layers []lowering.Layer
	var factors []factorLayer
	_, err = cfg.convertJobs(ctx, jobs, cal, res, func(k int, layer ConvertedLayer, op *compute.Sum[float64]) {
		l := &refs[shard[k]].linear
		layers = append(layers, lowering.Layer{Name: layer.Name, Node: l.Node, Op: compute.Convert[float32, float64](op)})
		factors = append(factors, factorLayer{layer: storageOf(l, layer.Name), op: op, bias: l.B})
	})
	if err != nil {
		return nil, err
	}
	res.Calibration = cal.record()
	res.finish(log)
	res.Seconds = time.Since(start).Seconds()
	if err := writeONNXOutputs(cfg.Out, res, m, data, layers, factors); err != nil {
		return nil, err
	}
	return res, nil
}

// onnxRef is a linear map of an ONNX graph that convert may decompose.
type onnxRef struct {
	linear onnx.Linear
	ref    linearRef
}

// onnxLinears returns the linear maps of m whose weight initializers the
// globs of cfg select, in graph order, and adds to res the selected
// weights that cannot be converted (res.Skipped, code SkipGraph). A weight
// that cannot be converted and that an Include glob names is bad input,
// naming its node; so is a selection that matches no weight.
func onnxLinears(m *onnx.Model, cfg *ConvertConfig, res *ConvertResult) ([]onnxRef, error) {
	linears, skipped := m.Linears()
	for _, l := range linears {
		if l.DType != onnx.Float {
			skipped = append(skipped, onnx.Skipped{Node: l.Node, Op: l.Op, Weight: l.Weight,
				Reason: fmt.Sprintf("the weight %q is %s: only FLOAT weights are written back into the graph", l.Weight, l.DType)})
		}
	}
	for _, s := range skipped {
		if !cfg.selects(s.Weight) {
			continue
		}
		if cfg.asked(s.Weight) {
			return nil, inputerr.Fieldf("convert", "%s: node %q (%s): weight %q, which {include} names, cannot be converted: %s",
				cfg.Model, s.Node, s.Op, s.Weight, s.Reason)
		}
		res.Skipped = append(res.Skipped, SkippedWeight{Tensor: s.Weight, Node: s.Node, Op: s.Op, Code: SkipGraph, Reason: s.Reason})
	}
	names := map[string]bool{}
	var refs []onnxRef
	for _, l := range linears {
		if !cfg.selects(l.Weight) || l.DType != onnx.Float {
			continue
		}
		name := lowering.DefaultName(l)
		if names[name] {
			name = l.Node // node names are unique (NameNodes)
		}
		names[name] = true
		r := linearRef{tensor: l.Weight, layer: name, node: l.Node, op: l.Op, out: l.Out, in: l.In,
			kernel: l.Kernel, pointwise: l.Pointwise}
		if l.Layout == onnx.InOut {
			r.layout = arrowio.LayoutInOut
		}
		refs = append(refs, onnxRef{linear: l, ref: r})
		res.Selected = append(res.Selected, l.Weight)
	}
	if len(refs) == 0 && len(res.Skipped) == 0 {
		return nil, cfg.noneSelected()
	}
	return refs, nil
}

// readONNX reads, decodes and validates the ONNX model at path, returning
// it with the file's bytes and hash. Problems are bad input naming the
// file and the node, tensor or field at fault.
func readONNX(path string) (*onnx.Model, []byte, provenance.File, error) {
	data, err := inputfile.ReadFile(path, onnx.DefaultMaxBytes, "ONNX model")
	if err != nil {
		return nil, nil, provenance.File{}, err
	}
	m, err := onnx.Decode(data, path)
	if err != nil {
		return nil, nil, provenance.File{}, classify(err)
	}
	return m, data, provenance.Bytes(path, data), nil
}

// storageOf is the factors model's layer of the weight of l: its name,
// W's shape, and how the graph stores the weight.
func storageOf(l *onnx.Linear, name string) arrowio.Layer {
	s := arrowio.Layer{Name: name, Kind: compute.KindLinear, Out: l.Out, In: l.In, Bias: l.Bias != "", Kernel: l.Kernel}
	if l.Weight != name+".weight" {
		s.Weight = l.Weight
	}
	if l.Layout == onnx.InOut {
		s.Layout = arrowio.LayoutInOut
	}
	return s
}

// factorLayer is one converted layer of an ONNX model in its factors
// model: the layer (name, shape, weight storage), its operator and its
// bias (nil when the node has none).
type factorLayer struct {
	layer arrowio.Layer
	op    compute.Operator[float64]
	bias  []float64
}

// onnxFactors returns the factors model of the converted layers of an
// ONNX model (model.arrow): a generic architecture listing each layer
// with its structure and weight storage, and per layer its factors
// "<layer>.trunk.<P>" and "<layer>.correction.<P>" and its bias
// "<layer>.bias" as float32, in the layers' order. W is as onnx.Linear
// reads it: a Gemm's alpha and beta are folded into the factors and the
// bias.
func onnxFactors(layers []factorLayer) *arrowio.Model {
	m := &arrowio.Model{Arch: arrowio.Architecture{FormatVersion: 1, Kind: arrowio.ArchGeneric}}
	for _, fl := range layers {
		m.Tensors = append(m.Tensors, modelmap.OperatorTensors(fl.layer.Name, fl.op)...)
		if fl.bias != nil {
			b := arrowio.Tensor{Name: fl.layer.Name + ".bias", Role: compute.RoleBias, Shape: []int64{int64(len(fl.bias))}, Data: make([]float32, len(fl.bias))}
			for i, v := range fl.bias {
				b.Data[i] = float32(v)
			}
			m.Tensors = append(m.Tensors, b)
		}
		modelmap.SetStructure(m, fl.layer, fl.op.Spec())
		m.Arch.Layers[len(m.Arch.Layers)-1].Bias = fl.bias != nil
	}
	return m
}

// writeONNXOutputs lowers layers into m and writes the outputs of an ONNX
// convert (or merge) into dir: model.onnx, the input's bytes as
// model.input.onnx, model.arrow (the factors of factors), the
// materialised model and the report.
func writeONNXOutputs(dir string, res *ConvertResult, m *onnx.Model, input []byte, layers []lowering.Layer, factors []factorLayer) error {
	structured, err := lowering.Lower(m, layers)
	if err != nil {
		return lowerErr(res.Input.Path, err)
	}
	dense, err := lowering.Materialize(m, layers)
	if err != nil {
		return lowerErr(res.Input.Path, err)
	}
	err = writeOutputs(dir, func(staging string) error {
		if err := structured.Write(filepath.Join(staging, res.Outputs.Model)); err != nil {
			return err
		}
		err := arrowio.WriteFileAtomic(filepath.Join(staging, res.Outputs.Input), func(w io.Writer) error {
			_, err := w.Write(input)
			return err
		})
		if err != nil {
			return err
		}
		if err := arrowio.WriteModel(filepath.Join(staging, res.Outputs.Factors), onnxFactors(factors)); err != nil {
			return err
		}
		if err := dense.Write(filepath.Join(staging, res.Outputs.Materialized)); err != nil {
			return err
		}
		return writeJSON(filepath.Join(staging, res.Outputs.Report), res)
	})
	if err != nil {
		return fmt.Errorf("write %s: %w", dir, err)
	}
	return nil
}

// lowerErr marks the errors of lowering that come from the model (an op
// that forbids raising the opset, a weight lowering does not write) as
// bad input, naming the file.
func lowerErr(file string, err error) error {
	if errors.Is(err, lowering.ErrUnsupported) {
		return inputerr.Errorf("%s: %w", file, err)
	}
	return fmt.Errorf("%s: %w", file, err)
}
