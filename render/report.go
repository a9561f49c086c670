// Package render draws what people and orchestrators read of a pilot:
// report.html, report.md and their plots, sweep.md and the OpenMetrics
// text, from validation results and the gate's judgement of them. It
// decides nothing (the gate does) and writes no file (stages does); its
// numbers are written by render/number.
package render

import (
	"bytes"
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/strata-ml/strata/gate"
	"github.com/strata-ml/strata/internal/provenance"
	"github.com/strata-ml/strata/render/number"
	"github.com/strata-ml/strata/validation"
)

// Report is what report.html and report.md show: the gate's judgement
// of one candidate (or, with select-best, several) and the featured
// candidate's metrics.
type Report struct {
	// Title heads the report (empty: "strata pilot report").
	Title string
	Tool  provenance.Tool
	// Inputs are the validation files judged and the policy.
	Inputs struct {
		Validations []provenance.File
		Policy      provenance.File
	}
	// Conversion, when set, is the candidate's conversion.
	Conversion *Conversion
	Decision   gate.Decision
	Why        string
	Rules      []gate.RuleResult
	Candidates []gate.Candidate
	// Metrics is the featured candidate's metric table (MetricRows), and
	// Regressions the metrics in it that got worse (Regressions).
	Metrics     []MetricRow
	Regressions []Regression
	HasControl  bool
	Warnings    []string
}

// Featured returns the candidate the report is about (gate.Featured).
func (r *Report) Featured() *gate.Candidate { return gate.Featured(r.Candidates) }

func (r *Report) title() string { return cmp.Or(r.Title, "strata pilot report") }

// MetricRow is one row of the report's metric table: a metric of
// validation.json for each model, with the deltas and their intervals.
type MetricRow struct {
	Metric    string                    `json:"metric"`
	Better    string                    `json:"better"`
	Baseline  *validation.NullableFloat `json:"baseline"`
	Candidate *validation.NullableFloat `json:"candidate"`
	Control   *validation.NullableFloat `json:"control,omitempty"`
	// Delta (candidate - baseline) with CI95 and PValue: what the
	// candidate changed.
	Delta  *validation.NullableFloat `json:"delta"`
	CI95   *validation.Interval      `json:"ci95"`
	PValue *validation.NullableFloat `json:"p_value,omitempty"`
	// DeltaVsControl (candidate - control) with CI95VsControl: what the
	// structure did, training budget equal.
	DeltaVsControl *validation.NullableFloat `json:"delta_vs_control,omitempty"`
	CI95VsControl  *validation.Interval      `json:"ci95_vs_control,omitempty"`
	// TrainingEffect is control - baseline: what more training alone did.
	TrainingEffect *validation.NullableFloat `json:"training_effect,omitempty"`
	Note           string                    `json:"note,omitempty"`
	Reason         string                    `json:"reason,omitempty"`
	// Unreliable says why the values cannot be trusted (latency_ms on a
	// busy machine), when validation.json says so.
	Unreliable string `json:"unreliable,omitempty"`
}

// MetricRows builds the metric table of a validation, in
// validation.MetricKeys order, then any further keys by name.
func MetricRows(v *validation.Result) []MetricRow {
	keys := slices.Clone(validation.MetricKeys)
	var extra []string
	for k := range v.Metrics {
		if !slices.Contains(keys, k) {
			extra = append(extra, k)
		}
	}
	slices.Sort(extra)
	keys = append(keys, extra...)
	var rows []MetricRow
	for _, k := range keys {
		m := v.Metrics[k]
		if m == nil {
			continue
		}
		row := MetricRow{
			Metric: k, Better: m.Better, Baseline: m.Baseline, Candidate: m.Candidate, Control: m.Control,
			Delta: m.Delta, CI95: m.CI95, PValue: m.PValue, DeltaVsControl: m.DeltaVsControl, CI95VsControl: m.CI95VsControl,
			Note: m.Note, Reason: m.Reason, Unreliable: m.Unreliable,
		}
		if validation.Finite(m.Control) && validation.Finite(m.Baseline) {
			row.TrainingEffect = validation.Num(float64(*m.Control - *m.Baseline))
		}
		rows = append(rows, row)
	}
	return rows
}

