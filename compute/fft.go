package compute

import (
	"math"
	"sync"
	"unsafe"
)

// This file holds the FFT machinery shared by the circulant and toeplitz
// families. Both are the top-left out x in corner of a size x size
// circulant matrix K[i][j] = k[(i - j) mod size], whose products with a
// zero-padded row are circular convolutions computed with real FFTs of
// length size, in T's precision: FFTW's double and single precision
// transforms under the fftw build tag, gonum's dsp/fourier (float64
// always) otherwise (realFFT, fft_gonum.go, fft_fftw.go).
//
// Nothing derived from the parameters is cached: every call transforms the
// kernel afresh (one FFT, O(size log size), negligible next to a batch), so
// writes to Params are always seen and operators stay safe for concurrent
// use. The FFT plans and the scratch live in a sync.Pool per size and
// type, shared by every operator of that size. Large batches are split
// over a few goroutines (see chunks), deterministically.

// realFFT transforms real sequences of one length n, unnormalised in both
// directions. A spectrum is the first n/2 + 1 DFT coefficients stored as
// interleaved (real, imaginary) pairs, 2 (n/2 + 1) values. forward sets
// dst (a spectrum) to the DFT of src (n values); inverse sets dst (n
// values) to n times the inverse DFT of the Hermitian spectrum src, and
// may overwrite src. Its slices must come from alignedFloats (FFTW's plans
// are made for that alignment). A realFFT is used by one goroutine at a
// time.
type realFFT[T Float] interface {
	forward(dst, src []T)
	inverse(dst, src []T)
}

// fftAlign is the byte alignment of the FFT buffers: a cache line, which
// covers every SIMD width FFTW plans for.
const fftAlign = 64

// alignedFloats returns n zeros starting on an fftAlign boundary (Go's
// heap does not move objects, so the alignment lasts).
func alignedFloats[T Float](n int) []T {
	size := int(unsafe.Sizeof(T(0)))
	pad := fftAlign / size
	s := make([]T, n+pad)
	off := int(uintptr(unsafe.Pointer(&s[0]))%fftAlign) / size
	if off != 0 {
		off = pad - off
	}
	return s[off : off+n : off+n]
}

// fftWork is the scratch of one convolution call.
type fftWork[T Float] struct {
	fft realFFT[T]
	// re holds one real sequence of length size: the kernel before
	// transformKernel, a padded row during a call, the kernel gradient
	// after convBackward.
	re []T
	// spec is the kernel's spectrum divided by size (so the unnormalised
	// inverse transform needs no further scaling); a and b hold row
	// spectra; acc accumulates the kernel gradient's spectrum. Each is a
	// spectrum of size/2 + 1 interleaved complex values.
	spec, a, b, acc []T
}

// fftPlan pools the fftWork of one size.
type fftPlan[T Float] struct {
	size int
	pool sync.Pool
}

// fftPlans holds the *fftPlan[T] of each size and type.
var fftPlans struct {
	sync.Mutex
	bySize map[planKey]any
}

type planKey struct {
	size   int
	single bool // float32
}

// planFor returns the shared plan of the given size.
func planFor[T Float](size int) *fftPlan[T] {
	fftPlans.Lock()
	defer fftPlans.Unlock()
	key := planKey{size, unsafe.Sizeof(T(0)) == 4}
	if p, ok := fftPlans.bySize[key]; ok {
		return p.(*fftPlan[T])
	}
	if fftPlans.bySize == nil {
		fftPlans.bySize = map[planKey]any{}
	}
	p := &fftPlan[T]{size: size}
	p.pool.New = func() any {
		h := 2 * (size/2 + 1)
		return &fftWork[T]{
			fft:  newRealFFT[T](size),
			re:   alignedFloats[T](size),
			spec: alignedFloats[T](h),
			a:    alignedFloats[T](h),
			b:    alignedFloats[T](h),
			acc:  alignedFloats[T](h),
		}
	}
	fftPlans.bySize[key] = p
	return p
}

func (p *fftPlan[T]) get() *fftWork[T]  { return p.pool.Get().(*fftWork[T]) }
func (p *fftPlan[T]) put(w *fftWork[T]) { p.pool.Put(w) }

// kernelBuf returns w.re cleared, for the caller to write the kernel k.
func (w *fftWork[T]) kernelBuf() []T {
	clear(w.re)
	return w.re
}

// transformKernel sets w.spec to FFT(w.re) / size.
func (w *fftWork[T]) transformKernel() {
	w.fft.forward(w.spec, w.re)
	s := T(1 / float64(len(w.re)))
	for i := range w.spec {
		w.spec[i] *= s
	}
}

// mulSpectrum sets a = a * s (conj false) or a * conj(s) (conj true),
// entry by entry, for spectra a and s.
func mulSpectrum[T Float](a, s []T, conj bool) {
	s = s[:len(a)]
	for i := 0; i+1 < len(a); i += 2 {
		ar, ai, sr, si := a[i], a[i+1], s[i], s[i+1]
		if conj {
			si = -si
		}
		a[i], a[i+1] = ar*sr-ai*si, ar*si+ai*sr
	}
}

