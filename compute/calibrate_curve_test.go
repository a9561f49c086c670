package compute

import (
	"math"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// ResidualCurve reads, from one SVD, the objective FitResidual reaches
// at every rank: each e_k matches the fitted correction of rank k, e_0
// is the trunk alone, and the curve never rises.
func TestResidualCurveMatchesFitResidual(t *testing.T) {
	out, in, n := 14, 10, 40
	for i, ts := range trunkSpecs {
		t.Run(ts.Family, func(t *testing.T) {
			rng := newRand(uint64(700 + i))
			x := anisotropic(rng, n, in)
			w := randDense(rng, out, in)
			cal := mustCalibration(t, x, n, in, -1)
			s, err := Project(w, ts, 1)
			if err != nil {
				t.Fatal(err)
			}
			curve, err := cal.ResidualCurve(w, s, 6, 1)
			if err != nil {
				t.Fatal(err)
			}
			if len(curve) != 7 {
				t.Fatalf("%d values, want 7", len(curve))
			}
			total := cal.objective(w, mat.NewDense(out, in, nil))
			for k, e := range curve {
				a := Dense(s)
				if k > 0 {
					sum, err := FitResidual(w, s, Residual{Kind: ResidualLowRank, Rank: k}, cal, 1)
					if err != nil {
						t.Fatal(err)
					}
					a = Dense[float64](sum)
				}
				want := math.Sqrt(cal.objective(w, a) / total)
				if d := math.Abs(e - want); d > 1e-10 {
					t.Errorf("rank %d: curve %.15g, fitted %.15g", k, e, want)
				}
				if k > 0 && e > curve[k-1] {
					t.Errorf("rank %d: %.6g above rank %d's %.6g", k, e, k-1, curve[k-1])
				}
			}
		})
	}
}

// AutoTrunks is Auto's list: sorted by parameters, every spec builds at
// the layer's shape, and it is restricted to the families asked for.
func TestAutoTrunks(t *testing.T) {
	specs, err := AutoTrunks(48, 64, nil)
	if err != nil {
		t.Fatal(err)
	}
	prev, seen := 0, map[string]bool{}
	for _, s := range specs {
		op, err := New[float64](s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		p := NumParams(op)
		if p < prev {
			t.Errorf("%s has %d parameters after %d", s, p, prev)
		}
		prev = p
		seen[s.Family] = true
	}
	for _, f := range TrunkFamilies {
		if !seen[f] {
			t.Errorf("no %s candidate", f)
		}
	}
	only, err := AutoTrunks(48, 64, []string{FamilyLowRank})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range only {
		if s.Family != FamilyLowRank {
			t.Errorf("%s listed for lowrank only", s)
		}
	}
	if _, err := AutoTrunks(48, 64, []string{"dense"}); err == nil {
		t.Error("an unknown family was accepted")
	}
}