// Regression is a metric whose candidate got worse than a reference.
type Regression struct {
	Metric string `json:"metric"`
	// Versus is gate.VersusBaseline or gate.VersusControl.
	Versus    string                    `json:"versus"`
	Better    string                    `json:"better"`
	Reference *validation.NullableFloat `json:"reference"`
	Candidate *validation.NullableFloat `json:"candidate"`
	Delta     *validation.NullableFloat `json:"delta"`
	// RelativeDelta is Delta / |Reference| (null for a zero reference).
	RelativeDelta *validation.NullableFloat `json:"relative_delta"`
	CI95          *validation.Interval      `json:"ci95"`
	// Basis is how it got worse: JudgedCI (the whole 95% interval of the
	// delta on the worse side) or JudgedPoint (a metric without an
	// interval whose value is worse).
	Basis string `json:"basis"`
	// Rules lists the rules of the policy on the metric against this
	// reference; empty when no rule covers it.
	Rules      []string `json:"rules"`
	Unreliable string   `json:"unreliable,omitempty"`
}

// Regressions returns every metric of rows that got worse than the
// baseline, or than the control, beyond its interval: for a metric with
// an interval, when the whole interval of the delta lies on the worse
// side of 0 (a count's interval is its delta); for one without, when its
// value is worse. The policy may cover none of them: a report shows them
// all, with the rules that judge each. Reported-only metrics have no
// worse side.
func Regressions(rows []MetricRow, rules []gate.RuleResult) []Regression {
	var out []Regression
	for _, m := range rows {
		if m.Better != validation.BetterHigher && m.Better != validation.BetterLower {
			continue
		}
		for _, side := range []struct {
			versus string
			ref, d *validation.NullableFloat
			ci     *validation.Interval
		}{{gate.VersusBaseline, m.Baseline, m.Delta, m.CI95}, {gate.VersusControl, m.Control, m.DeltaVsControl, m.CI95VsControl}} {
			if !validation.Finite(side.d) || !validation.Finite(side.ref) {
				continue
			}
			worse := func(v float64) bool {
				if m.Better == validation.BetterLower {
					return v > 0
				}
				return v < 0
			}
			r := Regression{Metric: m.Metric, Versus: side.versus, Better: m.Better, Reference: side.ref, Candidate: m.Candidate,
				Delta: side.d, CI95: side.ci, Unreliable: m.Unreliable}
			switch {
			case side.ci != nil && finite(float64(side.ci[0])) && finite(float64(side.ci[1])):
				if !worse(float64(side.ci[0])) || !worse(float64(side.ci[1])) {
					continue
				}
				r.Basis = gate.JudgedCI
			case worse(float64(*side.d)):
				r.Basis = gate.JudgedPoint
			default:
				continue
			}
			if *side.ref != 0 {
				r.RelativeDelta = validation.Num(float64(*side.d) / math.Abs(float64(*side.ref)))
			}
			r.Rules = []string{}
			for _, rr := range rules {
				if rr.Metric == m.Metric && rr.Versus == side.versus {
					r.Rules = append(r.Rules, rr.Rule)
				}
			}
			out = append(out, r)
		}
	}
	return out
}

