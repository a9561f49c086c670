package stages

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"gonum.org/v1/gonum/mat"

	"github.com/strata-ml/strata/calib"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/validation"
)

// This file is --structure auto over the whole model: every layer's
// structure chosen together from the measured cost of each candidate on
// the model's loss (ConvertConfig.ModelBudget, LossTolerance).

// maxModelOptions bounds the candidates measured per layer (besides
// keeping it dense): each costs a data-aware fit and one forward pass of
// the model over the held-out calibration rows.
const maxModelOptions = 12

// ModelAuto is convert.json's record of a whole-model assignment.
type ModelAuto struct {
	ModelBudget   float64 `json:"model_budget,omitempty"`
	LossTolerance float64 `json:"loss_tolerance,omitempty"`
	// ParamsDense are the dense parameters of the layers assigned,
	// ParamsLimit the budget's share of them, Params the assignment's.
	ParamsDense int `json:"params_dense"`
	ParamsLimit int `json:"params_limit,omitempty"`
	Params      int `json:"params"`
	// BaselineLoss is the model's mean loss on the held-out calibration
	// rows; LossIncrease the sum of the chosen options' measured
	// increases (what the assignment minimises, taking them as
	// additive), MeasuredLossIncrease the increase measured with every
	// chosen layer converted at once.
	BaselineLoss         float64                  `json:"baseline_loss"`
	LossIncrease         float64                  `json:"loss_increase"`
	MeasuredLossIncrease validation.NullableFloat `json:"measured_loss_increase"`
	// LowerBound (a budget) bounds the least total increase any
	// assignment within the budget has (compute.Assignment).
	LowerBound float64 `json:"lower_bound,omitempty"`
	// Met says whether the budget or the tolerance holds; Missed why not.
	Met    bool   `json:"met"`
	Missed string `json:"missed,omitempty"`
	// Forwards counts the model's forward passes measured.
	Forwards int `json:"forwards"`
	// Layers are every assigned layer's options and choice.
	Layers []ModelAutoLayer `json:"layers"`
}

// ModelAutoLayer is one layer of a whole-model assignment.
type ModelAutoLayer struct {
	Name   string `json:"name"`
	Tensor string `json:"tensor"`
	// Chosen indexes Options; Options[0] keeps the layer dense (unless
	// its structure was fixed, e.g. a k x k convolution's lowrank).
	Chosen  int               `json:"chosen"`
	Options []ModelAutoOption `json:"options"`
}

// ModelAutoOption is one candidate of a layer.
type ModelAutoOption struct {
	// Structure is "dense" or the S + R spec.
	Structure string `json:"structure"`
	Params    int    `json:"params"`
	// LossIncrease is the model's loss with this layer alone converted
	// so, minus the baseline's, on the held-out calibration rows.
	LossIncrease float64 `json:"loss_increase"`
	// Proxy is the ridged relative output error of the weight-only trunk
	// with the best data-aware correction (compute ResidualCurve) that
	// ranked the candidate among the family's; HeldOutError is the written
	// fit's output error on the held-out rows and Written which fit that is.
	Proxy        *float64 `json:"proxy,omitempty"`
	HeldOutError *float64 `json:"held_out_error,omitempty"`
	Written      string   `json:"written,omitempty"`

	fit   layerFit
	dense bool
}

// goal names what the assignment was asked.
func (m *ModelAuto) goal() string {
	if m.LossTolerance > 0 {
		return fmt.Sprintf("--loss-tolerance %g", m.LossTolerance)
	}
	return fmt.Sprintf("--model-budget %g", m.ModelBudget)
}

// modelLayer is a layer of the assignment while it is made.
type modelLayer struct {
	job int
	ModelAutoLayer
}

