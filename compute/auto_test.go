package compute

import (
	"errors"
	"math"
	"testing"

	"gonum.org/v1/gonum/mat"
)

func TestAutoTargetErrorPicksFewestParams(t *testing.T) {
	// W is exactly rank 3 plus a rank-1 correction-sized bump: lowrank 4
	// (or a trunk + small residual) reaches error ~0; Auto must find a
	// candidate that meets 1e-8 with no more parameters than lowrank 4.
	rng := newRand(11)
	lr := randomMember(t, Spec{Family: FamilyLowRank, Out: 32, In: 24, Rank: 4}, rng)
	w := Dense(lr)
	sum, res, err := Auto(w, AutoConfig{TargetError: 1e-8, Families: []string{FamilyLowRank, FamilyBlockDiag}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Met {
		t.Fatalf("target not met: %+v", res.Chosen)
	}
	if e := RelativeError(w, Dense(sum)); e > 1e-8 {
		t.Errorf("chosen error %g > target", e)
	}
	if limit := 4 * (32 + 24); res.Chosen.Params > limit {
		t.Errorf("chose %d params (%+v), but lowrank 4 needs only %d", res.Chosen.Params, res.Chosen, limit)
	}
	if res.Chosen.Params != NumParams(sum) {
		t.Errorf("reported params %d, operator has %d", res.Chosen.Params, NumParams(sum))
	}
}

func TestAutoBudgetPicksLowestError(t *testing.T) {
	rng := newRand(12)
	w := randDense(rng, 16, 16)
	sum, res, err := Auto(w, AutoConfig{ParamBudget: 0.5, Families: []string{FamilyLowRank}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := NumParams(sum); got > 128 {
		t.Errorf("%d params over the budget of 128", got)
	}
	// Within lowrank trunks + lowrank residual, the best under 128 params
	// is a total rank 4 (4*32 = 128): the Eckart-Young rank-4 error.
	want := tailError(SingularValuesOf(w, nil), 4)
	if math.Abs(res.Chosen.RelativeError-want) > 1e-10 {
		t.Errorf("error %g, want rank-4 optimum %g (%+v)", res.Chosen.RelativeError, want, res.Chosen)
	}
}

func TestAutoRejectsBadConfig(t *testing.T) {
	w := mat.NewDense(4, 4, nil)
	for _, cfg := range []AutoConfig{{}, {TargetError: 0.1, ParamBudget: 0.5}, {ParamBudget: 2}, {TargetError: 0.1, Families: []string{"nope"}}} {
		if _, _, err := Auto(w, cfg, 0); !errors.Is(err, ErrSpec) {
			t.Errorf("Auto(%+v): err = %v, want ErrSpec", cfg, err)
		}
	}
}
