package compute

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/gonum/mat"
)

// maxSparseDim is the largest dimension whose indices a float32 stores
// exactly.
const maxSparseDim = 1 << 24

// Sparse holds NNZ entries of W at fixed positions: trainable "values" and
// frozen "rows" and "cols" (integers stored in the element type, exact up to
// 2^24). Entries are sorted by row, then column.
type Sparse[T Float] struct {
	out, in            int
	values, rows, cols []T
}

var _ Operator[float64] = (*Sparse[float64])(nil)

func init() {
	register(FamilySparse, newSparseFromSpec[float64], newSparseFromSpec[float32], projectSparse)
}

func newSparseFromSpec[T Float](s Spec) (Operator[T], error) {
	if s.NNZ < 1 || s.NNZ > s.Out*s.In {
		return nil, fmt.Errorf("%w: sparse nnz %d must be in [1, %d] for %dx%d", ErrSpec, s.NNZ, s.Out*s.In, s.Out, s.In)
	}
	if s.Out > maxSparseDim || s.In > maxSparseDim {
		return nil, fmt.Errorf("%w: sparse operators support dimensions up to %d", ErrSpec, maxSparseDim)
	}
	return &Sparse[T]{out: s.Out, in: s.In, values: make([]T, s.NNZ), rows: make([]T, s.NNZ), cols: make([]T, s.NNZ)}, nil
}

// projectSparse keeps the NNZ largest-magnitude entries of W, the
// Frobenius-optimal choice for a fixed count; ties go to the earlier
// entry in row-major order.
func projectSparse(_ context.Context, w *mat.Dense, s Spec, _ uint64) (Operator[float64], error) {
	data := rowMajor(w)
	idx := make([]int, len(data))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		return cmp.Compare(math.Abs(data[b]), math.Abs(data[a]))
	})
	keep := idx[:s.NNZ]
	slices.Sort(keep)
	op, err := newSparseFromSpec[float64](s)
	if err != nil {
		return nil, err
	}
	sp := op.(*Sparse[float64])
	for e, i := range keep {
		sp.values[e] = data[i]
		sp.rows[e] = float64(i / s.In)
		sp.cols[e] = float64(i % s.In)
	}
	return sp, nil
}

// Validate reports whether every stored index is an integer within the
// shape. Indices read from a file must pass it before the operator is used.
func (sp *Sparse[T]) Validate() error {
	for e := range sp.rows {
		r, c := float64(sp.rows[e]), float64(sp.cols[e])
		if r != math.Trunc(r) || c != math.Trunc(c) || r < 0 || c < 0 || int(r) >= sp.out || int(c) >= sp.in {
			return fmt.Errorf("%w: sparse entry %d at (%v, %v) outside %dx%d", ErrSpec, e, r, c, sp.out, sp.in)
		}
	}
	return nil
}

func (sp *Sparse[T]) Shape() (int, int) { return sp.out, sp.in }
func (sp *Sparse[T]) Spec() Spec {
	return Spec{Family: FamilySparse, Out: sp.out, In: sp.in, NNZ: len(sp.values)}
}
func (sp *Sparse[T]) Params() []Param[T] {
	n := len(sp.values)
	return []Param[T]{
		{Name: "values", Shape: []int{n}, Data: sp.values},
		{Name: "rows", Shape: []int{n}, Data: sp.rows, Frozen: true},
		{Name: "cols", Shape: []int{n}, Data: sp.cols, Frozen: true},
	}
}
func (sp *Sparse[T]) FLOPs() int { return 2 * len(sp.values) }

func (sp *Sparse[T]) Apply(y, x []T, n int, _ *Workspace[T]) {
	checkLen(x, n*sp.in)
	checkLen(y, n*sp.out)
	clear(y[:n*sp.out])
	for r := range n {
		xr, yr := x[r*sp.in:(r+1)*sp.in], y[r*sp.out:(r+1)*sp.out]
		for e, v := range sp.values {
			yr[int(sp.rows[e])] += v * xr[int(sp.cols[e])]
		}
	}
}

func (sp *Sparse[T]) ApplyT(x, y []T, n int, _ *Workspace[T]) {
	checkLen(x, n*sp.in)
	checkLen(y, n*sp.out)
	clear(x[:n*sp.in])
	for r := range n {
		xr, yr := x[r*sp.in:(r+1)*sp.in], y[r*sp.out:(r+1)*sp.out]
		for e, v := range sp.values {
			xr[int(sp.cols[e])] += v * yr[int(sp.rows[e])]
		}
	}
}

func (sp *Sparse[T]) Backward(dx, x, dy []T, n int, grads [][]T, ws *Workspace[T]) {
	checkLen(x, n*sp.in)
	checkLen(dy, n*sp.out)
	if len(grads) > 0 && grads[0] != nil {
		g := grads[0]
		for r := range n {
			xr, dyr := x[r*sp.in:(r+1)*sp.in], dy[r*sp.out:(r+1)*sp.out]
			for e := range sp.values {
				g[e] += dyr[int(sp.rows[e])] * xr[int(sp.cols[e])]
			}
		}
	}
	if dx != nil {
		sp.ApplyT(dx, dy, n, ws)
	}
}

func (sp *Sparse[T]) DenseTo(dst []float64) {
	checkLen(dst, sp.out*sp.in)
	clear(dst[:sp.out*sp.in])
	for e, v := range sp.values {
		dst[int(sp.rows[e])*sp.in+int(sp.cols[e])] += float64(v)
	}
}

func (sp *Sparse[T]) SingularValues(dst []float64) []float64 { return denseSingularValues[T](sp, dst) }
