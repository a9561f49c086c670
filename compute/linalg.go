package compute

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/lapack/lapack64"
	"gonum.org/v1/gonum/mat"
)

// exactSVDLimit is the size below which TruncatedSVD factorises exactly:
// the full SVD is cheap there and its result is the exact optimum.
const exactSVDLimit = 160

// SingularValuesOf returns the min(m, n) singular values of a in decreasing
// order, in dst if it has room. It computes values only (no vectors).
func SingularValuesOf(a mat.Matrix, dst []float64) []float64 {
	m, n := a.Dims()
	k := min(m, n)
	if cap(dst) < k {
		dst = make([]float64, k)
	}
	dst = dst[:k]
	if k == 0 {
		return dst
	}
	_, s, _, ok := thinSVD(a, false)
	if !ok {
		for i := range dst {
			dst[i] = math.NaN()
		}
		return dst
	}
	copy(dst, s)
	return dst
}

// thinSVD factorises a (m x n) as U diag(s) V^T with s in decreasing
// order, U m x k and V n x k with orthonormal columns, k = min(m, n);
// with vectors false it returns s alone (u and v nil). ok is false when
// the iteration does not converge. It is the seam of the LAPACK backend:
// gonum's Dgesvd by default, LAPACK's divide-and-conquer dgesdd under
// the openblas build tag (backend_openblas.go), which is 10-20x faster
// for full factorisations of order 1000 and more.
var thinSVD = gonumThinSVD

func gonumThinSVD(a mat.Matrix, vectors bool) (u *mat.Dense, s []float64, v *mat.Dense, ok bool) {
	kind := mat.SVDNone
	if vectors {
		kind = mat.SVDThin
	}
	var svd mat.SVD
	if !svd.Factorize(a, kind) {
		return nil, nil, nil, false
	}
	if vectors {
		u, v = new(mat.Dense), new(mat.Dense)
		svd.UTo(u)
		svd.VTo(v)
	}
	return u, svd.Values(nil), v, true
}

// FrobeniusNorm returns ||a||_F.
func FrobeniusNorm(a mat.Matrix) float64 { return mat.Norm(a, 2) }

// RelativeError returns ||a - b||_F / ||a||_F, or ||a - b||_F when a is zero.
func RelativeError(a, b mat.Matrix) float64 {
	var d mat.Dense
	d.Sub(a, b)
	num := mat.Norm(&d, 2)
	den := mat.Norm(a, 2)
	if den == 0 {
		return num
	}
	return num / den
}

// TruncatedSVD returns the leading k singular triplets of a (m x n): u is
// m x k with orthonormal columns, s holds k values in decreasing order and
// v is n x k, so u diag(s) v^T is a best rank-k approximation. Matrices
// with min(m, n) <= 160, and k >= min(m, n)/2, are factorised exactly; otherwise it uses the
// randomized range finder of Halko, Martinsson and Tropp (2011) with power
// iterations, seeded by seed, whose error is within a small factor of the
// optimum and usually equal to it to many digits.
func TruncatedSVD(a *mat.Dense, k int, seed uint64) (u *mat.Dense, s []float64, v *mat.Dense, err error) {
	return truncatedSVD(context.Background(), a, k, seed)
}

// truncatedSVD is TruncatedSVD stopping with ctx's error between the
// passes of the randomized path (the exact path is one LAPACK call).
func truncatedSVD(ctx context.Context, a *mat.Dense, k int, seed uint64) (u *mat.Dense, s []float64, v *mat.Dense, err error) {
	m, n := a.Dims()
	if k < 0 || k > min(m, n) {
		return nil, nil, nil, fmt.Errorf("%w: rank %d outside [0, %d] for a %dx%d matrix", ErrSpec, k, min(m, n), m, n)
	}
	if k == 0 {
		return mat.NewDense(m, 1, nil).Slice(0, m, 0, 0).(*mat.Dense), nil, mat.NewDense(n, 1, nil).Slice(0, n, 0, 0).(*mat.Dense), nil
	}
	if !allFinite(a.RawMatrix().Data) {
		return nil, nil, nil, ErrNotFinite
	}
	if exactTruncation(m, n, k) {
		return exactTruncatedSVD(a, k)
	}
	return randomizedSVDOf(ctx, denseMap{a}, k, seed)
}

// exactTruncation reports whether TruncatedSVD factorises an m x n
// matrix exactly for rank k.
func exactTruncation(m, n, k int) bool { return min(m, n) <= exactSVDLimit || 2*k >= min(m, n) }

func exactTruncatedSVD(a mat.Matrix, k int) (*mat.Dense, []float64, *mat.Dense, error) {
	uf, s, vf, ok := thinSVD(a, true)
	if !ok {
		return nil, nil, nil, fmt.Errorf("%w: SVD", ErrNoConvergence)
	}
	s = s[:k]
	m, _ := uf.Dims()
	n, _ := vf.Dims()
	u := mat.DenseCopyOf(uf.Slice(0, m, 0, k))
	v := mat.DenseCopyOf(vf.Slice(0, n, 0, k))
	return u, s, v, nil
}

