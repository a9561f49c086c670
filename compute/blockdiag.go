package compute

import (
	"context"
	"fmt"
	"slices"

	"gonum.org/v1/gonum/mat"
)

// BlockDiag is a block-diagonal matrix with b blocks: block j covers rows
// j*out/b ... (j+1)*out/b - 1 and columns j*in/b ... (j+1)*in/b - 1, so a
// rectangular layer has rectangular (out/b) x (in/b) blocks, and every entry
// outside the blocks is zero. The blocks are stored in the parameter "D" of
// shape [b, out/b, in/b]: D[j][i][c] = W[j*out/b + i, j*in/b + c].
//
// Apply is b GEMMs on strided views of the batch (Y_j = X_j D_j^T), 2 out
// in / b flops per row; the parameters are out in / b (n^2 / b for an n x n
// layer).
//
// Shapes that b does not divide are zero-padded to multiples of b (see the
// package documentation): the operator is the top-left out x in corner of
// a block-diagonal matrix of shape ceil(out/b)*b x ceil(in/b)*b, whose
// trailing blocks may be cut short.
type BlockDiag[T Float] struct {
	out, in, b int // out and in divisible by b
	d          []T
}

var _ Operator[float64] = (*BlockDiag[float64])(nil)

func init() {
	register(FamilyBlockDiag, newBlockDiagFromSpec[float64], newBlockDiagFromSpec[float32], projectBlockDiag)
}

// blockDiagPadded validates the block count of s and returns the padded
// shape.
func blockDiagPadded(s Spec) (po, pi int, err error) {
	if s.Blocks < 1 || s.Blocks > min(s.Out, s.In) {
		return 0, 0, fmt.Errorf("%w: blockdiag blocks %d must be in [1, %d] for %dx%d", ErrSpec, s.Blocks, min(s.Out, s.In), s.Out, s.In)
	}
	return ceilTo(s.Out, s.Blocks), ceilTo(s.In, s.Blocks), nil
}

func newBlockDiagFromSpec[T Float](s Spec) (Operator[T], error) {
	po, pi, err := blockDiagPadded(s)
	if err != nil {
		return nil, err
	}
	return maybePad(NewBlockDiag[T](po, pi, s.Blocks, nil), s.Out, s.In), nil
}

// NewBlockDiag returns the block-diagonal operator of shape out x in with b
// blocks stored in d ([b, out/b, in/b]), which it keeps; a nil d allocates
// zeros. b must divide out and in (New pads other shapes).
func NewBlockDiag[T Float](out, in, b int, d []T) *BlockDiag[T] {
	if b < 1 || out%b != 0 || in%b != 0 {
		panic(ErrShape)
	}
	if d == nil {
		d = make([]T, out*in/b)
	}
	if len(d) != out*in/b {
		panic(ErrShape)
	}
	return &BlockDiag[T]{out: out, in: in, b: b, d: d}
}

// projectBlockDiag keeps the diagonal blocks of w (zero-padded to multiples
// of b): the Frobenius-optimal member, whose squared error is the mass of w
// outside the blocks. Padding does not change that, since the padded
// entries of w are zero.
func projectBlockDiag(_ context.Context, w *mat.Dense, s Spec, _ uint64) (Operator[float64], error) {
	po, pi, err := blockDiagPadded(s)
	if err != nil {
		return nil, err
	}
	wp := padDense(w, po, pi)
	bd := NewBlockDiag[float64](po, pi, s.Blocks, nil)
	mo, mi := po/s.Blocks, pi/s.Blocks
	for j := range s.Blocks {
		for i := range mo {
			copy(bd.d[(j*mo+i)*mi:(j*mo+i+1)*mi], wp.RawRowView(j*mo + i)[j*mi:(j+1)*mi])
		}
	}
	return maybePad[float64](bd, s.Out, s.In), nil
}

func (bd *BlockDiag[T]) Shape() (int, int) { return bd.out, bd.in }
func (bd *BlockDiag[T]) Spec() Spec {
	return Spec{Family: FamilyBlockDiag, Out: bd.out, In: bd.in, Blocks: bd.b}
}

