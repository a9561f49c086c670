// Package gate is the one place that decides: the gate policy format
// (docs/GATE.md) and its strict reading, the judging of each rule on a
// validation result, the decision (GO, NO-GO, INCONCLUSIVE) and its exit
// code, the decision over the seeds of a sweep, and select-best among
// several candidates. report and sweep both call it; nothing else draws a
// decision.
package gate

import (
	"cmp"
	"fmt"
	"math"
	"strings"

	"github.com/strata-ml/strata/internal/yamlstrict"
	"github.com/strata-ml/strata/render/number"
	"github.com/strata-ml/strata/validation"
)

// Decision is the outcome of the gate.
type Decision string

// The decisions, as --decision-file writes them.
const (
	DecisionGo           Decision = "go"
	DecisionNoGo         Decision = "no-go"
	DecisionInconclusive Decision = "inconclusive"
)

// Label returns the decision for people: GO, NO-GO or INCONCLUSIVE.
func (d Decision) Label() string { return strings.ToUpper(string(d)) }

// Outcome is the outcome of one rule.
type Outcome string

// The outcomes of a rule. An optional rule whose metric is missing, NaN or
// infinite is skipped; a rule whose metric cannot exist for the inputs
// (validation.Metric.NotApplicable) is not applicable unless it is
// required. Neither counts for the decision.
const (
	OutcomePass          Outcome = "pass"
	OutcomeFail          Outcome = "fail"
	OutcomeInconclusive  Outcome = "inconclusive"
	OutcomeSkipped       Outcome = "skipped"
	OutcomeNotApplicable Outcome = "not_applicable"
)

// Outcomes lists every outcome, in the order reports count them.
var Outcomes = []Outcome{OutcomePass, OutcomeFail, OutcomeInconclusive, OutcomeNotApplicable, OutcomeSkipped}

// Statistics a rule's bound is checked on.
const (
	StatCandidate      = "candidate"       // the candidate's value
	StatDelta          = "delta"           // candidate - reference
	StatRelativeChange = "relative_change" // (candidate - reference) / |reference|
	StatRatio          = "ratio"           // candidate / reference
)

// How a rule was judged.
const (
	JudgedCI    = "ci95"  // at the bounds of the delta's 95% interval
	JudgedPoint = "point" // on the point value (no interval)
)

// RuleResult is one rule's judgement, a line of the report.
type RuleResult struct {
	// Index is the rule's position in the policy (from 0), Line its line
	// in the policy file.
	Index int    `json:"index"`
	Line  int    `json:"line,omitempty"`
	Rule  string `json:"rule"`
	// Metric, Versus, Direction (as applied: the rule's, else the
	// metric's better), Bound and Limit restate the rule.
	Metric    string                   `json:"metric"`
	Versus    string                   `json:"versus"`
	Direction string                   `json:"direction,omitempty"`
	Bound     string                   `json:"bound"`
	Limit     validation.NullableFloat `json:"limit"`
	Optional  bool                     `json:"optional,omitempty"`
	Required  bool                     `json:"required,omitempty"`
	// Reference is the baseline's (or the control's) value, Candidate the
	// candidate's, Delta their difference and CI95 its 95% interval, as
	// validation.json gives them.
	Reference *validation.NullableFloat `json:"reference"`
	Candidate *validation.NullableFloat `json:"candidate"`
	Delta     *validation.NullableFloat `json:"delta"`
	CI95      *validation.Interval      `json:"ci95"`
	// Statistic is what the bound is checked on (StatCandidate,
	// StatDelta, ...), Value its point value, Interval the range the
	// judgement used (the point twice when JudgedOn is JudgedPoint), and
	// Requirement the inequality it had to meet, e.g. "delta >= -0.005".
	Statistic   string                    `json:"statistic"`
	Value       *validation.NullableFloat `json:"value"`
	Interval    *validation.Interval      `json:"interval"`
	Requirement string                    `json:"requirement"`
	JudgedOn    string                    `json:"judged_on,omitempty"`
	// DetectableEffect is half the width of Interval when the rule is
	// judged on a sampled interval: the smallest distance between the
	// statistic and the bound that this evaluation set resolves (in the
	// statistic's units). Units and UnitName say what the interval
	// resamples (e.g. 449 evaluation rows). UnitsToSettle, for an
	// inconclusive rule, is how many units would narrow the interval
	// until it no longer straddles the bound, if the point value stayed
	// where it is (a width shrinking as 1/sqrt(units)); null with
	// SettleReason when no number would.
	DetectableEffect *validation.NullableFloat `json:"detectable_effect,omitempty"`
	Units            int                       `json:"units,omitempty"`
	UnitName         string                    `json:"unit,omitempty"`
	UnitsToSettle    *int64                    `json:"units_to_settle,omitempty"`
	SettleReason     string                    `json:"settle_reason,omitempty"`
	// Unreliable is validation.json's reason not to trust the value, when
	// it gives one; the rule is then inconclusive at best.
	Unreliable string  `json:"unreliable,omitempty"`
	Outcome    Outcome `json:"outcome"`
	// Sentence explains the judgement in words.
	Sentence string `json:"sentence"`
}

