package compute

import (
	"errors"
	"math"
	"testing"
)

func TestNames(t *testing.T) {
	for _, a := range Activations {
		if _, ok := parseActivation(a); !ok || !a.Valid() {
			t.Errorf("activation %q is listed but not known", a)
		}
	}
	if Activation("swish").Valid() || ResidualKind("").Valid() || ResidualKind("dense").Valid() {
		t.Error("unknown names must not be valid")
	}
	if got := JoinNames(ResidualKinds); got != "lowrank, sparse, none" {
		t.Errorf("JoinNames = %q", got)
	}
	if p, l, ok := SplitParamName("trunk.L"); !ok || p != RoleTrunk || l != "L" {
		t.Errorf("SplitParamName(trunk.L) = %q %q %v", p, l, ok)
	}
	if _, _, ok := SplitParamName("weight"); ok {
		t.Error("SplitParamName(weight): not a part of a sum")
	}
}

// TestFitSpec: the defaults and caps of a conversion without search, for
// a square, a tall and a tiny layer.
func TestFitSpec(t *testing.T) {
	tests := []struct {
		in       Spec
		out, inn int
		want     Spec
	}{
		{Spec{Family: FamilyMonarch, Blocks: 4}, 64, 64, Spec{Family: FamilyMonarch, Blocks: 4, Rank: 4}},             // 64 / 4^2
		{Spec{Family: FamilyMonarch, Blocks: 4, Rank: 100}, 64, 64, Spec{Family: FamilyMonarch, Blocks: 4, Rank: 16}}, // at most ceil(64 / 4)
		{Spec{Family: FamilyMonarch, Blocks: 8}, 10, 3, Spec{Family: FamilyMonarch, Blocks: 3, Rank: 1}},              // b capped at min(out, in)
		{Spec{Family: FamilyMonarch}, 16, 16, Spec{Family: FamilyMonarch, Blocks: 1, Rank: 16}},
		{Spec{Family: FamilyBlockDiag, Blocks: 0}, 8, 8, Spec{Family: FamilyBlockDiag, Blocks: 1}},
		{Spec{Family: FamilyKronecker, FactorShape: [2]int{2, 4}}, 8, 16, Spec{Family: FamilyKronecker, Rank: 1, FactorShape: [2]int{2, 4}}},
		{Spec{Family: FamilyLowRank}, 64, 40, Spec{Family: FamilyLowRank, Rank: 5}}, // 40 / 8
		{Spec{Family: FamilyLowRank}, 4, 4, Spec{Family: FamilyLowRank, Rank: 1}},
		{Spec{Family: FamilyLowRank, Rank: 9}, 4, 6, Spec{Family: FamilyLowRank, Rank: 4}},
		{Spec{Family: FamilyCirculant, Blocks: 3, Rank: 2}, 5, 7, Spec{Family: FamilyCirculant}},
	}
	for _, tt := range tests {
		tt.want.Out, tt.want.In = tt.out, tt.inn
		got := FitSpec(tt.in, tt.out, tt.inn)
		if got.String() != tt.want.String() || got.Out != tt.out || got.In != tt.inn || got.FactorShape != tt.want.FactorShape {
			t.Errorf("FitSpec(%v, %d, %d) = %v, want %v", tt.in, tt.out, tt.inn, got, tt.want)
		}
		if _, err := New[float64](got); err != nil {
			t.Errorf("FitSpec(%v, %d, %d) = %v, which New refuses: %v", tt.in, tt.out, tt.inn, got, err)
		}
	}
}

func TestAutoConfigValidate(t *testing.T) {
	tests := []struct {
		cfg AutoConfig
		ok  bool
	}{
		{AutoConfig{TargetError: 0.1}, true},
		{AutoConfig{ParamBudget: 1}, true},
		{AutoConfig{ParamBudget: 0.5, Families: []string{FamilyMonarch}}, true},
		{AutoConfig{}, false},
		{AutoConfig{TargetError: 0.1, ParamBudget: 0.5}, false},
		{AutoConfig{ParamBudget: 1.5}, false},
		{AutoConfig{TargetError: math.Inf(1)}, false},
		{AutoConfig{TargetError: math.NaN(), ParamBudget: 0.5}, false},
		{AutoConfig{TargetError: 0.1, Families: []string{FamilySparse}}, false},
		{AutoConfig{TargetError: 0.1, MaxResidualRank: -1}, false},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrSpec)) {
			t.Errorf("%+v: Validate = %v, want ok %v (errors wrap ErrSpec)", tt.cfg, err, tt.ok)
		}
	}
}