// Params returns "D" ([b, out/b, in/b]).
func (bd *BlockDiag[T]) Params() []Param[T] {
	return []Param[T]{{Name: "D", Shape: []int{bd.b, bd.out / bd.b, bd.in / bd.b}, Data: bd.d}}
}
func (bd *BlockDiag[T]) FLOPs() int { return 2 * bd.out * bd.in / bd.b }

// Blocks returns b.
func (bd *BlockDiag[T]) Blocks() int { return bd.b }

func (bd *BlockDiag[T]) Apply(y, x []T, n int, _ *Workspace[T]) {
	checkLen(x, n*bd.in)
	checkLen(y, n*bd.out)
	if n == 0 {
		return
	}
	mo, mi := bd.out/bd.b, bd.in/bd.b
	for j := range bd.b {
		gemm(false, true, n, mo, mi, 1, x[j*mi:], bd.in, bd.d[j*mo*mi:], mi, 0, y[j*mo:], bd.out)
	}
}

func (bd *BlockDiag[T]) ApplyT(x, y []T, n int, _ *Workspace[T]) {
	checkLen(x, n*bd.in)
	checkLen(y, n*bd.out)
	if n == 0 {
		return
	}
	mo, mi := bd.out/bd.b, bd.in/bd.b
	for j := range bd.b {
		gemm(false, false, n, mi, mo, 1, y[j*mo:], bd.out, bd.d[j*mo*mi:], mi, 0, x[j*mi:], bd.in)
	}
}

// Backward adds dD_j += dY_j^T X_j and sets dX_j = dY_j D_j.
func (bd *BlockDiag[T]) Backward(dx, x, dy []T, n int, grads [][]T, ws *Workspace[T]) {
	checkLen(x, n*bd.in)
	checkLen(dy, n*bd.out)
	if n == 0 {
		return
	}
	if len(grads) > 0 && grads[0] != nil {
		g := grads[0]
		checkLen(g, len(bd.d))
		mo, mi := bd.out/bd.b, bd.in/bd.b
		for j := range bd.b {
			gemm(true, false, mo, mi, n, 1, dy[j*mo:], bd.out, x[j*mi:], bd.in, 1, g[j*mo*mi:], mi)
		}
	}
	if dx != nil {
		bd.ApplyT(dx, dy, n, ws)
	}
}

func (bd *BlockDiag[T]) DenseTo(dst []float64) {
	checkLen(dst, bd.out*bd.in)
	dst = dst[:bd.out*bd.in]
	clear(dst)
	mo, mi := bd.out/bd.b, bd.in/bd.b
	for j := range bd.b {
		for i := range mo {
			row := dst[(j*mo+i)*bd.in+j*mi : (j*mo+i)*bd.in+(j+1)*mi]
			for c, v := range bd.d[(j*mo+i)*mi : (j*mo+i+1)*mi] {
				row[c] = float64(v)
			}
		}
	}
}

// SingularValues returns the union of the blocks' singular values: W is a
// direct sum of its blocks, and b min(out/b, in/b) = min(out, in). Each
// block costs an (out/b) x (in/b) SVD, b^2 less work than the dense one.
// (A padded operator falls back to the dense SVD of its visible corner.)
func (bd *BlockDiag[T]) SingularValues(dst []float64) []float64 {
	k := min(bd.out, bd.in)
	if cap(dst) < k {
		dst = make([]float64, k)
	}
	dst = dst[:k]
	mo, mi := bd.out/bd.b, bd.in/bd.b
	kb := min(mo, mi)
	blk := mat.NewDense(mo, mi, nil)
	raw := blk.RawMatrix().Data
	for j := range bd.b {
		for i, v := range bd.d[j*mo*mi : (j+1)*mo*mi] {
			raw[i] = float64(v)
		}
		SingularValuesOf(blk, dst[j*kb:(j+1)*kb])
	}
	slices.Sort(dst)
	slices.Reverse(dst)
	return dst
}

// String describes the operator for logs.
func (bd *BlockDiag[T]) String() string {
	return fmt.Sprintf("blockdiag %dx%d b=%d", bd.out, bd.in, bd.b)
}
