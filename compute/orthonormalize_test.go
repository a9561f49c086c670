package compute

import (
	"math"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// TestOrthonormalize checks orthonormalize: the result has orthonormal
// columns whose span contains the input's columns (||A - Q Q^T A|| small),
// for well-conditioned tall matrices (where the CholeskyQR2 path must be
// taken), an ill-conditioned one and a rank-deficient one.
func TestOrthonormalize(t *testing.T) {
	rng := newRand(11)
	const m, n = 300, 40
	scaled := func(decay float64) *mat.Dense {
		a := randDense(rng, m, n)
		for j := range n {
			for i := range m {
				a.Set(i, j, a.At(i, j)*math.Pow(decay, float64(j)))
			}
		}
		return a
	}
	deficient := randDense(rng, m, n)
	for i := range m {
		deficient.Set(i, n-1, deficient.At(i, 0)+deficient.At(i, 1)) // rank n-1
	}
	for _, tc := range []struct {
		name string
		a    *mat.Dense
		full bool // the span is checked only when a has full rank
		// cholesky: CholeskyQR2 alone must succeed (the fast path).
		cholesky bool
	}{
		{"gaussian", randDense(rng, m, n), true, true},
		{"cond 1e6", scaled(math.Pow(1e-6, 1.0/(n-1))), true, true},
		{"cond 1e14", scaled(math.Pow(1e-14, 1.0/(n-1))), true, false},
		{"rank deficient", deficient, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cq := mat.DenseCopyOf(tc.a)
			if got := choleskyQR(cq) && choleskyQR(cq) && orthonormalCols(cq, 1e-10); tc.cholesky && !got {
				t.Errorf("CholeskyQR2 fails on a well-conditioned matrix: the fast path is not taken")
			}
			q := mat.DenseCopyOf(tc.a)
			orthonormalize(q)
			if !orthonormalCols(q, 1e-10) {
				t.Fatal("columns are not orthonormal")
			}
			if !tc.full {
				return
			}
			// A = Q (Q^T A): the residual of projecting A onto span(Q).
			var c, p mat.Dense
			c.Mul(q.T(), tc.a)
			p.Mul(q, &c)
			p.Sub(&p, tc.a)
			if r := mat.Norm(&p, 2) / mat.Norm(tc.a, 2); r > 1e-9 {
				t.Errorf("span residual %.3g", r)
			}
		})
	}
}
