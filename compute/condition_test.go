package compute

import (
	"math"
	"slices"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// withSpectrum returns U diag(s) V^T for random orthogonal U, V.
func withSpectrum(m, n int, s []float64, seed uint64) *mat.Dense {
	rng := newRand(seed)
	u, _, _, _ := exactTruncatedSVD(randDense(rng, m, m), min(m, n))
	v, _, _, _ := exactTruncatedSVD(randDense(rng, n, n), min(m, n))
	var w mat.Dense
	w.Product(u, mat.NewDiagDense(len(s), s), v.T())
	return &w
}

func TestConditionEstimate(t *testing.T) {
	defer func(l int) { exactConditionLimit = l }(exactConditionLimit)
	exactConditionLimit = 50
	tests := []struct {
		name string
		m, n int
	}{{"square", 120, 120}, {"tall", 150, 90}, {"wide", 80, 130}}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := min(tt.m, tt.n)
			s := make([]float64, k)
			for j := range s {
				s[j] = 2 + float64(k-j)/float64(k) // in (2, 3]
			}
			s[0], s[k-1] = 40, 0.05 // separated extremes: condition 800
			w := withSpectrum(tt.m, tt.n, s, uint64(i))
			got, exact := Condition(w, 1)
			if exact {
				t.Fatal("above the limit, Condition reported an exact value")
			}
			if want := 800.0; math.Abs(got-want)/want > 1e-8 {
				t.Errorf("estimated condition %.12g, want %v", got, want)
			}
			op := NewDenseOp(tt.m, tt.n, slices.Clone(w.RawMatrix().Data))
			if got, exact := ConditionOf[float64](op, nil, 1); exact || math.Abs(got-800)/800 > 1e-8 {
				t.Errorf("ConditionOf: %.12g (exact %v), want an estimate of 800", got, exact)
			}
			if !slices.Equal(op.w, w.RawMatrix().Data) {
				t.Error("ConditionOf changed the operator")
			}
			exactConditionLimit = 1 << 30
			ex, exact := Condition(w, 1)
			exactConditionLimit = 50
			if !exact || math.Abs(ex-800)/800 > 1e-9 {
				t.Errorf("exact path: %v (exact %v), want 800", ex, exact)
			}
		})
	}
	singular := mat.NewDense(60, 60, nil)
	if c, _ := Condition(singular, 1); !math.IsInf(c, 1) {
		t.Errorf("zero matrix: condition %v, want +Inf", c)
	}
}

func TestRelativeErrorOf(t *testing.T) {
	rng := newRand(11)
	w := randDense(rng, 40, 24)
	op, err := Project(w, Spec{Family: FamilyMonarch, Blocks: 4, Rank: 2}, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := RelativeError(w, Dense(op))
	for _, scratch := range [][]float64{nil, make([]float64, 40*24+3)} {
		if got := RelativeErrorOf(w, op, scratch); got != want {
			t.Errorf("RelativeErrorOf = %.17g, RelativeError %.17g", got, want)
		}
	}
	if got := RelativeErrorOf(mat.NewDense(40, 24, nil), op, nil); math.Abs(got-FrobeniusNorm(Dense(op))) > 1e-12 {
		t.Errorf("zero W: %v, want ||op||_F %v", got, FrobeniusNorm(Dense(op)))
	}
}
