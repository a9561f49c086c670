package compute

import (
	"context"
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/lapack/gonum"
	"gonum.org/v1/gonum/lapack/lapack64"
	"gonum.org/v1/gonum/mat"
)

// exactConditionLimit is the largest min(out, in) for which Condition
// computes every singular value; above it, it estimates the extremes. A
// variable so tests can exercise the estimate on small matrices.
var exactConditionLimit = 2048

// The estimate's block Krylov space: conditionBlock random start vectors
// and conditionSteps products with A^T A (or its inverse) after the
// first, so each extreme singular value costs 2 conditionSteps + 2 passes
// over the matrix (or its triangular factor) with conditionBlock vectors
// at a time. A pass with 32 vectors costs about what 7 single-vector
// passes do (OpenBLAS, n = 4096: the matrix is read once per pass), so
// this is the cost of about 130 matrix-vector products, where the power
// iteration it replaced made 120, for a space of dimension 288 where
// power iteration keeps one vector. On a 4096 x 4096 Gaussian matrix
// (whose extreme singular values are not separated) the estimates from
// blocks of 8 to 32 vectors and depths of 8 to 20 agree to 0.05%; 32 x 4
// is 0.8% low.
const (
	conditionBlock = 32
	conditionSteps = 8
)

// ConditionExactLimit is the largest min(out, in) for which Condition and
// ConditionInPlace compute every singular value (one values-only SVD);
// above it they estimate the extremes.
func ConditionExactLimit() int { return exactConditionLimit }

// Condition returns the 2-norm condition number sigma_max / sigma_min of w
// (+Inf when w is singular) and whether it is exact. Up to
// exactConditionLimit it takes the values-only SVD. Beyond, it estimates
// sigma_max from a block Krylov space of W W^T (krylovNorm), then reduces
// a copy of w to a square triangular factor (LU when square, QR
// otherwise: both keep the singular values of the smaller side) and
// estimates 1 / sigma_min the same way through the factor's inverse,
// seeded. Each estimate is a Ritz value, which approaches its singular
// value from inside, so the estimated condition is a lower bound, accurate
// to many digits when the extreme singular values are separated from the
// next ones. The copy is the only allocation of the matrix's size.
func Condition(w *mat.Dense, seed uint64) (cond float64, exact bool) {
	m, n := w.Dims()
	if min(m, n) <= exactConditionLimit {
		return exactCondition(SingularValuesOf(w, nil))
	}
	var f *mat.Dense
	if m < n {
		f = mat.DenseCopyOf(w.T())
	} else {
		f = mat.DenseCopyOf(w)
	}
	cond, _ = estimateCondition(context.Background(), w, f, seed)
	return cond, false
}

// ConditionInPlace is Condition on w, which it may overwrite: above the
// exact limit a tall or square w is factored in place (a wide one is
// transposed into a copy first), so it allocates no buffer of w's size.
// It returns ctx's error when ctx is done between the estimate's passes
// over the matrix; the exact SVD and the factorisation are one LAPACK call
// each and run to their end.
func ConditionInPlace(ctx context.Context, w *mat.Dense, seed uint64) (cond float64, exact bool, err error) {
	m, n := w.Dims()
	if min(m, n) <= exactConditionLimit {
		cond, exact = exactCondition(SingularValuesOf(w, nil))
		return cond, exact, nil
	}
	f := w
	if m < n {
		f = mat.DenseCopyOf(w.T())
	}
	cond, err = estimateCondition(ctx, w, f, seed)
	return cond, false, err
}

// ConditionOf returns the condition number of op as Condition does, from
// op's SingularValues up to exactConditionLimit (exact, and cheap for
// families with structured singular values) and otherwise from op's dense
// matrix, materialised once into scratch (out x in values; nil or too
// short allocates) and factored there: a tall or square op needs no other
// buffer of the matrix's size. scratch is overwritten.
func ConditionOf[T Float](op Operator[T], scratch []float64, seed uint64) (cond float64, exact bool) {
	out, in := op.Shape()
	if min(out, in) <= exactConditionLimit {
		return exactCondition(op.SingularValues(nil))
	}
	if len(scratch) < out*in {
		scratch = make([]float64, out*in)
	}
	w := mat.NewDense(out, in, scratch[:out*in])
	op.DenseTo(w.RawMatrix().Data)
	cond, _, _ = ConditionInPlace(context.Background(), w, seed)
	return cond, false
}

