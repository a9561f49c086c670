package stages

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"time"

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

// layerFit is how one layer is decomposed: its trunk and residual, or
// (auto set) compute.Auto's choice.
type layerFit struct {
	trunk compute.Spec
	res   compute.Residual
	auto  *compute.AutoConfig
	// alpha is the relative ridge of the data-aware fit; 0: ConvertConfig.ridge's.
	alpha float64
	// quick bounds the data-aware fit's iterations to a candidate's
	// (candidateRounds, candidateSweeps).
	quick bool
}

// fitFor returns how cfg decomposes r with the given structure (cfg.structure's).
func (cfg *ConvertConfig) fitFor(r *linearRef, structure string) layerFit {
	if structure == StructureAuto {
		ac := cfg.autoConfig()
		if !r.pointwise {
			ac.Families = []string{compute.FamilyLowRank}
		}
		return layerFit{auto: &ac}
	}
	out, in := r.out, r.in
	res := compute.Residual{Kind: cfg.Residual, Rank: min(cfg.ResidualRank, min(out, in))}
	if cfg.Residual == compute.ResidualSparse {
		res.NNZ = max(1, int(math.Ceil(cfg.ResidualDensity*float64(out*in))))
	}
	kron, _ := parseKronFactors(cfg.KronFactors)
	trunk := compute.FitSpec(compute.Spec{Family: structure, Blocks: cfg.Blocks, Rank: cfg.Rank, FactorShape: kron}, out, in)
	return layerFit{trunk: trunk, res: res}
}

// newLayer starts the record of r.
func newLayer(r *linearRef) ConvertedLayer {
	return ConvertedLayer{Name: r.layer, Tensor: r.tensor, Node: r.node, Op: r.op, Shape: [2]int{r.out, r.in},
		Layout: r.layout, Kernel: r.kernel, ParamsDense: r.out * r.in}
}

// rowReader sets dst (the layer's in values) to row i of W, read from
// where the caller keeps the weight (the input file's float32 values or
// the ONNX graph's), not from the float64 matrix convertLayer decomposes.
type rowReader func(i int, dst []float64)

