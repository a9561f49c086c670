// Package validationtest builds validation results for tests of the
// packages that read them (gate, render, stages' report), so that each
// test states only the metrics it is about.
package validationtest

import (
	"github.com/strata-ml/strata/internal/provenance"
	"github.com/strata-ml/strata/validation"
)

// F returns a pointer to the JSON number v.
func F(v float64) *validation.NullableFloat { f := validation.NullableFloat(v); return &f }

// CI returns the interval [lo, hi].
func CI(lo, hi float64) *validation.Interval {
	return &validation.Interval{validation.NullableFloat(lo), validation.NullableFloat(hi)}
}

// Metric builds a metric with the baseline's and the candidate's values
// and the delta's interval ci; nil ci means none (a metric judged on its
// point value).
func Metric(better string, base, cand float64, ci *validation.Interval) *validation.Metric {
	m := &validation.Metric{Better: better, Baseline: F(base), Candidate: F(cand), Delta: F(cand - base), CI95: ci}
	if ci == nil {
		m.CIReason = "one run per model, nothing to resample"
	}
	return m
}

// WithControl adds the control's value and the interval ci of the
// candidate's delta to it.
func WithControl(m *validation.Metric, ctl float64, ci *validation.Interval) *validation.Metric {
	m.WithControl = true
	m.Control, m.DeltaVsControl, m.CI95VsControl = F(ctl), F(float64(*m.Candidate)-ctl), ci
	return m
}

// Result builds a validation result of the models mode with the given
// metrics, a baseline and a candidate, and a control when control is set.
func Result(control bool, ms map[string]*validation.Metric) *validation.Result {
	v := &validation.Result{SchemaVersion: validation.SchemaVersion, Mode: validation.ModeModels, Metrics: ms}
	v.Inputs.Baseline = &provenance.File{Path: "baseline.arrow", SHA256: "b"}
	v.Inputs.Candidate = &provenance.File{Path: "candidate.arrow", SHA256: "c"}
	if control {
		v.Inputs.Control = &provenance.File{Path: "control.arrow", SHA256: "k"}
	}
	return v
}

// Full is a crafted validation result with every part a report draws:
// a control, per-layer spectra, residual shares and robustness, noise
// levels. The candidate has params parameters (the baseline 1000) and
// accuracy acc (the baseline 0.95) with the delta's interval [lo, hi].
func Full(params float64, acc, lo, hi float64) *validation.Result {
	ms := map[string]*validation.Metric{
		validation.MetricAccuracy:                        WithControl(Metric(validation.BetterHigher, 0.95, acc, CI(lo, hi)), 0.955, CI(lo-0.005, hi-0.005)),
		validation.MetricLoss:                            WithControl(Metric(validation.BetterLower, 0.2, 0.21, CI(-0.01, 0.03)), 0.19, CI(0, 0.04)),
		validation.MetricParams:                          WithControl(Metric(validation.BetterLower, 1000, params, CI(params-1000, params-1000)), 1000, CI(params-1000, params-1000)),
		validation.MetricPerturbationSensitivityRelative: WithControl(Metric(validation.BetterLower, 0.1, 0.09, CI(-0.02, -0.005)), 0.11, CI(-0.03, -0.01)),
	}
	ps := WithControl(Metric(validation.BetterLower, 0.5, 0.45, CI(-0.08, -0.02)), 0.55, CI(-0.12, -0.08))
	for _, lvl := range []float64{0.01, 0.05, 0.1} {
		p := WithControl(Metric(validation.BetterLower, 0.5+lvl, 0.45+lvl, CI(-0.08, -0.02)), 0.55+lvl, CI(-0.12, -0.08))
		p.Name, p.Noise = "noise", lvl
		ps.Parts = append(ps.Parts, p)
	}
	ms[validation.MetricPerturbationSensitivity] = ps
	v := Result(true, ms)
	spectrum := func(top float64, n int) []validation.NullableFloat {
		s := make([]validation.NullableFloat, n)
		for i := range s {
			s[i] = validation.NullableFloat(top / float64(i+1))
		}
		return s
	}
	for i, name := range []string{"0", "2", "4"} {
		v.Layers = append(v.Layers, validation.Layer{
			Name: name, Shape: [2]int{16, 16}, Family: "monarch", Structure: "monarch b=4 r=2 + lowrank r=2",
			ResidualShare:  validation.LayerValues{Candidate: F(0.1 * float64(i+1))},
			RobustnessDrop: validation.LayerValues{Baseline: F(0.01), Candidate: F(0.02), Control: F(0.015)},
			SingularValues: validation.LayerSpectra{Baseline: spectrum(3, 16), Candidate: spectrum(2.5, 16), CandidateTrunk: spectrum(2, 16), Control: spectrum(3.2, 16)},
		})
	}
	v.Config.RobustnessEps = 0.1
	return v
}