// Result is the judgement of a policy on one validation.json.
type Result struct {
	Decision Decision `json:"decision"`
	// Why says, in one sentence, what decided.
	Why   string       `json:"why"`
	Rules []RuleResult `json:"rules"`
	// Counts counts the rules by outcome.
	Counts map[Outcome]int `json:"counts"`
}

// Judge applies a policy to a validation result (PRODUCT.md section 5,
// docs/GATE.md). Each rule is judged on the bounds of the 95% interval of
// the candidate's delta to its reference when validation.json has one:
// it passes when the unfavourable bound meets the requirement, fails when
// even the favourable bound does not, and is inconclusive otherwise;
// without an interval, on the point value. A value marked unreliable
// makes the rule inconclusive at best. A missing, NaN or infinite value
// fails the rule, or skips it when the rule is optional; a metric that
// cannot exist for the inputs makes it not applicable, unless the rule is
// required. A versus: control rule on a validation without a control
// fails. Decision: any fail is NO-GO, else any inconclusive is
// INCONCLUSIVE, else GO when at least one rule was judged (INCONCLUSIVE
// when none was).
//
// policyName is the file errors cite. A rule on a metric whose direction
// is needed but unknown (better: reported, and no direction in the rule)
// is a *yamlstrict.ConfigError.
func Judge(policyName string, p *Policy, v *validation.Result) (*Result, error) {
	g := &Result{Counts: map[Outcome]int{}}
	for i, r := range p.Rules {
		rr, err := judgeRule(i, r, v)
		if err != nil {
			return nil, &yamlstrict.ConfigError{File: policyName, Line: r.Line, Key: fmt.Sprintf("rules[%d]", i), Err: err}
		}
		g.Rules = append(g.Rules, rr)
		g.Counts[rr.Outcome]++
	}
	g.Decision, g.Why = decide(g)
	return g, nil
}

