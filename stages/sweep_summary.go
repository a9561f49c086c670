package stages

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Spread summarises one value over the seeds of a sweep: mean, sample
// standard deviation (null for one seed), min and max over the N seeds
// where it is finite.
type Spread struct {
	N    int    `json:"n"`
	Mean Float  `json:"mean"`
	SD   *Float `json:"sd"`
	Min  Float  `json:"min"`
	Max  Float  `json:"max"`
}

// newSpread summarises the finite values of v (nil when there are none).
func newSpread(v []float64) *Spread {
	var xs []float64
	for _, x := range v {
		if finiteVal(x) {
			xs = append(xs, x)
		}
	}
	if len(xs) == 0 {
		return nil
	}
	s := &Spread{N: len(xs), Min: Float(xs[0]), Max: Float(xs[0])}
	var sum float64
	for _, x := range xs {
		sum += x
		s.Min, s.Max = Float(math.Min(float64(s.Min), x)), Float(math.Max(float64(s.Max), x))
	}
	mean := sum / float64(len(xs))
	s.Mean = Float(mean)
	if len(xs) > 1 {
		var ss float64
		for _, x := range xs {
			ss += (x - mean) * (x - mean)
		}
		s.SD = num(math.Sqrt(ss / float64(len(xs)-1)))
	}
	return s
}

