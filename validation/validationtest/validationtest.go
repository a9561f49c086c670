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