// decide applies the decision rule and says why.
func decide(g *Result) (Decision, string) {
	list := func(o Outcome) string {
		var names []string
		for _, r := range g.Rules {
			if r.Outcome == o {
				names = append(names, r.Rule)
			}
		}
		return strings.Join(names, "; ")
	}
	judged := len(g.Rules) - g.Counts[OutcomeSkipped] - g.Counts[OutcomeNotApplicable]
	var aside []string
	if n := g.Counts[OutcomeNotApplicable]; n > 0 {
		aside = append(aside, fmt.Sprintf("%d not applicable: %s", n, list(OutcomeNotApplicable)))
	}
	if n := g.Counts[OutcomeSkipped]; n > 0 {
		aside = append(aside, fmt.Sprintf("%d optional %s skipped", n, plural(n, "rule", "rules")))
	}
	others := ""
	if len(aside) > 0 {
		others = " (" + strings.Join(aside, "; ") + ")"
	}
	switch {
	case g.Counts[OutcomeFail] > 0:
		n := g.Counts[OutcomeFail]
		return DecisionNoGo, fmt.Sprintf("NO-GO: %d of %d %s failed: %s.", n, judged, plural(judged, "rule", "rules"), list(OutcomeFail))
	case g.Counts[OutcomeInconclusive] > 0:
		n := g.Counts[OutcomeInconclusive]
		var settle []string
		for _, r := range g.Rules {
			if r.Outcome == OutcomeInconclusive {
				settle = append(settle, r.settleSentence())
			}
		}
		return DecisionInconclusive, fmt.Sprintf("INCONCLUSIVE: no rule failed, but %d of %d %s could not be decided at the 95%% level: %s.",
			n, judged, plural(judged, "rule", "rules"), strings.Join(settle, "; "))
	}
	switch judged {
	case 0:
		return DecisionInconclusive, fmt.Sprintf("INCONCLUSIVE: no rule could be judged%s; a GO needs at least one rule that passed.", others)
	case 1:
		return DecisionGo, fmt.Sprintf("GO: the one rule passed%s.", others)
	}
	return DecisionGo, fmt.Sprintf("GO: all %d rules passed%s.", judged, others)
}

