package compute

import (
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/lapack/lapack64"
	"gonum.org/v1/gonum/mat"
)

// exactConditionLimit is the largest min(out, in) for which Condition
// computes every singular value; above it, it estimates the extremes. A
// variable so tests can exercise the estimate on small matrices.
var exactConditionLimit = 2048

// conditionIterations is the number of power (and inverse power)
// iterations of the estimate.
const conditionIterations = 60

// Condition returns the 2-norm condition number sigma_max / sigma_min of w
// (+Inf when w is singular) and whether it is exact. Up to
// exactConditionLimit it takes the values-only SVD. Beyond, it reduces w to
// its square triangular factor (LU when square, QR otherwise: both keep
// the singular values of the smaller side), estimates sigma_max by power
// iteration on W^T W and sigma_min by inverse iteration through the
// factor, seeded. Each estimate approaches its singular value from inside,
// so the estimated condition is a lower bound, accurate to a few digits
// when the extreme singular values are separated from the next ones.
func Condition(w *mat.Dense, seed uint64) (cond float64, exact bool) {
	m, n := w.Dims()
	if min(m, n) <= exactConditionLimit {
		sv := SingularValuesOf(w, nil)
		if len(sv) == 0 {
			return math.NaN(), true
		}
		if sv[len(sv)-1] == 0 {
			return math.Inf(1), true
		}
		return sv[0] / sv[len(sv)-1], true
	}
	a := w
	if m < n {
		a = mat.DenseCopyOf(w.T())
		m, n = n, m
	}
	rng := rand.New(rand.NewPCG(seed, 0xc0dd))
	sigmaMax := powerNorm(a, rng)

	// Square factor T with the singular values of a: R of a QR for a tall
	// matrix, the LU of a square one (solves go through the permutation).
	f := mat.DenseCopyOf(a)
	g := f.RawMatrix()
	var ipiv []int
	if m == n {
		ipiv = make([]int, n)
		if ok := lapack64.Getrf(g, ipiv); !ok {
			return math.Inf(1), false
		}
	} else {
		tau := make([]float64, n)
		work := []float64{0}
		lapack64.Geqrf(g, tau, work, -1)
		work = make([]float64, int(work[0]))
		lapack64.Geqrf(g, tau, work, len(work))
		g = blas64.General{Rows: n, Cols: n, Stride: g.Stride, Data: g.Data}
		for i := 1; i < n; i++ { // keep only R
			clear(g.Data[i*g.Stride : i*g.Stride+i])
		}
	}
	x := make([]float64, n)
	for i := range x {
		x[i] = rng.NormFloat64()
	}
	// Triangular solves one vector at a time (Trsv: LAPACK's Getrs goes
	// through Trsm, which is slow for a single right-hand side).
	upper := blas64.Triangular{Uplo: blas.Upper, Diag: blas.NonUnit, N: n, Stride: g.Stride, Data: g.Data}
	lower := blas64.Triangular{Uplo: blas.Lower, Diag: blas.Unit, N: n, Stride: g.Stride, Data: g.Data}
	v := blas64.Vector{N: n, Inc: 1, Data: x}
	var inv float64 // estimate of ||T^{-1}||_2
	for range conditionIterations {
		normalize(x)
		// x <- (T^T T)^{-1} x. With P A = L U (square): A^T A =
		// U^T L^T L U, so solve U^T, L^T, then L, U; with the QR: R^T R.
		blas64.Trsv(blas.Trans, upper, v)
		if ipiv != nil {
			blas64.Trsv(blas.Trans, lower, v)
			blas64.Trsv(blas.NoTrans, lower, v)
		}
		blas64.Trsv(blas.NoTrans, upper, v)
		inv = math.Sqrt(blas64.Nrm2(v))
		if math.IsInf(inv, 0) || math.IsNaN(inv) {
			return math.Inf(1), false
		}
	}
	return sigmaMax * inv, false
}

// powerNorm estimates ||a||_2 by power iteration on a^T a.
func powerNorm(a *mat.Dense, rng *rand.Rand) float64 {
	_, n := a.Dims()
	x := mat.NewVecDense(n, nil)
	for i := range n {
		x.SetVec(i, rng.NormFloat64())
	}
	var y mat.VecDense
	var s float64
	for range conditionIterations {
		normalize(x.RawVector().Data)
		y.MulVec(a, x)
		x.MulVec(a.T(), &y)
		s = math.Sqrt(mat.Norm(x, 2))
	}
	return s
}

func normalize(x []float64) {
	var s float64
	for _, v := range x {
		s += v * v
	}
	s = math.Sqrt(s)
	if s == 0 {
		return
	}
	for i := range x {
		x[i] /= s
	}
}
