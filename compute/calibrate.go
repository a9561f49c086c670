package compute

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/mat"
)

// This file holds the data side of data-aware conversion: the second
// moment of a layer's input activations, the ridge that makes it usable,
// and the error measures. The projections that use it are in
// calibrate_project.go and the per-family files.

// ErrCalibration is wrapped by errors about calibration activations that
// cannot be used: no rows, rows of the wrong width, all-zero activations,
// or a singular second moment with no ridge.
var ErrCalibration = Error{"compute: unusable calibration activations"}

// DefaultRidge is the relative ridge alpha a Calibration uses when asked
// for a negative one (see Calibration). On held-out rows of anisotropic
// activations (64 inputs, 100:1 feature scales; lowrank, blockdiag,
// monarch, toeplitz) alpha = 1e-2 was within 0.3% of the best alpha in
// [1e-8, 1] with 128 or 512 calibration rows, and 4 to 14% better than
// alpha <= 1e-4 with 32 rows, where the rows leave directions unseen.
const DefaultRidge = 1e-2

// Gram accumulates the second moment of activation rows batch by batch,
// so that a layer's inputs need not be held in memory: after rows x_1 ...
// x_n (each of length in) it holds X^T X = sum_t x_t^T x_t, in float64.
type Gram struct {
	in, rows int
	sum      *mat.SymDense // X^T X, upper triangle
}

// NewGram returns an empty accumulator for rows of length in >= 1.
func NewGram(in int) *Gram {
	if in < 1 {
		panic(ErrShape)
	}
	return &Gram{in: in, sum: mat.NewSymDense(in, nil)}
}

// In returns the row length.
func (g *Gram) In() int { return g.in }

// Rows returns the number of rows added so far.
func (g *Gram) Rows() int { return g.rows }

// Add accumulates the n rows of x (n x in, row-major). A batch of the
// wrong length, or holding NaN or Inf, is rejected whole (wrapping
// ErrCalibration or ErrNotFinite) and leaves g unchanged.
func (g *Gram) Add(x []float64, n int) error {
	if n < 0 || len(x) != n*g.in {
		return fmt.Errorf("%w: %d values are not %d rows of width %d", ErrCalibration, len(x), n, g.in)
	}
	if !allFinite(x) {
		return fmt.Errorf("calibration rows: %w", ErrNotFinite)
	}
	if n == 0 {
		return nil
	}
	blas64.Syrk(blas.Trans, 1, general(n, g.in, x), 1, g.sum.RawSymmetric())
	g.rows += n
	return nil
}

// Calibration returns the Calibration of the rows added so far (see
// NewCalibrationGram for ridge and errors).
func (g *Gram) Calibration(ridge float64) (*Calibration, error) {
	if g.rows == 0 {
		return nil, fmt.Errorf("%w: no rows", ErrCalibration)
	}
	c := mat.NewSymDense(g.in, nil)
	c.ScaleSym(1/float64(g.rows), g.sum)
	return NewCalibrationGram(c, g.rows, ridge)
}

// Calibration is what data-aware conversion knows of a layer's inputs:
// the second moment C = X^T X / n (in x in) of n activation rows X
// (n x in, as the layer sees them), and a ridge. For a weight W (out x in)
// and any A of the same shape, the output error on those rows is
//
//	||(W - A) X^T||_F^2 = n tr((W - A) C (W - A)^T),
//
// so C is all the fits need. They minimise the ridged objective
//
//	F(A) = tr((W - A) M (W - A)^T),   M = C + lambda I,
//
// which is the mean squared output error per row plus lambda ||W - A||_F^2,
// the same as appending the rows sqrt(n lambda) e_i (i < in) to X. The
// ridge is relative: lambda = alpha tr(C) / in, alpha times the mean
// eigenvalue of C (the mean squared activation per feature). That makes the
// fits invariant to the units of the activations (scaling X scales C and
// lambda alike), bounds the condition number of M by in / alpha + 1, so the
// Cholesky factor M = L L^T is accurate, and settles the directions the
// rows do not reach (n < in, dead features), where the output error alone
// leaves A free, towards W itself. Small alpha trusts the rows; alpha = 0
// is allowed when C is positive definite and gives the exact output-error
// minimiser.
//
// A Calibration is immutable and safe for concurrent use.
type Calibration struct {
	in, rows int
	alpha    float64
	lambda   float64
	gram     *mat.SymDense // C
	m        *mat.SymDense // C + lambda I
	chol     mat.Cholesky  // of m
	lower    *mat.TriDense // L, m = L L^T
}