// RelativeErrorOf returns ||W - op||_F / ||W||_F (||W - op||_F when W is
// zero), op of W's shape, with op's dense matrix materialised into scratch
// (nil or too short allocates; overwritten) and compared row by row,
// without the difference matrix RelativeError allocates; the value is
// RelativeError's to the bit.
func RelativeErrorOf[T Float](w *mat.Dense, op Operator[T], scratch []float64) float64 {
	out, in := w.Dims()
	if o, i := op.Shape(); o != out || i != in {
		panic(ErrShape)
	}
	return RelativeErrorRows(func(i int, row []float64) { copy(row, w.RawRowView(i)) }, op, scratch)
}

// RelativeErrorRows is RelativeErrorOf for a W known by its rows: rows(i,
// dst) sets dst (op's in values) to row i of W. scratch may be the buffer W
// was decomposed in: W is read through rows only, one row at a time, after
// op has been materialised into scratch (out x in values; nil or too short
// allocates; overwritten: it holds op's dense matrix on return). Both norms accumulate row by row in LAPACK's
// scaled sum of squares (dlassq), as mat.Norm(·, 2) does, so the value is
// RelativeError's to the bit.
func RelativeErrorRows[T Float](rows func(i int, dst []float64), op Operator[T], scratch []float64) float64 {
	out, in := op.Shape()
	if len(scratch) < out*in {
		scratch = make([]float64, out*in)
	}
	d := scratch[:out*in]
	op.DenseTo(d)
	row, diff := make([]float64, in), make([]float64, in)
	var lapack gonum.Implementation
	numScale, numSum, denScale, denSum := 0.0, 1.0, 0.0, 1.0
	for i := range out {
		rows(i, row)
		denScale, denSum = lapack.Dlassq(in, row, 1, denScale, denSum)
		for j, v := range row {
			diff[j] = v - d[i*in+j]
		}
		numScale, numSum = lapack.Dlassq(in, diff, 1, numScale, numSum)
	}
	num, den := numScale*math.Sqrt(numSum), denScale*math.Sqrt(denSum)
	if den == 0 {
		return num
	}
	return num / den
}

func exactCondition(sv []float64) (float64, bool) {
	if len(sv) == 0 {
		return math.NaN(), true
	}
	if sv[len(sv)-1] == 0 {
		return math.Inf(1), true
	}
	return sv[0] / sv[len(sv)-1], true
}

// estimateCondition estimates the condition of w from its singular value
// extremes; f is w, or w^T when w is wide, or a copy of either, and is
// overwritten by its triangular factor (so sigma_max is estimated first,
// from w).
func estimateCondition(ctx context.Context, w, f *mat.Dense, seed uint64) (float64, error) {
	rng := rand.New(rand.NewPCG(seed, 0xc0dd))
	sigmaMax, err := krylovNorm(ctx, denseMap{w}, rng)
	if err != nil {
		return 0, err
	}

	// Square factor T with the singular values of f: R of a QR for a tall
	// matrix, L U of the LU of a square one (P f = L U, and the
	// permutation keeps the singular values), or the LU of f^T.
	rows, n := f.Dims()
	g := f.RawMatrix()
	tri := func(uplo blas.Uplo, diag blas.Diag) *blas64.Triangular {
		return &blas64.Triangular{Uplo: uplo, Diag: diag, N: n, Stride: g.Stride, Data: g.Data}
	}
	var t triangularMap
	switch {
	case rows == n:
		transposed, ok := getrfTransposed(n, g.Data, g.Stride)
		if !ok {
			return math.Inf(1), nil
		}
		if transposed {
			// P f^T = L U with L and U column-major in f's buffer: read
			// row-major it holds U^T below (with the diagonal) and L^T
			// above (unit diagonal), and f = U^T L^T P.
			t = triangularMap{first: tri(blas.Lower, blas.NonUnit), second: tri(blas.Upper, blas.Unit)}
		} else {
			t = triangularMap{first: tri(blas.Lower, blas.Unit), second: tri(blas.Upper, blas.NonUnit)}
		}
	default:
		tau := make([]float64, n)
		work := []float64{0}
		lapack64.Geqrf(g, tau, work, -1)
		work = make([]float64, int(work[0]))
		lapack64.Geqrf(g, tau, work, len(work))
		for i := range n {
			if g.Data[i*g.Stride+i] == 0 {
				return math.Inf(1), nil
			}
		}
		t = triangularMap{second: tri(blas.Upper, blas.NonUnit)}
	}
	inv, err := krylovNorm(ctx, t, rng) // ||T^-1||_2 = 1 / sigma_min
	if err != nil {
		return 0, err
	}
	if math.IsInf(inv, 0) || math.IsNaN(inv) {
		return math.Inf(1), nil
	}
	return sigmaMax * inv, nil
}

