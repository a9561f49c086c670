package validation

import (
	"math"
	"strconv"
	"strings"
)

// Spread summarises one value over the seeds of a sweep: mean, sample
// standard deviation (null for one seed), min and max over the N seeds
// where it is finite.
type Spread struct {
	N    int            `json:"n"`
	Mean NullableFloat  `json:"mean"`
	SD   *NullableFloat `json:"sd"`
	Min  NullableFloat  `json:"min"`
	Max  NullableFloat  `json:"max"`
}

// newSpread summarises the finite values of v (nil when there are none).
func newSpread(v []float64) *Spread {
	var xs []float64
	for _, x := range v {
		if isFinite(x) {
			xs = append(xs, x)
		}
	}
	if len(xs) == 0 {
		return nil
	}
	s := &Spread{N: len(xs), Min: NullableFloat(xs[0]), Max: NullableFloat(xs[0])}
	var sum float64
	for _, x := range xs {
		sum += x
		s.Min, s.Max = NullableFloat(math.Min(float64(s.Min), x)), NullableFloat(math.Max(float64(s.Max), x))
	}
	mean := sum / float64(len(xs))
	s.Mean = NullableFloat(mean)
	if len(xs) > 1 {
		var ss float64
		for _, x := range xs {
			ss += (x - mean) * (x - mean)
		}
		s.SD = Num(math.Sqrt(ss / float64(len(xs)-1)))
	}
	return s
}

// Aggregate is one metric of validation.json (or a part of one)
// aggregated over a candidate's seeds.
type Aggregate struct {
	// Metric is the key; a part is key.name (e.g. lr_robustness.range) or
	// key@noise (e.g. perturbation_sensitivity@0.05).
	Metric string `json:"metric"`
	Better string `json:"better"`
	// Each model's value, the candidate's deltas and ratios
	// (candidate / reference) over the seeds.
	Baseline       *Spread `json:"baseline"`
	Candidate      *Spread `json:"candidate"`
	Control        *Spread `json:"control,omitempty"`
	Delta          *Spread `json:"delta"`
	DeltaVsControl *Spread `json:"delta_vs_control,omitempty"`
	Ratio          *Spread `json:"ratio"`
	RatioVsControl *Spread `json:"ratio_vs_control,omitempty"`
	// CIHalfWidth is the mean over the seeds of half the width of each
	// run's sampled 95% interval of the delta: the per-run uncertainty,
	// to set beside Delta.SD, the seed-to-seed spread (null when no run
	// has a sampled interval; exact metrics have none).
	CIHalfWidth          *NullableFloat `json:"ci_half_width"`
	CIHalfWidthVsControl *NullableFloat `json:"ci_half_width_vs_control,omitempty"`
	// Better and Worse count the seeds whose delta is better or worse for
	// the candidate: a sampled interval must exclude 0; an exact value
	// (or one without an interval) must differ from 0. Zero for a
	// reported-only metric.
	BetterRuns          int `json:"better_runs"`
	WorseRuns           int `json:"worse_runs"`
	BetterRunsVsControl int `json:"better_runs_vs_control"`
	WorseRunsVsControl  int `json:"worse_runs_vs_control"`
	// Runs is the number of seeds.
	Runs int `json:"runs"`
}

// AggregateSeeds summarises the metrics (and their parts) of a
// candidate's validations, one per seed, in MetricKeys order.
func AggregateSeeds(vals []*Result) Aggregates {
	var out Aggregates
	add := func(name string, pick func(*Result) *Metric) {
		var ms []*Metric
		for _, v := range vals {
			if m := pick(v); m != nil {
				ms = append(ms, m)
			}
		}
		if len(ms) == 0 {
			return
		}
		out = append(out, aggregate(name, ms))
	}
	for _, key := range MetricKeys {
		first := vals[0].Metrics[key]
		if first == nil {
			continue
		}
		add(key, func(v *Result) *Metric { return v.Metrics[key] })
		for i, p := range first.Parts {
			name := key + "." + p.Name
			if p.Name == "" {
				name = key + "@" + strconv.FormatFloat(p.Noise, 'g', -1, 64)
			}
			add(name, func(v *Result) *Metric {
				if m := v.Metrics[key]; m != nil && i < len(m.Parts) && m.Parts[i].Name == p.Name && m.Parts[i].Noise == p.Noise {
					return m.Parts[i]
				}
				return nil
			})
		}
	}
	return out
}

