package compute

import (
	"fmt"
	"testing"
)

// BenchmarkRealFFT measures one forward and one inverse real transform of
// the FFT backend (FFTBackend) at the sizes of BenchmarkApplyGrad's
// circulant (4096) and toeplitz (8192) layers, on one goroutine, in the
// training precision.
func BenchmarkRealFFT(b *testing.B) {
	for _, n := range []int{4096, 8192} {
		b.Run(fmt.Sprintf("%s/n=%d", FFTBackend(), n), func(b *testing.B) {
			f := newRealFFT[float32](n)
			re, sp := alignedFloats[float32](n), alignedFloats[float32](2*(n/2+1))
			copy(re, randSlice32(n))
			for b.Loop() {
				f.forward(sp, re)
				f.inverse(re, sp)
				for i := range re {
					re[i] *= 1 / float32(n)
				}
			}
			b.ReportMetric(2*fftFLOPs(n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