// NewCalibration returns the Calibration of the n rows of x (n x in,
// row-major) with relative ridge alpha (DefaultRidge when negative). Errors
// wrap ErrCalibration (no rows, a length that is not n*in, all-zero rows,
// C singular with alpha = 0) or ErrNotFinite.
func NewCalibration(x []float64, n, in int, alpha float64) (*Calibration, error) {
	if in < 1 {
		return nil, fmt.Errorf("%w: width %d", ErrCalibration, in)
	}
	g := NewGram(in)
	if err := g.Add(x, n); err != nil {
		return nil, err
	}
	return g.Calibration(alpha)
}

// NewCalibrationGram returns the Calibration of a second moment c =
// X^T X / rows (in x in), which it copies, with relative ridge alpha
// (DefaultRidge when negative). Errors as NewCalibration.
func NewCalibrationGram(c *mat.SymDense, rows int, alpha float64) (*Calibration, error) {
	in := c.SymmetricDim()
	if rows < 1 || in < 1 {
		return nil, fmt.Errorf("%w: no rows", ErrCalibration)
	}
	if !allFinite(c.RawSymmetric().Data) || math.IsNaN(alpha) || math.IsInf(alpha, 0) {
		return nil, fmt.Errorf("calibration second moment: %w", ErrNotFinite)
	}
	if alpha < 0 {
		alpha = DefaultRidge
	}
	mean := mat.Trace(c) / float64(in)
	if !(mean > 0) {
		return nil, fmt.Errorf("%w: every activation is zero", ErrCalibration)
	}
	cal := &Calibration{in: in, rows: rows, alpha: alpha, lambda: alpha * mean}
	cal.gram = mat.NewSymDense(in, nil)
	cal.gram.CopySym(c)
	cal.m = mat.NewSymDense(in, nil)
	cal.m.CopySym(c)
	for i := range in {
		cal.m.SetSym(i, i, cal.m.At(i, i)+cal.lambda)
	}
	if !cal.chol.Factorize(cal.m) {
		return nil, fmt.Errorf("%w: the second moment is singular (rank below %d); use a positive ridge", ErrCalibration, in)
	}
	cal.lower = new(mat.TriDense)
	cal.chol.LTo(cal.lower)
	return cal, nil
}

// In returns the width of the activations.
func (c *Calibration) In() int { return c.in }

// Rows returns the number of rows behind the second moment.
func (c *Calibration) Rows() int { return c.rows }

// Ridge returns the relative ridge alpha.
func (c *Calibration) Ridge() float64 { return c.alpha }

// Lambda returns the absolute ridge lambda = alpha tr(C) / in.
func (c *Calibration) Lambda() float64 { return c.lambda }

// SecondMoment returns a copy of C = X^T X / n.
func (c *Calibration) SecondMoment() *mat.SymDense {
	s := mat.NewSymDense(c.in, nil)
	s.CopySym(c.gram)
	return s
}

// RelativeError returns the relative output error of a against w on the
// calibration rows themselves, sqrt(tr(D C D^T) / tr(W C W^T)) with
// D = W - A: ||(W - A) X^T||_F / ||W X^T||_F without forming X, and
// without the ridge. It returns the numerator alone when W X^T = 0. w and
// a are out x in; other shapes panic with ErrShape.
func (c *Calibration) RelativeError(w, a mat.Matrix) float64 {
	d := c.difference(w, a)
	num := quadTrace(d, c.gram)
	den := quadTrace(mat.DenseCopyOf(w), c.gram)
	if den <= 0 {
		return math.Sqrt(max(num, 0))
	}
	return math.Sqrt(max(num, 0) / den)
}

