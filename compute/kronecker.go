package compute

import (
	"context"
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/gonum/mat"
)

// Kronecker is a sum of r Kronecker products
//
//	W = sum_{i<r} A_i (x) B_i,   W[a m2 + b, c n2 + d] = sum_i A_i[a, c] B_i[b, d],
//
// with A_i m1 x n1 and B_i m2 x n2, so W is (m1 m2) x (n1 n2). The
// parameters are "A", r x m1 x n1 (A_i is the i-th m1 x n1 slab, row-major),
// and "B", r x m2 x n2; there are r (m1 n1 + m2 n2) of them.
//
// Apply uses (A (x) B) vec(X) = vec(A X B^T) for an input row reshaped
// row-major as X (n1 x n2): one GEMM X B_i^T over all batch rows and terms,
// a permutation, one GEMM with [A_0 ... A_{r-1}], and a permutation back,
// 2 r m2 n1 (n2 + m1) flops per row, O(r n^1.5) for n x n with square
// factors. ApplyT and Backward run the same two GEMMs.
//
// Rectangular layers and padding: the Spec's FactorShape is [m1, n1]; a
// zero entry means "closest to square", the divisor of out (resp. in)
// nearest to its square root, which is always the largest divisor not
// above the root (64 -> 8 x 8, 12 -> 3 x 4, 10 -> 2 x 5, a prime p ->
// 1 x p). When a user-given m1 does not divide out (or n1 does not divide
// in), the layer is zero-padded to out' = ceil(out/m1) m1 and
// in' = ceil(in/n1) n1, and the operator is the top-left out x in corner of
// the padded out' x in' Kronecker sum, with m2 = out'/m1 and n2 = in'/n1.
// The default shapes always divide, so they never pad. Spec records the
// resolved FactorShape.
type Kronecker[T Float] struct {
	m1, n1, m2, n2, r int
	a, b              []T
}

var _ Operator[float64] = (*Kronecker[float64])(nil)

func init() {
	register(FamilyKronecker, newKroneckerFromSpec[float64], newKroneckerFromSpec[float32], projectKronecker)
}

// kroneckerShape resolves a Spec's factor shape: it returns m1, n1, m2,
// n2 and the padded shape out' = m1 m2, in' = n1 n2.
func kroneckerShape(s Spec) (m1, n1, m2, n2 int, err error) {
	m1, n1 = s.FactorShape[0], s.FactorShape[1]
	if m1 < 0 || n1 < 0 || m1 > s.Out || n1 > s.In {
		return 0, 0, 0, 0, fmt.Errorf("%w: kronecker factor shape %dx%d must be in [1, %d] x [1, %d] (0 for closest to square)",
			ErrSpec, m1, n1, s.Out, s.In)
	}
	if m1 == 0 {
		m1 = squarestDivisor(s.Out)
	}
	if n1 == 0 {
		n1 = squarestDivisor(s.In)
	}
	return m1, n1, ceilTo(s.Out, m1) / m1, ceilTo(s.In, n1) / n1, nil
}

// squarestDivisor returns the divisor of n closest to sqrt(n), ties to the
// smaller. That is the largest divisor d <= sqrt(n): its partner n/d is the
// nearest divisor above the root, and d + n/d >= 2 sqrt(n) (AM-GM) puts d
// at least as close.
func squarestDivisor(n int) int {
	for d := isqrtFloor(n) + 1; d >= 1; d-- {
		if d*d <= n && n%d == 0 {
			return d
		}
	}
	return 1
}

func newKroneckerFromSpec[T Float](s Spec) (Operator[T], error) {
	m1, n1, m2, n2, err := kroneckerShape(s)
	if err != nil {
		return nil, err
	}
	if s.Rank < 1 || s.Rank > min(m1*n1, m2*n2) {
		return nil, fmt.Errorf("%w: kronecker rank %d must be in [1, %d] for factors %dx%d and %dx%d",
			ErrSpec, s.Rank, min(m1*n1, m2*n2), m1, n1, m2, n2)
	}
	return maybePad(NewKronecker[T](m1, n1, m2, n2, s.Rank, nil, nil), s.Out, s.In), nil
}

