package compute

import (
	"fmt"
	"math"
	"slices"
	"testing"
)

// kernelInputs returns float32 vectors of lengths around the vector
// widths (tails of every size) and one long one, with values over many
// magnitudes, zeros and signed zeros.
func kernelInputs(seed uint64) [][]float32 {
	rng := newRand(seed)
	var out [][]float32
	for _, n := range []int{0, 1, 7, 8, 9, 15, 16, 17, 31, 33, 100, 16384 + 5} {
		x := make([]float32, n)
		for j := range x {
			switch rng.IntN(10) {
			case 0:
				x[j] = 0
			case 1:
				x[j] = float32(math.Copysign(0, -1))
			default:
				x[j] = float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(12)-6)))
			}
		}
		out = append(out, x)
	}
	return out
}

func sameBits(a, b []float32) bool {
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return len(a) == len(b)
}

// TestKernels32 checks the float32 kernels the build uses (SIMDKernels)
// against their portable definitions bit for bit, and the sums of
// squares against a plain float64 sum to 1e-13.
func TestKernels32(t *testing.T) {
	k := adamCoef32{b1: 0.9, c1: 0.1, b2: 0.999, c2: 1e-3, gscale: 0.37, shrink: 1 - 1e-5, step: 1e-3 / 0.19, isq2: 1 / float32(math.Sqrt(1-0.999*0.999)), eps: 1e-8}
	inputs := kernelInputs(1)
	for i, g := range inputs {
		n := len(g)
		t.Run(fmt.Sprintf("%s/n=%d", SIMDKernels(), n), func(t *testing.T) {
			p, m := kernelInputs(2)[i], kernelInputs(3)[i]
			v := kernelInputs(4)[i]
			for j := range v {
				v[j] = v[j] * v[j] // second moments are >= 0
			}
			p2, m2, v2 := slices.Clone(p), slices.Clone(m), slices.Clone(v)
			adamW32(p, g, m, v, k)
			adamW32Scalar(p2, g, m2, v2, k)
			if !sameBits(p, p2) || !sameBits(m, m2) || !sameBits(v, v2) {
				t.Errorf("adamW32 differs from adamW32Scalar")
			}

			if got, want := sumSquares32(g), sumSquares32Scalar(g); math.Float64bits(got) != math.Float64bits(want) {
				t.Errorf("sumSquares32 = %v, portable %v", got, want)
			}
			var plain float64
			for _, v := range g {
				plain += float64(v) * float64(v)
			}
			if got := sumSquares32(g); math.Abs(got-plain) > 1e-13*plain {
				t.Errorf("sumSquares32 = %v, plain float64 sum %v", got, plain)
			}
			d, d2 := slices.Clone(p), slices.Clone(p)
			got, want := addSumSquares32(d, m), addSumSquares32Scalar(d2, m)
			if math.Float64bits(got) != math.Float64bits(want) || !sameBits(d, d2) {
				t.Errorf("addSumSquares32 = %v, portable %v (or the sums differ)", got, want)
			}
		})
	}
}

// BenchmarkKernels32 measures the float32 kernels per entry on the
// 301,066 parameters of the 64-512-512-10 MLP, against their portable
// definitions.
func BenchmarkKernels32(b *testing.B) {
	const n = 301066
	p, g, m, v := randSlice32(n), randSlice32(n), randSlice32(n), make([]float32, n)
	k := DefaultOptimizerConfig()
	opt := &Optimizer[float32]{cfg: k, bc1: 0.1, bc2: 0.001}
	coef := opt.adamCoef32(1e-6, 0.01, 1)
	for _, c := range []struct {
		name string
		f    func()
	}{
		{"adamw/" + SIMDKernels(), func() { adamW32(p, g, m, v, coef) }},
		{"adamw/portable", func() { adamW32Scalar(p, g, m, v, coef) }},
		{"addsumsq/" + SIMDKernels(), func() { addSumSquares32(g, m) }},
		{"addsumsq/portable", func() { addSumSquares32Scalar(g, m) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				c.f()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/param")
		})
	}
}
