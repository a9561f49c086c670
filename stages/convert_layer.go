package stages

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"

	"gonum.org/v1/gonum/mat"

	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/validation"
)

// linearRef is one linear map of a model that convert may decompose: its
// weight W (out x in) and how the model stores it.
type linearRef struct {
	tensor   string // the weight tensor (ONNX: initializer)
	layer    string // the layer name, the prefix of its factors
	node, op string // ONNX: the Gemm, MatMul or Conv node
	out, in  int
	layout   string  // "" ([out, in]) or arrowio.LayoutInOut
	kernel   []int64 // a convolution's kernel; nil for a matrix
	// pointwise: W maps each position's channels alone (a matrix, a 1x1
	// kernel), so every family applies; otherwise only the low-rank
	// family factors it (ConvertConfig.ConvStructure).
	pointwise bool
}

// skip returns the SkippedWeight of r with the given code and reason.
func (r *linearRef) skip(code, reason string) *SkippedWeight {
	return &SkippedWeight{Tensor: r.tensor, Node: r.node, Op: r.op, Code: code, Reason: reason}
}

// structure returns the structure convert uses for r: cfg.Structure for a
// pointwise map; for a convolution cfg.ConvStructure, or cfg.Structure
// when that is lowrank or auto. It returns a SkippedWeight when no
// low-rank structure is asked for a convolution.
func (cfg *ConvertConfig) structure(r *linearRef) (string, *SkippedWeight) {
	if r.pointwise {
		return cfg.Structure, nil
	}
	if cfg.ConvStructure != "" {
		return cfg.ConvStructure, nil
	}
	if cfg.Structure == compute.FamilyLowRank || cfg.Structure == StructureAuto {
		return cfg.Structure, nil
	}
	what := fmt.Sprintf("a convolution with kernel %v", r.kernel)
	if len(r.kernel) > 0 && slices.Max(r.kernel) == 1 {
		what = "a 1x1 convolution with strides or pads"
	}
	return "", r.skip(SkipKernel, fmt.Sprintf("%s is factored by the low-rank family only, not %s: --conv-structure lowrank (or auto) converts it",
		what, cfg.Structure))
}

// rowReader sets dst (the layer's in values) to row i of W, read from
// where the caller keeps the weight (the input file's float32 values or
// the ONNX graph's), not from the float64 matrix convertLayer decomposes.
type rowReader func(i int, dst []float64)