// Sentence says the regression in words, e.g. "jacobian_condition vs
// baseline: 9.92 -> 21.7 (+119%), 95% CI of the delta [+10.3, +14.3];
// lower is better; no rule covers it".
func (r Regression) Sentence() string {
	s := fmt.Sprintf("%s vs %s: %s -> %s", r.Metric, r.Versus, number.OrNull(r.Reference), number.OrNull(r.Candidate))
	if r.RelativeDelta != nil {
		s += fmt.Sprintf(" (%s%%)", number.Signed(100*float64(*r.RelativeDelta)))
	} else {
		s += " (" + number.SignedCell(r.Delta) + ")"
	}
	if r.Basis == gate.JudgedCI {
		s += ", 95% CI of the delta " + number.Interval(r.CI95)
	} else {
		s += ", no interval (the point value)"
	}
	s += "; " + r.Better + " is better; "
	if len(r.Rules) == 0 {
		s += "no rule covers it"
	} else {
		s += "judged by " + strings.Join(r.Rules, "; ")
	}
	if r.Unreliable != "" {
		s += "; unreliable: " + r.Unreliable
	}
	return s
}

// OpenMetrics renders the decision, the rule counts and every finite
// metric value of each model (rows, MetricRows) as OpenMetrics text.
func OpenMetrics(d gate.Decision, counts map[gate.Outcome]int, rows []MetricRow) []byte {
	var b bytes.Buffer
	b.WriteString("# TYPE strata_decision stateset\n")
	b.WriteString("# HELP strata_decision Gate decision of the strata pilot.\n")
	for _, dd := range []gate.Decision{gate.DecisionGo, gate.DecisionNoGo, gate.DecisionInconclusive} {
		v := 0
		if dd == d {
			v = 1
		}
		fmt.Fprintf(&b, "strata_decision{strata_decision=%q} %d\n", string(dd), v)
	}
	b.WriteString("# TYPE strata_gate_rules gauge\n")
	b.WriteString("# HELP strata_gate_rules Gate policy rules by outcome.\n")
	for _, o := range gate.Outcomes {
		fmt.Fprintf(&b, "strata_gate_rules{outcome=%q} %d\n", string(o), counts[o])
	}
	b.WriteString("# TYPE strata_metric gauge\n")
	b.WriteString("# HELP strata_metric Metrics of validation.json for each model (baseline, candidate, control).\n")
	for _, m := range rows {
		for _, s := range []struct {
			model string
			v     *validation.NullableFloat
		}{{"baseline", m.Baseline}, {"candidate", m.Candidate}, {"control", m.Control}} {
			if validation.Finite(s.v) {
				fmt.Fprintf(&b, "strata_metric{metric=%s,model=%s} %s\n", omLabel(m.Metric), omLabel(s.model), omNum(float64(*s.v)))
			}
		}
	}
	b.WriteString("# TYPE strata_metric_delta gauge\n")
	b.WriteString("# HELP strata_metric_delta Candidate minus reference for each metric, with its 95% interval bounds.\n")
	for _, m := range rows {
		for _, s := range []struct {
			versus string
			d      *validation.NullableFloat
			ci     *validation.Interval
		}{{gate.VersusBaseline, m.Delta, m.CI95}, {gate.VersusControl, m.DeltaVsControl, m.CI95VsControl}} {
			if !validation.Finite(s.d) {
				continue
			}
			fmt.Fprintf(&b, "strata_metric_delta{metric=%s,versus=%s,bound=\"point\"} %s\n", omLabel(m.Metric), omLabel(s.versus), omNum(float64(*s.d)))
			if s.ci != nil && finite(float64(s.ci[0])) && finite(float64(s.ci[1])) {
				fmt.Fprintf(&b, "strata_metric_delta{metric=%s,versus=%s,bound=\"ci95_low\"} %s\n", omLabel(m.Metric), omLabel(s.versus), omNum(float64(s.ci[0])))
				fmt.Fprintf(&b, "strata_metric_delta{metric=%s,versus=%s,bound=\"ci95_high\"} %s\n", omLabel(m.Metric), omLabel(s.versus), omNum(float64(s.ci[1])))
			}
		}
	}
	b.WriteString("# EOF\n")
	return b.Bytes()
}

// omLabel quotes an OpenMetrics label value.
func omLabel(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

func omNum(v float64) string {
	return strings.TrimSuffix(fmt.Sprintf("%.10g", v), ".")
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