func aggregate(name string, ms []*Metric) Aggregate {
	sm := Aggregate{Metric: name, Better: ms[0].Better, Runs: len(ms)}
	values := func(pick func(*Metric) *NullableFloat) []float64 {
		v := make([]float64, len(ms))
		for i, m := range ms {
			v[i] = math.NaN()
			if f := pick(m); f != nil {
				v[i] = float64(*f)
			}
		}
		return v
	}
	ratio := func(ref func(*Metric) *NullableFloat) []float64 {
		v := make([]float64, len(ms))
		for i, m := range ms {
			v[i] = math.NaN()
			if r, c := ref(m), m.Candidate; r != nil && c != nil && *r != 0 {
				v[i] = float64(*c) / float64(*r)
			}
		}
		return v
	}
	base := func(m *Metric) *NullableFloat { return m.Baseline }
	ctrl := func(m *Metric) *NullableFloat { return m.Control }
	sm.Baseline, sm.Candidate = newSpread(values(base)), newSpread(values(func(m *Metric) *NullableFloat { return m.Candidate }))
	sm.Delta = newSpread(values(func(m *Metric) *NullableFloat { return m.Delta }))
	sm.Ratio = newSpread(ratio(base))
	sm.CIHalfWidth = halfWidth(ms, func(m *Metric) *Interval { return m.CI95 })
	sm.BetterRuns, sm.WorseRuns = direction(ms, func(m *Metric) (*NullableFloat, *Interval) { return m.Delta, m.CI95 })
	if ms[0].WithControl || ms[0].Control != nil {
		sm.Control = newSpread(values(ctrl))
		sm.DeltaVsControl = newSpread(values(func(m *Metric) *NullableFloat { return m.DeltaVsControl }))
		sm.RatioVsControl = newSpread(ratio(ctrl))
		sm.CIHalfWidthVsControl = halfWidth(ms, func(m *Metric) *Interval { return m.CI95VsControl })
		sm.BetterRunsVsControl, sm.WorseRunsVsControl = direction(ms, func(m *Metric) (*NullableFloat, *Interval) { return m.DeltaVsControl, m.CI95VsControl })
	}
	return sm
}

// halfWidth is the mean half width of the sampled intervals (a bootstrap
// interval of width 0 included; the [d, d] of an exact metric not).
func halfWidth(ms []*Metric, ci func(*Metric) *Interval) *NullableFloat {
	var sum float64
	n := 0
	for _, m := range ms {
		if c := ci(m); c != nil && !strings.HasPrefix(m.CIReason, ExactCIPrefix) {
			sum += float64(c[1]-c[0]) / 2
			n++
		}
	}
	if n == 0 {
		return nil
	}
	return Num(sum / float64(n))
}

// direction counts the runs whose delta is better or worse for the
// candidate (see Aggregate.BetterRuns).
func direction(ms []*Metric, pick func(*Metric) (*NullableFloat, *Interval)) (better, worse int) {
	for _, m := range ms {
		d, ci := pick(m)
		if d == nil || m.Better == BetterReported {
			continue
		}
		lo, hi := float64(*d), float64(*d)
		if ci != nil {
			lo, hi = float64(ci[0]), float64(ci[1])
		}
		up, down := lo > 0, hi < 0
		if m.Better == BetterLower {
			up, down = down, up
		}
		switch {
		case up:
			better++
		case down:
			worse++
		}
	}
	return better, worse
}

// Aggregates are a candidate's metrics aggregated over the seeds, in
// MetricKeys order (AggregateSeeds).
type Aggregates []Aggregate

// Get returns the aggregate of a metric key (or part), or nil.
func (as Aggregates) Get(name string) *Aggregate {
	for i := range as {
		if as[i].Metric == name {
			return &as[i]
		}
	}
	return nil
}
