package gate

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	vt "github.com/strata-ml/strata/validation/validationtest"

	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/internal/yamlstrict"
	"github.com/strata-ml/strata/validation"
)

// TestJudge checks each bound kind and the decision rule on crafted
// validation results, down to the rule outcomes. The CLI tests check the
// same semantics end to end through files and exit codes.
func TestJudge(t *testing.T) {
	acc := func(base, cand, lo, hi float64) map[string]*validation.Metric {
		return map[string]*validation.Metric{validation.MetricAccuracy: vt.Metric(validation.BetterHigher, base, cand, vt.CI(lo, hi))}
	}
	tests := []struct {
		name     string
		policy   string
		control  bool
		metrics  map[string]*validation.Metric
		want     []Outcome
		decision Decision
		// sentence is a substring of the first rule's sentence.
		sentence string
	}{
		{"degradation pass at the unfavourable bound", `{metric: accuracy, max_degradation: 0.005}`, false,
			acc(0.95, 0.949, -0.004, 0.002), []Outcome{OutcomePass}, DecisionGo, "even the unfavourable bound -0.004 meets it"},
		{"degradation fail at the favourable bound", `{metric: accuracy, max_degradation: 0.005}`, false,
			acc(0.95, 0.93, -0.03, -0.01), []Outcome{OutcomeFail}, DecisionNoGo, "even the favourable bound -0.01 violates it"},
		{"degradation straddling the margin", `{metric: accuracy, max_degradation: 0.005}`, false,
			acc(0.95, 0.948, -0.009, 0.004), []Outcome{OutcomeInconclusive}, DecisionInconclusive, "straddles -0.005"},
		{"non-inferiority: slightly worse still passes", `{metric: accuracy, max_degradation: 0.01}`, false,
			acc(0.95, 0.947, -0.008, -0.001), []Outcome{OutcomePass}, DecisionGo, "delta -0.003"},
		{"lower is better: degradation is an increase", `{metric: loss, max_degradation: 0.02}`, false,
			map[string]*validation.Metric{validation.MetricLoss: vt.Metric(validation.BetterLower, 0.30, 0.31, vt.CI(0.005, 0.03))}, []Outcome{OutcomeInconclusive}, DecisionInconclusive, "delta <= 0.02"},
		{"relative change pass", `{metric: perturbation_sensitivity, max_relative_change: 0.0}`, false,
			map[string]*validation.Metric{validation.MetricPerturbationSensitivity: vt.Metric(validation.BetterLower, 0.5, 0.4, vt.CI(-0.12, -0.08))}, []Outcome{OutcomePass}, DecisionGo, "relative change -0.2"},
		{"relative change fail", `{metric: perturbation_sensitivity, max_relative_change: 0.1}`, false,
			map[string]*validation.Metric{validation.MetricPerturbationSensitivity: vt.Metric(validation.BetterLower, 0.5, 0.6, vt.CI(0.06, 0.14))}, []Outcome{OutcomeFail}, DecisionNoGo, "favourable bound +0.12"},
		{"relative change, zero baseline, candidate zero", `{metric: prediction_flip_rate, max_relative_change: 0.0}`, false,
			map[string]*validation.Metric{validation.MetricPredictionFlipRate: vt.Metric(validation.BetterLower, 0, 0, vt.CI(0, 0))}, []Outcome{OutcomePass}, DecisionGo, "The baseline is 0"},
		{"relative change, zero baseline, candidate worse", `{metric: prediction_flip_rate, max_relative_change: 0.5}`, false,
			map[string]*validation.Metric{validation.MetricPredictionFlipRate: vt.Metric(validation.BetterLower, 0, 0.01, vt.CI(0.002, 0.02))}, []Outcome{OutcomeFail}, DecisionNoGo, "+inf"},
		{"relative change, zero baseline, interval across 0", `{metric: prediction_flip_rate, max_relative_change: 0.5}`, false,
			map[string]*validation.Metric{validation.MetricPredictionFlipRate: vt.Metric(validation.BetterLower, 0, 0.001, vt.CI(-0.002, 0.004))}, []Outcome{OutcomeInconclusive}, DecisionInconclusive, "infinite in the direction of the change"},
		{"ratio pass on an exact metric", `{metric: params, max_ratio: 0.6}`, false,
			map[string]*validation.Metric{validation.MetricParams: vt.Metric(validation.BetterLower, 1000, 420, vt.CI(-580, -580))}, []Outcome{OutcomePass}, DecisionGo, "its interval is a single point"},
		{"ratio fail", `{metric: params, max_ratio: 0.6}`, false,
			map[string]*validation.Metric{validation.MetricParams: vt.Metric(validation.BetterLower, 1000, 700, vt.CI(-300, -300))}, []Outcome{OutcomeFail}, DecisionNoGo, "ratio 0.7"},
		{"ratio, zero baseline and zero candidate", `{metric: flops, max_ratio: 1}`, false,
			map[string]*validation.Metric{validation.MetricFLOPs: vt.Metric(validation.BetterLower, 0, 0, nil)}, []Outcome{OutcomePass}, DecisionGo, "taken as 1"},
		{"ratio, higher is better: candidate / baseline at least 1 / max_ratio", `{metric: accuracy, max_ratio: 1.05}`, false,
			acc(0.95, 0.90, -0.06, -0.05), []Outcome{OutcomeFail}, DecisionNoGo, "ratio >= 0.9524"},
		{"min_value on the candidate", `{metric: accuracy, min_value: 0.9}`, false,
			acc(0.80, 0.91, 0.05, 0.15), []Outcome{OutcomePass}, DecisionGo, "the candidate's accuracy is 0.91"},
		{"max_value on the candidate", `{metric: latency_ms, max_value: 1.5}`, false,
			map[string]*validation.Metric{validation.MetricLatencyMS: vt.Metric(validation.BetterLower, 1, 2, vt.CI(0.9, 1.1))}, []Outcome{OutcomeFail}, DecisionNoGo, "asks <= 1.5"},
		{"no interval: judged on the point", `{metric: layer_robustness, max_degradation: 0.01}`, false,
			map[string]*validation.Metric{validation.MetricLayerRobustness: vt.Metric(validation.BetterLower, 0.02, 0.025, nil)}, []Outcome{OutcomePass}, DecisionGo, "met by the point value (no interval: one run per model"},
		{"direction overrides better", `{metric: residual_share, direction: lower, max_value: 0.5}`, false,
			map[string]*validation.Metric{validation.MetricResidualShare: vt.Metric(validation.BetterReported, 0, 0.2, nil)}, []Outcome{OutcomePass}, DecisionGo, ""},
		{"missing metric fails", `{metric: bytes, max_ratio: 0.5}`, false,
			acc(0.9, 0.9, 0, 0), []Outcome{OutcomeFail}, DecisionNoGo, `no metric "bytes"`},
		{"missing optional metric is skipped; nothing judged is no GO", `{metric: bytes, max_ratio: 0.5, optional: true}`, false,
			acc(0.9, 0.9, 0, 0), []Outcome{OutcomeSkipped}, DecisionInconclusive, "skipped (optional)"},
		{"NaN candidate fails", `{metric: accuracy, max_degradation: 0.01}`, false,
			map[string]*validation.Metric{validation.MetricAccuracy: {Better: validation.BetterHigher, Baseline: vt.F(0.9), Candidate: vt.F(math.NaN())}}, []Outcome{OutcomeFail}, DecisionNoGo, "is NaN"},
		{"infinite baseline fails", `{metric: jacobian_condition, max_relative_change: 0.1}`, false,
			map[string]*validation.Metric{validation.MetricJacobianCondition: {Better: validation.BetterLower, Baseline: vt.F(math.Inf(1)), Candidate: vt.F(3)}}, []Outcome{OutcomeFail}, DecisionNoGo, "is infinite"},
		{"null value fails with the reason", `{metric: loss, max_degradation: 0.1}`, false,
			map[string]*validation.Metric{validation.MetricLoss: {Better: validation.BetterLower, Baseline: vt.F(0.2), Reason: "candidate: not finite"}}, []Outcome{OutcomeFail}, DecisionNoGo, "candidate: not finite"},
		{"NaN optional metric is skipped", "{metric: loss, max_degradation: 0.1, optional: true}\n  - {metric: accuracy, max_degradation: 0.01}", false,
			map[string]*validation.Metric{validation.MetricLoss: {Better: validation.BetterLower, Baseline: vt.F(0.2), Candidate: vt.F(math.NaN())},
				validation.MetricAccuracy: vt.Metric(validation.BetterHigher, 0.9, 0.9, vt.CI(-0.005, 0.005))}, []Outcome{OutcomeSkipped, OutcomePass}, DecisionGo, ""},
		{"not applicable counts for nothing", "{metric: perturbation_sensitivity_relative, max_relative_change: 0.1}\n  - {metric: accuracy, max_degradation: 0.01}", false,
			map[string]*validation.Metric{validation.MetricPerturbationSensitivityRelative: {Better: validation.BetterLower, NotApplicable: true, Reason: "logits mode: no model to run"},
				validation.MetricAccuracy: vt.Metric(validation.BetterHigher, 0.9, 0.9, vt.CI(-0.005, 0.005))}, []Outcome{OutcomeNotApplicable, OutcomePass}, DecisionGo, "not applicable: logits mode: no model to run"},
		{"required and not applicable fails", `{metric: perturbation_sensitivity_relative, max_relative_change: 0.1, required: true}`, false,
			map[string]*validation.Metric{validation.MetricPerturbationSensitivityRelative: {Better: validation.BetterLower, NotApplicable: true, Reason: "logits mode: no model to run"}},
			[]Outcome{OutcomeFail}, DecisionNoGo, "the policy requires perturbation_sensitivity_relative"},
		{"only not applicable rules: nothing judged", `{metric: perturbation_sensitivity_relative, max_relative_change: 0.1}`, false,
			map[string]*validation.Metric{validation.MetricPerturbationSensitivityRelative: {Better: validation.BetterLower, NotApplicable: true, Reason: "x"}},
			[]Outcome{OutcomeNotApplicable}, DecisionInconclusive, ""},
		{"unreliable pass is inconclusive", `{metric: latency_ms, max_ratio: 1.5}`, false,
			map[string]*validation.Metric{validation.MetricLatencyMS: func() *validation.Metric {
				m := vt.Metric(validation.BetterLower, 1, 1.1, vt.CI(0.05, 0.15))
				m.Unreliable = "the timing rounds disagree"
				return m
			}()}, []Outcome{OutcomeInconclusive}, DecisionInconclusive, "the value is unreliable (the timing rounds disagree)"},
		{"versus control", `{metric: accuracy, versus: control, max_degradation: 0.01}`, true,
			map[string]*validation.Metric{validation.MetricAccuracy: vt.WithControl(vt.Metric(validation.BetterHigher, 0.9, 0.95, vt.CI(0.03, 0.07)), 0.96, vt.CI(-0.015, -0.005))},
			[]Outcome{OutcomeInconclusive}, DecisionInconclusive, "control 0.96"},
		{"versus control without a control fails loudly", `{metric: accuracy, versus: control, max_degradation: 0.01}`, false,
			acc(0.9, 0.9, 0, 0), []Outcome{OutcomeFail}, DecisionNoGo, "give validate --control"},
		{"any fail beats inconclusive", "{metric: accuracy, max_degradation: 0.005}\n  - {metric: params, max_ratio: 0.5}", false,
			map[string]*validation.Metric{validation.MetricAccuracy: vt.Metric(validation.BetterHigher, 0.9, 0.9, vt.CI(-0.01, 0.01)), validation.MetricParams: vt.Metric(validation.BetterLower, 100, 80, vt.CI(-20, -20))},
			[]Outcome{OutcomeInconclusive, OutcomeFail}, DecisionNoGo, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParsePolicy("policy.yaml", []byte("version: 1\nrules:\n  - "+tt.policy+"\n"))
			if err != nil {
				t.Fatal(err)
			}
			g, err := Judge("policy.yaml", p, vt.Result(tt.control, tt.metrics))
			if err != nil {
				t.Fatal(err)
			}
			var got []Outcome
			for _, r := range g.Rules {
				got = append(got, r.Outcome)
			}
			if !slices.Equal(got, tt.want) || g.Decision != tt.decision {
				t.Errorf("outcomes %v, decision %s; want %v, %s\n%s", got, g.Decision, tt.want, tt.decision, g.Rules[0].Sentence)
			}
			if !strings.Contains(g.Rules[0].Sentence, tt.sentence) {
				t.Errorf("sentence %q does not contain %q", g.Rules[0].Sentence, tt.sentence)
			}
			if !strings.HasPrefix(g.Why, g.Decision.Label()+":") {
				t.Errorf("why %q does not start with the decision", g.Why)
			}
		})
	}
}

