package stages

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	"gonum.org/v1/gonum/mat"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/calib"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/modelmap"
)

// convertCheckpoint is Convert for an Arrow model file or a safetensors
// checkpoint.
func convertCheckpoint(ctx context.Context, cfg ConvertConfig, start time.Time) (*ConvertResult, error) {
	log := cfg.Logger
	lm, err := mapModel(ctx, cfg.Model, cfg.Activation)
	if err != nil {
		return nil, err
	}
	// A layer abandoned on cancel may still read the mapped file: the last
	// one to finish unmaps it.
	var pending <-chan struct{}
	defer func() {
		if pending == nil {
			lm.close()
			return
		}
		go func() { <-pending; lm.close() }()
	}()
	refs, err := checkpointLinears(lm.model, &cfg, log)
	if err != nil {
		return nil, err
	}
	shard, err := parseShard(cfg.Layers, len(refs))
	if err != nil {
		return nil, err
	}
	res := newConvertResult(cfg, lm.input, lm.format)
	for _, r := range refs {
		res.Selected = append(res.Selected, r.tensor)
	}
	jobs := make([]layerJob, len(shard))
	tensors := make([]string, len(shard))
	for k, idx := range shard {
		r := &refs[idx]
		tensors[k] = r.tensor
		jobs[k] = layerJob{ref: r, weight: func() (*mat.Dense, rowReader, error) {
			t, _ := lm.model.Tensor(r.tensor)
			w, err := weightMatrix(t, r)
			if err != nil {
				return nil, nil, inputerr.Errorf("%s: tensor %q: %w", cfg.Model, r.tensor, err)
			}
			return w, tensorRows(t, r), nil
		}}
	}
	if cfg.Calibration != "" && lm.model.Arch.Kind == arrowio.ArchGeneric {
		return nil, inputerr.Errorf("%s: --calibration runs the model on its rows, and this %s checkpoint has no architecture strata can run (an MLP model file or nn.Sequential checkpoint): export it to ONNX and convert that, or convert it weight-only",
			cfg.Model, lm.format)
	}
	cal, err := cfg.startCalibration(ctx, jobs, func(set calib.Set) (calib.Runner, error) { return calib.NewMLP(lm.model, tensors, set) })
	if err != nil {
		return nil, err
	}
	defer cal.close()
	out := &arrowio.Model{Arch: lm.model.Arch, Meta: lm.model.Meta}
	out.Arch.Layers = append([]arrowio.Layer(nil), lm.model.Arch.Layers...)
	replaced := map[string][]arrowio.Tensor{}
	pending, err = cfg.convertJobs(ctx, jobs, cal, res, func(k int, layer ConvertedLayer, op *compute.Sum[float64]) {
		r := jobs[k].ref
		t, _ := lm.model.Tensor(r.tensor)
		replaced[r.tensor] = modelmap.OperatorTensors(layer.Name, op)
		// The outputs do not hold the dense weight: let it go before the
		// next layer and the materialisation (safetensors values are Go
		// memory; a mapped Arrow file's stay mapped).
		t.Data = nil
		l := arrowio.Layer{Name: r.layer, Out: r.out, In: r.in, Layout: r.layout, Kernel: r.kernel}
		if r.tensor != r.layer+".weight" {
			l.Weight = r.tensor
		}
		modelmap.SetStructure(out, l, op.Spec())
	})
	if err != nil {
		return nil, err
	}
	res.Calibration = cal.record()
	for _, t := range lm.model.Tensors {
		if ts, ok := replaced[t.Name]; ok {
			out.Tensors = append(out.Tensors, ts...)
			continue
		}
		out.Tensors = append(out.Tensors, t)
	}
	res.finish(log)
	res.Seconds = time.Since(start).Seconds()
	if err := writeConvertOutputs(cfg.Out, res, lm, out); err != nil {
		return nil, fmt.Errorf("convert: write %s: %w", cfg.Out, err)
	}
	return res, nil
}

