package compute

import (
	"context"
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"
)

// LowRank is W = U V^T with U out x k and V in x k (parameters "U" and
// "V"). It is both a trunk family and the default residual correction.
type LowRank[T Float] struct {
	out, in, k int
	u, v       []T
}

var _ Operator[float64] = (*LowRank[float64])(nil)

func init() {
	register(FamilyLowRank, newLowRankFromSpec[float64], newLowRankFromSpec[float32], projectLowRank)
}

func newLowRankFromSpec[T Float](s Spec) (Operator[T], error) {
	if s.Rank < 1 || s.Rank > min(s.Out, s.In) {
		return nil, fmt.Errorf("%w: lowrank rank %d must be in [1, %d] for %dx%d", ErrSpec, s.Rank, min(s.Out, s.In), s.Out, s.In)
	}
	return NewLowRank[T](s.Out, s.In, s.Rank, nil, nil), nil
}

// NewLowRank returns U V^T for u (out x k) and v (in x k), which it keeps;
// nil slices allocate zeros.
func NewLowRank[T Float](out, in, k int, u, v []T) *LowRank[T] {
	if u == nil {
		u = make([]T, out*k)
	}
	if v == nil {
		v = make([]T, in*k)
	}
	if len(u) != out*k || len(v) != in*k {
		panic(ErrShape)
	}
	return &LowRank[T]{out: out, in: in, k: k, u: u, v: v}
}

// projectLowRank is the truncated SVD (Eckart-Young): W ~ U_k S_k V_k^T,
// split as U = U_k S_k^(1/2), V = V_k S_k^(1/2) so both factors carry the
// same scale.
func projectLowRank(ctx context.Context, w *mat.Dense, s Spec, seed uint64) (Operator[float64], error) {
	u, sv, v, err := truncatedSVD(ctx, w, s.Rank, seed)
	if err != nil {
		return nil, err
	}
	return lowRankOf(u, sv, v, s.Rank), nil
}

// lowRankOf returns U sqrt(S) (V sqrt(S))^T of the leading rank triplets
// u (out x rank), sv, v (in x rank).
func lowRankOf(u *mat.Dense, sv []float64, v *mat.Dense, rank int) *LowRank[float64] {
	out, _ := u.Dims()
	in, _ := v.Dims()
	lr := NewLowRank[float64](out, in, rank, nil, nil)
	for j, sigma := range sv {
		r := math.Sqrt(sigma)
		for i := range out {
			lr.u[i*rank+j] = u.At(i, j) * r
		}
		for i := range in {
			lr.v[i*rank+j] = v.At(i, j) * r
		}
	}
	return lr
}

func (l *LowRank[T]) Shape() (int, int) { return l.out, l.in }
func (l *LowRank[T]) Spec() Spec {
	return Spec{Family: FamilyLowRank, Out: l.out, In: l.in, Rank: l.k}
}
func (l *LowRank[T]) Params() []Param[T] {
	return []Param[T]{
		{Name: "U", Shape: []int{l.out, l.k}, Data: l.u},
		{Name: "V", Shape: []int{l.in, l.k}, Data: l.v},
	}
}
func (l *LowRank[T]) FLOPs() int { return 2 * l.k * (l.out + l.in) }

func (l *LowRank[T]) Apply(y, x []T, n int, ws *Workspace[T]) {
	checkLen(x, n*l.in)
	checkLen(y, n*l.out)
	mark := ws.mark()
	defer ws.release(mark)
	t := ws.take(n * l.k)
	gemm(false, false, n, l.k, l.in, 1, x, l.in, l.v, l.k, 0, t, l.k)
	gemm(false, true, n, l.out, l.k, 1, t, l.k, l.u, l.k, 0, y, l.out)
}

func (l *LowRank[T]) ApplyT(x, y []T, n int, ws *Workspace[T]) {
	checkLen(x, n*l.in)
	checkLen(y, n*l.out)
	mark := ws.mark()
	defer ws.release(mark)
	t := ws.take(n * l.k)
	gemm(false, false, n, l.k, l.out, 1, y, l.out, l.u, l.k, 0, t, l.k)
	gemm(false, true, n, l.in, l.k, 1, t, l.k, l.v, l.k, 0, x, l.in)
}

func (l *LowRank[T]) Backward(dx, x, dy []T, n int, grads [][]T, ws *Workspace[T]) {
	checkLen(x, n*l.in)
	checkLen(dy, n*l.out)
	mark := ws.mark()
	defer ws.release(mark)
	if len(grads) > 0 && grads[0] != nil {
		// dU += dY^T (X V)
		t := ws.take(n * l.k)
		gemm(false, false, n, l.k, l.in, 1, x, l.in, l.v, l.k, 0, t, l.k)
		gemm(true, false, l.out, l.k, n, 1, dy, l.out, t, l.k, 1, grads[0], l.k)
	}
	wantV := len(grads) > 1 && grads[1] != nil
	if !wantV && dx == nil {
		return
	}
	s := ws.take(n * l.k) // dY U
	gemm(false, false, n, l.k, l.out, 1, dy, l.out, l.u, l.k, 0, s, l.k)
	if wantV {
		// dV += X^T (dY U)
		gemm(true, false, l.in, l.k, n, 1, x, l.in, s, l.k, 1, grads[1], l.k)
	}
	if dx != nil {
		gemm(false, true, n, l.in, l.k, 1, s, l.k, l.v, l.k, 0, dx, l.in)
	}
}

func (l *LowRank[T]) DenseTo(dst []float64) { l.dense(dst, false) }

// denseAddTo adds W to dst (out x in), each entry as DenseTo computes it,
// so that a Sum materialises its low-rank correction without a buffer.
func (l *LowRank[T]) denseAddTo(dst []float64) { l.dense(dst, true) }

func (l *LowRank[T]) dense(dst []float64, add bool) {
	checkLen(dst, l.out*l.in)
	for i := range l.out {
		row := dst[i*l.in : (i+1)*l.in]
		for j := range l.in {
			var s float64
			for t := range l.k {
				s += float64(l.u[i*l.k+t]) * float64(l.v[j*l.k+t])
			}
			if add {
				row[j] += s
			} else {
				row[j] = s
			}
		}
	}
}

// SingularValues uses U = Qu Ru and V = Qv Rv, so that W = Qu (Ru Rv^T)
// Qv^T has the singular values of the k x k core; the rest are zero.
func (l *LowRank[T]) SingularValues(dst []float64) []float64 {
	m := min(l.out, l.in)
	if cap(dst) < m {
		dst = make([]float64, m)
	}
	dst = dst[:m]
	clear(dst)
	ru := triangularFactor(l.u, l.out, l.k)
	rv := triangularFactor(l.v, l.in, l.k)
	var core mat.Dense
	core.Mul(ru, rv.T())
	SingularValuesOf(&core, dst[:l.k])
	return dst
}

// triangularFactor returns the k x k R of a thin QR of a (rows x k), or of
// a padded with zero rows when rows < k.
func triangularFactor[T Float](a []T, rows, k int) *mat.Dense {
	m := max(rows, k)
	d := mat.NewDense(m, k, nil)
	for i := range rows {
		for j := range k {
			d.Set(i, j, float64(a[i*k+j]))
		}
	}
	var qr mat.QR
	qr.Factorize(d)
	var r mat.Dense
	qr.RTo(&r)
	return mat.DenseCopyOf(r.Slice(0, k, 0, k))
}
