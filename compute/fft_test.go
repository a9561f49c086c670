package compute

import (
	"fmt"
	"math"
	"testing"
)

// naiveDFT returns the first n/2 + 1 coefficients of the DFT of x,
// interleaved, by the O(n^2) definition X_k = sum_j x_j e^{-2 pi i jk/n}
// in float64: an implementation independent of every FFT backend.
func naiveDFT(x []float64) []float64 {
	n := len(x)
	out := make([]float64, 2*(n/2+1))
	for k := 0; k <= n/2; k++ {
		var re, im float64
		for j, v := range x {
			a := -2 * math.Pi * float64((j*k)%n) / float64(n)
			re += v * math.Cos(a)
			im += v * math.Sin(a)
		}
		out[2*k], out[2*k+1] = re, im
	}
	return out
}

// TestRealFFT checks the FFT backend (FFTBackend) in both precisions
// against the DFT's definition, and that inverse(forward(x)) = n x, for
// lengths with and without the small prime factors.
func TestRealFFT(t *testing.T) {
	for _, n := range []int{1, 2, 7, 12, 30, 64, 97, 256} {
		rng := newRand(uint64(n))
		x := randSlice(rng, n)
		want := naiveDFT(x)
		t.Run(fmt.Sprintf("%s/n=%d/float64", FFTBackend(), n), func(t *testing.T) {
			checkRealFFT(t, x, want, 1e-12)
		})
		t.Run(fmt.Sprintf("%s/n=%d/float32", FFTBackend(), n), func(t *testing.T) {
			x32 := make([]float32, n)
			for i, v := range x {
				x32[i] = float32(v)
			}
			checkRealFFT(t, x32, want, 1e-5)
		})
	}
}

func checkRealFFT[T Float](t *testing.T, x []T, want []float64, tol float64) {
	t.Helper()
	n := len(x)
	plan := planFor[T](n)
	f := plan.get()
	defer plan.put(f)
	re, sp := f.re, f.a
	copy(re, x)
	f.fft.forward(sp, re)
	if d := relDiff(float64s(sp), want); d > tol {
		t.Errorf("forward vs the DFT: rel diff %g > %g", d, tol)
	}
	f.fft.inverse(re, sp)
	back := make([]float64, n)
	for i, v := range re {
		back[i] = float64(v) / float64(n)
	}
	if d := relDiff(back, float64s(x)); d > tol {
		t.Errorf("inverse(forward(x)) / n vs x: rel diff %g > %g", d, tol)
	}
}