// NewKronecker returns sum_{i<r} A_i (x) B_i of shape (m1 m2) x (n1 n2) for
// a (r x m1 x n1) and b (r x m2 x n2), which it keeps; nil slices allocate
// zeros.
func NewKronecker[T Float](m1, n1, m2, n2, r int, a, b []T) *Kronecker[T] {
	if m1 < 1 || n1 < 1 || m2 < 1 || n2 < 1 || r < 1 {
		panic(ErrShape)
	}
	if a == nil {
		a = make([]T, r*m1*n1)
	}
	if b == nil {
		b = make([]T, r*m2*n2)
	}
	if len(a) != r*m1*n1 || len(b) != r*m2*n2 {
		panic(ErrShape)
	}
	return &Kronecker[T]{m1: m1, n1: n1, m2: m2, n2: n2, r: r, a: a, b: b}
}

// projectKronecker is the Van Loan-Pitsianis projection. The rearrangement
// R, (m1 n1) x (m2 n2) with row a n1 + c the row-major vec of the block
// W[a m2:(a+1) m2, c n2:(c+1) n2], maps sum_i A_i (x) B_i to
// sum_i vec(A_i) vec(B_i)^T and preserves the Frobenius norm, so the rank-r
// truncated SVD of R, R ~ sum_i s_i u_i v_i^T, gives the nearest sum of r
// Kronecker products: A_i = reshape(sqrt(s_i) u_i), B_i =
// reshape(sqrt(s_i) v_i). For a padded layer it is the nearest to the
// zero-padded W, an upper bound on the best error for the corner alone.
func projectKronecker(ctx context.Context, w *mat.Dense, s Spec, seed uint64) (Operator[float64], error) {
	m1, n1, m2, n2, err := kroneckerShape(s)
	if err != nil {
		return nil, err
	}
	r := kroneckerRearrange(denseData(padDense(w, m1*m2, n1*n2)), m1, n1, m2, n2)
	u, sv, v, err := truncatedSVD(ctx, r, s.Rank, seed)
	if err != nil {
		return nil, err
	}
	k := NewKronecker[float64](m1, n1, m2, n2, s.Rank, nil, nil)
	for i, sigma := range sv {
		h := math.Sqrt(sigma)
		for p := range m1 * n1 {
			k.a[i*m1*n1+p] = h * u.At(p, i)
		}
		for q := range m2 * n2 {
			k.b[i*m2*n2+q] = h * v.At(q, i)
		}
	}
	return maybePad[float64](k, s.Out, s.In), nil
}

// kroneckerRearrange returns the Van Loan-Pitsianis rearrangement of w
// ((m1 m2) x (n1 n2), row-major): the (m1 n1) x (m2 n2) matrix whose row
// a n1 + c is the row-major vec of block (a, c) of w.
func kroneckerRearrange(w []float64, m1, n1, m2, n2 int) *mat.Dense {
	in := n1 * n2
	r := make([]float64, m1*n1*m2*n2)
	for a := range m1 {
		for b := range m2 {
			src := w[(a*m2+b)*in : (a*m2+b+1)*in]
			for c := range n1 {
				copy(r[(a*n1+c)*m2*n2+b*n2:][:n2], src[c*n2:(c+1)*n2])
			}
		}
	}
	return mat.NewDense(m1*n1, m2*n2, r)
}

func (k *Kronecker[T]) Shape() (int, int) { return k.m1 * k.m2, k.n1 * k.n2 }

func (k *Kronecker[T]) Spec() Spec {
	return Spec{Family: FamilyKronecker, Out: k.m1 * k.m2, In: k.n1 * k.n2, Rank: k.r,
		FactorShape: [2]int{k.m1, k.n1}}
}

func (k *Kronecker[T]) Params() []Param[T] {
	return []Param[T]{
		{Name: "A", Shape: []int{k.r, k.m1, k.n1}, Data: k.a},
		{Name: "B", Shape: []int{k.r, k.m2, k.n2}, Data: k.b},
	}
}

func (k *Kronecker[T]) FLOPs() int { return 2 * k.r * k.m2 * k.n1 * (k.n2 + k.m1) }

