//go:build fftw

package compute

/*
#cgo LDFLAGS: -lfftw3 -lfftw3f
#include <fftw3.h>
*/
import "C"

import (
	"strconv"
	"sync"
	"unsafe"
)

// The fftw backend (go build -tags fftw, linked with -lfftw3 -lfftw3f):
// the circulant and toeplitz families transform with FFTW's real
// transforms, in double precision for float64 operators and in single
// precision for float32 ones, instead of gonum's dsp/fourier (float64
// only). At the sizes of a layer (4096, 8192) FFTW's SIMD codelets run
// about ten times faster than gonum's scalar radix passes, and single
// precision halves the memory traffic again; FFTW handles every length in
// O(n log n), not only 2^a 3^b 5^c. No maintained pure-Go FFT comes near
// (gonum's is the one the module graph already has).
//
// Plans are made once per length and precision with FFTW_ESTIMATE, which
// picks the algorithm by a fixed heuristic (FFTW_MEASURE times candidates
// and could pick differently from one run to the next, changing the
// rounding), so results are a deterministic function of the input on a
// given CPU. A plan is executed with FFTW's new-array functions, which are
// safe to call concurrently on buffers of the plan's alignment (fftAlign;
// FFTW's planning arrays from fftw_malloc are SIMD-aligned, which 64 bytes
// is too); planning itself is not thread-safe and happens under
// fftwPlans' lock.

// FFTBackend names the FFT implementation: "fftw".
func FFTBackend() string { return "fftw" }

type fftwKey struct {
	n      int
	single bool
}

var fftwPlans struct {
	sync.Mutex
	byKey map[fftwKey]any
}

// fftw64 and fftw32 hold the shared forward and inverse plans of one
// length in double and single precision.
type fftw64 struct {
	n        int
	r2c, c2r C.fftw_plan
}

type fftw32 struct {
	n        int
	r2c, c2r C.fftwf_plan
}

// newRealFFT returns the shared plans of length n for T, made on first use.
func newRealFFT[T Float](n int) realFFT[T] {
	fftwPlans.Lock()
	defer fftwPlans.Unlock()
	single := unsafe.Sizeof(T(0)) == 4
	key := fftwKey{n, single}
	if p, ok := fftwPlans.byKey[key]; ok {
		return p.(realFFT[T])
	}
	if fftwPlans.byKey == nil {
		fftwPlans.byKey = map[fftwKey]any{}
	}
	var p any
	if single {
		re := (*C.float)(C.fftwf_malloc(C.size_t(4 * n)))
		sp := (*C.fftwf_complex)(C.fftwf_malloc(C.size_t(8 * (n/2 + 1))))
		defer C.fftwf_free(unsafe.Pointer(re))
		defer C.fftwf_free(unsafe.Pointer(sp))
		f := &fftw32{n: n,
			r2c: C.fftwf_plan_dft_r2c_1d(C.int(n), re, sp, C.FFTW_ESTIMATE),
			c2r: C.fftwf_plan_dft_c2r_1d(C.int(n), sp, re, C.FFTW_ESTIMATE)}
		if f.r2c == nil || f.c2r == nil {
			panic("compute: FFTW could not plan a real transform of length " + strconv.Itoa(n))
		}
		p = f
	} else {
		re := (*C.double)(C.fftw_malloc(C.size_t(8 * n)))
		sp := (*C.fftw_complex)(C.fftw_malloc(C.size_t(16 * (n/2 + 1))))
		defer C.fftw_free(unsafe.Pointer(re))
		defer C.fftw_free(unsafe.Pointer(sp))
		f := &fftw64{n: n,
			r2c: C.fftw_plan_dft_r2c_1d(C.int(n), re, sp, C.FFTW_ESTIMATE),
			c2r: C.fftw_plan_dft_c2r_1d(C.int(n), sp, re, C.FFTW_ESTIMATE)}
		if f.r2c == nil || f.c2r == nil {
			panic("compute: FFTW could not plan a real transform of length " + strconv.Itoa(n))
		}
		p = f
	}
	fftwPlans.byKey[key] = p
	return p.(realFFT[T])
}

func (p *fftw64) forward(dst, src []float64) {
	checkFFT(p.n, src, dst)
	C.fftw_execute_dft_r2c(p.r2c, (*C.double)(&src[0]), (*C.fftw_complex)(unsafe.Pointer(&dst[0])))
}

func (p *fftw64) inverse(dst, src []float64) {
	checkFFT(p.n, dst, src)
	C.fftw_execute_dft_c2r(p.c2r, (*C.fftw_complex)(unsafe.Pointer(&src[0])), (*C.double)(&dst[0]))
}

func (p *fftw32) forward(dst, src []float32) {
	checkFFT(p.n, src, dst)
	C.fftwf_execute_dft_r2c(p.r2c, (*C.float)(&src[0]), (*C.fftwf_complex)(unsafe.Pointer(&dst[0])))
}

func (p *fftw32) inverse(dst, src []float32) {
	checkFFT(p.n, dst, src)
	C.fftwf_execute_dft_c2r(p.c2r, (*C.fftwf_complex)(unsafe.Pointer(&src[0])), (*C.float)(&dst[0]))
}

// checkFFT panics unless the real buffer re and the interleaved spectrum
// sp hold a transform of length n (FFTW would read or write past them)
// and start on fftAlign boundaries (a plan's SIMD codelets assume its
// planning arrays' alignment).
func checkFFT[T Float](n int, re, sp []T) {
	if len(re) < n || len(sp) < 2*(n/2+1) {
		panic(ErrShape)
	}
	if uintptr(unsafe.Pointer(&re[0]))%fftAlign != 0 || uintptr(unsafe.Pointer(&sp[0]))%fftAlign != 0 {
		panic("compute: FFT buffer not aligned to " + strconv.Itoa(fftAlign) + " bytes")
	}
}