// convertLayer decomposes the weight w of r, out x in, as fit says, and
// when ld is not nil also fits the same structure to the layer's
// activations and writes that fit unless its held-out output error is
// the higher (chooseFit). It returns the layer's record and operator (its
// parameters rounded to float32, what the outputs store), or a
// SkippedWeight when the layer is kept dense because its S + R has at
// least as many parameters as w (unless cfg.AllowLarger), which it also
// logs as a warning. The record comes back in both cases: its Auto says
// whether auto met its goal.
//
// w is convertLayer's: after the fits it is overwritten, first by W's
// condition number (which factors it in place), then by the dense S + R
// and S whose errors are taken against rows, so the layer costs one
// float64 matrix of its size beyond the decomposition's own work. When ctx
// is done the decomposition and the condition numbers stop between
// bounded pieces of work (see compute.DecomposeContext) and ctx's error
// returns.
func convertLayer(ctx context.Context, r *linearRef, w *mat.Dense, rows rowReader, fit layerFit, ld *layerData, cfg *ConvertConfig, log *slog.Logger) (ConvertedLayer, *compute.Sum[float64], *SkippedWeight, error) {
	layer := newLayer(r)
	out, in := r.out, r.in
	seed := layerSeed(cfg.Seed, r.tensor)
	sum, err := fitLayer(ctx, w, fit, ld, cfg, seed, &layer)
	if err != nil {
		return layer, nil, nil, err
	}
	layer.Family = sum.Trunk().Spec().Family
	layer.Hyperparameters = sum.Spec()
	layer.Params = compute.NumParams[float64](sum)
	layer.ParamsTrunk = compute.NumParams(sum.Trunk())
	layer.ParamsCorrection = compute.NumParams(sum.Correction())
	if layer.Params >= layer.ParamsDense && !cfg.AllowLarger {
		log.Warn("layer kept dense: S + R would not be smaller (--allow-larger converts it)", "layer", layer.Name,
			"structure", layer.Hyperparameters.String(), "params", layer.Params, "params_dense", layer.ParamsDense)
		skip := r.skip(SkipLarger, fmt.Sprintf("S + R (%s) has %d parameters, the dense weight %d: kept dense (--allow-larger converts it)",
			layer.Hyperparameters, layer.Params, layer.ParamsDense))
		skip.Params, skip.ParamsDense = layer.Params, layer.ParamsDense
		return layer, nil, skip, nil
	}
	if tr := layer.Hyperparameters.Trunk; tr != nil && fit.auto == nil &&
		((cfg.Rank > 0 && tr.Rank != cfg.Rank && tr.Rank > 0) || (cfg.Blocks > 0 && tr.Blocks != cfg.Blocks && tr.Blocks > 0)) && !cfg.wholeModel() {
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
	layer.RelativeError = validation.NullableFloat(compute.RelativeErrorRows(rows, sum, scratch))
	// Leaves S dense in scratch, where its condition is taken.
	layer.TrunkRelativeError = validation.NullableFloat(compute.RelativeErrorRows(rows, sum.Trunk(), scratch))
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
	return layer, sum, nil, nil
}

// fitLayer returns the S + R of w that fit asks for, as stored (its
// parameters rounded to float32), filling layer's Auto and Calibration:
// the weight-only fit, or with ld the better on held-out rows of it and
// the data-aware fit of the same structure (auto's choice, made on the
// weights, for auto). w is left as it was.
func fitLayer(ctx context.Context, w *mat.Dense, fit layerFit, ld *layerData, cfg *ConvertConfig, seed uint64, layer *ConvertedLayer) (*compute.Sum[float64], error) {
	trunk, res := fit.trunk, fit.res
	var sum *compute.Sum[float64]
	var err error
	if fit.auto != nil {
		var ar compute.AutoResult
		sum, ar, err = compute.AutoContext(ctx, w, *fit.auto, seed)
		layer.Auto = &ar
		trunk, res = ar.Chosen.Trunk, compute.Residual{Kind: compute.ResidualLowRank, Rank: ar.Chosen.ResidualRank}
	} else {
		sum, err = compute.DecomposeContext(ctx, w, trunk, res, seed)
	}
	if err != nil {
		return nil, err
	}
	compute.RoundToFloat32(sum)
	if ld == nil {
		return sum, nil
	}
	fit.trunk, fit.res = trunk, res
	sum, layer.Calibration, err = cfg.chooseFit(w, sum, fit, ld, seed)
	return sum, err
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
func convertLayerAsync(ctx context.Context, r *linearRef, w *mat.Dense, rows rowReader, fit layerFit, ld *layerData, cfg *ConvertConfig, log *slog.Logger) (ConvertedLayer, *compute.Sum[float64], *SkippedWeight, <-chan struct{}, error) {
	run := &layerRun{done: make(chan struct{})}
	go func() {
		defer close(run.done)
		run.layer, run.op, run.skip, run.err = convertLayer(ctx, r, w, rows, fit, ld, cfg, log)
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

// layerJob is one selected weight of a run: its reference, how to read W
// (out x in, a matrix convertLayer may overwrite, and the rows of W where
// the model keeps them), and, when set, what to call once W is no longer
// needed.
type layerJob struct {
	ref     *linearRef
	weight  func() (*mat.Dense, rowReader, error)
	release func()
}

// where names the job's weight in errors.
func (j *layerJob) where(model string) string {
	if j.ref.node != "" {
		return fmt.Sprintf("%s: node %q: convert weight %q", model, j.ref.node, j.ref.tensor)
	}
	return fmt.Sprintf("%s: convert tensor %q", model, j.ref.tensor)
}

// convertJobs converts the jobs in order (over the whole model when
// cfg.wholeModel(), see convertWholeModel), data-aware when cal is not
// nil, recording each in res and handing each converted layer's job index
// and operator to emit. When ctx is done it returns at once with ctx's
// error and, when a layer's work is still stopping, pending: closed once
// nothing reads the jobs' weights any more (see convertLayerAsync).
func (cfg *ConvertConfig) convertJobs(ctx context.Context, jobs []layerJob, cal *calibration, res *ConvertResult, emit func(i int, layer ConvertedLayer, op *compute.Sum[float64])) (pending <-chan struct{}, err error) {
	if cfg.wholeModel() {
		return cfg.convertWholeModel(ctx, jobs, cal, res, emit)
	}
	log := cfg.Logger
	for i := range jobs {
		j := &jobs[i]
		structure, err := cfg.jobStructure(ctx, i, jobs, res)
		if err != nil {
			return nil, err
		}
		if structure == "" {
			continue
		}
		start := time.Now()
		layer, op, skip, done, err := cfg.convertJob(ctx, i, j, cfg.fitFor(j.ref, structure), cal)
		if err != nil {
			return done, err
		}
		layer.Seconds = time.Since(start).Seconds()
		if res.record(layer, skip, i+1, len(jobs), log) {
			emit(i, layer, op)
		}
		j.done()
	}
	return nil, nil
}

// done releases the job's weight, when it says how.
func (j *layerJob) done() {
	if j.release != nil {
		j.release()
	}
}

// jobStructure returns the structure of job i (cfg.structure), or ""
// after recording it in res as skipped; an error when ctx is done.
func (cfg *ConvertConfig) jobStructure(ctx context.Context, i int, jobs []layerJob, res *ConvertResult) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	structure, skip := cfg.structure(jobs[i].ref)
	if skip != nil {
		res.record(newLayer(jobs[i].ref), skip, i+1, len(jobs), cfg.Logger)
		return "", nil
	}
	return structure, nil
}

// convertJob reads job i's weight and activations (cal not nil) and
// converts it as fit says (convertLayerAsync). When ctx is done it
// returns at once with ctx's error; done, when not nil, is closed once
// the layer's work has stopped reading the job's weight.
func (cfg *ConvertConfig) convertJob(ctx context.Context, i int, j *layerJob, fit layerFit, cal *calibration) (ConvertedLayer, *compute.Sum[float64], *SkippedWeight, <-chan struct{}, error) {
	w, rows, ld, err := cfg.jobInputs(ctx, i, j, cal)
	if err != nil {
		return ConvertedLayer{}, nil, nil, nil, err
	}
	layer, op, skip, done, err := convertLayerAsync(ctx, j.ref, w, rows, fit, ld, cfg, cfg.Logger)
	if err != nil {
		if ctx.Err() != nil {
			return layer, nil, nil, done, ctx.Err()
		}
		return layer, nil, nil, nil, classify(fmt.Errorf("%s: %w", j.where(cfg.Model), err))
	}
	return layer, op, skip, nil, nil
}

// jobInputs returns job i's weight (a matrix of its own and the rows as
// the model keeps them) and, when cal is not nil, its activations.
func (cfg *ConvertConfig) jobInputs(ctx context.Context, i int, j *layerJob, cal *calibration) (*mat.Dense, rowReader, *layerData, error) {
	w, rows, err := j.weight()
	if err != nil {
		return nil, nil, nil, err
	}
	if cal == nil {
		return w, rows, nil, nil
	}
	ld, err := cal.layer(ctx, i)
	if err != nil {
		return nil, nil, nil, classify(err)
	}
	return w, rows, ld, nil
}
