package compute

import (
	"errors"
	"fmt"
	"math"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// withSingularValues returns U diag(sv) V^T (m x n) for random orthogonal
// U and V; len(sv) = min(m, n).
func withSingularValues(rng interface{ NormFloat64() float64 }, m, n int, sv []float64) *mat.Dense {
	orth := func(k int) *mat.Dense {
		a := mat.NewDense(k, k, nil)
		for i := range k {
			for j := range k {
				a.Set(i, j, rng.NormFloat64())
			}
		}
		orthonormalize(a)
		return a
	}
	d := mat.NewDense(m, n, nil)
	for i, v := range sv {
		d.Set(i, i, v)
	}
	var w mat.Dense
	w.Product(orth(m), d, orth(n).T())
	return &w
}

// orthogonalityError returns ||Q^T Q - I||_F (Q Q^T for a wide Q).
func orthogonalityError(q *mat.Dense) float64 {
	m, n := q.Dims()
	var g mat.Dense
	if m >= n {
		g.Mul(q.T(), q)
	} else {
		g.Mul(q, q.T())
	}
	for i := range min(m, n) {
		g.Set(i, i, g.At(i, i)-1)
	}
	return mat.Norm(&g, 2)
}

// polarBackwardError returns ||W - Q H||_F / ||W||_F with H the symmetric
// part of Q^T W (m >= n), and the most negative eigenvalue of H relative
// to ||W||_2: W = Q H with H positive semi-definite defines the polar
// factor, so both are zero up to rounding for a correct Q.
func polarBackwardError(w, q *mat.Dense) (resid, negEig float64) {
	if m, n := w.Dims(); m < n {
		w = mat.DenseCopyOf(w.T())
		q = mat.DenseCopyOf(q.T())
	}
	var h mat.Dense
	h.Mul(q.T(), w)
	n, _ := h.Dims()
	hs := mat.NewSymDense(n, nil)
	for i := range n {
		for j := i; j < n; j++ {
			hs.SetSym(i, j, (h.At(i, j)+h.At(j, i))/2)
		}
	}
	var qh mat.Dense
	qh.Mul(q, hs)
	var d mat.Dense
	d.Sub(w, &qh)
	var eig mat.EigenSym
	eig.Factorize(hs, false)
	vals := eig.Values(nil)
	return mat.Norm(&d, 2) / mat.Norm(w, 2), vals[0] / vals[len(vals)-1]
}

func TestPolarFactorMatchesSVD(t *testing.T) {
	rng := newRand(21)
	// One singular value 1e-7, the rest in [1, 10]: condition number
	// 1e8. The polar factor of a real square matrix has condition
	// 2 / (sigma_n + sigma_{n-1}) (Higham, Functions of Matrices, Thm
	// 8.9), so it stays well determined and both methods must agree to
	// 1e-10; a spectrum with two tiny values would make any two correct
	// methods differ by ~1e-16 * 1e8.
	illSV := make([]float64, 60)
	for i := range illSV {
		illSV[i] = math.Pow(10, float64(i)/58)
	}
	illSV[0] = 1e-7
	tests := []struct {
		name string
		w    *mat.Dense
	}{
		{"square", randDense(rng, 50, 50)},
		{"tall", randDense(rng, 80, 30)},
		{"wide", randDense(rng, 30, 80)},
		{"tall thin", randDense(rng, 200, 3)},
		{"1x1 negative", mat.NewDense(1, 1, []float64{-2.5})},
		{"column", randDense(rng, 9, 1)},
		{"ill-conditioned 1e8", withSingularValues(rng, 60, 60, illSV)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PolarFactor(tt.w)
			if err != nil {
				t.Fatal(err)
			}
			want, err := svdPolar(tt.w)
			if err != nil {
				t.Fatal(err)
			}
			if d := RelativeError(want, got); d > 1e-10 {
				t.Errorf("relative difference from the SVD polar factor %g > 1e-10", d)
			}
			if e := orthogonalityError(got); e > 1e-12 {
				t.Errorf("||Q^T Q - I||_F = %g > 1e-12", e)
			}
		})
	}

	// The ill-conditioned case must take the Newton path, not the SVD
	// fallback.
	w := withSingularValues(rng, 60, 60, illSV)
	if !newtonPolar(rowMajor(w), 60) {
		t.Error("Newton iteration refused a matrix of condition 1e8")
	}
}

