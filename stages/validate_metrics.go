package stages

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/validation"
)

// This file computes validate's metrics for each model (evaluateModel,
// timeModels) and assembles them side by side into validation.json
// (assemble).

// sideEval holds the model metrics of one model, before comparison.
type sideEval struct {
	jac       compute.JacobianStats
	pert      []compute.Perturbation // per noise level
	gradNorms [][]float64            // per evaluation batch, per linear layer
	gradRatio []float64              // per evaluation batch
	drops     [][]float64            // per linear layer, per draw
	shares    [][]float64            // per linear layer (nil: not S + R), per row
	layers    []layerInfo
	params    int
	flops     int
	bytes     int
	latency   []float64 // milliseconds per timed pass
}

// layerInfo describes one linear layer of a model.
type layerInfo struct {
	name      string
	out, in   int
	family    string
	structure string
	sv        []float64 // of the effective weight
	trunkSV   []float64 // of S alone; nil for a dense layer
}

// evaluateModel computes the model metrics of one model on the data.
func (r *validateRun) evaluateModel(ctx context.Context, m *valModel) (*sideEval, error) {
	ws := compute.NewWorkspace[float64]()
	net, n, in := m.net, r.ds.N, m.net.Inputs()
	e := &sideEval{}

	xs := make([]float64, len(r.jacIdx)*in)
	for k, i := range r.jacIdx {
		copy(xs[k*in:(k+1)*in], m.x[i*in:(i+1)*in])
	}
	e.jac = compute.JacobianConditions(net, xs, len(r.jacIdx), m.scale, ws)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, level := range r.cfg.Noise {
		e.pert = append(e.pert, compute.PerturbationSensitivity(net, m.x, n, r.sigma, m.scale, level, r.cfg.Seed, ws))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
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
	e.drops, err = compute.LayerRobustness(net, m.x, r.ds.Y, n, r.cfg.RobustnessEps, r.cfg.RobustnessDraws, r.cfg.Seed, ws)
	if err != nil {
		return nil, inputerr.Errorf("%s: %w", r.cfg.Data, err)
	}
	e.shares = compute.ResidualShares(net, m.x, n, ws)

	spec := net.Spec()
	for _, l := range compute.LinearLayers(net) {
		op := net.Operator(l)
		out, in := op.Shape()
		li := layerInfo{name: spec.Layers[l].Name, out: out, in: in, sv: op.SingularValues(nil)}
		if li.name == "" {
			li.name = fmt.Sprint(l)
		}
		s := op.Spec()
		li.family, li.structure = s.Family, s.String()
		if sum, ok := op.(*compute.Sum[float64]); ok {
			li.family = sum.Trunk().Spec().Family
			li.trunkSV = sum.Trunk().SingularValues(nil)
		}
		e.layers = append(e.layers, li)
	}
	e.params = net.NumParams()
	e.flops = compute.NetworkFLOPs(net)
	e.bytes = 4 * compute.NetworkStoredValues(net)
	return e, nil
}

// timeModels measures latency_ms: the models' float32 networks (the
// precision strata runs models in) on the first LatencyBatch rows, each
// run LatencyWarmup times untimed, then LatencyRuns rounds in which every
// model runs once, the order rotating from round to round so that drift
// of the machine hits every model alike.
func (r *validateRun) timeModels(ctx context.Context) error {
	type timed struct {
		s    int
		net  *compute.Network[float32]
		x, y []float32
		ws   *compute.Workspace[float32]
	}
	batch := min(r.cfg.LatencyBatch, r.ds.N)
	var ts []timed
	for s, m := range r.models {
		if m == nil {
			continue
		}
		in := m.net32.Inputs()
		x := make([]float32, batch*in)
		for i, v := range m.x[:batch*in] {
			x[i] = float32(v)
		}
		ts = append(ts, timed{s: s, net: m.net32, x: x, y: make([]float32, batch*m.net32.Outputs()), ws: compute.NewWorkspace[float32]()})
	}
	for range r.cfg.LatencyWarmup {
		if err := ctx.Err(); err != nil {
			return err
		}
		for _, t := range ts {
			t.net.Forward(t.y, t.x, batch, t.ws)
		}
	}
	for round := range r.cfg.LatencyRuns {
		if err := ctx.Err(); err != nil {
			return err
		}
		for j := range ts {
			t := ts[(round+j)%len(ts)]
			start := time.Now()
			t.net.Forward(t.y, t.x, batch, t.ws)
			ms := float64(time.Since(start).Nanoseconds()) / 1e6
			r.evals[t.s].latency = append(r.evals[t.s].latency, ms)
		}
	}
	return nil
}

// meanAt returns the mean of v over idx (all of v when idx is nil),
// skipping NaN values; NaN when none is left.
func meanAt(v []float64, idx []int) float64 {
	var s float64
	k := 0
	add := func(x float64) {
		if !math.IsNaN(x) {
			s += x
			k++
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
	if k == 0 {
		return math.NaN()
	}
	return s / float64(k)
}

// medianAt returns the median of v over idx (all of v when idx is nil).
func medianAt(v []float64, idx []int) float64 {
	if idx == nil {
		return compute.Median(v)
	}
	s := make([]float64, len(idx))
	for k, i := range idx {
		s[k] = v[i]
	}
	return compute.Median(s)
}

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
// over n items: stat(s, idx) is side s's statistic on the items idx (nil:
// all). Every metric resamples with the run's seed, so all intervals see
// the same resamples of the examples.
func (b *metricBuilder) bootstrap(m *validation.Metric, n int, stat func(s int, idx []int) float64) {
	cfg := b.r.cfg
	set := func(ref int, d *validation.NullableFloat) (*validation.Interval, string) {
		if d == nil {
			return nil, "no delta: a value is null (see reason)"
		}
		if cfg.Bootstrap == 0 {
			return nil, "--bootstrap 0: no intervals"
		}
		if n < 2 {
			return nil, fmt.Sprintf("%d item: nothing to resample", n)
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
	if m.CIReason == "" {
		m.CIReason = fmt.Sprintf("paired bootstrap over %d items, %d resamples, percentile interval", n, cfg.Bootstrap)
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

// exact sets the intervals of a metric that is a property of the models
// (no sampling): [delta, delta].
func (b *metricBuilder) exact(m *validation.Metric, what string) {
	if m.Delta != nil {
		m.CI95 = &validation.Interval{*m.Delta, *m.Delta}
	}
	if m.DeltaVsControl != nil {
		m.CI95VsControl = &validation.Interval{*m.DeltaVsControl, *m.DeltaVsControl}
	}
	m.CIReason = validation.ExactCIPrefix + what + ", no sampling"
}

// statMetric builds a metric whose value is stat over n items of each
// model, with paired bootstrap intervals.
func (b *metricBuilder) statMetric(better string, n int, stat func(s int, idx []int) float64, why [3]string) *validation.Metric {
	m := b.metric(better)
	var v [3]float64
	for _, s := range b.sides {
		v[s] = math.NaN()
		if why[s] == "" {
			v[s] = stat(s, nil)
		}
	}
	b.fill(m, v, why)
	b.bootstrap(m, n, stat)
	return m
}

// all returns why for every side.
func all(why string) [3]string { return [3]string{why, why, why} }

// nullMetric is a metric that cannot be computed for any model.
func (b *metricBuilder) nullMetric(better, why string) *validation.Metric {
	m := b.metric(better)
	b.fill(m, [3]float64{math.NaN(), math.NaN(), math.NaN()}, all(why))
	m.CIReason = "no value"
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
	if r.task == compute.TaskClassification {
		m := b.statMetric(validation.BetterHigher, n, mean(correct), [3]string{})
		m.Note = fmt.Sprintf("share of the %d examples whose largest logit is the label; p_value: McNemar's exact test", n)
		m.PValue = validation.Num(mcNemar(correct[sideBaseline], correct[sideCandidate]))
		if b.withControl {
			m.PValueVsControl = validation.Num(mcNemar(correct[sideControl], correct[sideCandidate]))
		}
		ms[validation.MetricAccuracy] = m
		ms[validation.MetricLoss] = b.statMetric(validation.BetterLower, n, mean(loss), [3]string{})
		ms[validation.MetricLoss].Note = "mean softmax cross-entropy"
	} else {
		ms[validation.MetricAccuracy] = b.nullMetric(validation.BetterHigher, "a regression task has no accuracy (loss is the MSE)")
		ms[validation.MetricLoss] = b.statMetric(validation.BetterLower, n, mean(loss), [3]string{})
		ms[validation.MetricLoss].Note = "mean squared error"
	}

	modelKeys := []struct{ key, better string }{
		{validation.MetricJacobianCondition, validation.BetterLower}, {validation.MetricGradNormRatio, validation.BetterLower},
		{validation.MetricLayerCondition, validation.BetterLower}, {validation.MetricPerturbationSensitivity, validation.BetterLower},
		{validation.MetricPerturbationSensitivityRelative, validation.BetterLower}, {validation.MetricPredictionFlipRate, validation.BetterLower},
		{validation.MetricLayerRobustness, validation.BetterLower}, {validation.MetricResidualShare, validation.BetterReported},
		{validation.MetricParams, validation.BetterLower}, {validation.MetricFLOPs, validation.BetterLower}, {validation.MetricBytes, validation.BetterLower},
		{validation.MetricLatencyMS, validation.BetterLower},
	}
	if r.res.Mode == validation.ModeLogits {
		for _, k := range modelKeys {
			ms[k.key] = b.nullMetric(k.better, "logits mode: no model to run")
		}
		r.res.LayersReason = "logits mode: no model to run"
	} else {
		r.modelMetrics(b, ms)
		r.res.Layers = r.layerViews(b)
	}
	ms[validation.MetricTrainingStability] = r.trainingStability(b)
	ms[validation.MetricLRRobustness] = r.lrRobustness(b, r.lrSweep)
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

	// Jacobian conditioning over the Jacobian sample.
	k := len(r.jacIdx)
	if k == 0 {
		ms[validation.MetricJacobianCondition] = b.nullMetric(validation.BetterLower, "--max-jacobian-samples 0")
	} else {
		singular := func(get func(e *sideEval) []float64) [3]string {
			var why [3]string
			for _, s := range b.sides {
				if math.IsInf(medianAt(get(ev[s]), nil), 1) {
					why[s] = "the Jacobian is numerically singular (sigma_min <= max(out, in) eps sigma_max) at half or more of the inputs"
				}
			}
			return why
		}
		cond := func(e *sideEval) []float64 { return e.jac.Condition }
		logStd := func(e *sideEval) []float64 { return e.jac.LogSigmaStd }
		m := b.statMetric(validation.BetterLower, k, func(s int, idx []int) float64 { return medianAt(cond(ev[s]), idx) }, singular(cond))
		m.Note = fmt.Sprintf("median over %d evaluation inputs (a seeded sample when the data has more) of sigma_max / sigma_min of the exact Jacobian of the outputs with respect to the raw input; part log_sigma_std: median of the std of log sigma", k)
		p := b.statMetric(validation.BetterLower, k, func(s int, idx []int) float64 { return medianAt(logStd(ev[s]), idx) }, singular(logStd))
		p.Name = "log_sigma_std"
		m.Parts = []*validation.Metric{p}
		ms[validation.MetricJacobianCondition] = m
	}

	// Gradient norm ratio over evaluation batches.
	nb := len(ev[sideBaseline].gradRatio)
	m := b.statMetric(validation.BetterLower, nb, func(s int, idx []int) float64 { return meanAt(ev[s].gradRatio, idx) }, [3]string{})
	m.Note = fmt.Sprintf("mean over %d consecutive evaluation batches of about %d rows of max / min over the linear layers of ||dLoss/dW|| (effective W); the interval resamples batches", nb, n/max(nb, 1))
	ms[validation.MetricGradNormRatio] = m

	// Worst layer condition.
	var v [3]float64
	var where, why [3]string
	for _, s := range b.sides {
		v[s], where[s], why[s] = math.Inf(-1), "", ""
		for _, l := range ev[s].layers {
			if c := compute.SpectralCondition(l.sv, l.out, l.in); c > v[s] || math.IsNaN(c) {
				v[s], where[s] = c, l.name
			}
		}
		if math.IsInf(v[s], 1) {
			why[s] = "layer " + where[s] + " is numerically singular (sigma_min <= max(out, in) eps sigma_max)"
		}
	}
	m = b.metric(validation.BetterLower)
	b.fill(m, v, why)
	b.exact(m, "a property of the weights")
	m.Note = "largest sigma_max / sigma_min of the effective weight W = S + R over the linear layers (worst layer: " + sideList(b, where) + "); per layer in layers"
	ms[validation.MetricLayerCondition] = m

	// Perturbation: one part per noise level, the middle level as headline.
	h := (len(cfg.Noise) - 1) / 2
	type pertStat struct {
		key, better, note string
		why               [3]string
		stat              func(p compute.Perturbation, idx []int) float64
	}
	var flipWhy [3]string
	if r.task == compute.TaskRegression {
		flipWhy = all("a regression model has no prediction to flip")
	}
	stats := []pertStat{
		{validation.MetricPerturbationSensitivity, validation.BetterLower, "mean over examples of ||f(x+d) - f(x)|| / ||d||, d Gaussian with per-feature std = noise level x the feature's std in the data (raw features)", [3]string{},
			func(p compute.Perturbation, idx []int) float64 { return meanAt(p.Ratio, idx) }},
		{validation.MetricPerturbationSensitivityRelative, validation.BetterLower, "perturbation_sensitivity divided by the mean ||f(x)||", [3]string{},
			func(p compute.Perturbation, idx []int) float64 { return meanAt(p.Ratio, idx) / meanAt(p.Output, idx) }},
		{validation.MetricPredictionFlipRate, validation.BetterLower, "share of examples whose predicted class changes under the noise", flipWhy,
			func(p compute.Perturbation, idx []int) float64 { return meanAt(p.Flipped, idx) }},
	}
	for _, ps := range stats {
		var parts []*validation.Metric
		for j, level := range cfg.Noise {
			p := b.statMetric(ps.better, n, func(s int, idx []int) float64 { return ps.stat(ev[s].pert[j], idx) }, ps.why)
			p.Name, p.Noise = fmt.Sprintf("noise=%g", level), level
			parts = append(parts, p)
		}
		head := *parts[h]
		head.Name, head.Noise = "", 0
		head.Note = fmt.Sprintf("%s; headline at noise %g (levels in parts)", ps.note, cfg.Noise[h])
		head.Parts = parts
		ms[ps.key] = &head
	}

	// Layer robustness: the worst layer's mean drop.
	for _, s := range b.sides {
		v[s], where[s] = math.Inf(-1), ""
		for l, d := range ev[s].drops {
			if mu := dropMean(d, n, r.task == compute.TaskClassification); mu > v[s] {
				v[s], where[s] = mu, ev[s].layers[l].name
			}
		}
	}
	m = b.metric(validation.BetterLower)
	b.fill(m, v, [3]string{})
	m.CIReason = fmt.Sprintf("no interval: the maximum over layers of a mean over %d weight-noise draws; its spread is over the draws, not the examples", cfg.RobustnessDraws)
	score := "accuracy"
	if r.task == compute.TaskRegression {
		score = "MSE increase (minus-MSE drop)"
	}
	m.Note = fmt.Sprintf("largest mean %s drop over the linear layers when one layer's effective weight gets Gaussian noise of Frobenius norm %g ||W|| (worst layer: %s)", score, cfg.RobustnessEps, sideList(b, where))
	ms[validation.MetricLayerRobustness] = m

	// Residual share: per example, the mean over decomposed layers.
	var perEx [3][]float64
	why = [3]string{}
	for _, s := range b.sides {
		perEx[s] = residualPerExample(ev[s].shares, n)
		if perEx[s] == nil {
			why[s] = "no decomposed layer (dense model)"
		}
	}
	m = b.statMetric(validation.BetterReported, n, func(s int, idx []int) float64 { return meanAt(perEx[s], idx) }, why)
	m.Note = "mean over examples of the mean over decomposed layers of ||R u|| / (||S u|| + ||R u||), u the layer input; per layer in layers"
	ms[validation.MetricResidualShare] = m

	// Cost.
	costs := []struct {
		key, note string
		get       func(e *sideEval) int
	}{
		{validation.MetricParams, "trainable parameters", func(e *sideEval) int { return e.params }},
		{validation.MetricFLOPs, "floating-point operations of one forward pass per example (linear operators, biases, activations, layer norms; a multiply-add is 2)", func(e *sideEval) int { return e.flops }},
		{validation.MetricBytes, "parameter bytes stored as float32, frozen sparse indices included", func(e *sideEval) int { return e.bytes }},
	}
	for _, c := range costs {
		for _, s := range b.sides {
			v[s] = float64(c.get(ev[s]))
		}
		m := b.metric(validation.BetterLower)
		b.fill(m, v, [3]string{})
		b.exact(m, "a count")
		m.Note = c.note
		ms[c.key] = m
	}

	// Latency: paired by round.
	runs := cfg.LatencyRuns
	m = b.statMetric(validation.BetterLower, runs, func(s int, idx []int) float64 { return medianAt(ev[s].latency, idx) }, [3]string{})
	m.Note = fmt.Sprintf("median milliseconds of %d timed float32 forward passes of %d rows after %d warm-up passes, models interleaved; wall-clock: varies between runs", runs, min(cfg.LatencyBatch, n), cfg.LatencyWarmup)
	ms[validation.MetricLatencyMS] = m
}

// spectralCondition is compute.SpectralCondition for a layer, with the
// reason when it is infinite.
func spectralCondition(sv []float64, l *layerInfo) (float64, string) {
	c := compute.SpectralCondition(sv, l.out, l.in)
	if math.IsInf(c, 1) {
		return c, "numerically singular (sigma_min <= max(out, in) eps sigma_max)"
	}
	return c, ""
}

// dropMean is the mean of the per-draw drops v of one layer. For a
// classifier they are accuracy differences, multiples of 1/n: it sums the
// whole counts and divides once, so that equal counts in another order or
// split give the same bits (a model equal to its baseline has a delta of
// exactly 0). Otherwise it sums in increasing order, for the same reason.
func dropMean(v []float64, n int, classification bool) float64 {
	if classification && n > 0 {
		var k float64
		exact := true
		for _, x := range v {
			c := math.Round(x * float64(n))
			exact = exact && math.Abs(x*float64(n)-c) < 1e-6
			k += c
		}
		if exact {
			return k / float64(len(v)*n)
		}
	}
	return compute.Mean(slices.Sorted(slices.Values(v)))
}

// sideList renders per-model labels as "baseline 2, candidate 4".
func sideList(b *metricBuilder, v [3]string) string {
	var parts []string
	for _, s := range b.sides {
		parts = append(parts, sideNames[s]+" "+v[s])
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

// trainingStability builds training_stability from the training logs.
func (r *validateRun) trainingStability(b *metricBuilder) *validation.Metric {
	var gs, cv, spikes [3]float64
	var why [3]string
	for _, s := range b.sides {
		gs[s], cv[s], spikes[s] = math.NaN(), math.NaN(), math.NaN()
		if l := r.logs[s]; l != nil {
			gs[s], cv[s], spikes[s] = l.gradStd, l.gradStd/l.gradMean, float64(l.spikes)
		} else {
			why[s] = r.logReason[s]
		}
	}
	m := b.metric(validation.BetterLower)
	b.fill(m, gs, why)
	m.CIReason = "no interval: one training run per model, no replicate to resample"
	m.Note = fmt.Sprintf("over the second half of training: std of the global gradient norm (headline); grad_norm_cv, the same over the mean norm (factorised parameters have gradients on another scale than dense weights); loss spikes, a loss above the median of the %d previous steps plus %g x 1.4826 MAD", r.cfg.SpikeWindow, r.cfg.SpikeThreshold)
	p1 := b.metric(validation.BetterLower)
	b.fill(p1, gs, why)
	p1.Name, p1.CIReason = "grad_norm_std", m.CIReason
	p2 := b.metric(validation.BetterLower)
	b.fill(p2, cv, why)
	p2.Name, p2.CIReason = "grad_norm_cv", m.CIReason
	p3 := b.metric(validation.BetterLower)
	b.fill(p3, spikes, why)
	p3.Name, p3.CIReason = "loss_spikes", m.CIReason
	m.Parts = []*validation.Metric{p1, p2, p3}
	return m
}

// layerViews pairs the k-th linear layers of the models.
func (r *validateRun) layerViews(b *metricBuilder) []validation.Layer {
	ev := r.evals
	cand := ev[sideCandidate]
	views := make([]validation.Layer, 0, len(cand.layers))
	for k, cl := range cand.layers {
		lv := validation.Layer{Name: cl.name, Shape: [2]int{cl.out, cl.in}, Family: cl.family, Structure: cl.structure}
		var info [3]*layerInfo
		var missing [3]string
		for _, s := range b.sides {
			switch {
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
			for _, s := range b.sides {
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
		lv.ResidualShare = values(func(s int, l *layerInfo) (float64, string) {
			if ev[s].shares[k] == nil {
				return math.NaN(), "dense layer: no correction"
			}
			return meanAt(ev[s].shares[k], nil), ""
		})
		lv.RobustnessDrop = values(func(s int, l *layerInfo) (float64, string) {
			return dropMean(ev[s].drops[k], r.ds.N, r.task == compute.TaskClassification), ""
		})
		lv.GradNorm = values(func(s int, l *layerInfo) (float64, string) {
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