// addMulConj adds b * conj(a) into acc, entry by entry, for spectra.
func addMulConj[T Float](acc, b, a []T) {
	b, a = b[:len(acc)], a[:len(acc)]
	for i := 0; i+1 < len(acc); i += 2 {
		br, bi, ar, ai := b[i], b[i+1], a[i], a[i+1]
		acc[i] += br*ar + bi*ai
		acc[i+1] += bi*ar - br*ai
	}
}

// convEmbed describes the top-left out x in corner of a size x size
// circulant matrix, size >= max(out, in), for operators of type T.
type convEmbed[T Float] struct {
	out, in, size int
	plan          *fftPlan[T]
}

func newConvEmbed[T Float](out, in, size int) convEmbed[T] {
	if size < max(out, in) {
		panic(ErrShape)
	}
	return convEmbed[T]{out: out, in: in, size: size, plan: planFor[T](size)}
}

// flops is the cost per row of a product with the corner: the forward
// transform of the padded row, the inverse transform of the product and
// the pointwise product of size/2 + 1 complex numbers (6 flops each), plus
// the transform of the kernel, charged in full to every row as it is for a
// single-row call (for a batch of n rows it is shared, so this
// overestimates by at most a third).
func (e convEmbed[T]) flops() int {
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

func (e *convEmbed[T]) chunks(rows int) int {
	return max(1, min(rows, maxChunks, rows*e.size/chunkWork))
}

// inChunks runs body over k chunks of rows rows, the first on w and the
// others on pooled fftWork with w's kernel spectrum copied in. With grad it
// adds the other chunks' w.acc into w's, in chunk order.
func (e *convEmbed[T]) inChunks(w *fftWork[T], rows, k int, grad bool, body func(w *fftWork[T], lo, hi int)) {
	parts := make([]*fftWork[T], k)
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
func convApply[T Float](e *convEmbed[T], w *fftWork[T], transpose bool, dst, src []T, rows int) {
	if k := e.chunks(rows); k > 1 {
		e.inChunks(w, rows, k, false, func(w *fftWork[T], lo, hi int) {
			applyRows(e, w, transpose, dst, src, lo, hi)
		})
		return
	}
	applyRows(e, w, transpose, dst, src, 0, rows)
}

func applyRows[T Float](e *convEmbed[T], w *fftWork[T], transpose bool, dst, src []T, lo, hi int) {
	srcLen, dstLen := e.in, e.out
	if transpose {
		srcLen, dstLen = e.out, e.in
	}
	re := w.re
	for r := lo; r < hi; r++ {
		loadRow(re, src[r*srcLen:(r+1)*srcLen])
		w.fft.forward(w.a, re)
		mulSpectrum(w.a, w.spec, transpose)
		w.fft.inverse(re, w.a)
		storeRow(dst[r*dstLen:(r+1)*dstLen], re)
	}
}

// convBackward takes a forward pass y = x K^T over rows rows and its output
// gradient dy. When dx is not nil it sets dx = dy K (the kernel spectrum
// must be in w.spec). When grad is true it leaves in w.re the kernel
// gradient dk[m] = sum over rows of sum_i dy_i xpad_{(i - m) mod size} (a
// circular cross-correlation, accumulated in the frequency domain as
// DY conj(X) and inverted once).
func convBackward[T Float](e *convEmbed[T], w *fftWork[T], dx, x, dy []T, rows int, grad bool) {
	if k := e.chunks(rows); k > 1 {
		e.inChunks(w, rows, k, grad, func(w *fftWork[T], lo, hi int) {
			backwardRows(e, w, dx, x, dy, lo, hi, grad)
		})
	} else {
		backwardRows(e, w, dx, x, dy, 0, rows, grad)
	}
	if grad {
		re := w.re
		w.fft.inverse(re, w.acc)
		s := T(1 / float64(e.size))
		for i := range re {
			re[i] *= s
		}
	}
}

// backwardRows does rows lo..hi-1 of convBackward, setting w.acc to their
// gradient spectrum when grad is true.
func backwardRows[T Float](e *convEmbed[T], w *fftWork[T], dx, x, dy []T, lo, hi int, grad bool) {
	re := w.re
	if grad {
		clear(w.acc)
	}
	for r := lo; r < hi; r++ {
		loadRow(re, dy[r*e.out:(r+1)*e.out])
		w.fft.forward(w.b, re)
		if grad {
			loadRow(re, x[r*e.in:(r+1)*e.in])
			w.fft.forward(w.a, re)
			addMulConj(w.acc, w.b, w.a)
		}
		if dx != nil {
			mulSpectrum(w.b, w.spec, true)
			w.fft.inverse(re, w.b)
			storeRow(dx[r*e.in:(r+1)*e.in], re)
		}
	}
}

// loadRow sets re to src followed by zeros.
func loadRow[T Float](re, src []T) {
	copy(re, src)
	clear(re[len(src):])
}

// storeRow sets dst to the leading entries of re.
func storeRow[T Float](dst, re []T) { copy(dst, re) }

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