// checkpointLinears returns the weights of m that the globs of cfg
// select, in file order: every 2-D float weight, and for a generic
// checkpoint every float weight of rank 3 or more named "<layer>.weight"
// (a convolution's [out, in, k1, ...], read as out x (in k1 ...)). The
// layer of "<layer>.weight" is <layer>, of any other name the name
// itself. A 2-D weight of a generic checkpoint is read [out, in] or
// [in, out] as cfg.WeightLayout says (see ConvertConfig). Nothing
// selected is bad input.
func checkpointLinears(m *arrowio.Model, cfg *ConvertConfig, log *slog.Logger) ([]linearRef, error) {
	generic := m.Arch.Kind == arrowio.ArchGeneric
	if !generic && cfg.WeightLayout == WeightLayoutInOut {
		return nil, inputerr.Fieldf("", "%s: {weight_layout} in-out: the weights of an MLP model are [out, in]", cfg.Model)
	}
	layers := map[string]bool{}
	var refs []linearRef
	for i := range m.Tensors {
		t := &m.Tensors[i]
		rank := len(t.Shape)
		if t.IsRaw() || t.Role != compute.RoleWeight || rank < 2 || (rank > 2 && (!generic || !strings.HasSuffix(t.Name, ".weight"))) {
			continue
		}
		if !cfg.selects(t.Name) {
			continue
		}
		r := linearRef{tensor: t.Name, layer: layerOfWeight(t.Name), out: int(t.Shape[0]), in: t.Numel() / max(1, int(t.Shape[0])), pointwise: true}
		if layers[r.layer] {
			r.layer = t.Name // "x" and "x.weight" both: the second keeps its full name
		}
		layers[r.layer] = true
		if rank > 2 {
			r.kernel = append([]int64(nil), t.Shape[2:]...)
			for _, k := range r.kernel {
				r.pointwise = r.pointwise && k == 1
			}
		} else if generic && inOut(m, t, cfg.WeightLayout) {
			r.layout, r.out, r.in = arrowio.LayoutInOut, int(t.Shape[1]), int(t.Shape[0])
			log.Info("weight read as [in, out]", "tensor", t.Name, "shape", t.Shape, "weight_layout", cfg.WeightLayout)
		}
		if r.out == 0 || r.in == 0 {
			continue
		}
		refs = append(refs, r)
	}
	if len(refs) == 0 {
		return nil, cfg.noneSelected()
	}
	return refs, nil
}

// inOut reports whether the 2-D weight t of a generic checkpoint is
// stored [in, out]: layout says so, or layout is auto and t's bias
// "<layer>.bias" has t.Shape[1] values and t.Shape[0] != t.Shape[1].
func inOut(m *arrowio.Model, t *arrowio.Tensor, layout string) bool {
	switch layout {
	case WeightLayoutInOut:
		return true
	case WeightLayoutOutIn:
		return false
	}
	b, ok := m.Tensor(layerOfWeight(t.Name) + ".bias")
	return ok && !b.IsRaw() && len(b.Shape) == 1 && b.Shape[0] == t.Shape[1] && t.Shape[0] != t.Shape[1]
}

// tensorRows reads the rows of W (r.out x r.in) from the weight tensor t
// as weightMatrix does, in float64.
func tensorRows(t *arrowio.Tensor, r *linearRef) rowReader {
	return func(i int, dst []float64) {
		if r.layout == arrowio.LayoutInOut {
			for j := range dst {
				dst[j] = float64(t.Data[j*r.out+i])
			}
			return
		}
		for j, v := range t.Data[i*r.in : (i+1)*r.in] {
			dst[j] = float64(v)
		}
	}
}

// weightMatrix returns W (r.out x r.in) of the weight tensor t, in
// float64: its values as they are, or transposed when r reads it
// [in, out]. A non-finite value is an error naming its position.
func weightMatrix(t *arrowio.Tensor, r *linearRef) (*mat.Dense, error) {
	w := mat.NewDense(r.out, r.in, nil)
	raw := w.RawMatrix().Data
	for i, v := range t.Data {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("value %d is %v", i, v)
		}
		if r.layout == arrowio.LayoutInOut {
			raw[(i%r.out)*r.in+i/r.out] = float64(v)
		} else {
			raw[i] = float64(v)
		}
	}
	return w, nil
}
