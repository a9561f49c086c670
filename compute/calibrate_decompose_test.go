package compute

import (
	"fmt"
	"strings"
	"testing"
)

// trunkSpecs are one spec per trunk family for a 16 x 12 layer.
var trunkSpecs = []Spec{
	{Family: FamilyOrthogonal},
	{Family: FamilyMonarch, Blocks: 2, Rank: 2},
	{Family: FamilyKronecker, Rank: 2},
	{Family: FamilyBlockDiag, Blocks: 4},
	{Family: FamilyCirculant},
	{Family: FamilyToeplitz},
	{Family: FamilyLowRank, Rank: 3},
}

// Block coordinate descent on (S, R): F never rises with the rounds, and
// the first point is the weight-only trunk with its best correction, so
// the result is never worse than the weight-only Decompose.
func TestDecomposeCalibratedMonotone(t *testing.T) {
	out, in, n := 16, 12, 60
	for i, ts := range trunkSpecs {
		for _, res := range []Residual{{Kind: "lowrank", Rank: 2}, {Kind: "sparse", NNZ: 10}, {Kind: "none"}} {
			t.Run(ts.Family+" + "+string(res.Kind), func(t *testing.T) {
				rng := newRand(uint64(500 + i))
				x := anisotropic(rng, n, in)
				w := randDense(rng, out, in)
				cal := mustCalibration(t, x, n, in, -1)
				wo, err := Decompose(w, ts, res, 1)
				if err != nil {
					t.Fatal(err)
				}
				prev := cal.objective(w, Dense[float64](wo))
				first := prev
				for rounds := 1; rounds <= 4; rounds++ {
					sum, err := DecomposeCalibrated(w, ts, res, cal, CalibratedConfig{Rounds: rounds, Tol: 1e-300}, 1)
					if err != nil {
						t.Fatal(err)
					}
					if sum.Spec().Trunk.Family != ts.Family {
						t.Fatalf("trunk %s, want %s", sum.Spec().Trunk.Family, ts.Family)
					}
					f := cal.objective(w, Dense[float64](sum))
					if f > prev*(1+1e-12) {
						t.Errorf("%d rounds: F %.15g above %.15g", rounds, f, prev)
					}
					prev = f
				}
				if !(prev < first) {
					t.Errorf("F %.6g not below the weight-only %.6g", prev, first)
				}
			})
		}
	}
}

// For a fixed trunk the low-rank correction is the exact minimiser: it
// matches the projection optimum of W - S derived from the rows.
func TestFitResidualExact(t *testing.T) {
	out, in, n, r := 14, 10, 8, 3 // fewer rows than inputs: the ridge decides the rest
	rng := newRand(600)
	x := anisotropic(rng, n, in)
	w := randDense(rng, out, in)
	cal := mustCalibration(t, x, n, in, -1)
	s, err := Project(w, Spec{Family: FamilyToeplitz}, 1)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := FitResidual(w, s, Residual{Kind: "lowrank", Rank: r}, cal, 1)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Trunk() != s {
		t.Error("FitResidual replaced the trunk")
	}
	want := projectedOptimum(minusOp(w, s), augmented(x, n, in, cal.Lambda()), r)
	if d := relDiff(rowMajor(Dense(sum.Correction())), rowMajor(want)); d > tolExactFit {
		t.Errorf("correction differs from the projection optimum by %g", d)
	}
}

// The synthetic case of the report: anisotropic activations, every
// family at the same spec (so the same parameters) converted weight-only
// and data-aware, scored on held-out rows. Data-aware must be lower for
// every family; the table is logged.
func TestDataAwareBeatsWeightOnlyHeldOut(t *testing.T) {
	out, in, nCal, nHeld := 48, 64, 256, 1024
	rng := newRand(700)
	x := anisotropic(rng, nCal+nHeld, in)
	w := randDense(rng, out, in)
	cal := mustCalibration(t, x[:nCal*in], nCal, in, -1)
	held := x[nCal*in:]
	specs := []Spec{
		{Family: FamilyOrthogonal},
		{Family: FamilyMonarch, Blocks: 4, Rank: 2},
		{Family: FamilyKronecker, Rank: 2},
		{Family: FamilyBlockDiag, Blocks: 4},
		{Family: FamilyCirculant},
		{Family: FamilyToeplitz},
		{Family: FamilyLowRank, Rank: 8},
	}
	var table strings.Builder
	fmt.Fprintf(&table, "\n%-38s %7s %12s %12s\n", "structure", "params", "weight-only", "data-aware")
	row := func(name string, params int, wo, da float64) {
		fmt.Fprintf(&table, "%-38s %7d %12.4f %12.4f\n", name, params, wo, da)
		if !(da < wo) {
			t.Errorf("%s: held-out error data-aware %.4f not below weight-only %.4f", name, da, wo)
		}
	}
	for _, s := range specs {
		wo, err := Project(w, s, 1)
		if err != nil {
			t.Fatal(err)
		}
		da, err := ProjectCalibrated(w, s, cal, CalibratedConfig{}, 1)
		if err != nil {
			t.Fatal(err)
		}
		row(wo.Spec().String(), NumParams(da), OutputRelativeError(w, Dense(wo), held, nHeld), OutputRelativeError(w, Dense(da), held, nHeld))
	}
	for _, s := range specs[:6] {
		res := Residual{Kind: "lowrank", Rank: 4}
		wo, err := Decompose(w, s, res, 1)
		if err != nil {
			t.Fatal(err)
		}
		da, err := DecomposeCalibrated(w, s, res, cal, CalibratedConfig{}, 1)
		if err != nil {
			t.Fatal(err)
		}
		row(wo.Spec().String(), NumParams(da), OutputRelativeError(w, Dense[float64](wo), held, nHeld), OutputRelativeError(w, Dense[float64](da), held, nHeld))
	}
	t.Log(table.String())
}