// TestJudgeNeedsDirection: a bound relative to the baseline on a metric
// validate only reports, with no direction in the rule, is a policy error
// naming the rule's line.
func TestJudgeNeedsDirection(t *testing.T) {
	p, err := ParsePolicy("p.yaml", []byte("version: 1\nrules:\n  - metric: accuracy\n    min_value: 0.5\n  - metric: residual_share\n    max_degradation: 0.1\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Judge("p.yaml", p, vt.Result(false, map[string]*validation.Metric{validation.MetricResidualShare: vt.Metric(validation.BetterReported, 0, 0.2, nil)}))
	var ce *yamlstrict.ConfigError
	if !errors.As(err, &ce) || !errors.Is(err, inputerr.ErrInput) || ce.Line != 5 || !strings.Contains(err.Error(), "give the rule a direction") {
		t.Fatalf("err = %v, want a yamlstrict.ConfigError at line 5 asking for a direction", err)
	}
}

// TestRelativeAndRatio checks the zero-reference conventions.
func TestRelativeAndRatio(t *testing.T) {
	tests := []struct {
		d, b          float64
		wantRel, want float64
	}{
		{0.1, 0.5, 0.2, 1.2},
		{-0.1, -0.5, -0.2, 1.2}, // ratio (b + d) / b of a negative b is not used by Judge
		{0, 0, 0, 1},
		{0.1, 0, math.Inf(1), math.Inf(1)},
		{-0.1, 0, math.Inf(-1), math.Inf(-1)},
	}
	for _, tt := range tests {
		if got := relative(tt.d, tt.b); got != tt.wantRel && !(math.IsNaN(got) && math.IsNaN(tt.wantRel)) {
			t.Errorf("relative(%v, %v) = %v, want %v", tt.d, tt.b, got, tt.wantRel)
		}
		if got := ratio(tt.d, tt.b); math.Abs(got-tt.want) > 1e-12 && got != tt.want {
			t.Errorf("ratio(%v, %v) = %v, want %v", tt.d, tt.b, got, tt.want)
		}
	}
}

// TestJudgeSettle: a rule judged on a sampled interval says what effect
// the evaluation set resolves, and an inconclusive one how many rows
// would settle it: the side of the interval across the bound shrinks as
// 1/sqrt(rows).
func TestJudgeSettle(t *testing.T) {
	tests := []struct {
		name       string
		cand       float64
		lo, hi     float64
		outcome    Outcome
		effect     float64
		settle     int64 // 0: none
		settleWhy  string
		inDecision string
	}{
		// delta -0.004, interval [-0.012, +0.004]: the unfavourable side
		// reaches 0.008 below the point, the bound -0.01 is 0.006 away:
		// 400 (0.008/0.006)^2 = 711.1 rows.
		{"point meets, unfavourable side across", 0.946, -0.012, 0.004, OutcomeInconclusive, 0.008, 712, "", "about 712 evaluation rows would settle it"},
		// delta -0.012 violates; favourable side 0.004 above, bound 0.002
		// away: 400 (0.004/0.002)^2 = 1600.
		{"point violates, favourable side across", 0.938, -0.02, -0.008, OutcomeInconclusive, 0.006, 1600, "", "about 1600 evaluation rows"},
		{"point on the bound", 0.94, -0.02, 0.0, OutcomeInconclusive, 0.01, 0, "sits on the bound", "sits on the bound"},
		{"pass: only the effect", 0.95, -0.005, 0.005, OutcomePass, 0.005, 0, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := vt.Metric(validation.BetterHigher, 0.95, tt.cand, vt.CI(tt.lo, tt.hi))
			m.Units, m.UnitName = 400, validation.UnitExamples
			p, err := ParsePolicy("p.yaml", []byte("version: 1\nrules:\n  - {metric: accuracy, max_degradation: 0.01}\n"))
			if err != nil {
				t.Fatal(err)
			}
			g, err := Judge("p.yaml", p, vt.Result(false, map[string]*validation.Metric{validation.MetricAccuracy: m}))
			if err != nil {
				t.Fatal(err)
			}
			r := g.Rules[0]
			if r.Outcome != tt.outcome || r.DetectableEffect == nil || math.Abs(float64(*r.DetectableEffect)-tt.effect) > 1e-12 || r.Units != 400 {
				t.Fatalf("outcome %s, effect %v, units %d; want %s, %v, 400", r.Outcome, r.DetectableEffect, r.Units, tt.outcome, tt.effect)
			}
			switch {
			case tt.settle != 0 && (r.UnitsToSettle == nil || *r.UnitsToSettle != tt.settle):
				t.Errorf("units to settle %v, want %d", r.UnitsToSettle, tt.settle)
			case tt.settle == 0 && r.UnitsToSettle != nil:
				t.Errorf("units to settle %d, want none", *r.UnitsToSettle)
			case !strings.Contains(r.SettleReason, tt.settleWhy):
				t.Errorf("settle reason %q, want %q", r.SettleReason, tt.settleWhy)
			}
			if !strings.Contains(g.Why, tt.inDecision) || !strings.Contains(r.Sentence, "400 evaluation rows resolve a delta of +-") {
				t.Errorf("why %q lacks %q, or sentence %q lacks the resolution", g.Why, tt.inDecision, r.Sentence)
			}
		})
	}
}
