package stages

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/validation"
)

// This file times the models for latency_ms: interleaved rounds, wall and
// CPU time side by side, and a verdict on whether the rounds can be
// trusted.

// Thresholds of an unreliable latency: a model whose median wall time is
// more than waitRatio times its median CPU time waited for a core (the
// machine is busy); a candidate-to-reference ratio whose medians over the
// first and the second half of the rounds differ by more than
// halvesDisagree (relative) drifted with the machine.
const (
	waitRatio      = 1.5
	halvesDisagree = 0.25
)

// timeModels measures latency_ms: every model on the first LatencyBatch
// rows in the precision it is served in (float32), each run LatencyWarmup
// times untimed, then LatencyRuns rounds in which every model runs once,
// the order rotating from round to round so that drift of the machine
// hits every model alike. Each pass records its wall time and the
// process's CPU time over it.
func (r *validateRun) timeModels(ctx context.Context) error {
	type timed struct {
		s   int
		run func() (time.Duration, error)
	}
	batch := min(r.cfg.LatencyBatch, r.ds.N)
	var ts []timed
	for s, m := range r.models {
		if m == nil {
			continue
		}
		run, err := m.timer(batch)
		if err != nil {
			return err
		}
		ts = append(ts, timed{s, run})
	}
	for range r.cfg.LatencyWarmup {
		for _, t := range ts {
			if _, err := t.run(); err != nil {
				return ortErr(r.models[t.s].path, err)
			}
		}
	}
	for round := range r.cfg.LatencyRuns {
		if err := ctx.Err(); err != nil {
			return err
		}
		for j := range ts {
			t := ts[(round+j)%len(ts)]
			cpu0 := processCPU()
			wall, err := t.run()
			cpu := processCPU() - cpu0
			if err != nil {
				return ortErr(r.models[t.s].path, err)
			}
			e := r.evals[t.s]
			e.latency = append(e.latency, float64(wall.Nanoseconds())/1e6)
			e.cpu = append(e.cpu, float64(cpu.Nanoseconds())/1e6)
		}
	}
	return nil
}

// latencyMetric builds latency_ms: the median wall time over the rounds
// (paired by round), the median CPU time beside it, and unreliable when
// the rounds say the machine interfered.
func (r *validateRun) latencyMetric(b *metricBuilder) *validation.Metric {
	ev := r.evals
	runs := r.cfg.LatencyRuns
	m := b.statMetric(validation.BetterLower, runs, "timing rounds", func(s int, idx []int) float64 { return medianAt(ev[s].latency, idx) }, [3]string{})
	cpu := b.statMetric(validation.BetterLower, runs, "timing rounds", func(s int, idx []int) float64 { return medianAt(ev[s].cpu, idx) }, [3]string{})
	cpu.Name = "cpu_ms"
	cpu.Note = "median over the rounds of the process's CPU time during the pass (all its threads)"
	m.Parts = []*validation.Metric{cpu}
	var kinds []string
	for _, s := range b.sides {
		kinds = append(kinds, sideNames[s]+" "+r.models[s].kind())
	}
	m.Note = fmt.Sprintf("median over %d rounds of the wall milliseconds of one float32 forward pass of %d rows (%s), after %d warm-up passes; every round runs every model once, the order rotating; part cpu_ms beside it; wall-clock: varies between runs",
		runs, min(r.cfg.LatencyBatch, r.ds.N), strings.Join(kinds, ", "), r.cfg.LatencyWarmup)
	if why := r.latencyTrouble(b); why != "" {
		m.Unreliable = why
		m.Note += "; unreliable: " + why
	}
	return m
}

// latencyTrouble says why the timing rounds cannot be trusted, or "".
func (r *validateRun) latencyTrouble(b *metricBuilder) string {
	ev := r.evals
	var trouble []string
	for _, s := range b.sides {
		wall, cpu := compute.Median(ev[s].latency), compute.Median(ev[s].cpu)
		if cpu > 0 && wall > waitRatio*cpu {
			trouble = append(trouble, fmt.Sprintf("the %s's wall time is %.1f times its CPU time: the process waited for a core (a busy machine)", sideNames[s], wall/cpu))
		}
	}
	runs := len(ev[sideBaseline].latency)
	for _, s := range b.sides {
		if s == sideBaseline || runs < 4 {
			continue
		}
		half := func(lo, hi int) float64 {
			return compute.Median(ev[s].latency[lo:hi]) / compute.Median(ev[sideBaseline].latency[lo:hi])
		}
		a, c := half(0, runs/2), half(runs/2, runs)
		if d := math.Abs(a-c) / math.Min(a, c); d > halvesDisagree {
			trouble = append(trouble, fmt.Sprintf("the %s-to-baseline time ratio is %.3g over the first half of the rounds and %.3g over the second: the machine's load changed", sideNames[s], a, c))
		}
	}
	return strings.Join(trouble, "; ")
}
