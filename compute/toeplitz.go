package compute

import (
	"context"
	"gonum.org/v1/gonum/mat"
)

// Toeplitz is the out x in matrix T[i][j] = t[i - j + in - 1], constant
// along each diagonal d = i - j from -(in - 1) to out - 1; it is
// rectangular by nature and needs no padding. Its one parameter is "t",
// shape [out + in - 1], ordered from the top-right corner (d = -(in-1)) to
// the bottom-left one (d = out - 1).
//
// Products go through a circulant embedding of size M, the smallest
// 2^a 3^b 5^c >= out + in - 1: T is the top-left corner of the M x M
// circulant with c[d mod M] = t[d + in - 1] (zero elsewhere), so y is the
// first out entries of the circular convolution of c with x padded to M,
// computed with real FFTs in T's precision. Apply, ApplyT and Backward cost
// O(n M log M) for n rows. Singular values come from the dense matrix.
type Toeplitz[T Float] struct {
	out, in int
	t       []T
	emb     convEmbed[T]
}

var _ Operator[float64] = (*Toeplitz[float64])(nil)

func init() {
	register(FamilyToeplitz, newToeplitzFromSpec[float64], newToeplitzFromSpec[float32], projectToeplitz)
}

func newToeplitzFromSpec[T Float](s Spec) (Operator[T], error) {
	if err := noHyperParams(s); err != nil {
		return nil, err
	}
	return NewToeplitz[T](s.Out, s.In, nil), nil
}

// NewToeplitz returns the out x in Toeplitz matrix of t (length
// out + in - 1), which it keeps; a nil t allocates zeros.
func NewToeplitz[T Float](out, in int, t []T) *Toeplitz[T] {
	if out <= 0 || in <= 0 {
		panic(ErrShape)
	}
	if t == nil {
		t = make([]T, out+in-1)
	}
	if len(t) != out+in-1 {
		panic(ErrShape)
	}
	return &Toeplitz[T]{out: out, in: in, t: t, emb: newConvEmbed[T](out, in, nextFFTSize(out+in-1))}
}

// projectToeplitz sets each t[d + in - 1] to the mean of diagonal d of w,
// the Frobenius optimum since every entry depends on exactly one
// parameter. Cost O(out in).
func projectToeplitz(_ context.Context, w *mat.Dense, s Spec, _ uint64) (Operator[float64], error) {
	op := NewToeplitz[float64](s.Out, s.In, nil)
	for i := range s.Out {
		// Row i covers diagonals i - in + 1 .. i: t indices i .. i + in - 1,
		// with column j at index i - j + in - 1.
		row := w.RawRowView(i)
		for j, v := range row {
			op.t[i-j+s.In-1] += v
		}
	}
	for p := range op.t {
		op.t[p] /= float64(diagonalLength(p-(s.In-1), s.Out, s.In))
	}
	return op, nil
}

// diagonalLength returns the number of entries of diagonal d = i - j of an
// out x in matrix, d in [-(in-1), out-1].
func diagonalLength(d, out, in int) int {
	if d >= 0 {
		return min(out-d, in)
	}
	return min(in+d, out)
}

func (tp *Toeplitz[T]) Shape() (int, int) { return tp.out, tp.in }
func (tp *Toeplitz[T]) Spec() Spec {
	return Spec{Family: FamilyToeplitz, Out: tp.out, In: tp.in}
}
func (tp *Toeplitz[T]) Params() []Param[T] {
	return []Param[T]{{Name: "t", Shape: []int{tp.out + tp.in - 1}, Data: tp.t}}
}

// FLOPs counts three real FFTs of the embedding size M (2.5 M log2 M each)
// and the pointwise product; see convEmbed.flops.
func (tp *Toeplitz[T]) FLOPs() int { return tp.emb.flops() }

// loadKernel writes the embedding kernel c[d mod M] = t[d + in - 1] into w
// and transforms it.
func (tp *Toeplitz[T]) loadKernel(w *fftWork[T]) {
	k := w.kernelBuf()
	m := tp.emb.size
	// d in [0, out-1] at positions 0..out-1; d in [-(in-1), -1] at
	// positions M-in+1..M-1.
	loadRow(k[:tp.out], tp.t[tp.in-1:])
	loadRow(k[m-tp.in+1:], tp.t[:tp.in-1])
	w.transformKernel()
}

func (tp *Toeplitz[T]) Apply(y, x []T, n int, _ *Workspace[T]) {
	checkLen(x, n*tp.in)
	checkLen(y, n*tp.out)
	if n == 0 {
		return
	}
	w := tp.emb.plan.get()
	defer tp.emb.plan.put(w)
	tp.loadKernel(w)
	convApply(&tp.emb, w, false, y, x, n)
}

func (tp *Toeplitz[T]) ApplyT(x, y []T, n int, _ *Workspace[T]) {
	checkLen(x, n*tp.in)
	checkLen(y, n*tp.out)
	if n == 0 {
		return
	}
	w := tp.emb.plan.get()
	defer tp.emb.plan.put(w)
	tp.loadKernel(w)
	convApply(&tp.emb, w, true, x, y, n)
}

// Backward adds dt[d + in - 1] = sum over rows of sum_i dy_i x_{i-d} (the
// embedding's kernel gradient at d mod M) and sets dx = dy T.
func (tp *Toeplitz[T]) Backward(dx, x, dy []T, n int, grads [][]T, _ *Workspace[T]) {
	checkLen(x, n*tp.in)
	checkLen(dy, n*tp.out)
	grad := len(grads) > 0 && grads[0] != nil
	if dx != nil {
		checkLen(dx, n*tp.in)
	}
	if grad {
		checkLen(grads[0], tp.out+tp.in-1)
	}
	if n == 0 || (!grad && dx == nil) {
		return
	}
	w := tp.emb.plan.get()
	defer tp.emb.plan.put(w)
	if dx != nil {
		tp.loadKernel(w)
	}
	convBackward(&tp.emb, w, dx, x, dy, n, grad)
	if !grad {
		return
	}
	g, m := grads[0], tp.emb.size
	for p := range g {
		g[p] += w.re[mod(p-(tp.in-1), m)]
	}
}

func (tp *Toeplitz[T]) DenseTo(dst []float64) {
	checkLen(dst, tp.out*tp.in)
	for i := range tp.out {
		row := dst[i*tp.in : (i+1)*tp.in]
		for j := range row {
			row[j] = float64(tp.t[i-j+tp.in-1])
		}
	}
}

func (tp *Toeplitz[T]) SingularValues(dst []float64) []float64 {
	return denseSingularValues[T](tp, dst)
}