// SweepMetric is one metric of validation.json (or a part of one)
// aggregated over a candidate's seeds.
type SweepMetric struct {
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
	CIHalfWidth          *Float `json:"ci_half_width"`
	CIHalfWidthVsControl *Float `json:"ci_half_width_vs_control,omitempty"`
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

// aggregateMetrics summarises the metrics (and their parts) of a
// candidate's validations, one per seed, in MetricKeys order.
func aggregateMetrics(vals []*ValidationResult) []SweepMetric {
	var out []SweepMetric
	add := func(name string, pick func(*ValidationResult) *Metric) {
		var ms []*Metric
		for _, v := range vals {
			if m := pick(v); m != nil {
				ms = append(ms, m)
			}
		}
		if len(ms) == 0 {
			return
		}
		out = append(out, aggregateMetric(name, ms))
	}
	for _, key := range MetricKeys {
		first := vals[0].Metrics[key]
		if first == nil {
			continue
		}
		add(key, func(v *ValidationResult) *Metric { return v.Metrics[key] })
		for i, p := range first.Parts {
			name := key + "." + p.Name
			if p.Name == "" {
				name = key + "@" + strconv.FormatFloat(p.Noise, 'g', -1, 64)
			}
			add(name, func(v *ValidationResult) *Metric {
				if m := v.Metrics[key]; m != nil && i < len(m.Parts) && m.Parts[i].Name == p.Name && m.Parts[i].Noise == p.Noise {
					return m.Parts[i]
				}
				return nil
			})
		}
	}
	return out
}

func aggregateMetric(name string, ms []*Metric) SweepMetric {
	sm := SweepMetric{Metric: name, Better: ms[0].Better, Runs: len(ms)}
	values := func(pick func(*Metric) *Float) []float64 {
		v := make([]float64, len(ms))
		for i, m := range ms {
			v[i] = math.NaN()
			if f := pick(m); f != nil {
				v[i] = float64(*f)
			}
		}
		return v
	}
	ratio := func(ref func(*Metric) *Float) []float64 {
		v := make([]float64, len(ms))
		for i, m := range ms {
			v[i] = math.NaN()
			if r, c := ref(m), m.Candidate; r != nil && c != nil && *r != 0 {
				v[i] = float64(*c) / float64(*r)
			}
		}
		return v
	}
	base := func(m *Metric) *Float { return m.Baseline }
	ctrl := func(m *Metric) *Float { return m.Control }
	sm.Baseline, sm.Candidate = newSpread(values(base)), newSpread(values(func(m *Metric) *Float { return m.Candidate }))
	sm.Delta = newSpread(values(func(m *Metric) *Float { return m.Delta }))
	sm.Ratio = newSpread(ratio(base))
	sm.CIHalfWidth = halfWidth(ms, func(m *Metric) *Interval { return m.CI95 })
	sm.BetterRuns, sm.WorseRuns = direction(ms, func(m *Metric) (*Float, *Interval) { return m.Delta, m.CI95 })
	if ms[0].WithControl || ms[0].Control != nil {
		sm.Control = newSpread(values(ctrl))
		sm.DeltaVsControl = newSpread(values(func(m *Metric) *Float { return m.DeltaVsControl }))
		sm.RatioVsControl = newSpread(ratio(ctrl))
		sm.CIHalfWidthVsControl = halfWidth(ms, func(m *Metric) *Interval { return m.CI95VsControl })
		sm.BetterRunsVsControl, sm.WorseRunsVsControl = direction(ms, func(m *Metric) (*Float, *Interval) { return m.DeltaVsControl, m.CI95VsControl })
	}
	return sm
}

// halfWidth is the mean half width of the sampled intervals (a bootstrap
// interval of width 0 included; the [d, d] of an exact metric not).
func halfWidth(ms []*Metric, ci func(*Metric) *Interval) *Float {
	var sum float64
	n := 0
	for _, m := range ms {
		if c := ci(m); c != nil && !strings.HasPrefix(m.CIReason, exactCIPrefix) {
			sum += float64(c[1]-c[0]) / 2
			n++
		}
	}
	if n == 0 {
		return nil
	}
	return num(sum / float64(n))
}

// direction counts the runs whose delta is better or worse for the
// candidate (see SweepMetric.BetterRuns).
func direction(ms []*Metric, pick func(*Metric) (*Float, *Interval)) (better, worse int) {
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

// Metric returns the aggregate of a metric key (or part), or nil.
func (c *SweepCandidateResult) Metric(name string) *SweepMetric {
	for i := range c.Metrics {
		if c.Metrics[i].Metric == name {
			return &c.Metrics[i]
		}
	}
	return nil
}

// FormatSpread writes mean ± sd with 4 significant digits ("-" for nil);
// scale multiplies every value first (100 for percentage points).
func FormatSpread(s *Spread, scale float64, signed bool) string {
	if s == nil {
		return "-"
	}
	f := "%.4g"
	if signed {
		f = "%+.4g"
	}
	out := fmt.Sprintf(f, float64(s.Mean)*scale)
	if s.SD != nil {
		out += fmt.Sprintf(" ± %.2g", float64(*s.SD)*scale)
	}
	return out
}

// sweepSummaryKeys are the metrics sweep.md shows per candidate.
var sweepSummaryKeys = []string{
	MetricAccuracy, MetricLoss, MetricJacobianCondition, MetricGradNormRatio, MetricLayerCondition,
	MetricPerturbationSensitivityRelative, MetricPredictionFlipRate, MetricLayerRobustness,
	MetricResidualShare, MetricParams, MetricFLOPs, MetricLatencyMS, MetricTrainingStability,
	MetricLRRobustness, MetricLRRobustness + ".range",
}

// renderSweepMarkdown renders sweep.md: the candidates side by side, then
// each candidate's metrics with the seed-to-seed spread.
func renderSweepMarkdown(res *SweepResult) []byte {
	var b bytes.Buffer
	cfg := &res.Config
	seeds := make([]string, len(cfg.Seeds))
	for i, s := range cfg.Seeds {
		seeds[i] = strconv.FormatUint(s, 10)
	}
	fmt.Fprintf(&b, "# strata sweep\n\n")
	fmt.Fprintf(&b, "%d candidates x %d seeds (%s)", len(res.Candidates), len(cfg.Seeds), strings.Join(seeds, ", "))
	if len(cfg.LRs) > 0 {
		lrs := make([]string, len(cfg.LRs))
		for i, lr := range cfg.LRs {
			lrs[i] = strconv.FormatFloat(lr, 'g', -1, 64)
		}
		fmt.Fprintf(&b, ", learning rates %s", strings.Join(lrs, ", "))
	}
	fmt.Fprintf(&b, ". Data: %s. Baseline: %s. Policy: %s.\n\n", res.Seeds[0].Data.Source, orDefault(cfg.Model, "dense "+cfg.Baseline.Init+" trained per seed"), res.Policy.Path)
	b.WriteString("Every cell is the mean over the seeds ± the seed-to-seed standard deviation. Deltas are candidate - baseline; ")
	b.WriteString("[n+ / n-] counts the seeds where the candidate is better / worse (the run's 95% interval excludes 0).\n\n")

	b.WriteString("| candidate | structure | decision per seed | params ratio | accuracy delta | Jacobian condition ratio | relative sensitivity ratio | lr robustness delta |\n")
	b.WriteString("|---|---|---|---:|---:|---:|---:|---:|\n")
	for i := range res.Candidates {
		c := &res.Candidates[i]
		var ds []string
		for _, r := range c.Runs {
			ds = append(ds, r.Decision.Label())
		}
		cell := func(key string, delta bool) string {
			m := c.Metric(key)
			if m == nil {
				return "-"
			}
			if delta {
				return FormatSpread(m.Delta, 1, true) + counts(m.BetterRuns, m.WorseRuns)
			}
			return FormatSpread(m.Ratio, 1, false) + counts(m.BetterRuns, m.WorseRuns)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", c.Name, c.Structure, strings.Join(ds, " "),
			FormatSpread(c.Metric(MetricParams).Ratio, 1, false), cell(MetricAccuracy, true), cell(MetricJacobianCondition, false),
			cell(MetricPerturbationSensitivityRelative, false), cell(MetricLRRobustness, true))
	}
	for i := range res.Candidates {
		c := &res.Candidates[i]
		fmt.Fprintf(&b, "\n## %s\n\n%s; decision %s.\n\n", c.Name, c.Structure, c.Decision.Label())
		b.WriteString("| metric | baseline | candidate | delta [n+ / n-] | mean 95% CI half width |")
		withControl := c.Metric(MetricAccuracy) != nil && c.Metric(MetricAccuracy).Control != nil
		if withControl {
			b.WriteString(" control | delta vs control [n+ / n-] |")
		}
		b.WriteString("\n|---|---:|---:|---:|---:|")
		if withControl {
			b.WriteString("---:|---:|")
		}
		b.WriteString("\n")
		for _, key := range sweepSummaryKeys {
			m := c.Metric(key)
			if m == nil {
				continue
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s%s | %s |", key, FormatSpread(m.Baseline, 1, false), FormatSpread(m.Candidate, 1, false),
				FormatSpread(m.Delta, 1, true), counts(m.BetterRuns, m.WorseRuns), fmtFloatPtr(m.CIHalfWidth))
			if withControl {
				fmt.Fprintf(&b, " %s | %s%s |", FormatSpread(m.Control, 1, false), FormatSpread(m.DeltaVsControl, 1, true), counts(m.BetterRunsVsControl, m.WorseRunsVsControl))
			}
			b.WriteString("\n")
		}
	}
	return b.Bytes()
}

func counts(better, worse int) string {
	return fmt.Sprintf(" [%d / %d]", better, worse)
}
