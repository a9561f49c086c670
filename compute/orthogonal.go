package compute

import (
	"context"
	"math"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"

	"gonum.org/v1/gonum/mat"
)

// orthogonalTol bounds ||Q^T Q - I||_F (on the smaller side) for
// SingularValues to report |s| for every singular value: the singular
// values of Q are then 1 to within that bound. A float32 Q never meets it
// and takes the dense path.
const orthogonalTol = 1e-12

// Orthogonal is W = s Q with Q out x in (semi-)orthogonal, Q^T Q = I when
// out >= in and Q Q^T = I when out < in, and s a scalar: every singular
// value of W is |s|. The parameters are "Q", out x in row-major, and
// "scale", a single value: out in + 1 in all. Any shape works, with no
// padding. Apply, ApplyT and Backward are dense GEMMs, 2 out in flops per
// row.
//
// Training moves Q off the orthogonal set; Retract puts it back. Until
// then the operator is s Q for whatever Q holds, and SingularValues notices
// (it checks orthogonality before using the structure).
type Orthogonal[T Float] struct {
	out, in int
	q       []T
	scale   []T // length 1
}

var _ Operator[float64] = (*Orthogonal[float64])(nil)

func init() {
	register(FamilyOrthogonal, newOrthogonalFromSpec[float64], newOrthogonalFromSpec[float32], projectOrthogonal)
}

func newOrthogonalFromSpec[T Float](s Spec) (Operator[T], error) {
	return NewOrthogonal[T](s.Out, s.In, nil, 0), nil
}

// NewOrthogonal returns scale * Q for q (out x in, row-major), which it
// keeps; a nil q allocates zeros. It does not check that q is orthogonal.
func NewOrthogonal[T Float](out, in int, q []T, scale T) *Orthogonal[T] {
	if q == nil {
		q = make([]T, out*in)
	}
	if out < 1 || in < 1 || len(q) != out*in {
		panic(ErrShape)
	}
	return &Orthogonal[T]{out: out, in: in, q: q, scale: []T{scale}}
}

// projectOrthogonal returns s Q minimising ||W - s Q||_F over
// (semi-)orthogonal Q and scalar s: Q is the polar factor U V^T of
// W = U Sigma V^T, which maximises <Q, W> = trace(Q^T W) to the nuclear
// norm, and s = trace(Q^T W) / min(out, in) is the mean singular value.
// The squared error is ||W||_F^2 - (sum sigma)^2 / min(out, in).
func projectOrthogonal(_ context.Context, w *mat.Dense, s Spec, _ uint64) (Operator[float64], error) {
	q, err := PolarFactor(w)
	if err != nil {
		return nil, err
	}
	qd := rowMajor(q)
	var tr float64
	for i, v := range denseData(w) {
		tr += qd[i] * v
	}
	return NewOrthogonal(s.Out, s.In, qd, tr/float64(min(s.Out, s.In))), nil
}

// Retract replaces Q by its polar factor, the nearest (semi-)orthogonal
// matrix, and keeps the scale: the retraction a trainer applies after each
// step. It mutates the operator, so it must not run concurrently with
// Apply, ApplyT or Backward. On error (NaN or Inf in Q) Q is unchanged.
func (o *Orthogonal[T]) Retract() error {
	p, err := PolarFactor(factorDense(o.q, o.out, o.in))
	if err != nil {
		return err
	}
	for i, v := range p.RawMatrix().Data[:o.out*o.in] {
		o.q[i] = T(v)
	}
	return nil
}

// Scale returns s.
func (o *Orthogonal[T]) Scale() T { return o.scale[0] }

func (o *Orthogonal[T]) Shape() (int, int) { return o.out, o.in }
func (o *Orthogonal[T]) Spec() Spec        { return Spec{Family: FamilyOrthogonal, Out: o.out, In: o.in} }
func (o *Orthogonal[T]) Params() []Param[T] {
	return []Param[T]{
		{Name: "Q", Shape: []int{o.out, o.in}, Data: o.q},
		{Name: "scale", Shape: []int{1}, Data: o.scale},
	}
}
func (o *Orthogonal[T]) FLOPs() int { return 2 * o.out * o.in }

