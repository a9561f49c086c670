package main

import (
	"fmt"
	"math"

	"github.com/strata-ml/strata/validation"
)

// side is the reference a candidate is compared with.
type side int

const (
	vsBaseline side = iota // the dense baseline the candidate was converted from
	vsControl              // the baseline fine-tuned with the candidate's budget
)

func (s side) String() string {
	if s == vsControl {
		return "vs control"
	}
	return "vs baseline"
}

// verdict is what the numbers say about a claim for one candidate on one
// data set against one reference.
type verdict int

const (
	noClearEffect verdict = iota
	holds
	contradicted
	// mixed: one measure of a claim holds and another is contradicted.
	mixed
)

func (v verdict) String() string {
	return [...]string{"no clear effect", "holds", "contradicted", "mixed"}[v]
}

// accuracyMargin is how much accuracy a candidate may lose (mean over the
// seeds, as a share) and still keep it.
const accuracyMargin = 0.01

// criterion is one measured consequence of a claim: a metric (or part) of
// sweep.json and the test its aggregate must pass.
type criterion struct {
	// metric is the SweepMetric name; its Better field is the claimed
	// direction.
	metric string
	// label names it in the reading.
	label string
	// margin > 0 makes it a non-inferiority test (keeps accuracy): the
	// mean delta may be as low as -margin. 0: the claimed direction.
	margin float64
	// effect is how the reading quotes the size of the effect.
	effect effectKind
}

type effectKind int

const (
	effectPoints effectKind = iota // mean delta x 100, in points
	effectRatio                    // mean ratio candidate / reference
)

// claim is one claim of the method with the criteria that measure it.
type claim struct {
	name     string
	topic    string // what it is about, for the closing note
	criteria []criterion
}

// claims are the claims behind the method (PRODUCT.md): S + R keeps
// accuracy while improving gradient conditioning, perturbation
// sensitivity, per-layer robustness and the ease of learning-rate tuning.
var claims = []claim{
	{"keeps accuracy", "accuracy", []criterion{
		{metric: validation.MetricAccuracy, label: "accuracy", margin: accuracyMargin, effect: effectPoints},
	}},
	{"improves gradient conditioning", "gradient conditioning", []criterion{
		{metric: validation.MetricJacobianCondition, label: "Jacobian", effect: effectRatio},
		{metric: validation.MetricGradNormRatio, label: "grad-norm", effect: effectRatio},
	}},
	{"lowers perturbation sensitivity", "perturbation sensitivity", []criterion{
		{metric: validation.MetricPerturbationSensitivityRelative, label: "sensitivity", effect: effectRatio},
	}},
	{"improves per-layer robustness", "per-layer robustness", []criterion{
		{metric: validation.MetricLayerRobustness, label: "worst-layer drop", effect: effectPoints},
	}},
	{"eases learning-rate tuning", "ease of learning-rate tuning", []criterion{
		{metric: validation.MetricLRRobustness, label: "worst lr accuracy", effect: effectPoints},
		{metric: validation.MetricLRRobustness + ".range", label: "lr range", effect: effectPoints},
	}},
}

// quorum is how many of n seeds must agree for a verdict: 3 of 5, in
// general ceil(3n/5) (1 of 1).
func quorum(n int) int { return (3*n + 4) / 5 }

// sideValues returns the aggregate delta against the reference and the
// seeds counted better and worse for the candidate.
func sideValues(m *validation.Aggregate, s side) (delta *validation.Spread, better, worse int) {
	if s == vsControl {
		return m.DeltaVsControl, m.BetterRunsVsControl, m.WorseRunsVsControl
	}
	return m.Delta, m.BetterRuns, m.WorseRuns
}

// judgement is a criterion's verdict with what it was decided from.
type judgement struct {
	verdict       verdict
	mean          float64 // mean delta over the seeds (NaN: none)
	better, worse int     // seeds significantly better / worse
	runs, need    int     // seeds, and the quorum
}

// judge applies a criterion to a candidate's aggregate. With n seeds and q
// = quorum(n), B and W the seeds whose delta is significantly better and
// worse for the candidate (sweep.json's better_runs and worse_runs: the
// run's 95% interval excludes 0, or, for a metric without a sampled
// interval, the exact per-seed delta is not 0), and D the mean delta:
//
//   - directional (margin 0): holds when D is in the claimed direction, B
//     >= q and W = 0; contradicted when D is against it, W >= q and B =
//     0; else no clear effect.
//   - non-inferiority (margin > 0, keeps accuracy): holds when D >=
//     -margin and W = 0; contradicted when D < -margin, W >= q and B = 0;
//     else no clear effect.
//
// A nil metric or one without a delta has no clear effect.
func judge(m *validation.Aggregate, s side, c criterion) judgement {
	if m == nil {
		return judgement{mean: math.NaN()}
	}
	d, b, w := sideValues(m, s)
	j := judgement{mean: math.NaN(), better: b, worse: w, runs: m.Runs, need: quorum(m.Runs)}
	if d == nil {
		return j
	}
	j.mean = float64(d.Mean)
	sign := 1.0 // the claimed direction of the delta
	if m.Better == validation.BetterLower {
		sign = -1
	} else if m.Better != validation.BetterHigher {
		return j // reported only: no direction to claim
	}
	good, bad := sign*j.mean > 0, sign*j.mean < 0
	if c.margin > 0 {
		good, bad = sign*j.mean >= -c.margin, sign*j.mean < -c.margin
		if good && w == 0 {
			j.verdict = holds
		} else if bad && w >= j.need && b == 0 {
			j.verdict = contradicted
		}
		return j
	}
	switch {
	case good && b >= j.need && w == 0:
		j.verdict = holds
	case bad && w >= j.need && b == 0:
		j.verdict = contradicted
	}
	return j
}

// combine is a claim's verdict from its criteria's: holds when every
// criterion holds; mixed when one holds and another is contradicted;
// contradicted when one is contradicted and none holds; else no clear
// effect.
func combine(vs []verdict) verdict {
	var h, c int
	for _, v := range vs {
		switch v {
		case holds:
			h++
		case contradicted:
			c++
		}
	}
	switch {
	case len(vs) > 0 && h == len(vs):
		return holds
	case h > 0 && c > 0:
		return mixed
	case c > 0:
		return contradicted
	}
	return noClearEffect
}

// effectText quotes a criterion's effect for one candidate: the mean delta
// in points or the mean ratio, with the seed counts.
func effectText(m *validation.Aggregate, s side, c criterion, j judgement) string {
	var v string
	switch c.effect {
	case effectRatio:
		r := m.Ratio
		if s == vsControl {
			r = m.RatioVsControl
		}
		if r == nil {
			v = fmt.Sprintf("%s %+.3g", c.label, j.mean)
		} else {
			v = fmt.Sprintf("%s x%.3g", c.label, float64(r.Mean))
		}
	default:
		v = fmt.Sprintf("%s %s pts", c.label, signed("%+.2f", 100*j.mean))
	}
	return fmt.Sprintf("%s [%d/%d]", v, j.better, j.worse)
}
