package stages

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/validation"
)

// This file computes validate's metrics for each model (evaluateModel)
// and assembles them side by side into validation.json (assemble);
// validate_latency.go times the models.

// sideEval holds the model metrics of one model, before comparison.
type sideEval struct {
	// jac holds the Jacobian summaries of jacobianViews: [0] on the
	// standardised input, [1] on the raw input.
	jac       []compute.JacobianStats
	pert      []compute.Perturbation // per noise level
	gradNorms [][]float64            // per evaluation batch, per linear layer
	gradRatio []float64              // per evaluation batch
	drops     [][]float64            // per linear layer, per example
	shares    [][]float64            // per linear layer (nil: not S + R), per row
	layers    []layerInfo
	params    int
	flops     int // -1: not counted (absent says why)
	bytes     int
	latency   []float64 // wall milliseconds per timing round
	cpu       []float64 // process CPU milliseconds per timing round
	// absent says, per metric key, why the model has no value, and
	// whether the metric cannot exist for it at all (not applicable).
	absent map[string]absence
}

// absence is why a model has no value for a metric.
type absence struct {
	why string
	na  bool
}

// Reasons shared by the metrics a kind of model cannot give.
const (
	whyLogits       = "logits mode: no model to run"
	whyNoGradients  = "ONNX Runtime runs forward passes only: no gradients"
	whyONNXShares   = "not measured for ONNX models: it needs each layer's input inside the graph"
	whyONNXDrops    = "not measured for ONNX models: it needs the graph re-run with each layer's weights perturbed"
	whyDenseNoShare = "no decomposed layer (dense model)"
)

// jacobianViews returns the views of the Jacobian validate summarises for
// model m: on the standardised input (the headline) and on the raw input,
// each of the centred logits of a classifier (the outputs as they are for
// a regressor).
func (r *validateRun) jacobianViews(m *valModel) []compute.JacobianView {
	centre := r.task == compute.TaskClassification
	return []compute.JacobianView{
		{ColumnScale: m.stdScale, Centre: centre},
		{ColumnScale: m.rawScale, Centre: centre},
	}
}

