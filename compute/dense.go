package compute

import (
	"context"
	"fmt"
	"slices"

	"gonum.org/v1/gonum/mat"
)

// DenseOp is an unstructured weight W (out x in), stored row-major as the
// parameter "W".
type DenseOp[T Float] struct {
	out, in int
	w       []T
}

var _ Operator[float64] = (*DenseOp[float64])(nil)

func init() {
	register(FamilyDense,
		func(s Spec) (Operator[float64], error) { return NewDenseOp[float64](s.Out, s.In, nil), nil },
		func(s Spec) (Operator[float32], error) { return NewDenseOp[float32](s.Out, s.In, nil), nil },
		func(_ context.Context, w *mat.Dense, s Spec, _ uint64) (Operator[float64], error) {
			return NewDenseOp(s.Out, s.In, slices.Clone(w.RawMatrix().Data)), nil
		})
}

// NewDenseOp returns a dense operator on w (out x in, row-major), which it
// keeps; a nil w allocates zeros.
func NewDenseOp[T Float](out, in int, w []T) *DenseOp[T] {
	if w == nil {
		w = make([]T, out*in)
	}
	if len(w) != out*in {
		panic(ErrShape)
	}
	return &DenseOp[T]{out: out, in: in, w: w}
}

func (d *DenseOp[T]) Shape() (int, int) { return d.out, d.in }
func (d *DenseOp[T]) Spec() Spec        { return Spec{Family: FamilyDense, Out: d.out, In: d.in} }
func (d *DenseOp[T]) Params() []Param[T] {
	return []Param[T]{{Name: "W", Shape: []int{d.out, d.in}, Data: d.w}}
}
func (d *DenseOp[T]) FLOPs() int { return 2 * d.out * d.in }

func (d *DenseOp[T]) Apply(y, x []T, n int, _ *Workspace[T]) {
	checkLen(x, n*d.in)
	checkLen(y, n*d.out)
	gemm(false, true, n, d.out, d.in, 1, x, d.in, d.w, d.in, 0, y, d.out)
}

func (d *DenseOp[T]) ApplyT(x, y []T, n int, _ *Workspace[T]) {
	checkLen(x, n*d.in)
	checkLen(y, n*d.out)
	gemm(false, false, n, d.in, d.out, 1, y, d.out, d.w, d.in, 0, x, d.in)
}

func (d *DenseOp[T]) Backward(dx, x, dy []T, n int, grads [][]T, ws *Workspace[T]) {
	checkLen(x, n*d.in)
	checkLen(dy, n*d.out)
	if len(grads) > 0 && grads[0] != nil {
		// dW += dY^T X
		gemm(true, false, d.out, d.in, n, 1, dy, d.out, x, d.in, 1, grads[0], d.in)
	}
	if dx != nil {
		d.ApplyT(dx, dy, n, ws)
	}
}

func (d *DenseOp[T]) DenseTo(dst []float64) {
	checkLen(dst, d.out*d.in)
	for i, v := range d.w {
		dst[i] = float64(v)
	}
}

func (d *DenseOp[T]) SingularValues(dst []float64) []float64 { return denseSingularValues[T](d, dst) }

// String describes the operator for logs.
func (d *DenseOp[T]) String() string { return fmt.Sprintf("dense %dx%d", d.out, d.in) }
