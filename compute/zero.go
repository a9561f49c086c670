package compute

import (
	"context"

	"gonum.org/v1/gonum/mat"
)

// Zero is the operator W = 0 with no parameters: the correction of a layer
// converted with residual "none".
type Zero[T Float] struct{ out, in int }

var _ Operator[float64] = (*Zero[float64])(nil)

func init() {
	register(FamilyZero,
		func(s Spec) (Operator[float64], error) { return &Zero[float64]{s.Out, s.In}, nil },
		func(s Spec) (Operator[float32], error) { return &Zero[float32]{s.Out, s.In}, nil },
		func(_ context.Context, _ *mat.Dense, s Spec, _ uint64) (Operator[float64], error) {
			return &Zero[float64]{s.Out, s.In}, nil
		})
}

func (z *Zero[T]) Shape() (int, int)  { return z.out, z.in }
func (z *Zero[T]) Spec() Spec         { return Spec{Family: FamilyZero, Out: z.out, In: z.in} }
func (z *Zero[T]) Params() []Param[T] { return nil }
func (z *Zero[T]) FLOPs() int         { return 0 }
func (z *Zero[T]) Apply(y, x []T, n int, _ *Workspace[T]) {
	checkLen(y, n*z.out)
	clear(y[:n*z.out])
}
func (z *Zero[T]) ApplyT(x, y []T, n int, _ *Workspace[T]) {
	checkLen(x, n*z.in)
	clear(x[:n*z.in])
}
func (z *Zero[T]) Backward(dx, x, dy []T, n int, _ [][]T, _ *Workspace[T]) {
	if dx != nil {
		checkLen(dx, n*z.in)
		clear(dx[:n*z.in])
	}
}
func (z *Zero[T]) DenseTo(dst []float64) {
	checkLen(dst, z.out*z.in)
	clear(dst[:z.out*z.in])
}
func (z *Zero[T]) SingularValues(dst []float64) []float64 {
	k := min(z.out, z.in)
	if cap(dst) < k {
		dst = make([]float64, k)
	}
	dst = dst[:k]
	clear(dst)
	return dst
}