// objective returns F(A) = tr((W - A) M (W - A)^T) = ||(W - A) L||_F^2.
func (c *Calibration) objective(w, a mat.Matrix) float64 {
	d := c.difference(w, a)
	c.whiten(d)
	n := mat.Norm(d, 2)
	return n * n
}

// difference returns W - A, checking the shapes against c.
func (c *Calibration) difference(w, a mat.Matrix) *mat.Dense {
	out, in := w.Dims()
	ao, ai := a.Dims()
	if in != c.in || ao != out || ai != in {
		panic(ErrShape)
	}
	d := mat.NewDense(out, in, nil)
	d.Sub(w, a)
	return d
}

// whiten sets d = d L in place (d has c.in columns).
func (c *Calibration) whiten(d *mat.Dense) {
	blas64.Trmm(blas.Right, blas.NoTrans, 1, c.lower.RawTriangular(), d.RawMatrix())
}

// quadTrace returns tr(D S D^T) for D (out x in) and S (in x in).
func quadTrace(d *mat.Dense, s *mat.SymDense) float64 {
	var ds mat.Dense
	ds.Mul(d, s)
	var t float64
	out, in := d.Dims()
	for i := range out {
		for j := range in {
			t += ds.At(i, j) * d.At(i, j)
		}
	}
	return t
}

// OutputRelativeError returns ||(W - A) X^T||_F / ||W X^T||_F for the n
// rows of x (n x in, row-major): the relative error of the outputs a
// replacement A gives on those rows, the measure to report on held-out
// rows for weight-only against data-aware conversion. It returns the
// numerator alone when W X^T = 0. w and a are out x in and x has n*in
// values; other shapes panic with ErrShape.
func OutputRelativeError(w, a mat.Matrix, x []float64, n int) float64 {
	out, in := w.Dims()
	if ao, ai := a.Dims(); ao != out || ai != in || n < 0 || len(x) != n*in {
		panic(ErrShape)
	}
	if n == 0 {
		return 0
	}
	xm := mat.NewDense(n, in, x)
	var d, y mat.Dense
	d.Sub(w, a)
	y.Mul(xm, d.T())
	num := mat.Norm(&y, 2)
	y.Mul(xm, w.T())
	den := mat.Norm(&y, 2)
	if den == 0 {
		return num
	}
	return num / den
}

// whitenedTruncation returns u (rows x k) and v (cols x k) such that
// B = u v^T minimises ||(D - B) L||_F over matrices of rank at most k,
// where L is the lower-triangular cols x cols factor of M = L L^T (M
// positive definite): with the truncated SVD (D L)_k = U_k S_k V_k^T,
// B L = (D L)_k, so u = U_k S_k^(1/2) and v = L^(-T) V_k S_k^(1/2). The SVD
// is TruncatedSVD's (exact for small matrices, randomized and seeded by
// seed for large ones).
func whitenedTruncation(d *mat.Dense, lower *mat.TriDense, k int, seed uint64) (u, v *mat.Dense, err error) {
	rows, cols := d.Dims()
	dl := mat.DenseCopyOf(d)
	blas64.Trmm(blas.Right, blas.NoTrans, 1, lower.RawTriangular(), dl.RawMatrix())
	uk, s, vk, err := TruncatedSVD(dl, k, seed)
	if err != nil {
		return nil, nil, err
	}
	u = mat.NewDense(rows, max(k, 1), nil)
	v = mat.NewDense(cols, max(k, 1), nil)
	for t, sigma := range s {
		h := math.Sqrt(sigma)
		for i := range rows {
			u.Set(i, t, uk.At(i, t)*h)
		}
		for i := range cols {
			v.Set(i, t, vk.At(i, t)*h)
		}
	}
	blas64.Trsm(blas.Left, blas.Trans, 1, lower.RawTriangular(), v.RawMatrix())
	return u.Slice(0, rows, 0, k).(*mat.Dense), v.Slice(0, cols, 0, k).(*mat.Dense), nil
}