// stackA returns [A_0 A_1 ... A_{r-1}], m1 x (r n1): entry (a, i n1 + c)
// is A_i[a, c]. For r = 1 that is A itself.
func (k *Kronecker[T]) stackA(ws *Workspace[T]) []T {
	if k.r == 1 {
		return k.a
	}
	m1, n1, r := k.m1, k.n1, k.r
	as := ws.take(m1 * r * n1)
	for i := range r {
		for a := range m1 {
			copy(as[a*r*n1+i*n1:][:n1], k.a[(i*m1+a)*n1:][:n1])
		}
	}
	return as
}

// forward returns P, (r n1) x (n m2) with P[i n1 + c, j m2 + b] =
// (X_j B_i^T)[c, b] for the n input rows X_j (n1 x n2 each): one GEMM of
// all n n1 rows of x with B^T, then a permutation.
func (k *Kronecker[T]) forward(x []T, n int, ws *Workspace[T]) []T {
	n1, n2, m2, r := k.n1, k.n2, k.m2, k.r
	t := ws.take(n * n1 * r * m2) // [n][n1][r][m2]
	gemm(false, true, n*n1, r*m2, n2, 1, x, n2, k.b, n2, 0, t, r*m2)
	p := ws.take(n * n1 * r * m2) // [r][n1][n][m2]
	swapOuter(p, t, n, n1, r, m2)
	return p
}

// backwardCore returns U, (n n1) x (r m2) with U[j n1 + c, i m2 + b] =
// (A_i^T G_j)[c, b] for the n rows G_j (m1 x m2) of g held as gp, the
// m1 x (n m2) matrix with gp[a, j m2 + b] = G_j[a, b].
func (k *Kronecker[T]) backwardCore(as, gp []T, n int, ws *Workspace[T]) []T {
	m1, n1, m2, r := k.m1, k.n1, k.m2, k.r
	v := ws.take(r * n1 * n * m2) // [r][n1][n][m2]
	gemm(true, false, r*n1, n*m2, m1, 1, as, r*n1, gp, n*m2, 0, v, n*m2)
	u := ws.take(n * n1 * r * m2) // [n][n1][r][m2]
	swapOuter(u, v, r, n1, n, m2)
	return u
}

func (k *Kronecker[T]) Apply(y, x []T, n int, ws *Workspace[T]) {
	out, in := k.Shape()
	checkLen(x, n*in)
	checkLen(y, n*out)
	mark := ws.mark()
	defer ws.release(mark)
	m1, n1, m2, r := k.m1, k.n1, k.m2, k.r
	p := k.forward(x, n, ws)
	as := k.stackA(ws)
	z := ws.take(m1 * n * m2) // [m1][n][m2]
	gemm(false, false, m1, n*m2, r*n1, 1, as, r*n1, p, n*m2, 0, z, n*m2)
	swapOuter(y, z, m1, 1, n, m2)
}

func (k *Kronecker[T]) ApplyT(x, y []T, n int, ws *Workspace[T]) {
	out, in := k.Shape()
	checkLen(x, n*in)
	checkLen(y, n*out)
	mark := ws.mark()
	defer ws.release(mark)
	m1, n1, n2, m2, r := k.m1, k.n1, k.n2, k.m2, k.r
	gp := ws.take(m1 * n * m2)
	swapOuter(gp, y, n, 1, m1, m2)
	u := k.backwardCore(k.stackA(ws), gp, n, ws)
	gemm(false, false, n*n1, n2, r*m2, 1, u, r*m2, k.b, n2, 0, x, n2)
}

