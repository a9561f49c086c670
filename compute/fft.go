package compute

import (
	"math"
	"sync"

	"gonum.org/v1/gonum/dsp/fourier"
)

// This file holds the FFT machinery shared by the circulant and toeplitz
// families. Both are the top-left out x in corner of a size x size
// circulant matrix K[i][j] = k[(i - j) mod size], whose products with a
// zero-padded row are circular convolutions computed with real FFTs of
// length size (gonum's dsp/fourier, in float64 whatever T is).
//
// Nothing derived from the parameters is cached: every call transforms the
// kernel afresh (one FFT, O(size log size), negligible next to a batch), so
// writes to Params are always seen and operators stay safe for concurrent
// use. The FFT plans and the float64/complex scratch live in a sync.Pool per
// size, shared by every operator of that size. Large batches are split over
// a few goroutines (see chunks), deterministically.

// fftWork is the scratch of one convolution call.
type fftWork struct {
	fft *fourier.FFT
	// re holds one real sequence of length size: the kernel before
	// transformKernel, a padded row during a call, the kernel gradient
	// after convBackward.
	re []float64
	// spec is the kernel's spectrum divided by size (so the unnormalised
	// inverse transform needs no further scaling); a and b hold row
	// spectra; acc accumulates the kernel gradient's spectrum. Each has
	// size/2 + 1 entries.
	spec, a, b, acc []complex128
}

// fftPlan pools the fftWork of one size.
type fftPlan struct {
	size int
	pool sync.Pool
}

var fftPlans struct {
	sync.Mutex
	bySize map[int]*fftPlan
}

// planFor returns the shared plan of the given size.
func planFor(size int) *fftPlan {
	fftPlans.Lock()
	defer fftPlans.Unlock()
	if p, ok := fftPlans.bySize[size]; ok {
		return p
	}
	if fftPlans.bySize == nil {
		fftPlans.bySize = map[int]*fftPlan{}
	}
	p := &fftPlan{size: size}
	p.pool.New = func() any {
		h := size/2 + 1
		return &fftWork{
			fft:  fourier.NewFFT(size),
			re:   make([]float64, size),
			spec: make([]complex128, h),
			a:    make([]complex128, h),
			b:    make([]complex128, h),
			acc:  make([]complex128, h),
		}
	}
	fftPlans.bySize[size] = p
	return p
}

func (p *fftPlan) get() *fftWork  { return p.pool.Get().(*fftWork) }
func (p *fftPlan) put(w *fftWork) { p.pool.Put(w) }

// kernelBuf returns w.re cleared, for the caller to write the kernel k.
func (w *fftWork) kernelBuf() []float64 {
	clear(w.re)
	return w.re
}

// transformKernel sets w.spec to FFT(w.re) / size.
func (w *fftWork) transformKernel() {
	w.fft.Coefficients(w.spec, w.re)
	s := complex(1/float64(len(w.re)), 0)
	for i := range w.spec {
		w.spec[i] *= s
	}
}

// convEmbed describes the top-left out x in corner of a size x size
// circulant matrix, size >= max(out, in).
type convEmbed struct {
	out, in, size int
	plan          *fftPlan
}

func newConvEmbed(out, in, size int) convEmbed {
	if size < max(out, in) {
		panic(ErrShape)
	}
	return convEmbed{out: out, in: in, size: size, plan: planFor(size)}
}

// flops is the cost per row of a product with the corner: the forward
// transform of the padded row, the inverse transform of the product and
// the pointwise product of size/2 + 1 complex numbers (6 flops each), plus
// the transform of the kernel, charged in full to every row as it is for a
// single-row call (for a batch of n rows it is shared, so this
// overestimates by at most a third).
func (e convEmbed) flops() int {
	return int(math.Round(3*fftFLOPs(e.size))) + 6*(e.size/2+1)
}

// fftFLOPs is the usual operation count of a real FFT of length n, half
// that of a complex radix-2 FFT: 2.5 n log2 n.
func fftFLOPs(n int) float64 {
	if n < 2 {
		return 0
	}
	return 2.5 * float64(n) * math.Log2(float64(n))
}

// A call splits its rows into at most maxChunks contiguous chunks of at
// least chunkWork samples (rows x size) each and runs them on their own
// goroutines, each with its own pooled fftWork. The split depends only on
// the row count and the size, and the chunks' gradient spectra are added in
// chunk order, so results do not depend on GOMAXPROCS or scheduling.
const (
	maxChunks = 8
	chunkWork = 1 << 15
)

func (e *convEmbed) chunks(rows int) int {
	return max(1, min(rows, maxChunks, rows*e.size/chunkWork))
}