// randomizedSVDOf is TruncatedSVD's randomized path on any linearMap: it
// reads A only through products with blocks of k + max(10, k/5) vectors,
// and returns ctx's error when ctx is done before a pass.
func randomizedSVDOf(ctx context.Context, a linearMap, k int, seed uint64) (*mat.Dense, []float64, *mat.Dense, error) {
	m, n := a.Dims()
	l := min(k+max(10, k/5), min(m, n))
	const powerIterations = 3
	rng := rand.New(rand.NewPCG(seed, 0x5eed_57a7a))
	omega := mat.NewDense(n, l, nil)
	for i, raw := 0, omega.RawMatrix().Data; i < len(raw); i++ {
		raw[i] = rng.NormFloat64()
	}
	y := mat.NewDense(m, l, nil)
	a.mul(y, omega)
	z := mat.NewDense(n, l, nil)
	// The power iterations only need well-conditioned bases (one
	// CholeskyQR pass); the final basis must be orthonormal.
	for range powerIterations {
		if err := ctx.Err(); err != nil {
			return nil, nil, nil, err
		}
		condition(y)
		a.mulT(z, y)
		condition(z)
		a.mul(y, z)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, nil, err
	}
	orthonormalize(y)
	// B = Q^T A is l x n; factor B^T = A^T Q (n x l), so the thin SVD is
	// n x l, and its SVD gives the approximate triplets.
	a.mulT(z, y)
	ub, s, v, err := exactTruncatedSVD(z, k)
	if err != nil {
		return nil, nil, nil, err
	}
	// B^T = ub s v^T, so B = v s ub^T: left vectors of B are v, right are ub.
	u := mat.NewDense(m, k, nil)
	u.Mul(y, v)
	return u, s, ub, nil
}

// orthonormalize replaces the columns of a (m x n, m >= n) by an
// orthonormal basis of their span. It tries CholeskyQR2 (two passes of
// A <- A R^-1 with R^T R = A^T A: GEMM-rich, several times faster than
// Householder through LAPACK on the tall blocks of the randomized SVD) and
// keeps its result when the columns come out orthonormal to 1e-10;
// otherwise (A too ill-conditioned for the Gram matrix, e.g. rank
// deficient) it falls back to the thin Q of a Householder QR.
func orthonormalize(a *mat.Dense) {
	m, n := a.Dims()
	if m < n {
		panic(ErrShape)
	}
	if !tryCholeskyQR(a, func() bool { return choleskyQR(a) && choleskyQR(a) && orthonormalCols(a, 1e-10) }) {
		householderQ(a)
	}
}

// tryCholeskyQR runs attempt on a tall a (m >= 2n, n >= 32: where the
// Gram matrix pays off) and reports whether it succeeded; on failure, or
// for other shapes, a is left as it was.
func tryCholeskyQR(a *mat.Dense, attempt func() bool) bool {
	m, n := a.Dims()
	if m < 2*n || n < 32 {
		return false
	}
	orig := mat.DenseCopyOf(a)
	if attempt() {
		return true
	}
	a.Copy(orig)
	return false
}

// condition replaces the columns of a by a well-conditioned basis of
// their span: one CholeskyQR pass, or the Householder Q when that fails.
func condition(a *mat.Dense) {
	if !tryCholeskyQR(a, func() bool { return choleskyQR(a) }) {
		householderQ(a)
	}
}

// choleskyQR does one pass of A <- A R^-1, R the Cholesky factor of
// A^T A; false when A^T A is not numerically positive definite or the
// result is not finite.
func choleskyQR(a *mat.Dense) bool {
	_, n := a.Dims()
	g := mat.NewSymDense(n, nil)
	g.SymOuterK(1, a.T())
	var ch mat.Cholesky
	if !ch.Factorize(g) {
		return false
	}
	var r mat.TriDense
	ch.UTo(&r)
	blas64.Trsm(blas.Right, blas.NoTrans, 1, r.RawTriangular(), a.RawMatrix())
	return allFinite(a.RawMatrix().Data)
}

// orthonormalCols reports whether max |A^T A - I| <= tol.
func orthonormalCols(a *mat.Dense, tol float64) bool {
	_, n := a.Dims()
	g := mat.NewSymDense(n, nil)
	g.SymOuterK(1, a.T())
	for i := range n {
		for j := i; j < n; j++ {
			want := 0.0
			if i == j {
				want = 1
			}
			if math.Abs(g.At(i, j)-want) > tol {
				return false
			}
		}
	}
	return true
}

// householderQ replaces a (m x n, m >= n) by the thin Q of its
// Householder QR.
func householderQ(a *mat.Dense) {
	_, n := a.Dims()
	g := a.RawMatrix()
	tau := make([]float64, n)
	work := []float64{0}
	lapack64.Geqrf(g, tau, work, -1)
	work = make([]float64, int(work[0]))
	lapack64.Geqrf(g, tau, work, len(work))
	work = []float64{0}
	lapack64.Orgqr(g, tau, work, -1)
	work = make([]float64, int(work[0]))
	lapack64.Orgqr(g, tau, work, len(work))
}

// general wraps a row-major slice as a blas64.General.
func general(rows, cols int, data []float64) blas64.General {
	return blas64.General{Rows: rows, Cols: cols, Stride: cols, Data: data}
}

func allFinite(data []float64) bool {
	for _, v := range data {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return false
		}
	}
	return true
}
