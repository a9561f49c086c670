package compute

import (
	"cmp"
	"context"
	"fmt"
	"math/cmplx"
	"slices"

	"gonum.org/v1/gonum/dsp/fourier"
	"gonum.org/v1/gonum/mat"
)

// Circulant is the top-left out x in corner of the N x N circulant matrix
// C[i][j] = c[(i - j) mod N], N = max(out, in): a rectangular layer is the
// square circulant with its input zero-padded to N and only the first out
// outputs kept. Its one parameter is "c", shape [N].
//
// Products are circular convolutions computed with real FFTs in T's
// precision (see fft.go): y = the first out entries of IFFT(FFT(c) .*
// FFT(x padded to N)), and the transpose (C^T[i][j] = c[(j - i) mod N]) uses the conjugate spectrum. When
// N has a prime factor above 5 the product is instead taken through a
// circulant embedding of size M = the next 2^a 3^b 5^c >= out + in - 1 (the
// corner is Toeplitz), so every transform is fast. Apply, ApplyT and
// Backward cost O(n M log M) for n rows with M = N or the embedding size.
// Square circulants have their singular values |FFT(c)| exactly.
type Circulant[T Float] struct {
	out, in, n int
	c          []T
	emb        convEmbed[T]
}

var _ Operator[float64] = (*Circulant[float64])(nil)

func init() {
	register(FamilyCirculant, newCirculantFromSpec[float64], newCirculantFromSpec[float32], projectCirculant)
}

func newCirculantFromSpec[T Float](s Spec) (Operator[T], error) {
	if err := noHyperParams(s); err != nil {
		return nil, err
	}
	return NewCirculant[T](s.Out, s.In, nil), nil
}

// noHyperParams rejects a Spec of a family without hyper-parameters
// (circulant, toeplitz) that sets one, so that a misplaced --rank or
// --blocks is reported instead of ignored.
func noHyperParams(s Spec) error {
	if s.Blocks != 0 || s.Rank != 0 || s.FactorShape != [2]int{} || s.NNZ != 0 || s.Trunk != nil || s.Correction != nil {
		return fmt.Errorf("%w: %s takes no hyper-parameters (blocks %d, rank %d, factor shape %v, nnz %d)",
			ErrSpec, s.Family, s.Blocks, s.Rank, s.FactorShape, s.NNZ)
	}
	return nil
}

// NewCirculant returns the out x in corner of the circulant of c (length
// max(out, in)), which it keeps; a nil c allocates zeros.
func NewCirculant[T Float](out, in int, c []T) *Circulant[T] {
	if out <= 0 || in <= 0 {
		panic(ErrShape)
	}
	n := max(out, in)
	if c == nil {
		c = make([]T, n)
	}
	if len(c) != n {
		panic(ErrShape)
	}
	size := n
	if !isFFTSize(n) {
		size = nextFFTSize(out + in - 1)
	}
	return &Circulant[T]{out: out, in: in, n: n, c: c, emb: newConvEmbed[T](out, in, size)}
}

// projectCirculant sets each c[k] to the mean of the entries of w on the
// wrapped diagonal (i - j) mod N = k that fall inside the out x in corner:
// every entry of the corner depends on exactly one c[k], so the mean is the
// least-squares optimum. Each wrapped diagonal has min(out, in) visible
// entries. Cost O(out in).
func projectCirculant(_ context.Context, w *mat.Dense, s Spec, _ uint64) (Operator[float64], error) {
	op := NewCirculant[float64](s.Out, s.In, nil)
	n := op.n
	count := make([]int, n)
	for i := range s.Out {
		row := w.RawRowView(i)
		for j, v := range row {
			k := i - j
			if k < 0 {
				k += n
			}
			op.c[k] += v
			count[k]++
		}
	}
	for k := range op.c {
		op.c[k] /= float64(count[k])
	}
	return op, nil
}

func (c *Circulant[T]) Shape() (int, int) { return c.out, c.in }
func (c *Circulant[T]) Spec() Spec {
	return Spec{Family: FamilyCirculant, Out: c.out, In: c.in}
}
func (c *Circulant[T]) Params() []Param[T] {
	return []Param[T]{{Name: "c", Shape: []int{c.n}, Data: c.c}}
}

