package render

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/strata-ml/strata/gate"
	"github.com/strata-ml/strata/render/number"
	"github.com/strata-ml/strata/validation"
)

// sweepSummaryKeys are the metrics sweep.md shows per candidate.
var sweepSummaryKeys = []string{
	validation.MetricAccuracy, validation.MetricLoss, validation.MetricJacobianCondition, validation.MetricGradNormRatio, validation.MetricLayerCondition,
	validation.MetricPerturbationSensitivityRelative, validation.MetricPredictionFlipRate, validation.MetricLayerRobustness,
	validation.MetricResidualShare, validation.MetricParams, validation.MetricFLOPs, validation.MetricLatencyMS, validation.MetricTrainingStability,
	validation.MetricLRRobustness, validation.MetricLRRobustness + ".range",
}

// Sweep is what sweep.md shows: a sweep's candidates, each with its
// decision per seed and its metrics aggregated over the seeds.
type Sweep struct {
	Seeds []uint64
	// LRs are the learning rates of the learning-rate sweep (none: nil).
	LRs []float64
	// Data says where the data came from, Baseline what the baseline is
	// (a model file, or how it was trained per seed), Policy the policy
	// file every run was judged against.
	Data, Baseline, Policy string
	Candidates             []SweepCandidate
}

// SweepCandidate is one candidate of a sweep.
type SweepCandidate struct {
	Name, Structure string
	// Decisions are the gate's per seed, in Seeds order; Decision is the
	// worst of them (gate.Worst).
	Decisions []gate.Decision
	Decision  gate.Decision
	Metrics   validation.Aggregates
}

// SweepMarkdown renders sweep.md: the candidates side by side, then each
// candidate's metrics with the seed-to-seed spread.
func SweepMarkdown(res *Sweep) []byte {
	var b bytes.Buffer
	seeds := make([]string, len(res.Seeds))
	for i, s := range res.Seeds {
		seeds[i] = strconv.FormatUint(s, 10)
	}
	fmt.Fprintf(&b, "# strata sweep\n\n")
	fmt.Fprintf(&b, "%d candidates x %d seeds (%s)", len(res.Candidates), len(res.Seeds), strings.Join(seeds, ", "))
	if len(res.LRs) > 0 {
		lrs := make([]string, len(res.LRs))
		for i, lr := range res.LRs {
			lrs[i] = strconv.FormatFloat(lr, 'g', -1, 64)
		}
		fmt.Fprintf(&b, ", learning rates %s", strings.Join(lrs, ", "))
	}
	fmt.Fprintf(&b, ". Data: %s. Baseline: %s. Policy: %s.\n\n", res.Data, res.Baseline, res.Policy)
	b.WriteString("Every cell is the mean over the seeds ± the seed-to-seed standard deviation. Deltas are candidate - baseline; ")
	b.WriteString("[n+ / n-] counts the seeds where the candidate is better / worse (the run's 95% interval excludes 0).\n\n")

	b.WriteString("| candidate | structure | decision per seed | params ratio | accuracy delta | Jacobian condition ratio | relative sensitivity ratio | lr robustness delta |\n")
	b.WriteString("|---|---|---|---:|---:|---:|---:|---:|\n")
	for i := range res.Candidates {
		c := &res.Candidates[i]
		var ds []string
		for _, d := range c.Decisions {
			ds = append(ds, d.Label())
		}
		cell := func(key string, delta bool) string {
			m := c.Metrics.Get(key)
			if m == nil {
				return "-"
			}
			if delta {
				return number.Spread(m.Delta, 1, true) + counts(m.BetterRuns, m.WorseRuns)
			}
			return number.Spread(m.Ratio, 1, false) + counts(m.BetterRuns, m.WorseRuns)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", c.Name, c.Structure, strings.Join(ds, " "),
			number.Spread(c.Metrics.Get(validation.MetricParams).Ratio, 1, false), cell(validation.MetricAccuracy, true), cell(validation.MetricJacobianCondition, false),
			cell(validation.MetricPerturbationSensitivityRelative, false), cell(validation.MetricLRRobustness, true))
	}
	for i := range res.Candidates {
		c := &res.Candidates[i]
		fmt.Fprintf(&b, "\n## %s\n\n%s; decision %s.\n\n", c.Name, c.Structure, c.Decision.Label())
		b.WriteString("| metric | baseline | candidate | delta [n+ / n-] | mean 95% CI half width |")
		withControl := c.Metrics.Get(validation.MetricAccuracy) != nil && c.Metrics.Get(validation.MetricAccuracy).Control != nil
		if withControl {
			b.WriteString(" control | delta vs control [n+ / n-] |")
		}
		b.WriteString("\n|---|---:|---:|---:|---:|")
		if withControl {
			b.WriteString("---:|---:|")
		}
		b.WriteString("\n")
		for _, key := range sweepSummaryKeys {
			m := c.Metrics.Get(key)
			if m == nil {
				continue
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s%s | %s |", key, number.Spread(m.Baseline, 1, false), number.Spread(m.Candidate, 1, false),
				number.Spread(m.Delta, 1, true), counts(m.BetterRuns, m.WorseRuns), number.OrNull(m.CIHalfWidth))
			if withControl {
				fmt.Fprintf(&b, " %s | %s%s |", number.Spread(m.Control, 1, false), number.Spread(m.DeltaVsControl, 1, true), counts(m.BetterRunsVsControl, m.WorseRunsVsControl))
			}
			b.WriteString("\n")
		}
	}
	return b.Bytes()
}

func counts(better, worse int) string {
	return fmt.Sprintf(" [%d / %d]", better, worse)
}