// convertWholeModel converts the jobs with the structures a whole-model
// assignment chooses. For each layer (one pass of calibration per group,
// see calibration) it measures the options layerOptions lists; then
// compute.AssignBudget (ModelBudget: the least total loss increase with
// at most ModelBudget x the layers' dense parameters) or
// compute.AssignTolerance (LossTolerance: the fewest parameters whose
// total increase is at most LossTolerance) picks one per layer, and each
// layer is converted as chosen, or kept dense (SkipAuto).
func (cfg *ConvertConfig) convertWholeModel(ctx context.Context, jobs []layerJob, cal *calibration, res *ConvertResult, emit func(int, ConvertedLayer, *compute.Sum[float64])) (pending <-chan struct{}, err error) {
	log := cfg.Logger
	base, err := cal.loss(ctx)
	if err != nil {
		return nil, classify(fmt.Errorf("%s: calibration with %s: %w", cfg.Model, cfg.Calibration, err))
	}
	cal.rec.BaselineLoss = validation.NullableFloat(base)
	ma := &ModelAuto{ModelBudget: cfg.ModelBudget, LossTolerance: cfg.LossTolerance, BaselineLoss: base, Forwards: 1}
	var layers []*modelLayer
	for i := range jobs {
		j := &jobs[i]
		structure, err := cfg.jobStructure(ctx, i, jobs, res)
		if err != nil {
			return nil, err
		}
		if structure == "" {
			continue
		}
		w, _, ld, err := cfg.jobInputs(ctx, i, j, cal)
		if err != nil {
			return nil, err
		}
		start := time.Now()
		opts, n, err := cfg.layerOptions(ctx, i, j.ref, w, structure, ld, cal, base)
		if err != nil {
			return nil, classify(fmt.Errorf("%s: %w", j.where(cfg.Model), err))
		}
		ma.Forwards += n
		layers = append(layers, &modelLayer{job: i, ModelAutoLayer: ModelAutoLayer{Name: j.ref.layer, Tensor: j.ref.tensor, Options: opts}})
		ma.ParamsDense += j.ref.out * j.ref.in
		log.Info("measured layer options", "layer", j.ref.layer, "n", i+1, "of", len(jobs), "options", len(opts), "seconds", fmt.Sprintf("%.1f", time.Since(start).Seconds()))
	}
	if len(layers) == 0 {
		ma.Met = true // nothing to assign: every selected layer is kept dense for its own reason
		res.ModelAuto = ma
		return nil, nil
	}
	a, err := cfg.assign(layers, ma)
	if err != nil {
		return nil, err
	}
	var swaps []calib.Swap
	for k, ml := range layers {
		ml.Chosen = a.Choice[k]
		opt := ml.Options[ml.Chosen]
		j := &jobs[ml.job]
		if opt.dense {
			res.record(newLayer(j.ref), keptDense(j.ref, ml), ml.job+1, len(jobs), log)
			continue
		}
		start := time.Now()
		fit := opt.fit
		fit.quick = false // the chosen one gets the full fit
		layer, op, skip, done, err := cfg.convertJob(ctx, ml.job, j, fit, cal)
		if err != nil {
			return done, err
		}
		layer.Seconds = time.Since(start).Seconds()
		if res.record(layer, skip, ml.job+1, len(jobs), log) {
			emit(ml.job, layer, op)
			swaps = append(swaps, calib.Swap{Layer: ml.job, Op: compute.Convert[float32](op)})
		}
		j.done()
	}
	ma.MeasuredLossIncrease = validation.NullableFloat(math.NaN())
	if all, err := cal.loss(ctx, swaps...); err == nil {
		ma.MeasuredLossIncrease = validation.NullableFloat(all - base)
		ma.Forwards++
	} else {
		return nil, err
	}
	for _, ml := range layers {
		ma.Layers = append(ma.Layers, ml.ModelAutoLayer)
	}
	res.ModelAuto = ma
	log.Info("whole-model assignment", "goal", ma.goal(), "met", ma.Met, "params", ma.Params, "params_dense", ma.ParamsDense,
		"loss_increase", ma.LossIncrease, "measured_loss_increase", float64(ma.MeasuredLossIncrease))
	return nil, nil
}

