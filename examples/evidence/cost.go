package main

import (
	"bytes"
	"fmt"
	"math"

	"github.com/strata-ml/strata/validation"
)

// renderCost writes what each candidate's pilot cost and what its model
// costs to serve: per data set, the mean over the seeds of the
// candidate's parameters, the wall time of its convert, fine-tuning and
// validate, and validate's latency_ms of the candidate against the dense
// baseline.
func renderCost(b *bytes.Buffer, d *doc) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	p("## Cost\n\n")
	p("What each candidate's pilot took and what its model costs to serve, the mean over the seeds. ")
	p("**convert**, **fine-tune** and **validate** are the wall seconds of the candidate's own stage runs: from its ")
	p("convert.json (`seconds`), finetune.json (`wall_seconds`) and validation.json (`wall_seconds`) for a strata sweep ")
	p("(the learning-rate runs not included); on the PyTorch path from torch.json, where convert includes `strata export --factors` ")
	p("and fine-tune is the whole finetune_loop.py run: the candidate's fine-tuning, the control's and the three ONNX exports. ")
	p("The sweeps ran up to %d stage runs at once on the shared machine, so the times are indicative. ", d.Sets[0].Res.Config.Jobs)
	p("**latency** is validate's `latency_ms`: the median wall milliseconds of one forward pass of a batch of 64 test rows ")
	p("over the timing rounds, the models taking turns, in strata's engine (float32) for the MLPs and in ONNX Runtime ")
	p("(one thread) for the PyTorch classifiers' ONNX files; the ratio is candidate / baseline with [B/W] from its ")
	p("paired-bootstrap interval (B: significantly faster). \"unreliable\" counts the seeds where validate flagged the timing ")
	p("(a busy machine, docs/VALIDATION.md).\n\n")
	for _, ds := range d.Sets {
		p("### %s: cost\n\n", ds.Name)
		var base []float64
		for _, s := range ds.Seeds {
			if s.Baseline != nil {
				base = append(base, s.Baseline.WallSeconds)
			}
		}
		if ds.Torch != nil {
			base = ds.Torch.BaselineSeconds
		}
		dense := ds.Res.Candidates[0].Metrics.Get(validation.MetricParams)
		if dense != nil && dense.Baseline != nil {
			p("Dense baseline: %.0f parameters, trained in %s s per seed.\n\n", float64(dense.Baseline.Mean), fmtMean(base))
		}
		p("| candidate | parameters | params ratio | convert, s | fine-tune, s | validate, s | latency baseline, ms | latency candidate, ms | latency ratio [B/W] | unreliable |\n")
		p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for i := range ds.Res.Candidates {
			c := &ds.Res.Candidates[i]
			var conv, ft, val []float64
			for _, sc := range ds.Cost[c.Name] {
				conv, ft, val = append(conv, sc.Convert), append(ft, sc.Finetune), append(val, sc.Validate)
			}
			params, ratio := "-", "-"
			if m := c.Metrics.Get(validation.MetricParams); m != nil && m.Candidate != nil {
				params = fmt.Sprintf("%.0f", float64(m.Candidate.Mean))
				if m.Ratio != nil {
					ratio = fmt.Sprintf("%.3f", float64(m.Ratio.Mean))
				}
			}
			lb, lc, lr := "-", "-", "-"
			if m := c.Metrics.Get(validation.MetricLatencyMS); m != nil {
				if m.Baseline != nil {
					lb = fmt.Sprintf("%.3g", float64(m.Baseline.Mean))
				}
				if m.Candidate != nil {
					lc = fmt.Sprintf("%.3g", float64(m.Candidate.Mean))
				}
				if m.Ratio != nil {
					lr = fmt.Sprintf("%.3g [%d/%d]", float64(m.Ratio.Mean), m.BetterRuns, m.WorseRuns)
				}
			}
			unreliable := 0
			for _, v := range ds.Runs[c.Name] {
				if m := v.Metrics[validation.MetricLatencyMS]; m != nil && m.Unreliable != "" {
					unreliable++
				}
			}
			p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %d/%d |\n", c.Name, params, ratio, fmtMean(conv), fmtMean(ft), fmtMean(val), lb, lc, lr, unreliable, len(ds.Runs[c.Name]))
		}
		p("\n")
	}
}

// fmtMean is the mean of v to three significant digits, "-" when empty.
func fmtMean(v []float64) string {
	if len(v) == 0 {
		return "-"
	}
	var s float64
	for _, x := range v {
		s += x
	}
	m := s / float64(len(v))
	if m >= 100 {
		return fmt.Sprintf("%.0f", m)
	}
	return fmt.Sprintf("%.3g", math.Round(m*100)/100)
}