// convertLayer decomposes the weight w of r, out x in, as cfg asks. It
// returns the layer's record and operator (its parameters rounded to
// float32, what the outputs store), or a SkippedWeight when the layer is
// kept dense: a convolution without a low-rank structure, or an S + R of
// at least as many parameters as w (unless cfg.AllowLarger), which it also
// logs as a warning. The record comes back in both cases: its Auto says
// whether auto met its goal.
//
// w is convertLayer's: after the decomposition it is overwritten, first by
// W's condition estimate (which factors it in place), then by the dense
// S + R and S whose errors are taken against rows, so the layer costs one
// float64 matrix of its size beyond the decomposition's own work. When ctx
// is done the decomposition and the condition estimates stop between
// bounded pieces of work (see compute.DecomposeContext) and ctx's error
// returns.
func convertLayer(ctx context.Context, r *linearRef, w *mat.Dense, rows rowReader, cfg *ConvertConfig, log *slog.Logger) (ConvertedLayer, *compute.Sum[float64], *SkippedWeight, error) {
	out, in := r.out, r.in
	layer := ConvertedLayer{Name: r.layer, Tensor: r.tensor, Node: r.node, Op: r.op, Shape: [2]int{out, in},
		Layout: r.layout, Kernel: r.kernel, ParamsDense: out * in}
	structure, skip := cfg.structure(r)
	if skip != nil {
		return layer, nil, skip, nil
	}
	seed := layerSeed(cfg.Seed, r.tensor)
	var sum *compute.Sum[float64]
	var err error
	if structure == StructureAuto {
		ac := cfg.autoConfig()
		if !r.pointwise {
			ac.Families = []string{compute.FamilyLowRank}
		}
		var ar compute.AutoResult
		sum, ar, err = compute.AutoContext(ctx, w, ac, seed)
		layer.Auto = &ar
	} else {
		res := compute.Residual{Kind: cfg.Residual, Rank: min(cfg.ResidualRank, min(out, in))}
		if cfg.Residual == compute.ResidualSparse {
			res.NNZ = max(1, int(math.Ceil(cfg.ResidualDensity*float64(out*in))))
		}
		kron, _ := parseKronFactors(cfg.KronFactors)
		trunk := compute.FitSpec(compute.Spec{Family: structure, Blocks: cfg.Blocks, Rank: cfg.Rank, FactorShape: kron}, out, in)
		sum, err = compute.DecomposeContext(ctx, w, trunk, res, seed)
	}
	if err != nil {
		return layer, nil, nil, err
	}
	// Report what the file stores: parameters rounded to float32.
	compute.RoundToFloat32(sum)
	stored := sum
	layer.Family = stored.Trunk().Spec().Family
	layer.Hyperparameters = stored.Spec()
	layer.Params = compute.NumParams[float64](stored)
	layer.ParamsTrunk = compute.NumParams(stored.Trunk())
	layer.ParamsCorrection = compute.NumParams(stored.Correction())
	if layer.Params >= layer.ParamsDense && !cfg.AllowLarger {
		log.Warn("layer kept dense: S + R would not be smaller (--allow-larger converts it)", "layer", layer.Name,
			"structure", layer.Hyperparameters.String(), "params", layer.Params, "params_dense", layer.ParamsDense)
		skip := r.skip(SkipLarger, fmt.Sprintf("S + R (%s) has %d parameters, the dense weight %d: kept dense (--allow-larger converts it)",
			layer.Hyperparameters, layer.Params, layer.ParamsDense))
		skip.Params, skip.ParamsDense = layer.Params, layer.ParamsDense
		return layer, nil, skip, nil
	}
	if tr := layer.Hyperparameters.Trunk; tr != nil && structure != StructureAuto &&
		((cfg.Rank > 0 && tr.Rank != cfg.Rank && tr.Rank > 0) || (cfg.Blocks > 0 && tr.Blocks != cfg.Blocks && tr.Blocks > 0)) {
		log.Warn("hyper-parameters capped to fit the layer", "layer", layer.Name, "shape", layer.Shape,
			"blocks", tr.Blocks, "rank", tr.Rank, "requested_blocks", cfg.Blocks, "requested_rank", cfg.Rank)
	}
	conditions, note := cfg.conditions(out, in)
	layer.ConditionNote = note
	var condDense float64
	exactDense := true
	if conditions {
		// W's condition first: above the exact limit it factors w in place.
		if condDense, exactDense, err = compute.ConditionInPlace(ctx, w, seed); err != nil {
			return layer, nil, nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return layer, nil, nil, err // the caller may no longer hold rows' source
	}
	scratch := w.RawMatrix().Data
	layer.RelativeError = validation.NullableFloat(compute.RelativeErrorRows(rows, stored, scratch))
	// Leaves S dense in scratch, where its condition is taken.
	layer.TrunkRelativeError = validation.NullableFloat(compute.RelativeErrorRows(rows, stored.Trunk(), scratch))
	if conditions {
		condTrunk, exactTrunk, err := compute.ConditionInPlace(ctx, mat.NewDense(out, in, scratch[:out*in]), seed)
		if err != nil {
			return layer, nil, nil, err
		}
		layer.ConditionDense, layer.ConditionTrunk = validation.NullableFloat(condDense), validation.NullableFloat(condTrunk)
		layer.ConditionExact = exactDense && exactTrunk
	} else {
		layer.ConditionDense, layer.ConditionTrunk = validation.NullableFloat(math.NaN()), validation.NullableFloat(math.NaN())
	}
	return layer, stored, nil, nil
}

// layerRun is convertLayer on its own goroutine, so that a cancelled
// convert returns at once even inside one long LAPACK call (an exact SVD,
// an LU), which cannot check ctx.
type layerRun struct {
	layer ConvertedLayer
	op    *compute.Sum[float64]
	skip  *SkippedWeight
	err   error
	// done is closed when convertLayer has returned.
	done chan struct{}
}

// convertLayerAsync runs convertLayer and returns its outcome, or ctx's
// error as soon as ctx is done. In the second case convertLayer is left to
// stop at its next check of ctx (within one bounded piece of work, or at
// the end of the LAPACK call it is in) and its result is dropped: what it
// reads (w, and rows' source) must stay valid until the returned channel
// is closed.
func convertLayerAsync(ctx context.Context, r *linearRef, w *mat.Dense, rows rowReader, cfg *ConvertConfig, log *slog.Logger) (ConvertedLayer, *compute.Sum[float64], *SkippedWeight, <-chan struct{}, error) {
	run := &layerRun{done: make(chan struct{})}
	go func() {
		defer close(run.done)
		run.layer, run.op, run.skip, run.err = convertLayer(ctx, r, w, rows, cfg, log)
	}()
	select {
	case <-run.done:
		return run.layer, run.op, run.skip, run.done, run.err
	case <-ctx.Done():
		return ConvertedLayer{}, nil, nil, run.done, ctx.Err()
	}
}

// conditions reports whether convert takes the condition numbers of an
// out x in layer under cfg.Condition, and when not, the reason
// convert.json gives.
func (cfg *ConvertConfig) conditions(out, in int) (bool, string) {
	limit := compute.ConditionExactLimit()
	switch {
	case cfg.Condition == ConditionOff:
		return false, "not computed: {condition} off"
	case cfg.Condition == ConditionEstimate || min(out, in) <= limit:
		return true, ""
	}
	return false, fmt.Sprintf("not computed: the layer's smaller side %d is above %d, where the condition numbers are estimates "+
		"costing an LU of the layer and Krylov passes over it (about as long as the decomposition); {condition} estimate computes them, "+
		"and validate reports layer_condition from every layer's spectrum", min(out, in), limit)
}

// record adds the outcome of convertLayer to r and logs it: the layer
// converted (returns true) or skipped, and whether auto missed its goal.
func (r *ConvertResult) record(layer ConvertedLayer, skip *SkippedWeight, n, of int, log *slog.Logger) bool {
	if layer.Auto != nil && !layer.Auto.Met {
		r.AutoMissed = append(r.AutoMissed, layer.Name)
	}
	if skip != nil {
		r.Skipped = append(r.Skipped, *skip)
		log.Info("kept layer dense", "layer", layer.Name, "n", n, "of", of, "code", skip.Code, "reason", skip.Reason)
		return false
	}
	r.Layers = append(r.Layers, layer)
	log.Info("converted layer", "layer", layer.Name, "n", n, "of", of,
		"family", layer.Family, "params", layer.Params, "params_dense", layer.ParamsDense,
		"relative_error", float64(layer.RelativeError), "seconds", layer.Seconds)
	return true
}