// assign runs the assignment over the layers' options and fills ma.
func (cfg *ConvertConfig) assign(layers []*modelLayer, ma *ModelAuto) (compute.Assignment, error) {
	opts := make([][]compute.LayerOption, len(layers))
	for k, ml := range layers {
		for _, o := range ml.Options {
			opts[k] = append(opts[k], compute.LayerOption{Params: o.Params, Loss: o.LossIncrease})
		}
	}
	var a compute.Assignment
	var err error
	if cfg.ModelBudget > 0 {
		ma.ParamsLimit = int(math.Floor(cfg.ModelBudget * float64(ma.ParamsDense)))
		a, err = compute.AssignBudget(opts, ma.ParamsLimit)
	} else {
		a, err = compute.AssignTolerance(opts, cfg.LossTolerance)
	}
	if err != nil {
		return a, fmt.Errorf("%s: whole-model assignment: %w", cfg.Model, err)
	}
	ma.Params, ma.LossIncrease, ma.Met, ma.LowerBound = a.Params, a.Loss, a.Met, a.LowerBound
	if !a.Met {
		if cfg.ModelBudget > 0 {
			ma.Missed = fmt.Sprintf("the cheapest candidates total %d parameters, over the budget's %d of %d", a.Params, ma.ParamsLimit, ma.ParamsDense)
		} else {
			ma.Missed = fmt.Sprintf("the least total loss increase any assignment reaches is %.4g, over the tolerance", a.Loss)
		}
	}
	return a, nil
}

// keptDense is the SkippedWeight of a layer the assignment keeps dense.
func keptDense(r *linearRef, ml *modelLayer) *SkippedWeight {
	why := "no candidate was measured"
	if len(ml.Options) > 1 {
		o := slices.MinFunc(ml.Options[1:], func(a, b ModelAutoOption) int { return cmp.Compare(a.Params, b.Params) })
		why = fmt.Sprintf("its cheapest candidate, %s (%d parameters), raises the loss by %.4g", o.Structure, o.Params, o.LossIncrease)
	}
	return r.skip(SkipAuto, "the whole-model assignment keeps it dense: "+why)
}

// layerOptions measures the options of layer i (job index, the runner's
// layer) for the assignment and returns them with the number of forward
// passes made. With structure auto: keeping it dense (loss increase 0),
// then up to maxModelOptions candidates of the families auto tries (a
// convolution that is not pointwise: lowrank only), from compute's
// AutoTrunks with low-rank residual ranks 0, 1, 2, 4 ... up to min(64,
// min(out, in)/4): each trunk projected on the weights once, every
// residual rank scored by Calibration.ResidualCurve (the best data-aware
// correction of that trunk), the candidates with fewer parameters than
// the dense layer reduced to their Pareto front (parameters against that
// score) and thinned evenly along it. Each candidate is then converted as
// it would be written (convertLayer's fits and rule) and the model's loss
// measured with it in place. A fixed structure (a k x k convolution with
// --conv-structure lowrank) is its one option.
func (cfg *ConvertConfig) layerOptions(ctx context.Context, i int, r *linearRef, w *mat.Dense, structure string, ld *layerData, cal *calibration, base float64) ([]ModelAutoOption, int, error) {
	dense := r.out * r.in
	seed := layerSeed(cfg.Seed, r.tensor)
	var fits []layerFit
	var proxies []float64
	var opts []ModelAutoOption
	if structure != StructureAuto {
		fits = []layerFit{cfg.fitFor(r, structure)}
	} else {
		opts = []ModelAutoOption{{Structure: compute.FamilyDense, Params: dense, dense: true}}
		if ld.note != "" {
			return opts, 0, nil // unusable activations: nothing to rank candidates by
		}
		cal, err := ld.calibration(-1, compute.DefaultRidge)
		if err != nil {
			return nil, 0, err
		}
		if fits, proxies, err = cfg.candidates(r, w, cal, seed); err != nil {
			return nil, 0, err
		}
	}
	if len(fits) > 0 {
		// One ridge for the layer's candidates, the middle one's.
		mid := fits[len(fits)/2]
		alpha, _, err := cfg.ridge(w, mid.trunk, mid.res, true, ld, seed)
		if err != nil {
			return nil, 0, err
		}
		for k := range fits {
			fits[k].alpha, fits[k].quick = alpha, structure == StructureAuto
		}
	}
	forwards := 0
	for k, fit := range fits {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		var layer ConvertedLayer
		op, err := fitLayer(ctx, w, fit, ld, cfg, seed, &layer)
		if err != nil {
			return nil, 0, err
		}
		o := ModelAutoOption{Structure: op.Spec().String(), Params: compute.NumParams[float64](op), fit: fit, Written: WrittenWeightOnly}
		if structure != StructureAuto && o.Params >= dense && !cfg.AllowLarger {
			// convertLayer keeps it dense: so does the assignment.
			return []ModelAutoOption{{Structure: compute.FamilyDense, Params: dense, dense: true}}, forwards, nil
		}
		if c := layer.Calibration; c != nil {
			e := float64(c.WeightOnlyError)
			if c.Written == WrittenDataAware {
				e = float64(c.DataAwareError)
			}
			o.HeldOutError, o.Written = &e, c.Written
		}
		if k < len(proxies) {
			o.Proxy = &proxies[k]
		}
		loss, err := cal.loss(ctx, calib.Swap{Layer: i, Op: compute.Convert[float32](op)})
		if err != nil {
			return nil, 0, err
		}
		forwards++
		o.LossIncrease = loss - base
		opts = append(opts, o)
	}
	return opts, forwards, nil
}

