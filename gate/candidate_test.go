package gate

import (
	"slices"
	"strings"
	"testing"

	"github.com/strata-ml/strata/internal/provenance"
	vt "github.com/strata-ml/strata/validation/validationtest"
)

func TestWorst(t *testing.T) {
	for _, tc := range []struct {
		in   []Decision
		want Decision
	}{
		{[]Decision{DecisionGo, DecisionGo}, DecisionGo},
		{[]Decision{DecisionGo, DecisionInconclusive}, DecisionInconclusive},
		{[]Decision{DecisionInconclusive, DecisionNoGo, DecisionGo}, DecisionNoGo},
	} {
		if got := Worst(tc.in...); got != tc.want {
			t.Errorf("%v: got %v, want %v", tc.in, got, tc.want)
		}
	}
}

// TestMergeSeeds joins a sweep candidate's runs: GO only when every seed
// passed, and the shown run is the worst one.
func TestMergeSeeds(t *testing.T) {
	mk := func(path string, d Decision) Candidate {
		return Candidate{Validation: provenance.File{Path: path}, Decision: d, Why: string(d) + " why", Name: path}
	}
	cands := []Candidate{
		mk("a0", DecisionGo), mk("a1", DecisionGo),
		mk("b0", DecisionGo), mk("b1", DecisionInconclusive), mk("b2", DecisionNoGo),
		mk("lone.json", DecisionInconclusive),
	}
	groups := map[string]SweepRun{
		"a0": {"a", 0}, "a1": {"a", 1},
		"b0": {"b", 0}, "b1": {"b", 1}, "b2": {"b", 2},
	}
	got := MergeSeeds(cands, groups)
	if len(got) != 3 {
		t.Fatalf("got %d candidates, want 3", len(got))
	}
	for _, tc := range []struct {
		i          int
		name, path string
		decision   Decision
	}{
		{0, "a", "a0", DecisionGo},
		{1, "b", "b2", DecisionNoGo},
		{2, "lone.json", "lone.json", DecisionInconclusive},
	} {
		c := got[tc.i]
		if c.Name != tc.name || c.Validation.Path != tc.path || c.Decision != tc.decision {
			t.Errorf("candidate %d: %s %s %s, want %s %s %s", tc.i, c.Name, c.Validation.Path, c.Decision, tc.name, tc.path, tc.decision)
		}
	}
	if !strings.Contains(got[1].Why, "seed 1 INCONCLUSIVE") || !strings.Contains(got[1].Why, "seed 2: no-go why") {
		t.Errorf("why: %q", got[1].Why)
	}
}

// TestExitCode: the exit codes of PRODUCT.md section 6, and --no-fail.
func TestExitCode(t *testing.T) {
	tests := []struct {
		d      Decision
		noFail bool
		want   ExitCode
	}{
		{DecisionGo, false, 0}, {DecisionNoGo, false, 3}, {DecisionInconclusive, false, 4},
		{DecisionGo, true, 0}, {DecisionNoGo, true, 0}, {DecisionInconclusive, true, 0},
	}
	for _, tt := range tests {
		if got := tt.d.ExitCode(tt.noFail); got != tt.want {
			t.Errorf("%s (no-fail %v): exit %d, want %d", tt.d, tt.noFail, got, tt.want)
		}
	}
}

// TestSelect ranks passing candidates first, by fewest parameters then
// highest accuracy, and selects the best passing one; with none passing
// nothing is selected and the decision is the best ranked one's.
func TestSelect(t *testing.T) {
	mk := func(name string, d Decision, params, acc float64) Candidate {
		return Candidate{Name: name, Decision: d, Why: name + " why", Params: vt.F(params), Accuracy: vt.F(acc)}
	}
	cands := []Candidate{
		mk("big", DecisionGo, 900, 0.99), mk("fails", DecisionNoGo, 10, 0.5),
		mk("small-worse", DecisionGo, 500, 0.90), mk("small-better", DecisionGo, 500, 0.95), mk("unsure", DecisionInconclusive, 100, 0.9),
	}
	d, why := Select(cands, true)
	var order []string
	for _, c := range cands {
		order = append(order, c.Name)
	}
	if want := []string{"small-better", "small-worse", "big", "unsure", "fails"}; !slices.Equal(order, want) {
		t.Errorf("order %v, want %v", order, want)
	}
	if d != DecisionGo || !cands[0].Selected || cands[1].Selected || !strings.Contains(why, "3 of 5 candidates passed") || Featured(cands) != &cands[0] {
		t.Errorf("decision %s, why %q, selected %v", d, why, cands[0].Selected)
	}

	none := []Candidate{mk("a", DecisionNoGo, 1, 1), mk("b", DecisionInconclusive, 2, 1)}
	if d, why := Select(none, true); d != DecisionInconclusive || none[0].Selected || !strings.Contains(why, "none is selected") {
		t.Errorf("no passing candidate: %s %q selected %v", d, why, none[0].Selected)
	}
	one := []Candidate{mk("only", DecisionNoGo, 1, 1)}
	if d, why := Select(one, false); d != DecisionNoGo || why != "only why" || !one[0].Selected {
		t.Errorf("one candidate: %s %q, it must be featured", d, why)
	}
}