func (o *Orthogonal[T]) Apply(y, x []T, n int, _ *Workspace[T]) {
	checkLen(x, n*o.in)
	checkLen(y, n*o.out)
	gemm(false, true, n, o.out, o.in, o.scale[0], x, o.in, o.q, o.in, 0, y, o.out)
}

func (o *Orthogonal[T]) ApplyT(x, y []T, n int, _ *Workspace[T]) {
	checkLen(x, n*o.in)
	checkLen(y, n*o.out)
	gemm(false, false, n, o.in, o.out, o.scale[0], y, o.out, o.q, o.in, 0, x, o.in)
}

// Backward adds dQ = s dY^T X and dscale = <dY, X Q^T> = <dY Q, X>, and
// sets dx = s dY Q; dY Q is computed once for both.
func (o *Orthogonal[T]) Backward(dx, x, dy []T, n int, grads [][]T, ws *Workspace[T]) {
	checkLen(x, n*o.in)
	checkLen(dy, n*o.out)
	s := o.scale[0]
	if len(grads) > 0 && grads[0] != nil {
		gemm(true, false, o.out, o.in, n, s, dy, o.out, x, o.in, 1, grads[0], o.in)
	}
	wantScale := len(grads) > 1 && grads[1] != nil
	if !wantScale && dx == nil {
		return
	}
	mark := ws.mark()
	defer ws.release(mark)
	t := dx
	if t == nil {
		t = ws.take(n * o.in)
	} else {
		checkLen(dx, n*o.in)
	}
	gemm(false, false, n, o.in, o.out, 1, dy, o.out, o.q, o.in, 0, t, o.in)
	if wantScale {
		grads[1][0] += T(dot(t[:n*o.in], x[:n*o.in]))
	}
	if dx != nil {
		scale(dx, n, o.in, o.in, s)
	}
}

func (o *Orthogonal[T]) DenseTo(dst []float64) {
	checkLen(dst, o.out*o.in)
	s := float64(o.scale[0])
	for i, v := range o.q {
		dst[i] = s * float64(v)
	}
}

// SingularValues are all |s| when Q is (semi-)orthogonal to 1e-12
// (||Q^T Q - I||_F on the smaller side, which costs one GEMM); otherwise,
// after training has moved Q, they come from the dense matrix.
func (o *Orthogonal[T]) SingularValues(dst []float64) []float64 {
	if !o.isOrthogonal() {
		return denseSingularValues[T](o, dst)
	}
	k := min(o.out, o.in)
	if cap(dst) < k {
		dst = make([]float64, k)
	}
	dst = dst[:k]
	s := math.Abs(float64(o.scale[0]))
	for i := range dst {
		dst[i] = s
	}
	return dst
}

// isOrthogonal reports whether ||Q^T Q - I||_F <= orthogonalTol (Q Q^T
// when out < in). The Gram matrix comes from one SYRK, min(out, in)^2
// max(out, in) flops.
func (o *Orthogonal[T]) isOrthogonal() bool {
	q := factorDense(o.q, o.out, o.in).RawMatrix()
	k := min(o.out, o.in)
	g := blas64.Symmetric{Uplo: blas.Upper, N: k, Stride: k, Data: make([]float64, k*k)}
	if o.out >= o.in {
		blas64.Syrk(blas.Trans, 1, q, 0, g)
	} else {
		blas64.Syrk(blas.NoTrans, 1, q, 0, g)
	}
	var off float64
	for i := range k {
		d := g.Data[i*k+i] - 1
		off += d * d
		for _, v := range g.Data[i*k+i+1 : (i+1)*k] {
			off += 2 * v * v
		}
	}
	return math.Sqrt(off) <= orthogonalTol
}