// FLOPs counts three real FFTs of the transform size (2.5 M log2 M each)
// and the pointwise product; see convEmbed.flops.
func (c *Circulant[T]) FLOPs() int { return c.emb.flops() }

// loadKernel writes the convolution kernel of the transform size into w
// and transforms it. With no embedding it is c itself; through the
// embedding, diagonal d in [-(in-1), out-1] of the corner holds
// c[d mod N] at position d mod M.
func (c *Circulant[T]) loadKernel(w *fftWork[T]) {
	k := w.kernelBuf()
	if c.emb.size == c.n {
		loadRow(k, c.c)
	} else {
		for d := -(c.in - 1); d < c.out; d++ {
			k[mod(d, c.emb.size)] = c.c[mod(d, c.n)]
		}
	}
	w.transformKernel()
}

func mod(a, n int) int {
	a %= n
	if a < 0 {
		a += n
	}
	return a
}

func (c *Circulant[T]) Apply(y, x []T, n int, _ *Workspace[T]) {
	checkLen(x, n*c.in)
	checkLen(y, n*c.out)
	if n == 0 {
		return
	}
	w := c.emb.plan.get()
	defer c.emb.plan.put(w)
	c.loadKernel(w)
	convApply(&c.emb, w, false, y, x, n)
}

func (c *Circulant[T]) ApplyT(x, y []T, n int, _ *Workspace[T]) {
	checkLen(x, n*c.in)
	checkLen(y, n*c.out)
	if n == 0 {
		return
	}
	w := c.emb.plan.get()
	defer c.emb.plan.put(w)
	c.loadKernel(w)
	convApply(&c.emb, w, true, x, y, n)
}

// Backward adds dc[k] = sum over rows of sum_i dy_i xpad_{(i - k) mod N}
// and sets dx = dy W.
func (c *Circulant[T]) Backward(dx, x, dy []T, n int, grads [][]T, _ *Workspace[T]) {
	checkLen(x, n*c.in)
	checkLen(dy, n*c.out)
	grad := len(grads) > 0 && grads[0] != nil
	if dx != nil {
		checkLen(dx, n*c.in)
	}
	if grad {
		checkLen(grads[0], c.n)
	}
	if n == 0 || (!grad && dx == nil) {
		return
	}
	w := c.emb.plan.get()
	defer c.emb.plan.put(w)
	if dx != nil {
		c.loadKernel(w)
	}
	convBackward(&c.emb, w, dx, x, dy, n, grad)
	if !grad {
		return
	}
	g := grads[0]
	if c.emb.size == c.n {
		for k, v := range w.re {
			g[k] += v
		}
		return
	}
	// Fold the embedding's gradient back: c[k] feeds every diagonal
	// d = k mod N of the corner.
	for d := -(c.in - 1); d < c.out; d++ {
		g[mod(d, c.n)] += w.re[mod(d, c.emb.size)]
	}
}

func (c *Circulant[T]) DenseTo(dst []float64) {
	checkLen(dst, c.out*c.in)
	for i := range c.out {
		row := dst[i*c.in : (i+1)*c.in]
		for j := range row {
			row[j] = float64(c.c[mod(i-j, c.n)])
		}
	}
}

// SingularValues of a square circulant are the moduli of its eigenvalues
// FFT(c) (a circulant is normal), sorted; a rectangular corner falls back
// to the dense SVD.
func (c *Circulant[T]) SingularValues(dst []float64) []float64 {
	if c.out != c.in {
		return denseSingularValues[T](c, dst)
	}
	if cap(dst) < c.n {
		dst = make([]float64, c.n)
	}
	dst = dst[:c.n]
	coef := fourier.NewFFT(c.n).Coefficients(nil, float64s(c.c))
	// Coefficient k > N/2 is the conjugate of coefficient N - k.
	for k := range dst {
		dst[k] = cmplx.Abs(coef[min(k, c.n-k)])
	}
	slices.SortFunc(dst, func(a, b float64) int { return cmp.Compare(b, a) })
	return dst
}