// A geometric spectrum from 1 to 1e-10 makes the factor itself
// ill-determined, so compare backward errors instead: W = Q H with H
// symmetric positive semi-definite to rounding.
func TestPolarFactorGradedSpectrum(t *testing.T) {
	rng := newRand(22)
	for _, shape := range [][2]int{{70, 70}, {90, 40}, {40, 90}} {
		k := min(shape[0], shape[1])
		sv := make([]float64, k)
		for i := range sv {
			sv[i] = math.Pow(1e-10, float64(i)/float64(k-1))
		}
		w := withSingularValues(rng, shape[0], shape[1], sv)
		q, err := PolarFactor(w)
		if err != nil {
			t.Fatal(err)
		}
		if e := orthogonalityError(q); e > 1e-12 {
			t.Errorf("%v: ||Q^T Q - I||_F = %g", shape, e)
		}
		if resid, neg := polarBackwardError(w, q); resid > 1e-13 || neg < -1e-13 {
			t.Errorf("%v: ||W - QH|| / ||W|| = %g, min eig(H) / max = %g", shape, resid, neg)
		}
	}
}

// A rank-deficient W defeats Newton; the SVD fallback still returns an
// orthogonal Q with W = Q H, H positive semi-definite.
func TestPolarFactorRankDeficient(t *testing.T) {
	rng := newRand(23)
	tests := []struct {
		name string
		w    *mat.Dense
	}{
		{"tall rank 3", withSingularValues(rng, 8, 5, []float64{3, 2, 1, 0, 0})},
		{"square rank 2", withSingularValues(rng, 6, 6, []float64{5, 1, 0, 0, 0, 0})},
		{"wide rank 1", withSingularValues(rng, 4, 9, []float64{2, 0, 0, 0})},
		{"zero", mat.NewDense(3, 3, nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, n := tt.w.Dims()
			if m == n && newtonPolar(rowMajor(tt.w), n) {
				t.Error("Newton accepted a singular matrix")
			}
			q, err := PolarFactor(tt.w)
			if err != nil {
				t.Fatal(err)
			}
			if e := orthogonalityError(q); e > 1e-12 {
				t.Errorf("||Q^T Q - I||_F = %g", e)
			}
			if FrobeniusNorm(tt.w) == 0 {
				return
			}
			if resid, neg := polarBackwardError(tt.w, q); resid > 1e-13 || neg < -1e-13 {
				t.Errorf("||W - QH|| / ||W|| = %g, min eig(H) / max = %g", resid, neg)
			}
		})
	}
}

func TestPolarFactorRejects(t *testing.T) {
	for _, v := range []float64{math.NaN(), math.Inf(-1)} {
		w := mat.NewDense(3, 2, []float64{1, 2, 3, v, 5, 6})
		if _, err := PolarFactor(w); !errors.Is(err, ErrNotFinite) {
			t.Errorf("PolarFactor with %v: err = %v, want ErrNotFinite", v, err)
		}
	}
	// A strided view is read correctly and left untouched.
	rng := newRand(24)
	big := randDense(rng, 10, 10)
	view := big.Slice(1, 8, 2, 6).(*mat.Dense)
	before := mat.DenseCopyOf(view)
	got, err := PolarFactor(view)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := svdPolar(before)
	if d := RelativeError(want, got); d > 1e-10 || !mat.Equal(view, before) {
		t.Errorf("strided view: difference %g, input modified %v", d, !mat.Equal(view, before))
	}
}

// BenchmarkPolarFactor times PolarFactor against the SVD polar factor on
// Gaussian matrices.
func BenchmarkPolarFactor(b *testing.B) {
	for _, n := range []int{256, 1024, 2048} {
		w := randDense(newRand(1), n, n)
		b.Run(fmt.Sprintf("newton/%d", n), func(b *testing.B) {
			for range b.N {
				if _, err := PolarFactor(w); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("svd/%d", n), func(b *testing.B) {
			for range b.N {
				if _, err := svdPolar(w); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