// Backward computes, with G_j the rows of dy as m1 x m2 and X_j those of x
// as n1 x n2, dA_i += sum_j G_j (X_j B_i^T)^T, dB_i += sum_j (A_i^T G_j)^T X_j
// and dX_j = sum_i A_i^T G_j B_i.
func (k *Kronecker[T]) Backward(dx, x, dy []T, n int, grads [][]T, ws *Workspace[T]) {
	out, in := k.Shape()
	checkLen(x, n*in)
	checkLen(dy, n*out)
	mark := ws.mark()
	defer ws.release(mark)
	m1, n1, n2, m2, r := k.m1, k.n1, k.n2, k.m2, k.r
	wantA := len(grads) > 0 && grads[0] != nil
	wantB := len(grads) > 1 && grads[1] != nil
	if !wantA && !wantB && dx == nil {
		return
	}
	gp := ws.take(m1 * n * m2) // [m1][n][m2]
	swapOuter(gp, dy, n, 1, m1, m2)
	if wantA {
		p := k.forward(x, n, ws)
		da := ws.take(m1 * r * n1) // m1 x (r n1), stacked like stackA
		gemm(false, true, m1, r*n1, n*m2, 1, gp, n*m2, p, n*m2, 0, da, r*n1)
		ga := grads[0]
		for i := range r {
			for a := range m1 {
				dst := ga[(i*m1+a)*n1:][:n1]
				for c, v := range da[a*r*n1+i*n1:][:n1] {
					dst[c] += v
				}
			}
		}
	}
	if !wantB && dx == nil {
		return
	}
	u := k.backwardCore(k.stackA(ws), gp, n, ws)
	if wantB {
		gemm(true, false, r*m2, n2, n*n1, 1, u, r*m2, x, n2, 1, grads[1], n2)
	}
	if dx != nil {
		gemm(false, false, n*n1, n2, r*m2, 1, u, r*m2, k.b, n2, 0, dx, n2)
	}
}

// swapOuter sets dst[i2][i1][i0][:] = src[i0][i1][i2][:] for src of shape
// d0 x d1 x d2 x d3 (row-major), moving contiguous runs of d3. It is a
// plain copy when at most one of d0, d1, d2 exceeds 1.
func swapOuter[T Float](dst, src []T, d0, d1, d2, d3 int) {
	if (d0 == 1 && d2 == 1) || (d1 == 1 && (d0 == 1 || d2 == 1)) {
		copy(dst[:d0*d1*d2*d3], src)
		return
	}
	for i0 := range d0 {
		for i1 := range d1 {
			s := src[(i0*d1+i1)*d2*d3:]
			for i2 := range d2 {
				copy(dst[((i2*d1+i1)*d0+i0)*d3:][:d3], s[i2*d3:(i2+1)*d3])
			}
		}
	}
}

func (k *Kronecker[T]) DenseTo(dst []float64) {
	out, in := k.Shape()
	checkLen(dst, out*in)
	m1, n1, m2, n2 := k.m1, k.n1, k.m2, k.n2
	clear(dst[:out*in])
	for i := range k.r {
		for a := range m1 {
			for c := range n1 {
				av := float64(k.a[(i*m1+a)*n1+c])
				for b := range m2 {
					row := dst[(a*m2+b)*in+c*n2:][:n2]
					for d, bv := range k.b[(i*m2+b)*n2:][:n2] {
						row[d] += av * float64(bv)
					}
				}
			}
		}
	}
}

// SingularValues of a single product A (x) B are the products
// sigma_p(A) sigma_q(B), min(m1, n1) min(m2, n2) <= min(out, in) of them,
// the rest zero. For r > 1 they come from the dense matrix.
func (k *Kronecker[T]) SingularValues(dst []float64) []float64 {
	if k.r > 1 {
		return denseSingularValues[T](k, dst)
	}
	out, in := k.Shape()
	sa := SingularValuesOf(factorDense(k.a, k.m1, k.n1), nil)
	sb := SingularValuesOf(factorDense(k.b, k.m2, k.n2), nil)
	if cap(dst) < min(out, in) {
		dst = make([]float64, min(out, in))
	}
	dst = dst[:min(out, in)]
	clear(dst)
	i := 0
	for _, x := range sa {
		for _, y := range sb {
			dst[i] = x * y
			i++
		}
	}
	slices.Sort(dst)
	slices.Reverse(dst)
	return dst
}

// factorDense copies a rows x cols factor to a float64 matrix.
func factorDense[T Float](f []T, rows, cols int) *mat.Dense {
	d := make([]float64, rows*cols)
	for i, v := range f[:rows*cols] {
		d[i] = float64(v)
	}
	return mat.NewDense(rows, cols, d)
}