// settleSentence says, for an inconclusive rule, what the evaluation set
// resolves and what would settle the rule.
func (rr *RuleResult) settleSentence() string {
	s := rr.Rule
	if rr.Unreliable != "" {
		return s + " (the value is unreliable: " + rr.Unreliable + ")"
	}
	if rr.DetectableEffect == nil {
		return s
	}
	s += fmt.Sprintf(" (the %d %s resolve a %s of +-%s", rr.Units, rr.UnitName,
		strings.ReplaceAll(rr.Statistic, "_", " "), number.Format(float64(*rr.DetectableEffect)))
	switch {
	case rr.UnitsToSettle != nil:
		s += fmt.Sprintf("; about %d %s would settle it", *rr.UnitsToSettle, rr.UnitName)
	case rr.SettleReason != "":
		s += "; " + rr.SettleReason
	}
	return s + ")"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// judgeRule judges one rule.
func judgeRule(i int, r Rule, v *validation.Result) (RuleResult, error) {
	kind, limit := r.Bound()
	rr := RuleResult{
		Index: i, Line: r.Line, Metric: r.Metric, Versus: r.versus(), Bound: kind, Limit: validation.NullableFloat(limit),
		Optional: r.Optional, Required: r.Required, Direction: r.Direction,
	}
	rr.Rule = ruleName(r)
	m := v.Metrics[r.Metric]
	if rr.Direction == "" && m != nil && (m.Better == validation.BetterHigher || m.Better == validation.BetterLower) {
		rr.Direction = m.Better
	}
	if rr.Direction == "" && m != nil && kind != BoundMinValue && kind != BoundMaxValue {
		return rr, fmt.Errorf("%s is %q in validation.json, with no direction to judge %s on; give the rule a direction (higher or lower)",
			r.Metric, m.Better, kind)
	}

	missing := func(why string) RuleResult {
		rr.Outcome = OutcomeFail
		verdict := "fail"
		if r.Optional {
			rr.Outcome, verdict = OutcomeSkipped, "skipped (optional)"
		}
		rr.Sentence = fmt.Sprintf("%s: %s: %s.", rr.Rule, verdict, why)
		return rr
	}
	if m == nil {
		return missing(fmt.Sprintf("validation.json has no metric %q", r.Metric)), nil
	}
	if rr.Versus == VersusControl && !v.HasControl() {
		// Never skipped (ParsePolicy refuses optional here): a pipeline
		// that forgot its control must not pass a rule written for it.
		rr.Outcome = OutcomeFail
		rr.Sentence = fmt.Sprintf("%s: fail: %s.", rr.Rule, NoControlReason)
		return rr, nil
	}
	if m.NotApplicable {
		if r.Required {
			rr.Outcome = OutcomeFail
			rr.Sentence = fmt.Sprintf("%s: fail: the policy requires %s, which cannot exist here: %s.", rr.Rule, r.Metric, cmp.Or(m.Reason, "not applicable"))
			return rr, nil
		}
		rr.Outcome = OutcomeNotApplicable
		rr.Sentence = fmt.Sprintf("%s: not applicable: %s (required: true in the policy makes it fail instead).", rr.Rule, cmp.Or(m.Reason, "the metric cannot exist for these inputs"))
		return rr, nil
	}
	rr.Unreliable = m.Unreliable
	ref, delta, ci := m.Baseline, m.Delta, m.CI95
	refName := "baseline"
	if rr.Versus == VersusControl {
		ref, delta, ci, refName = m.Control, m.DeltaVsControl, m.CI95VsControl, "control"
	}
	rr.Reference, rr.Candidate, rr.Delta, rr.CI95 = ref, m.Candidate, delta, ci
	reason := ""
	if m.Reason != "" {
		reason = " (" + m.Reason + ")"
	}
	if !validation.Finite(m.Candidate) {
		return missing(fmt.Sprintf("the candidate's %s is %s%s", r.Metric, describeValue(m.Candidate), reason)), nil
	}
	c := float64(*m.Candidate)

	// The statistic's point value and its interval.
	var stat, lo, hi float64
	judged := JudgedPoint
	note, zero := "", ""
	switch kind {
	case BoundMinValue, BoundMaxValue:
		rr.Statistic = StatCandidate
		stat, lo, hi = c, c, c
		note = "validation.json has no interval for the candidate's own value"
	default:
		if !validation.Finite(ref) {
			return missing(fmt.Sprintf("the %s's %s is %s%s", refName, r.Metric, describeValue(ref), reason)), nil
		}
		b := float64(*ref)
		d := c - b
		if validation.Finite(delta) {
			d = float64(*delta)
		}
		dlo, dhi := d, d
		switch {
		case ci != nil && isFinite(float64(ci[0])) && isFinite(float64(ci[1])):
			dlo, dhi = min(float64(ci[0]), float64(ci[1])), max(float64(ci[0]), float64(ci[1]))
			judged = JudgedCI
			if dlo == dhi && dlo == d {
				judged, note = JudgedPoint, "its interval is a single point"
			}
		case m.CIReason != "" && rr.Versus == VersusBaseline:
			note = "no interval: " + m.CIReason
		default:
			note = "validation.json gives no interval for this delta"
		}
		switch kind {
		case BoundMaxDegradation:
			rr.Statistic = StatDelta
			stat, lo, hi = d, dlo, dhi
		case BoundMaxRelativeChange:
			rr.Statistic = StatRelativeChange
			stat, lo, hi = relative(d, b), relative(dlo, b), relative(dhi, b)
			if b == 0 {
				zero = "The " + refName + " is 0, so the relative change is 0 when the candidate is 0 too, and infinite in the direction of the change otherwise."
			}
		case BoundMaxRatio:
			rr.Statistic = StatRatio
			if b < 0 {
				rr.Outcome = OutcomeFail
				rr.Value = newPtr(validation.NullableFloat(math.NaN()))
				rr.Sentence = fmt.Sprintf("%s: fail: the %s's %s is %s; a ratio is only meaningful for a positive reference.", rr.Rule, refName, r.Metric, number.Format(b))
				rr.Requirement = "ratio needs a reference > 0"
				return rr, nil
			}
			stat, lo, hi = ratio(d, b), ratio(dlo, b), ratio(dhi, b)
			if b == 0 {
				zero = "The " + refName + " is 0, so the ratio is taken as 1 when the candidate is 0 too, and infinite in the direction of the change otherwise."
			}
		}
	}
	rr.JudgedOn = judged
	rr.Value = newPtr(validation.NullableFloat(stat))
	rr.Interval = &validation.Interval{validation.NullableFloat(lo), validation.NullableFloat(hi)}

	// The requirement: stat <= bound (atMost) or stat >= bound.
	atMost := true
	bound := limit
	switch kind {
	case BoundMinValue:
		atMost = false
	case BoundMaxValue:
	case BoundMaxDegradation:
		if rr.Direction == validation.BetterHigher {
			atMost, bound = false, -limit
		}
	case BoundMaxRelativeChange:
		if rr.Direction == validation.BetterHigher {
			atMost, bound = false, -limit
		}
	case BoundMaxRatio:
		if rr.Direction == validation.BetterHigher {
			atMost, bound = false, 1/limit
		}
	}
	op := "<="
	if !atMost {
		op = ">="
	}
	statName := strings.ReplaceAll(rr.Statistic, "_", " ")
	rr.Requirement = fmt.Sprintf("%s %s %s", statName, op, number.Format(bound))
	// The unfavourable and favourable ends of the interval.
	worst, best := hi, lo
	if !atMost {
		worst, best = lo, hi
	}
	meets := func(x float64) bool {
		if atMost {
			return x <= bound
		}
		return x >= bound
	}
	switch {
	case meets(worst):
		rr.Outcome = OutcomePass
	case !meets(best):
		rr.Outcome = OutcomeFail
	default:
		rr.Outcome = OutcomeInconclusive
	}
	if judged == JudgedCI {
		rr.settle(m, stat, lo, hi, bound, meets(stat), worst, best)
	}
	judgedOutcome := rr.Outcome
	if rr.Unreliable != "" {
		rr.Outcome = OutcomeInconclusive
	}

	// The sentence.
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", rr.Rule, judgedOutcome)
	switch kind {
	case BoundMinValue, BoundMaxValue:
		fmt.Fprintf(&b, ": the candidate's %s is %s, the rule asks %s %s", r.Metric, number.Format(c), op, number.Format(bound))
	default:
		fmt.Fprintf(&b, ": %s %s (%s %s, %s %s)", statName, fmtStat(rr.Statistic, stat), refName, number.Format(float64(*ref)), "candidate", number.Format(c))
		if judged == JudgedCI {
			fmt.Fprintf(&b, ", 95%% CI [%s, %s]", fmtStat(rr.Statistic, lo), fmtStat(rr.Statistic, hi))
		}
		fmt.Fprintf(&b, "; %s is better, and %s %s asks %s", rr.Direction, kind, number.Format(limit), rr.Requirement)
	}
	switch {
	case judged == JudgedCI && judgedOutcome == OutcomePass:
		fmt.Fprintf(&b, ": even the unfavourable bound %s meets it", fmtStat(rr.Statistic, worst))
	case judged == JudgedCI && judgedOutcome == OutcomeFail:
		fmt.Fprintf(&b, ": even the favourable bound %s violates it", fmtStat(rr.Statistic, best))
	case judged == JudgedCI:
		fmt.Fprintf(&b, ": the interval straddles %s (the favourable bound %s meets it, the unfavourable %s does not)",
			number.Format(bound), fmtStat(rr.Statistic, best), fmtStat(rr.Statistic, worst))
	default:
		if judgedOutcome == OutcomePass {
			b.WriteString(": met by the point value")
		} else {
			b.WriteString(": violated by the point value")
		}
	}
	if judged == JudgedPoint && note != "" {
		fmt.Fprintf(&b, " (%s)", note)
	}
	b.WriteString(".")
	if zero != "" {
		b.WriteString(" " + zero)
	}
	if rr.DetectableEffect != nil {
		fmt.Fprintf(&b, " The %d %s resolve a %s of +-%s", rr.Units, rr.UnitName, statName, number.Format(float64(*rr.DetectableEffect)))
		switch {
		case rr.Outcome == OutcomeInconclusive && rr.UnitsToSettle != nil:
			fmt.Fprintf(&b, "; about %d %s would settle the rule if the point value held", *rr.UnitsToSettle, rr.UnitName)
		case rr.Outcome == OutcomeInconclusive && rr.SettleReason != "":
			b.WriteString("; " + rr.SettleReason)
		}
		b.WriteString(".")
	}
	if rr.Unreliable != "" {
		fmt.Fprintf(&b, " Inconclusive all the same: the value is unreliable (%s).", rr.Unreliable)
	}
	rr.Sentence = b.String()
	return rr, nil
}

// NoControlReason is the sentence of a versus: control rule judged on a
// validation without a control.
const NoControlReason = "validation.json has no control, and this rule judges the candidate against one: " +
	"give validate --control (or --control-logits) the equal-budget control, the dense baseline fine-tuned with the candidate's budget " +
	"(strata pilot and strata sweep train it; `strata finetune --model` on the dense baseline with the candidate's epochs and learning rate makes one by hand; " +
	"every pipeline in manifests/ has a control step), or remove the rule from the policy"

// settle fills the rule's detectable effect and, for an inconclusive
// rule, the units that would settle it. The interval [lo, hi] of the
// statistic comes from m's bootstrap over m.Units units; its width shrinks
// as 1/sqrt(units), so the side of the interval that reaches across the
// bound (the unfavourable one when the point value meets the
// requirement, the favourable one when it does not) stops reaching it
// at units * (side / distance)^2.
func (rr *RuleResult) settle(m *validation.Metric, stat, lo, hi, bound float64, pointMeets bool, worst, best float64) {
	if m.Units <= 0 {
		return
	}
	rr.Units, rr.UnitName = m.Units, m.UnitName
	rr.DetectableEffect = validation.Num((hi - lo) / 2)
	if rr.Outcome != OutcomeInconclusive {
		return
	}
	dist := math.Abs(stat - bound)
	side := math.Abs(worst - stat)
	if !pointMeets {
		side = math.Abs(best - stat)
	}
	// A distance at rounding level of the values is no distance.
	if dist <= 1e-9*max(math.Abs(bound), side) || !isFinite(dist) || !isFinite(side) {
		rr.SettleReason = "the point value sits on the bound: no number of " + m.UnitName + " settles it"
		return
	}
	need := float64(m.Units) * (side / dist) * (side / dist)
	if need > 1e15 {
		rr.SettleReason = "the point value is too close to the bound for any practical number of " + m.UnitName
		return
	}
	n := int64(math.Ceil(need))
	rr.UnitsToSettle = &n
}

// ruleName names a rule for people, e.g. "accuracy vs baseline,
// max_degradation 0.005".
func ruleName(r Rule) string {
	kind, limit := r.Bound()
	switch kind {
	case BoundMinValue, BoundMaxValue:
		return fmt.Sprintf("%s %s %s", r.Metric, kind, number.Format(limit))
	}
	return fmt.Sprintf("%s vs %s %s %s", r.Metric, r.versus(), kind, number.Format(limit))
}

// relative returns the relative change of a delta d to a reference b:
// d / |b|, and for b = 0: 0 when d is 0, else an infinity of d's sign.
func relative(d, b float64) float64 {
	if b != 0 {
		return d / math.Abs(b)
	}
	switch {
	case d > 0:
		return math.Inf(1)
	case d < 0:
		return math.Inf(-1)
	}
	return 0
}

// ratio returns (b + d) / b for b > 0, and for b = 0: 1 when d is 0, else
// an infinity of d's sign.
func ratio(d, b float64) float64 {
	if b != 0 {
		return (b + d) / b
	}
	if d == 0 {
		return 1
	}
	return relative(d, 0)
}

func isFinite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func describeValue(f *validation.NullableFloat) string {
	switch {
	case f == nil:
		return "missing (null)"
	case math.IsNaN(float64(*f)):
		return "NaN"
	case math.IsInf(float64(*f), 0):
		return "infinite"
	}
	return number.Format(float64(*f))
}

func newPtr[T any](v T) *T { return &v }

// fmtStat formats a statistic's value: differences with a sign.
func fmtStat(stat string, v float64) string {
	if stat == StatDelta || stat == StatRelativeChange {
		return number.Signed(v)
	}
	return number.Format(v)
}
