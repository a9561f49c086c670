package gate

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"

	"github.com/strata-ml/strata/internal/provenance"
	"github.com/strata-ml/strata/render/number"
	"github.com/strata-ml/strata/validation"
)

// Candidate is one judged candidate, an entry of report.json's
// candidates; a report without select-best has one.
type Candidate struct {
	// Name labels the candidate: its model file's directory and name, or
	// the validation file's.
	Name       string          `json:"name"`
	Validation provenance.File `json:"validation"`
	// Structure summarises the candidate's structure, e.g. "monarch +
	// lowrank residual on 3 of 3 layers, 55% of the baseline's
	// parameters"; Layers gives each layer's, e.g. "0: monarch b=4 r=4 +
	// lowrank r=4; 2: ...".
	Structure string                    `json:"structure"`
	Layers    string                    `json:"layers"`
	Params    *validation.NullableFloat `json:"params"`
	Accuracy  *validation.NullableFloat `json:"accuracy"`
	Decision  Decision                  `json:"decision"`
	Why       string                    `json:"why"`
	Counts    map[Outcome]int           `json:"counts"`
	Rules     []RuleResult              `json:"rules"`
	// Selected marks the candidate the report features: the one chosen
	// by select-best, or the only one.
	Selected bool `json:"selected"`
	// Result is the validation the candidate was judged on.
	Result *validation.Result `json:"-"`
}

// NewCandidate is the candidate of validation v (read from in), judged g.
func NewCandidate(v *validation.Result, in provenance.File, g *Result) Candidate {
	c := Candidate{
		Validation: in, Decision: g.Decision, Why: g.Why, Counts: g.Counts, Rules: g.Rules, Result: v,
	}
	c.Structure, c.Layers = v.Describe()
	c.Name = in.Path
	if cand := v.Inputs.Candidate; cand != nil {
		c.Name = filepath.Join(filepath.Base(filepath.Dir(cand.Path)), filepath.Base(cand.Path))
	} else if cand := v.Inputs.CandidateLogits; cand != nil {
		c.Name = filepath.Base(cand.Path)
	}
	if m := v.Metrics[validation.MetricParams]; m != nil {
		c.Params = m.Candidate
	}
	if m := v.Metrics[validation.MetricAccuracy]; m != nil {
		c.Accuracy = m.Candidate
	}
	return c
}

// Featured returns the candidate a report is about: the selected one,
// else the first (the best ranked after Select); nil for none.
func Featured(cands []Candidate) *Candidate {
	for i := range cands {
		if cands[i].Selected {
			return &cands[i]
		}
	}
	if len(cands) > 0 {
		return &cands[0]
	}
	return nil
}

// Select ranks cands in place and marks the featured one, and returns the
// report's decision and why. With selectBest (several candidates of a
// sweep against one baseline) the passing candidates come first, by
// fewest parameters, then by highest accuracy; then the inconclusive,
// then the failing ones, each in the same order; the best passing one is
// selected. The decision is GO when some candidate passes, else
// INCONCLUSIVE when some is inconclusive, else NO-GO. Without selectBest
// the one candidate is featured and its decision is the report's.
func Select(cands []Candidate, selectBest bool) (Decision, string) {
	val := func(f *validation.NullableFloat, missing float64) float64 {
		if !validation.Finite(f) {
			return missing
		}
		return float64(*f)
	}
	slices.SortStableFunc(cands, func(a, b Candidate) int {
		if d := a.Decision.severity() - b.Decision.severity(); d != 0 {
			return d
		}
		if pa, pb := val(a.Params, math.Inf(1)), val(b.Params, math.Inf(1)); pa != pb {
			if pa < pb {
				return -1
			}
			return 1
		}
		if aa, ab := val(a.Accuracy, math.Inf(-1)), val(b.Accuracy, math.Inf(-1)); aa != ab {
			if aa > ab {
				return -1
			}
			return 1
		}
		return 0
	})
	best := &cands[0]
	best.Selected = best.Decision == DecisionGo || !selectBest
	if !selectBest {
		return best.Decision, best.Why
	}
	n := len(cands)
	switch best.Decision {
	case DecisionGo:
		passing := 0
		for _, c := range cands {
			if c.Decision == DecisionGo {
				passing++
			}
		}
		return DecisionGo, fmt.Sprintf("GO: %d of %d candidates passed the gate; selected %s (%s), the one with the fewest parameters (%s), ties broken by accuracy. %s",
			passing, n, best.Name, best.Structure, number.OrNull(best.Params), best.Why)
	case DecisionInconclusive:
		return DecisionInconclusive, fmt.Sprintf("INCONCLUSIVE: none of the %d candidates passed the gate and none is selected; the best ranked, %s, was inconclusive. %s",
			n, best.Name, best.Why)
	}
	return DecisionNoGo, fmt.Sprintf("NO-GO: all %d candidates failed the gate; none is selected. The best ranked, %s: %s", n, best.Name, best.Why)
}

// SweepRun names the sweep candidate and seed a validation file belongs
// to.
type SweepRun struct {
	Candidate string
	Seed      uint64
}

// MergeSeeds joins the runs of each sweep candidate at several seeds into
// one candidate: its decision is the worst of the runs' (Worst: GO only
// when every seed passed), and it shows the first run with that decision.
// runs maps a validation file's path to its sweep candidate and seed;
// candidates whose file is not in runs pass through.
func MergeSeeds(cands []Candidate, runs map[string]SweepRun) []Candidate {
	var out []Candidate
	index := map[string]int{}
	byName := map[string][]*Candidate{}
	for i := range cands {
		c := &cands[i]
		g, ok := runs[c.Validation.Path]
		if !ok {
			out = append(out, *c)
			continue
		}
		if _, seen := index[g.Candidate]; !seen {
			index[g.Candidate] = len(out)
			out = append(out, *c)
		}
		byName[g.Candidate] = append(byName[g.Candidate], c)
	}
	for name, rs := range byName {
		decisions := make([]Decision, len(rs))
		seeds := make([]string, len(rs))
		for i, r := range rs {
			decisions[i] = r.Decision
			seeds[i] = fmt.Sprintf("seed %d %s", runs[r.Validation.Path].Seed, r.Decision.Label())
		}
		w := Worst(decisions...)
		worst := rs[slices.Index(decisions, w)]
		m := *worst
		m.Name = name
		if len(rs) > 1 {
			m.Why = fmt.Sprintf("%s over %d seeds (%s); seed %d: %s", m.Decision.Label(), len(rs), strings.Join(seeds, ", "),
				runs[worst.Validation.Path].Seed, worst.Why)
		}
		out[index[name]] = m
	}
	return out
}