// inChunks runs body over k chunks of rows rows, the first on w and the
// others on pooled fftWork with w's kernel spectrum copied in. With grad it
// adds the other chunks' w.acc into w's, in chunk order.
func (e *convEmbed) inChunks(w *fftWork, rows, k int, grad bool, body func(w *fftWork, lo, hi int)) {
	parts := make([]*fftWork, k)
	parts[0] = w
	var wg sync.WaitGroup
	for c := 1; c < k; c++ {
		wc := e.plan.get()
		copy(wc.spec, w.spec)
		parts[c] = wc
		lo, hi := c*rows/k, (c+1)*rows/k
		wg.Go(func() { body(wc, lo, hi) })
	}
	body(w, 0, rows/k)
	wg.Wait()
	for _, wc := range parts[1:] {
		if grad {
			for i, v := range wc.acc {
				w.acc[i] += v
			}
		}
		e.plan.put(wc)
	}
}

// convApply multiplies rows rows of src by the corner K (transpose false:
// src rows of length in, dst rows of length out) or by its transpose
// (transpose true: src rows of length out, dst rows of length in), with the
// kernel spectrum already in w.spec. The transpose of a circulant is the
// circulant of k[-m mod size], whose spectrum is the conjugate.
func convApply[T Float](e *convEmbed, w *fftWork, transpose bool, dst, src []T, rows int) {
	if k := e.chunks(rows); k > 1 {
		e.inChunks(w, rows, k, false, func(w *fftWork, lo, hi int) {
			applyRows(e, w, transpose, dst, src, lo, hi)
		})
		return
	}
	applyRows(e, w, transpose, dst, src, 0, rows)
}

func applyRows[T Float](e *convEmbed, w *fftWork, transpose bool, dst, src []T, lo, hi int) {
	srcLen, dstLen := e.in, e.out
	if transpose {
		srcLen, dstLen = e.out, e.in
	}
	re := w.re
	for r := lo; r < hi; r++ {
		loadRow(re, src[r*srcLen:(r+1)*srcLen])
		w.fft.Coefficients(w.a, re)
		if transpose {
			for i, s := range w.spec {
				w.a[i] *= complex(real(s), -imag(s))
			}
		} else {
			for i, s := range w.spec {
				w.a[i] *= s
			}
		}
		w.fft.Sequence(re, w.a)
		storeRow(dst[r*dstLen:(r+1)*dstLen], re)
	}
}

// convBackward takes a forward pass y = x K^T over rows rows and its output
// gradient dy. When dx is not nil it sets dx = dy K (the kernel spectrum
// must be in w.spec). When grad is true it leaves in w.re the kernel
// gradient dk[m] = sum over rows of sum_i dy_i xpad_{(i - m) mod size} (a
// circular cross-correlation, accumulated in the frequency domain as
// DY conj(X) and inverted once).
func convBackward[T Float](e *convEmbed, w *fftWork, dx, x, dy []T, rows int, grad bool) {
	if k := e.chunks(rows); k > 1 {
		e.inChunks(w, rows, k, grad, func(w *fftWork, lo, hi int) {
			backwardRows(e, w, dx, x, dy, lo, hi, grad)
		})
	} else {
		backwardRows(e, w, dx, x, dy, 0, rows, grad)
	}
	if grad {
		re := w.re
		w.fft.Sequence(re, w.acc)
		s := 1 / float64(e.size)
		for i := range re {
			re[i] *= s
		}
	}
}

// backwardRows does rows lo..hi-1 of convBackward, setting w.acc to their
// gradient spectrum when grad is true.
func backwardRows[T Float](e *convEmbed, w *fftWork, dx, x, dy []T, lo, hi int, grad bool) {
	re := w.re
	if grad {
		clear(w.acc)
	}
	for r := lo; r < hi; r++ {
		loadRow(re, dy[r*e.out:(r+1)*e.out])
		w.fft.Coefficients(w.b, re)
		if grad {
			loadRow(re, x[r*e.in:(r+1)*e.in])
			w.fft.Coefficients(w.a, re)
			for i, a := range w.a {
				w.acc[i] += w.b[i] * complex(real(a), -imag(a))
			}
		}
		if dx != nil {
			for i, s := range w.spec {
				w.b[i] *= complex(real(s), -imag(s))
			}
			w.fft.Sequence(re, w.b)
			storeRow(dx[r*e.in:(r+1)*e.in], re)
		}
	}
}

// loadRow sets re to src followed by zeros.
func loadRow[T Float](re []float64, src []T) {
	for i, v := range src {
		re[i] = float64(v)
	}
	clear(re[len(src):])
}

// storeRow sets dst to the leading entries of re.
func storeRow[T Float](dst []T, re []float64) {
	for i := range dst {
		dst[i] = T(re[i])
	}
}

// isFFTSize reports whether n has no prime factor above 5, the sizes
// gonum's FFT handles with its fast radix-2, 3, 4 and 5 passes (any other
// factor p costs O(n p)).
func isFFTSize(n int) bool {
	if n < 1 {
		return false
	}
	for _, p := range []int{2, 3, 5} {
		for n%p == 0 {
			n /= p
		}
	}
	return n == 1
}

// nextFFTSize returns the smallest m >= n of the form 2^a 3^b 5^c.
func nextFFTSize(n int) int {
	m := max(n, 1)
	for !isFFTSize(m) {
		m++
	}
	return m
}
