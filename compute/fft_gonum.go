//go:build !fftw

package compute

import (
	"unsafe"

	"gonum.org/v1/gonum/dsp/fourier"
)

// FFTBackend names the FFT implementation of the circulant and toeplitz
// families: "gonum" (pure Go, the default) or "fftw" (FFTW through cgo,
// built with -tags fftw).
func FFTBackend() string { return "gonum" }

// gonumFFT is a realFFT on gonum's dsp/fourier, which transforms float64
// sequences with scratch of its own (one per fftWork); a float32 one
// goes through float64 copies.
type gonumFFT[T Float] struct {
	f   *fourier.FFT
	re  []float64
	sp  []complex128
	n   int
	f64 bool
}

func newRealFFT[T Float](n int) realFFT[T] {
	g := &gonumFFT[T]{f: fourier.NewFFT(n), n: n, f64: unsafe.Sizeof(T(0)) == 8}
	if !g.f64 {
		g.re, g.sp = make([]float64, n), make([]complex128, n/2+1)
	}
	return g
}

// spectrum views an interleaved spectrum of float64 values as complex128.
func spectrum(s []float64) []complex128 {
	return unsafe.Slice((*complex128)(unsafe.Pointer(&s[0])), len(s)/2)
}

func (g *gonumFFT[T]) forward(dst, src []T) {
	if g.f64 {
		g.f.Coefficients(spectrum(any(dst).([]float64)), any(src).([]float64))
		return
	}
	for i, v := range src[:g.n] {
		g.re[i] = float64(v)
	}
	g.f.Coefficients(g.sp, g.re)
	for i, c := range g.sp {
		dst[2*i], dst[2*i+1] = T(real(c)), T(imag(c))
	}
}

func (g *gonumFFT[T]) inverse(dst, src []T) {
	if g.f64 {
		g.f.Sequence(any(dst).([]float64), spectrum(any(src).([]float64)))
		return
	}
	for i := range g.sp {
		g.sp[i] = complex(float64(src[2*i]), float64(src[2*i+1]))
	}
	g.f.Sequence(g.re, g.sp)
	for i, v := range g.re {
		dst[i] = T(v)
	}
}