// evaluateModel computes the outputs (r.logits[s]) and the model metrics
// of the model m of side s on the data.
func (r *validateRun) evaluateModel(ctx context.Context, s int, m *valModel) (*sideEval, error) {
	n := r.ds.N
	y, err := m.outputsOf(n)
	if err != nil {
		return nil, err
	}
	r.logits[s] = y
	e := weightEval(m)

	xs := make([]float64, len(r.jacIdx)*m.inputs)
	for k, i := range r.jacIdx {
		copy(xs[k*m.inputs:(k+1)*m.inputs], m.x[i*m.inputs:(i+1)*m.inputs])
	}
	e.jac, err = m.jacobians(xs, len(r.jacIdx), r.jacobianViews(m))
	noInput := errors.Is(err, errNoDerivative)
	switch {
	case noInput:
		for _, key := range []string{validation.MetricJacobianCondition, validation.MetricPerturbationSensitivity,
			validation.MetricPerturbationSensitivityRelative, validation.MetricPredictionFlipRate} {
			e.absent[key] = absence{err.Error(), true}
		}
	case err != nil:
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !noInput {
		e.pert, err = compute.PerturbationSensitivitiesOf(m.forward(), m.inputs, m.outputs, m.x, m.chunkedOutputs(y), n, r.sigma, m.rawScale, r.cfg.Noise, r.cfg.Seed)
		if err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if m.onnx != nil {
		e.absent[validation.MetricGradNormRatio] = absence{whyNoGradients, true}
		e.absent[validation.MetricLayerRobustness] = absence{whyONNXDrops, false}
		if e.absent[validation.MetricResidualShare].why == "" {
			e.absent[validation.MetricResidualShare] = absence{whyONNXShares, false}
		}
		return e, nil
	}
	net := m.mlp.net
	ws := compute.NewWorkspace[float64]()
	norms, _, err := compute.GradNormBatches(net, m.x, r.ds.Y, n, r.cfg.GradBatch, ws)
	if err != nil {
		return nil, inputerr.Errorf("%s: %w", r.cfg.Data, err)
	}
	e.gradNorms = norms
	for _, g := range norms {
		e.gradRatio = append(e.gradRatio, compute.NormRatio(g))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	e.drops, err = compute.LayerRobustness(net, m.x, r.ds.Y, m.chunkedOutputs(y), n, r.cfg.RobustnessEps, r.cfg.RobustnessDraws, r.cfg.Seed, ws)
	if err != nil {
		return nil, inputerr.Errorf("%s: %w", r.cfg.Data, err)
	}
	e.shares = compute.ResidualShares(net, m.x, n, ws)
	return e, nil
}

// weightEval returns what validate reads of a model's weights alone: its
// layers and its cost (all the logits mode reads of a model).
func weightEval(m *valModel) *sideEval {
	e := &sideEval{absent: map[string]absence{}}
	if m.onnx != nil {
		e.layers = m.onnx.layers
	} else {
		e.layers = m.mlp.layers()
	}
	var flopsWhy string
	e.params, e.flops, flopsWhy, e.bytes = m.cost()
	if flopsWhy != "" {
		e.absent[validation.MetricFLOPs] = absence{flopsWhy, false}
	}
	decomposed := false
	for _, l := range e.layers {
		decomposed = decomposed || l.trunkSV != nil
	}
	if !decomposed {
		e.absent[validation.MetricResidualShare] = absence{whyDenseNoShare, false}
	}
	return e
}

// finiteAt returns the values of v at idx (all of v when idx is nil)
// that are not NaN.
func finiteAt(v []float64, idx []int) []float64 {
	var out []float64
	add := func(x float64) {
		if !math.IsNaN(x) {
			out = append(out, x)
		}
	}
	if idx == nil {
		for _, x := range v {
			add(x)
		}
	} else {
		for _, i := range idx {
			add(v[i])
		}
	}
	return out
}

// meanAt returns the mean of v over idx (all of v when idx is nil),
// skipping NaN values; NaN when none is left. It sums in the order of
// idx, as compute.Mean of finiteAt's values does, without their copy (the
// bootstrap calls it for every resample).
func meanAt(v []float64, idx []int) float64 {
	var s float64
	k := 0
	if idx == nil {
		for _, x := range v {
			if !math.IsNaN(x) {
				s += x
				k++
			}
		}
	} else {
		for _, i := range idx {
			if x := v[i]; !math.IsNaN(x) {
				s += x
				k++
			}
		}
	}
	if k == 0 {
		return math.NaN()
	}
	return s / float64(k)
}

// medianAt returns the median of v over idx (all of v when idx is nil),
// skipping NaN values (an input whose Jacobian could not be trusted); NaN
// when none is left.
func medianAt(v []float64, idx []int) float64 { return compute.Median(finiteAt(v, idx)) }

// taskValues returns the per-example correctness (nil for regression)
// and loss (cross-entropy, or the squared error averaged over the
// outputs) of outputs z (n x c) for targets y.
func taskValues(task compute.Task, z, y []float64, c int) (correct, loss []float64) {
	n := len(y)
	loss = make([]float64, n)
	if task == compute.TaskRegression {
		for i := range n {
			var s float64
			for k := range c {
				d := z[i*c+k] - y[i]
				s += d * d
			}
			loss[i] = s / float64(c)
		}
		return nil, loss
	}
	correct = make([]float64, n)
	for i := range n {
		zr := z[i*c : (i+1)*c]
		arg := 0
		for k, v := range zr {
			if v > zr[arg] || (math.IsNaN(zr[arg]) && !math.IsNaN(v)) {
				arg = k
			}
		}
		t := int(y[i])
		if arg == t && !math.IsNaN(zr[arg]) {
			correct[i] = 1
		}
		mx := zr[arg]
		var s float64
		for _, v := range zr {
			s += math.Exp(v - mx)
		}
		loss[i] = mx + math.Log(s) - zr[t]
	}
	return correct, loss
}

// metricBuilder fills Metrics for one run.
type metricBuilder struct {
	ctx         context.Context // done: the intervals stop (NaN) at once
	r           *validateRun
	withControl bool
	sides       []int // the sides of the run
}

func (b *metricBuilder) metric(better string) *validation.Metric {
	return &validation.Metric{Better: better, WithControl: b.withControl}
}

// absent returns, for a metric key, each side's reason for having no
// value (from its evaluation; a side without a model in the logits mode
// has none to run) and whether the metric cannot exist for some side.
func (b *metricBuilder) absent(key string) (why [3]string, na bool) {
	for _, s := range b.sides {
		e := b.r.evals[s]
		if e == nil {
			why[s], na = whyLogits, true
			continue
		}
		if a, ok := e.absent[key]; ok {
			why[s] = a.why
			na = na || a.na
		}
	}
	return why, na
}

// fill sets m's values from v (NaN or infinite: null, with why[s] or "not
// finite" in Reason) and the deltas.
func (b *metricBuilder) fill(m *validation.Metric, v [3]float64, why [3]string) {
	var reasons []string
	nulls := 0
	for _, s := range b.sides {
		if !isFinite(v[s]) {
			nulls++
			w := why[s]
			if w == "" {
				w = "not finite"
				if math.IsInf(v[s], 0) {
					w = "infinite"
				}
			}
			reasons = append(reasons, sideNames[s]+": "+w)
		}
	}
	if nulls == len(b.sides) && nulls > 0 {
		same := true
		for _, s := range b.sides {
			same = same && why[s] == why[b.sides[0]]
		}
		if same && why[b.sides[0]] != "" {
			reasons = []string{why[b.sides[0]]}
		}
	}
	m.Baseline, m.Candidate = validation.Num(v[sideBaseline]), validation.Num(v[sideCandidate])
	var rel string
	m.Delta, m.RelativeDelta, rel = deltas(v[sideBaseline], v[sideCandidate], "relative_delta: the baseline is 0")
	if rel != "" {
		reasons = append(reasons, rel)
	}
	if b.withControl {
		m.Control = validation.Num(v[sideControl])
		m.DeltaVsControl, m.RelativeDeltaVsControl, rel = deltas(v[sideControl], v[sideCandidate], "relative_delta_vs_control: the control is 0")
		if rel != "" {
			reasons = append(reasons, rel)
		}
	}
	m.Reason = strings.Join(reasons, "; ")
}

// deltas returns c - ref and (c - ref) / |ref|, null when not finite, and
// zeroReason when ref is 0.
func deltas(ref, c float64, zeroReason string) (d, rel *validation.NullableFloat, why string) {
	if !isFinite(ref) || !isFinite(c) {
		return nil, nil, ""
	}
	d = validation.Num(c - ref)
	if ref == 0 {
		return d, nil, zeroReason
	}
	return d, validation.Num((c - ref) / math.Abs(ref)), ""
}

// bootstrap sets the 95% intervals of m's deltas by the paired bootstrap
// over n units (unit names them): stat(s, idx) is side s's statistic on
// the units idx (nil: all). Every metric resamples with the run's seed,
// so all intervals over the same units see the same resamples. Fewer
// than validation.MinBootstrapUnits units give no interval, with the
// reason.
func (b *metricBuilder) bootstrap(m *validation.Metric, n int, unit string, stat func(s int, idx []int) float64) {
	cfg := b.r.cfg
	set := func(ref int, d *validation.NullableFloat) (*validation.Interval, string) {
		if d == nil {
			return nil, "no delta: a value is null (see reason)"
		}
		if cfg.Bootstrap == 0 {
			return nil, "--bootstrap 0: no intervals"
		}
		if n < validation.MinBootstrapUnits {
			return nil, fmt.Sprintf("no interval: %d %s, fewer than the %d units a bootstrap interval needs (the resamples would hold too few distinct values)",
				n, unit, validation.MinBootstrapUnits)
		}
		lo, hi := compute.BootstrapCI(n, cfg.Bootstrap, 0.95, cfg.Seed, func(idx []int) float64 {
			if b.ctx.Err() != nil {
				return math.NaN() // BootstrapCI stops at a NaN
			}
			return stat(sideCandidate, idx) - stat(ref, idx)
		})
		if !isFinite(lo) || !isFinite(hi) {
			return nil, "the statistic is not finite on some resample"
		}
		return &validation.Interval{validation.NullableFloat(lo), validation.NullableFloat(hi)}, ""
	}
	var why, whyC string
	m.CI95, why = set(sideBaseline, m.Delta)
	if b.withControl {
		m.CI95VsControl, whyC = set(sideControl, m.DeltaVsControl)
	}
	m.CIReason = joinReasons(why, whyC)
	if m.CI95 != nil || m.CI95VsControl != nil {
		m.Units, m.UnitName = n, unit
	}
	if m.CIReason == "" {
		m.CIReason = fmt.Sprintf("paired bootstrap over %d %s, %d resamples, percentile interval", n, unit, cfg.Bootstrap)
	}
}

func joinReasons(why, whyControl string) string {
	switch {
	case why == "" && whyControl == "":
		return ""
	case whyControl == "" || whyControl == why:
		return why
	case why == "":
		return "vs control: " + whyControl
	}
	return why + "; vs control: " + whyControl
}

// exact sets the intervals of a count (no sampling): [delta, delta].
func (b *metricBuilder) exact(m *validation.Metric, what string) {
	if m.Delta != nil {
		m.CI95 = &validation.Interval{*m.Delta, *m.Delta}
	}
	if m.DeltaVsControl != nil {
		m.CI95VsControl = &validation.Interval{*m.DeltaVsControl, *m.DeltaVsControl}
	}
	m.CIReason = validation.ExactCIPrefix + what + ", no sampling"
}

// statMetric builds a metric whose value is stat over n units of each
// model, with paired bootstrap intervals.
func (b *metricBuilder) statMetric(better string, n int, unit string, stat func(s int, idx []int) float64, why [3]string) *validation.Metric {
	m := b.metric(better)
	var v [3]float64
	for _, s := range b.sides {
		v[s] = math.NaN()
		if why[s] == "" {
			v[s] = stat(s, nil)
		}
	}
	b.fill(m, v, why)
	b.bootstrap(m, n, unit, stat)
	return m
}

// all returns why for every side.
func all(why string) [3]string { return [3]string{why, why, why} }

// nullMetric is a metric that cannot be computed for any model; na marks
// it not applicable (it cannot exist for these inputs).
func (b *metricBuilder) nullMetric(better, why string, na bool) *validation.Metric {
	m := b.metric(better)
	b.fill(m, [3]float64{math.NaN(), math.NaN(), math.NaN()}, all(why))
	m.CIReason = "no value"
	m.NotApplicable = na
	return m
}

// assemble builds the metrics and the layers of the result.
func (r *validateRun) assemble(ctx context.Context) {
	b := &metricBuilder{ctx: ctx, r: r, withControl: r.has[sideControl]}
	for s := range 3 {
		if r.has[s] {
			b.sides = append(b.sides, s)
		}
	}
	ms := make(map[string]*validation.Metric, len(validation.MetricKeys))
	r.res.Metrics = ms
	r.res.Task, r.res.OutputWidth = r.task, r.c
	n := r.ds.N

	// Task metrics, in both modes.
	var correct, loss [3][]float64
	for _, s := range b.sides {
		correct[s], loss[s] = taskValues(r.task, r.logits[s], r.ds.Y, r.c)
	}
	mean := func(v [3][]float64) func(s int, idx []int) float64 {
		return func(s int, idx []int) float64 { return meanAt(v[s], idx) }
	}
	ex := validation.UnitExamples
	if r.task == compute.TaskClassification {
		m := b.statMetric(validation.BetterHigher, n, ex, mean(correct), [3]string{})
		m.Note = fmt.Sprintf("share of the %d examples whose largest logit is the label; p_value: McNemar's exact test", n)
		m.PValue = validation.Num(mcNemar(correct[sideBaseline], correct[sideCandidate]))
		if b.withControl {
			m.PValueVsControl = validation.Num(mcNemar(correct[sideControl], correct[sideCandidate]))
		}
		ms[validation.MetricAccuracy] = m
		ms[validation.MetricLoss] = b.statMetric(validation.BetterLower, n, ex, mean(loss), [3]string{})
		ms[validation.MetricLoss].Note = "mean softmax cross-entropy"
	} else {
		ms[validation.MetricAccuracy] = b.nullMetric(validation.BetterHigher, "a regression task has no accuracy (loss is the MSE)", true)
		ms[validation.MetricLoss] = b.statMetric(validation.BetterLower, n, ex, mean(loss), [3]string{})
		ms[validation.MetricLoss].Note = "mean squared error"
	}

	if r.res.Mode == validation.ModeLogits {
		r.logitsModeMetrics(b, ms)
	} else {
		r.modelMetrics(b, ms)
	}
	ms[validation.MetricTrainingStability] = r.trainingStability(b)
	ms[validation.MetricLRRobustness] = r.lrRobustness(b, r.lrSweep)
}

// logitsModeMetrics builds the model metrics of the logits mode: the
// weight metrics of the models given beside the logits (params also from
// the given counts), every other one not applicable.
func (r *validateRun) logitsModeMetrics(b *metricBuilder, ms map[string]*validation.Metric) {
	weights := []string{validation.MetricLayerCondition, validation.MetricParams, validation.MetricFLOPs, validation.MetricBytes}
	for _, key := range validation.MetricKeys {
		switch key {
		case validation.MetricAccuracy, validation.MetricLoss, validation.MetricTrainingStability, validation.MetricLRRobustness:
			continue
		}
		better := validation.BetterLower
		if key == validation.MetricResidualShare {
			better = validation.BetterReported
		}
		if !slices.Contains(weights, key) {
			ms[key] = b.nullMetric(better, whyLogits, true)
		}
	}
	counts := [3]int64{r.cfg.BaselineParams, r.cfg.CandidateParams, r.cfg.ControlParams}
	given := false
	for _, s := range b.sides {
		if e := r.evals[s]; e == nil && counts[s] > 0 {
			r.evals[s] = &sideEval{params: int(counts[s]), flops: -1, absent: map[string]absence{
				validation.MetricLayerCondition: {"logits mode: only the parameter count was given (--" + sideNames[s] + "-params)", true},
				validation.MetricFLOPs:          {"logits mode: only the parameter count was given", true},
				validation.MetricBytes:          {"logits mode: only the parameter count was given", true},
			}}
			given = true
		}
	}
	r.costMetrics(b, ms)
	r.layerCondition(b, ms)
	if given {
		ms[validation.MetricParams].Note += " (given by --baseline-params, --candidate-params, --control-params where no model file was)"
	}
	for _, key := range weights {
		if m := ms[key]; m.Candidate == nil && m.Reason != "" && strings.Contains(m.Reason, whyLogits) {
			m.NotApplicable = true
			m.Reason += " (give the model files beside the logits, --candidate FILE, or --candidate-params N for params)"
		}
	}
	if r.evals[sideCandidate] != nil && r.evals[sideCandidate].layers != nil {
		r.res.Layers = r.layerViews(b, false)
		return
	}
	r.res.LayersReason = "logits mode: no model file given beside the logits"
}

// mcNemar returns McNemar's exact p-value for paired correctness a (the
// reference) and c.
func mcNemar(a, c []float64) float64 {
	if a == nil || c == nil {
		return math.NaN()
	}
	onlyA, onlyC := 0, 0
	for i := range a {
		switch {
		case a[i] == 1 && c[i] == 0:
			onlyA++
		case a[i] == 0 && c[i] == 1:
			onlyC++
		}
	}
	return compute.McNemarExact(onlyA, onlyC)
}

// modelMetrics builds the metrics that need the models.
func (r *validateRun) modelMetrics(b *metricBuilder, ms map[string]*validation.Metric) {
	ev := r.evals
	n := r.ds.N
	cfg := r.cfg
	ex := validation.UnitExamples

	ms[validation.MetricJacobianCondition] = r.jacobianCondition(b)

	// Gradient norm ratio over evaluation batches.
	why, na := b.absent(validation.MetricGradNormRatio)
	nb := 0
	for _, s := range b.sides {
		nb = max(nb, len(ev[s].gradRatio))
	}
	m := b.statMetric(validation.BetterLower, nb, "evaluation batches", func(s int, idx []int) float64 { return meanAt(ev[s].gradRatio, idx) }, why)
	m.NotApplicable = na
	m.Note = fmt.Sprintf("mean over %d consecutive evaluation batches of about %d rows of max / min over the linear layers of ||dLoss/dW|| (effective W); the interval resamples batches", nb, n/max(nb, 1))
	ms[validation.MetricGradNormRatio] = m

	r.layerCondition(b, ms)

	// Perturbation: one part per noise level, the middle level as headline.
	h := (len(cfg.Noise) - 1) / 2
	type pertStat struct {
		key, better, note string
		stat              func(p compute.Perturbation, idx []int) float64
	}
	stats := []pertStat{
		{validation.MetricPerturbationSensitivity, validation.BetterLower, "mean over examples of ||f(x+d) - f(x)|| / ||d||, d Gaussian with per-feature std = noise level x the feature's std in the data (raw features)",
			func(p compute.Perturbation, idx []int) float64 { return meanAt(p.Ratio, idx) }},
		{validation.MetricPerturbationSensitivityRelative, validation.BetterLower, "perturbation_sensitivity divided by the mean ||f(x)||",
			func(p compute.Perturbation, idx []int) float64 { return meanAt(p.Ratio, idx) / meanAt(p.Output, idx) }},
		{validation.MetricPredictionFlipRate, validation.BetterLower, "share of examples whose predicted class changes under the noise",
			func(p compute.Perturbation, idx []int) float64 { return meanAt(p.Flipped, idx) }},
	}
	for _, ps := range stats {
		why, na := b.absent(ps.key)
		if ps.key == validation.MetricPredictionFlipRate && r.task == compute.TaskRegression {
			why, na = all("a regression model has no prediction to flip"), true
		}
		var parts []*validation.Metric
		for j, level := range cfg.Noise {
			p := b.statMetric(ps.better, n, ex, func(s int, idx []int) float64 { return ps.stat(ev[s].pert[j], idx) }, why)
			p.Name, p.Noise, p.NotApplicable = fmt.Sprintf("noise=%g", level), level, na
			parts = append(parts, p)
		}
		head := *parts[h]
		head.Name, head.Noise = "", 0
		head.Note = fmt.Sprintf("%s; headline at noise %g (levels in parts)", ps.note, cfg.Noise[h])
		head.Parts = parts
		ms[ps.key] = &head
	}

	ms[validation.MetricLayerRobustness] = r.layerRobustness(b)

	// Residual share: per example, the mean over decomposed layers.
	var perEx [3][]float64
	why, na = b.absent(validation.MetricResidualShare)
	for _, s := range b.sides {
		if why[s] == "" {
			perEx[s] = residualPerExample(ev[s].shares, n)
		}
	}
	m = b.statMetric(validation.BetterReported, n, ex, func(s int, idx []int) float64 { return meanAt(perEx[s], idx) }, why)
	m.NotApplicable = na
	m.Note = "mean over examples of the mean over decomposed layers of ||R u|| / (||S u|| + ||R u||), u the layer input; per layer in layers"
	ms[validation.MetricResidualShare] = m

	r.costMetrics(b, ms)
	ms[validation.MetricLatencyMS] = r.latencyMetric(b)
	r.res.Layers = r.layerViews(b, true)
}

// jacobianCondition builds jacobian_condition over the Jacobian sample.
func (r *validateRun) jacobianCondition(b *metricBuilder) *validation.Metric {
	ev := r.evals
	k := len(r.jacIdx)
	why, na := b.absent(validation.MetricJacobianCondition)
	if k == 0 {
		return b.nullMetric(validation.BetterLower, "--max-jacobian-samples 0", false)
	}
	if na {
		m := b.metric(validation.BetterLower)
		b.fill(m, [3]float64{math.NaN(), math.NaN(), math.NaN()}, why)
		m.NotApplicable, m.CIReason = true, "no value"
		return m
	}
	// Per side: a singular Jacobian at half the inputs or more, or too
	// few inputs whose central differences agree.
	check := func(view int, get func(st compute.JacobianStats) []float64) [3]string {
		var why [3]string
		for _, s := range b.sides {
			v := get(ev[s].jac[view])
			kept := 0
			for _, x := range v {
				if !math.IsNaN(x) {
					kept++
				}
			}
			switch {
			case 2*kept < len(v):
				why[s] = fmt.Sprintf("the one-sided differences disagree with the central ones at %d of %d inputs (kinks of the model within the step): not reliable", len(v)-kept, len(v))
			case math.IsInf(medianAt(v, nil), 1):
				why[s] = "the Jacobian is numerically singular (sigma_min <= max(rows, cols) 2^-52 sigma_max) at half or more of the inputs"
			}
		}
		return why
	}
	cond := func(st compute.JacobianStats) []float64 { return st.Condition }
	logStd := func(st compute.JacobianStats) []float64 { return st.LogSigmaStd }
	stat := func(view int, get func(st compute.JacobianStats) []float64) func(s int, idx []int) float64 {
		return func(s int, idx []int) float64 { return medianAt(get(ev[s].jac[view]), idx) }
	}
	unit := "Jacobian inputs"
	m := b.statMetric(validation.BetterLower, k, unit, stat(0, cond), check(0, cond))
	p := b.statMetric(validation.BetterLower, k, unit, stat(0, logStd), check(0, logStd))
	p.Name = "log_sigma_std"
	raw := b.statMetric(validation.BetterLower, k, unit, stat(1, cond), check(1, cond))
	raw.Name = "raw_input"
	raw.Note = "the same Jacobian with respect to the raw input (feature units): depends on the units, never the headline"
	m.Parts = []*validation.Metric{p, raw}

	var how, units [3]string
	for _, s := range b.sides {
		mod := r.models[s]
		units[s] = "the model's recorded standardisation"
		if mod.stdScale != nil {
			units[s] = "the evaluation data's per-feature std (the model records none)"
		}
		how[s] = mod.jacobianNote()
		if kept := len(finiteAt(ev[s].jac[0].Condition, nil)); kept < k {
			how[s] += fmt.Sprintf(" (%d of %d inputs kept)", kept, k)
		}
	}
	what := "the outputs as they are (regression)"
	if r.task == compute.TaskClassification {
		what = fmt.Sprintf("the centred logits (the all-ones direction, which changes no probability, projected out: %d singular values for %d classes)", r.c-1, r.c)
	}
	m.Note = fmt.Sprintf("median over %d evaluation inputs (a seeded sample when the data has more) of sigma_max / sigma_min of the Jacobian of %s with respect to the standardised input (%s); Jacobian %s; part log_sigma_std: median of the std of log sigma; part raw_input: the condition with respect to the raw input",
		k, what, perSide(b, units), perSide(b, how))
	return m
}

// layerCondition builds layer_condition: the worst layer's condition,
// at the rank tolerance of float32 weights.
func (r *validateRun) layerCondition(b *metricBuilder, ms map[string]*validation.Metric) {
	var v [3]float64
	var where, why [3]string
	for _, s := range b.sides {
		v[s] = math.NaN()
		e := r.evals[s]
		if e == nil {
			why[s] = whyLogits
			continue
		}
		if a, ok := e.absent[validation.MetricLayerCondition]; ok {
			why[s] = a.why
			continue
		}
		v[s] = math.Inf(-1)
		for i := range e.layers {
			l := &e.layers[i]
			if c, _ := spectralCondition(l.sv, l); c > v[s] || math.IsNaN(c) {
				v[s], where[s] = c, l.name
			}
		}
		if math.IsInf(v[s], 1) {
			why[s] = "layer " + where[s] + " is numerically singular at float32 precision (sigma_min <= max(rows, cols) 2^-23 sigma_max)"
		}
		if len(e.layers) == 0 {
			v[s], why[s] = math.NaN(), "no linear layer found"
		}
	}
	m := b.metric(validation.BetterLower)
	b.fill(m, v, why)
	m.CIReason = "no interval: a function of the weights, deterministic given them but not given the training; the seeds of a sweep (strata sweep --seeds) give its spread"
	m.Note = "largest sigma_max / sigma_min over the linear layers of the effective weight W = S + R, the layer writing a classifier's logits taken on its centred rows (K - 1 singular values, as the logits are centred), singular below the rank tolerance of float32 weights (worst layer: " + sideList(b, where) + "); per layer in layers"
	ms[validation.MetricLayerCondition] = m
}

// layerRobustness builds layer_robustness: the worst layer's mean score
// drop, a negative one (no measurable drop) counted as 0, with a paired
// bootstrap interval over the examples.
func (r *validateRun) layerRobustness(b *metricBuilder) *validation.Metric {
	ev := r.evals
	n, cfg := r.ds.N, r.cfg
	why, na := b.absent(validation.MetricLayerRobustness)
	worst := func(s int, idx []int) (float64, string) {
		v, where := 0.0, "none: no measurable drop"
		for l, d := range ev[s].drops {
			if mu := meanAt(d, idx); mu > v {
				v, where = mu, ev[s].layers[l].name
			}
		}
		return v, where
	}
	var where [3]string
	for _, s := range b.sides {
		if why[s] == "" {
			_, where[s] = worst(s, nil)
		}
	}
	m := b.statMetric(validation.BetterLower, n, validation.UnitExamples, func(s int, idx []int) float64 { v, _ := worst(s, idx); return v }, why)
	m.NotApplicable = na
	score, resolution := "accuracy", fmt.Sprintf("; resolution 1/(n x draws) = 1/(%d x %d) = %.3g", n, cfg.RobustnessDraws, 1/float64(n*cfg.RobustnessDraws))
	if r.task == compute.TaskRegression {
		score, resolution = "MSE increase", ""
	}
	m.Note = fmt.Sprintf("largest mean %s drop over the linear layers when one layer's effective weight gets Gaussian noise of Frobenius norm %g ||W||, averaged over %d draws (worst layer: %s); a drop below zero is no measurable drop and counts as 0, never as better%s; the interval resamples the examples, the draws fixed",
		score, cfg.RobustnessEps, cfg.RobustnessDraws, sideList(b, where), resolution)
	return m
}

// costMetrics builds params, flops and bytes.
func (r *validateRun) costMetrics(b *metricBuilder, ms map[string]*validation.Metric) {
	costs := []struct {
		key, note string
		get       func(e *sideEval) int
	}{
		{validation.MetricParams, "trainable parameters (an ONNX model: the values of its floating-point initializers)", func(e *sideEval) int { return e.params }},
		{validation.MetricFLOPs, "floating-point operations of one forward pass per example (linear operators, biases, activations, layer norms; a multiply-add is 2)", func(e *sideEval) int { return e.flops }},
		{validation.MetricBytes, "parameter bytes stored as float32, frozen sparse indices included (an ONNX model: the bytes of its initializers)", func(e *sideEval) int { return e.bytes }},
	}
	for _, c := range costs {
		var v [3]float64
		var why [3]string
		na := false
		for _, s := range b.sides {
			v[s] = math.NaN()
			e := r.evals[s]
			switch {
			case e == nil:
				why[s], na = whyLogits, true
			case e.absent[c.key].why != "":
				why[s], na = e.absent[c.key].why, na || e.absent[c.key].na
			default:
				v[s] = float64(c.get(e))
			}
		}
		m := b.metric(validation.BetterLower)
		b.fill(m, v, why)
		b.exact(m, "a count")
		m.NotApplicable = na && (m.Baseline == nil || m.Candidate == nil)
		m.Note = c.note
		ms[c.key] = m
	}
}

// spectralCondition is compute.SpectralConditionAt for a layer at the rank
// tolerance of float32 weights, with the reason when it is infinite.
func spectralCondition(sv []float64, l *layerInfo) (float64, string) {
	c := compute.SpectralConditionAt(sv, l.rows(), l.in, compute.Float32Eps)
	if math.IsInf(c, 1) {
		return c, "numerically singular at float32 precision (sigma_min <= max(rows, cols) 2^-23 sigma_max)"
	}
	return c, ""
}

// perSide renders per-model texts: the one text when every model has it,
// else "baseline: ..., candidate: ...".
func perSide(b *metricBuilder, v [3]string) string {
	same := true
	for _, s := range b.sides {
		same = same && v[s] == v[b.sides[0]]
	}
	if same {
		return v[b.sides[0]]
	}
	var parts []string
	for _, s := range b.sides {
		parts = append(parts, sideNames[s]+": "+v[s])
	}
	return strings.Join(parts, "; ")
}

// sideList renders per-model labels as "baseline 2, candidate 4".
func sideList(b *metricBuilder, v [3]string) string {
	var parts []string
	for _, s := range b.sides {
		if v[s] != "" {
			parts = append(parts, sideNames[s]+" "+v[s])
		}
	}
	return strings.Join(parts, ", ")
}

// residualPerExample returns, per example, the mean over the decomposed
// layers of its residual share (NaN where no layer has one), or nil when
// no layer is decomposed.
func residualPerExample(shares [][]float64, n int) []float64 {
	var layers [][]float64
	for _, s := range shares {
		if s != nil {
			layers = append(layers, s)
		}
	}
	if len(layers) == 0 {
		return nil
	}
	out := make([]float64, n)
	for i := range n {
		var sum float64
		k := 0
		for _, s := range layers {
			if !math.IsNaN(s[i]) {
				sum += s[i]
				k++
			}
		}
		out[i] = math.NaN()
		if k > 0 {
			out[i] = sum / float64(k)
		}
	}
	return out
}

// trainingStability builds training_stability from the training logs,
// over comparable stretches: the last H steps of every log, H the
// smallest half of a log among them.
func (r *validateRun) trainingStability(b *metricBuilder) *validation.Metric {
	tail := math.MaxInt
	for _, s := range b.sides {
		if l := r.logs[s]; l != nil {
			tail = min(tail, len(l.Rows)/2)
		}
	}
	var cv, gs, rate [3]float64
	var why, rateWhy [3]string
	for _, s := range b.sides {
		cv[s], gs[s], rate[s] = math.NaN(), math.NaN(), math.NaN()
		l := r.logs[s]
		if l == nil {
			why[s], rateWhy[s] = r.logReason[s], r.logReason[s]
			continue
		}
		losses := make([]float64, len(l.Rows))
		grads := make([]float64, len(l.Rows))
		for i, row := range l.Rows {
			losses[i], grads[i] = row.Loss, row.GradNorm
		}
		st := compute.TrainingStability(losses, grads, len(l.Rows)-tail, r.cfg.SpikeWindow, r.cfg.SpikeThreshold)
		gs[s], cv[s] = st.GradStd, st.GradStd/st.GradMean
		if st.Judged > 0 {
			rate[s] = 100 * float64(st.Spikes) / float64(st.Judged)
		} else {
			rateWhy[s] = fmt.Sprintf("no step of the last %d could be judged (a window needs 5 earlier losses)", tail)
		}
	}
	const ciReason = "no interval: one training run per model, no replicate to resample (a sweep's seeds give the spread)"
	part := func(name string, v [3]float64, why [3]string) *validation.Metric {
		p := b.metric(validation.BetterLower)
		b.fill(p, v, why)
		p.Name, p.CIReason = name, ciReason
		return p
	}
	m := part("", cv, why)
	compared := "no training log"
	if tail != math.MaxInt {
		compared = fmt.Sprintf("the last %d steps of every log (the shortest log's second half), so that runs of different lengths compare like with like", tail)
	}
	m.Note = fmt.Sprintf("over %s: the spread of the global gradient norm relative to its own mean, std / mean (headline and part grad_norm_cv; scale-free, so factorised parameters and dense weights compare); part grad_norm_std, the absolute std; part loss_spikes_per_100_steps, the spikes per 100 judged steps, a spike being a loss above the median of the %d previous steps plus %g x 1.4826 MAD",
		compared, r.cfg.SpikeWindow, r.cfg.SpikeThreshold)
	m.Parts = []*validation.Metric{part("grad_norm_cv", cv, why), part("grad_norm_std", gs, why), part("loss_spikes_per_100_steps", rate, rateWhy)}
	return m
}

// layerViews pairs the k-th linear layers of the models; withData adds
// the per-layer values that need the evaluation data.
func (r *validateRun) layerViews(b *metricBuilder, withData bool) []validation.Layer {
	ev := r.evals
	cand := ev[sideCandidate]
	views := make([]validation.Layer, 0, len(cand.layers))
	sides := b.sides
	for k, cl := range cand.layers {
		lv := validation.Layer{Name: cl.name, Shape: [2]int{cl.out, cl.in}, Family: cl.family, Structure: cl.structure}
		var info [3]*layerInfo
		var missing [3]string
		for _, s := range sides {
			switch {
			case ev[s] == nil:
				missing[s] = "no model file"
			case k >= len(ev[s].layers):
				missing[s] = fmt.Sprintf("has no linear layer %d", k)
			case ev[s].layers[k].out != cl.out || ev[s].layers[k].in != cl.in:
				l := ev[s].layers[k]
				missing[s] = fmt.Sprintf("linear layer %d has shape %dx%d, the candidate's %dx%d", k, l.out, l.in, cl.out, cl.in)
			default:
				info[s] = &ev[s].layers[k]
			}
		}
		values := func(get func(s int, l *layerInfo) (float64, string)) validation.LayerValues {
			var v [3]float64
			var why [3]string
			for _, s := range sides {
				v[s], why[s] = math.NaN(), missing[s]
				if info[s] != nil {
					v[s], why[s] = get(s, info[s])
				}
			}
			return layerValues(b, v, why)
		}
		lv.LayerCondition = values(func(s int, l *layerInfo) (float64, string) { return spectralCondition(l.sv, l) })
		lv.TrunkCondition = values(func(s int, l *layerInfo) (float64, string) {
			if l.trunkSV == nil {
				return math.NaN(), "dense layer: no trunk"
			}
			return spectralCondition(l.trunkSV, l)
		})
		perLayer := func(key string, get func(s int) (float64, string)) validation.LayerValues {
			return values(func(s int, l *layerInfo) (float64, string) {
				if !withData {
					return math.NaN(), whyLogits
				}
				if a, ok := ev[s].absent[key]; ok && a.why != whyDenseNoShare {
					return math.NaN(), a.why
				}
				return get(s)
			})
		}
		lv.ResidualShare = perLayer(validation.MetricResidualShare, func(s int) (float64, string) {
			if ev[s].shares == nil || ev[s].shares[k] == nil {
				return math.NaN(), "dense layer: no correction"
			}
			return meanAt(ev[s].shares[k], nil), ""
		})
		lv.RobustnessDrop = perLayer(validation.MetricLayerRobustness, func(s int) (float64, string) {
			return meanAt(ev[s].drops[k], nil), ""
		})
		lv.GradNorm = perLayer(validation.MetricGradNormRatio, func(s int) (float64, string) {
			g := make([]float64, len(ev[s].gradNorms))
			for i, row := range ev[s].gradNorms {
				g[i] = row[k]
			}
			return compute.Mean(g), ""
		})
		if info[sideBaseline] != nil {
			lv.SingularValues.Baseline = validation.Floats(info[sideBaseline].sv)
		}
		lv.SingularValues.Candidate = validation.Floats(cl.sv)
		lv.SingularValues.CandidateTrunk = validation.Floats(cl.trunkSV)
		if info[sideControl] != nil {
			lv.SingularValues.Control = validation.Floats(info[sideControl].sv)
		}
		views = append(views, lv)
	}
	return views
}

// layerValues renders per-model values of a layer, NaN as null with why.
func layerValues(b *metricBuilder, v [3]float64, why [3]string) validation.LayerValues {
	lv := validation.LayerValues{Baseline: validation.Num(v[sideBaseline]), Candidate: validation.Num(v[sideCandidate])}
	if b.withControl {
		lv.Control = validation.Num(v[sideControl])
	}
	var reasons []string
	for _, s := range b.sides {
		if !isFinite(v[s]) {
			w := why[s]
			if w == "" {
				w = "not finite"
			}
			reasons = append(reasons, sideNames[s]+": "+w)
		}
	}
	lv.Reason = strings.Join(reasons, "; ")
	return lv
}

func isFinite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