// candidate is a trunk and a low-rank residual rank with its parameters
// and score.
type candidate struct {
	trunk  compute.Spec
	rank   int
	params int
	proxy  float64
}

// candidates lists the fits layerOptions measures for an auto layer, with
// their scores.
func (cfg *ConvertConfig) candidates(r *linearRef, w *mat.Dense, cal *compute.Calibration, seed uint64) ([]layerFit, []float64, error) {
	out, in := r.out, r.in
	families := cfg.AutoFamilies
	if !r.pointwise {
		families = []string{compute.FamilyLowRank}
	}
	specs, err := compute.AutoTrunks(out, in, families)
	if err != nil {
		return nil, nil, err
	}
	maxRes := min(64, min(out, in)/4)
	var all []candidate
	for _, spec := range specs {
		s, err := compute.Project(w, spec, seed)
		if err != nil {
			return nil, nil, fmt.Errorf("auto: %s: %w", spec, err)
		}
		tp := compute.NumParams(s)
		if tp >= out*in {
			continue
		}
		curve, err := cal.ResidualCurve(w, s, maxRes, seed)
		if err != nil {
			return nil, nil, err
		}
		for k := 0; k <= maxRes; k = max(1, 2*k) {
			p := tp + k*(out+in)
			if p >= out*in {
				break
			}
			all = append(all, candidate{trunk: spec, rank: k, params: p, proxy: curve[k]})
		}
	}
	front := paretoFront(all)
	var fits []layerFit
	var proxies []float64
	for _, c := range spread(front, maxModelOptions) {
		fits = append(fits, layerFit{trunk: c.trunk, res: compute.Residual{Kind: compute.ResidualLowRank, Rank: c.rank}})
		proxies = append(proxies, c.proxy)
	}
	return fits, proxies, nil
}

// paretoFront returns the candidates no other beats in both parameters
// and score, by increasing parameters (and so decreasing score).
func paretoFront(all []candidate) []candidate {
	slices.SortStableFunc(all, func(a, b candidate) int {
		return cmp.Or(cmp.Compare(a.params, b.params), cmp.Compare(a.proxy, b.proxy))
	})
	var front []candidate
	for _, c := range all {
		if len(front) == 0 || c.proxy < front[len(front)-1].proxy {
			front = append(front, c)
		}
	}
	return front
}

// spread returns at most k of the candidates, evenly spaced by position
// (the first and the last always).
func spread(cs []candidate, k int) []candidate {
	if len(cs) <= k {
		return cs
	}
	out := make([]candidate, 0, k)
	for j := range k {
		out = append(out, cs[int(math.Round(float64(j)*float64(len(cs)-1)/float64(k-1)))])
	}
	return out
}

// merge returns the assignment of a merged convert: each shard assigned
// its own layers within the budget or tolerance, so the merge totals
// theirs and meets the goal when every shard did; the measured increase
// of every layer at once was not measured (null). Either may be nil.
func (m *ModelAuto) merge(o *ModelAuto) *ModelAuto {
	if o == nil {
		return m
	}
	if m == nil {
		c := *o
		c.Layers = slices.Clone(o.Layers)
		return &c
	}
	c := *m
	c.ParamsDense += o.ParamsDense
	c.ParamsLimit += o.ParamsLimit
	c.Params += o.Params
	c.LossIncrease += o.LossIncrease
	c.LowerBound += o.LowerBound
	c.Forwards += o.Forwards
	c.MeasuredLossIncrease = validation.NullableFloat(math.NaN())
	c.Met = c.Met && o.Met
	if o.Missed != "" && c.Missed != "" {
		c.Missed += "; "
	}
	c.Missed += o.Missed
	c.Layers = append(slices.Clone(c.Layers), o.Layers...)
	return &c
}