// linearMap is a matrix A (m x n) known through its products: mul sets
// dst (m x l) to A X for X (n x l), mulT sets dst (n x l) to A^T Y for Y
// (m x l).
type linearMap interface {
	Dims() (m, n int)
	mul(dst, x *mat.Dense)
	mulT(dst, y *mat.Dense)
}

// denseMap is a matrix as a linearMap.
type denseMap struct{ a mat.Matrix }

func (d denseMap) Dims() (int, int)       { return d.a.Dims() }
func (d denseMap) mul(dst, x *mat.Dense)  { dst.Mul(d.a, x) }
func (d denseMap) mulT(dst, y *mat.Dense) { dst.Mul(d.a.T(), y) }

// getrfTransposed factors the n x n row-major matrix a in place for the
// condition estimate: the LU of a itself (transposed false, gonum's
// row-major Dgetrf), or under the openblas tag the LU of a^T, which
// LAPACK's column-major routine computes without a copy. ok is false when
// a is exactly singular.
var getrfTransposed = func(n int, a []float64, lda int) (transposed, ok bool) {
	return false, lapack64.Getrf(blas64.General{Rows: n, Cols: n, Stride: lda, Data: a}, make([]int, n))
}

// triangularMap is the inverse of T = first second, a product of
// triangular factors (first nil: T = second), applied by triangular solves
// with a block of right-hand sides.
type triangularMap struct {
	first, second *blas64.Triangular
}

func (t triangularMap) Dims() (int, int) { return t.second.N, t.second.N }

// mul sets dst = T^-1 x = second^-1 first^-1 x.
func (t triangularMap) mul(dst, x *mat.Dense) {
	dst.Copy(x)
	if t.first != nil {
		blas64.Trsm(blas.Left, blas.NoTrans, 1, *t.first, dst.RawMatrix())
	}
	blas64.Trsm(blas.Left, blas.NoTrans, 1, *t.second, dst.RawMatrix())
}

// mulT sets dst = T^-T y = first^-T second^-T y.
func (t triangularMap) mulT(dst, y *mat.Dense) {
	dst.Copy(y)
	blas64.Trsm(blas.Left, blas.Trans, 1, *t.second, dst.RawMatrix())
	if t.first != nil {
		blas64.Trsm(blas.Left, blas.Trans, 1, *t.first, dst.RawMatrix())
	}
}

// krylovNorm estimates ||A||_2 as the largest singular value of Q^T A,
// Q an orthonormal basis of the block Krylov space [A G, (A A^T) A G,
// ..., (A A^T)^s A G] of conditionBlock Gaussian start vectors G and s =
// conditionSteps (fewer when the space would fill the smaller side). The
// estimate is at most ||A||_2; with a gap between the two largest singular
// values it converges like a Chebyshev polynomial of degree 2s in the
// gap, far faster than power iteration. A non-finite product (an exactly
// singular triangular factor) returns +Inf. ctx is checked before every
// pass over A.
func krylovNorm(ctx context.Context, a linearMap, rng *rand.Rand) (float64, error) {
	m, n := a.Dims()
	p := min(conditionBlock, m, n)
	steps := min(conditionSteps, min(m, n)/p-1)
	g := mat.NewDense(n, p, nil)
	for i, raw := 0, g.RawMatrix().Data; i < len(raw); i++ {
		raw[i] = rng.NormFloat64()
	}
	basis := mat.NewDense(m, p*(steps+1), nil)
	y := mat.NewDense(m, p, nil)
	z := mat.NewDense(n, p, nil)
	a.mul(y, g)
	for s := 0; s <= steps; s++ {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if !allFinite(y.RawMatrix().Data) {
			return math.Inf(1), nil
		}
		if s > 0 {
			// Against the earlier blocks, twice (classical
			// Gram-Schmidt needs the second pass to stay orthogonal).
			prev := basis.Slice(0, m, 0, s*p)
			var c mat.Dense
			for range 2 {
				c.Mul(prev.T(), y)
				var proj mat.Dense
				proj.Mul(prev, &c)
				y.Sub(y, &proj)
			}
		}
		orthonormalize(y)
		basis.Slice(0, m, s*p, (s+1)*p).(*mat.Dense).Copy(y)
		if s < steps {
			a.mulT(z, y)
			a.mul(y, z)
		}
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	b := mat.NewDense(n, p*(steps+1), nil)
	a.mulT(b, basis)
	if !allFinite(b.RawMatrix().Data) {
		return math.Inf(1), nil
	}
	return SingularValuesOf(b, nil)[0], nil
}
